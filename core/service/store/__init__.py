"""The service's persistence: its tables (`tables.py`) and all of its SQL.

Nothing above this package touches SQL; nothing here decides anything.
"""

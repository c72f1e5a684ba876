"""The store's Alembic migrations: `env.py`, the revision template and `versions/`.

Driven by `core.store.migrate` (no alembic.ini); see its docstring for the commands.
"""

"""cpf engine: load, validate and run checkpointflow/v1 workflows.

Importing this package is cheap on purpose: `cpf --version` must not pay for
SQLAlchemy, jsonschema or Textual. Heavy modules are imported where used.
"""

__version__ = "0.1.0"

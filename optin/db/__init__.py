"""Storage: the schema (schema.py), SQLite's fast write path and the result methods a write may use
(sqlite.py), and the `Database` both go through (database.py). `python -m optin.db migrate` is the release step."""

from .database import Database
from .schema import MIGRATIONS, SchemaOutOfDate
from .sqlite import Queries, Result, ResultRow

__all__ = ["MIGRATIONS", "Database", "Queries", "Result", "ResultRow", "SchemaOutOfDate"]

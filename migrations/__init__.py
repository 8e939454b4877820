"""Alembic migrations: one set that runs on SQLite (batch mode) and on Postgres."""

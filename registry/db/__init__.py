"""The index database: engine and sessions, portable column types, table models, migrations check."""

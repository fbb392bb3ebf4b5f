"""The Alembic environment and revisions, shipped in the wheel as ``idp._migrations``."""

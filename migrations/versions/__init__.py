"""The schema's revisions (Alembic skips this file when it lists them)."""

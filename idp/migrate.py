"""Applying the Alembic migrations from code (``idp db upgrade``, tests, the demo).

The revisions live in the checkout's top-level ``migrations/`` folder, which the build
ships as the package ``idp._migrations`` (see setup.py), so an installed wheel and a
checkout find them the same way: from the package, never from a path beside the source.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config

from idp.instance import create_sqlite_file

MIGRATIONS_PACKAGE = "idp._migrations"

# The [alembic] options of the checkout's alembic.ini that an upgrade depends on; the
# installed package has no alembic.ini (that file is for `alembic` run in a checkout),
# so they are set here, and tests/unit/idp/test_migrations.py keeps the two the same.
UPGRADE_OPTIONS = {"path_separator": "os"}


def migrations_path() -> Path:
    """The folder of the Alembic environment and revisions, wherever the package is."""
    path = Path(str(files(MIGRATIONS_PACKAGE)))
    if not (path / "env.py").is_file():
        # pip installs packages unzipped; a zipped or broken install must say so, clearly.
        raise RuntimeError(f"the migrations are missing from {path}: reinstall qr-idp")
    return path


def alembic_config(database_url: str) -> Config:
    """Alembic's config for the IdP's migrations and ``database_url``."""
    config = Config()
    config.set_main_option("script_location", str(migrations_path()))
    for name, value in UPGRADE_OPTIONS.items():
        config.set_main_option(name, value)
    # ConfigParser interpolation: a literal % must be doubled.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at ``database_url`` up to ``revision``."""
    create_sqlite_file(database_url)  # 0600 in a 0700 folder, before SQLite makes it
    command.upgrade(alembic_config(database_url), revision)

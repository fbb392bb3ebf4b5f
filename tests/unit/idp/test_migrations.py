"""The Alembic migrations produce exactly the models' schema."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from idp.migrate import alembic_config, upgrade
from idp.models import Base
from support import postgres_database


def schema_difference(url: str) -> list:
    """Migrate ``url`` to head and compare its schema with the models'."""
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    return diff


def test_migrations_match_models(tmp_path):
    assert schema_difference(f"sqlite:///{tmp_path / 'schema.sqlite3'}") == []


def test_upgrade_is_idempotent(tmp_path):
    url = f"sqlite:///{tmp_path / 'twice.sqlite3'}"
    upgrade(url)
    upgrade(url)  # a second run finds nothing to do and changes nothing
    engine = create_engine(url)
    with engine.connect() as connection:
        version = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    engine.dispose()
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert head is not None and version == head


@pytest.mark.postgres
def test_migrations_match_models_on_postgresql():
    with postgres_database() as url:
        assert schema_difference(url) == []


def test_upgrade_from_the_first_revision_keeps_the_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    upgrade(url, "0001")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO clients (client_id, name, redirect_uris, scope, grant_types,"
            " token_endpoint_auth_method, id_token_signed_response_alg, created_at)"
            " VALUES ('c1', 'Old RP', '[]', 'openid', '[]', 'none', 'RS256',"
            " '2026-01-01 00:00:00')"
        )
    upgrade(url)
    with engine.connect() as connection:
        names = connection.exec_driver_sql("SELECT name FROM clients").scalars().all()
        indexes = {
            row[1] for row in connection.exec_driver_sql("PRAGMA index_list('tokens')").all()
        }
    engine.dispose()
    assert names == ["Old RP"]
    assert {"ix_tokens_issued_at", "ix_tokens_user_id"} <= indexes


@pytest.mark.parametrize("table", sorted(Base.metadata.tables))
def test_every_foreign_key_is_indexed(table):
    """Deleting a user, client or device must not scan the tables that point at it."""
    t = Base.metadata.tables[table]
    leading = {index.columns[0].name for index in t.indexes}
    leading |= {c.columns[0].name for c in t.constraints if hasattr(c, "columns") and c.columns}
    for fk in t.foreign_keys:
        assert fk.parent.name in leading, f"{table}.{fk.parent.name} has no index"


def run_on(engine_name: str, tmp_path, check) -> None:
    """``check(url)`` on a new database of that engine (a PostgreSQL one is dropped after)."""
    if engine_name == "postgresql":
        with postgres_database() as url:
            check(url)
    else:
        check(f"sqlite:///{tmp_path / 'migrations.sqlite3'}")


@pytest.mark.parametrize(
    "engine_name", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_upgrade_to_0006_gives_existing_clients_their_redirect_uris_origins(tmp_path, engine_name):
    run_on(engine_name, tmp_path, origins_after_upgrade)


def origins_after_upgrade(url: str) -> None:
    upgrade(url, "0004")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO clients (client_id, name, redirect_uris, scope, grant_types,"
            " token_endpoint_auth_method, id_token_signed_response_alg, created_at)"
            " VALUES ('spa', 'SPA', '[\"https://App.example:443/cb\", \"https://app.example/x\","
            " \"http://localhost:5173/cb\", \"com.example.app:/cb\"]', 'openid', '[]', 'none',"
            " 'RS256', '2026-01-01 00:00:00'),"
            " ('native', 'App', '[\"com.example.app:/cb\"]', 'openid', '[]', 'none', 'RS256',"
            " '2026-01-01 00:00:00')"
        )
    upgrade(url)
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT client_id, origin FROM client_origins ORDER BY origin"
        ).all()
    engine.dispose()
    assert rows == [("spa", "http://localhost:5173"), ("spa", "https://app.example")]


def test_upgrades_use_the_options_of_the_checkouts_alembic_ini():
    """An installed package has no alembic.ini: idp/migrate.py sets what an upgrade needs.

    An option added to alembic.ini (``version_locations``, say) would change what
    ``alembic upgrade`` does in a checkout but not what ``idp db upgrade`` does; this
    test makes it be added to idp/migrate.py too.
    """
    import configparser
    from pathlib import Path

    from idp.migrate import UPGRADE_OPTIONS, alembic_config, migrations_path

    ini = configparser.ConfigParser(interpolation=None)
    ini.read(Path(__file__).resolve().parents[3] / "alembic.ini")
    # Only for `alembic` run in a checkout: where the folder is, the import path, the
    # name of a new revision's file.
    checkout_only = {"script_location", "prepend_sys_path", "file_template"}
    assert {k: v for k, v in ini["alembic"].items() if k not in checkout_only} == UPGRADE_OPTIONS
    config = alembic_config("sqlite://")
    assert config.get_main_option("script_location") == str(migrations_path())
    assert all(config.get_main_option(k) == v for k, v in UPGRADE_OPTIONS.items())


@pytest.mark.parametrize(
    "engine_name", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_0008_adds_the_clients_approved_in_each_session(tmp_path, engine_name):
    """Sessions made before 0008 keep living with no client approved (each asks for a
    scan again); one row per session and client; gone with the session; and back down."""
    run_on(engine_name, tmp_path, session_clients_across_0008)


def session_clients_across_0008(url: str) -> None:
    from alembic import command
    from sqlalchemy.exc import IntegrityError

    upgrade(url, "0007")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO users (id, subject, username, password_hash, created_at)"
            " VALUES (1, 's1', 'alice', 'x', '2026-01-01 00:00:00')"
        )
        connection.exec_driver_sql(
            "INSERT INTO browser_sessions (id, secret_hash, user_id, auth_time, created_at,"
            " expires_at) VALUES (7, 'h', 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00',"
            " '2026-01-01 08:00:00')"
        )
    upgrade(url)
    approve = (
        "INSERT INTO browser_session_clients (session_id, client_id, approved_at)"
        " VALUES (7, 'a', '2026-01-01 00:00:00')"
    )
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        assert connection.exec_driver_sql("SELECT * FROM browser_session_clients").all() == []
        connection.exec_driver_sql(approve)
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.exec_driver_sql(approve)  # once per session and client
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.exec_driver_sql("DELETE FROM browser_sessions WHERE id = 7")
        assert connection.exec_driver_sql("SELECT * FROM browser_session_clients").all() == []
    command.downgrade(alembic_config(url), "0007")
    with engine.connect() as connection:
        tables = set(inspect(connection).get_table_names())
    engine.dispose()
    assert "browser_session_clients" not in tables
    assert "browser_sessions" in tables


@pytest.mark.parametrize(
    "engine_name", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_0010_adds_enrollment_requests_and_how_each_phone_was_enrolled(tmp_path, engine_name):
    """Phones enrolled before 0010 keep working, with no enrolled_via; one pending request
    per key (decided ones may repeat it); requests go with their user, and a deleted
    phone leaves its decisions standing; and back down."""
    run_on(engine_name, tmp_path, enrollment_requests_across_0010)


def enrollment_requests_across_0010(url: str) -> None:
    from alembic import command
    from sqlalchemy.exc import IntegrityError

    upgrade(url, "0008")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO users (id, subject, username, password_hash, created_at)"
            " VALUES (1, 's1', 'alice', 'x', '2026-01-01 00:00:00')"
        )
        connection.exec_driver_sql(
            "INSERT INTO devices (id, device_id, user_id, name, public_jwk, key_thumbprint,"
            " created_at) VALUES (5, 'dev_old', 1, 'Old phone', '{}', 't-old',"
            " '2026-01-01 00:00:00')"
        )
    upgrade(url)

    def request(connection, id_: str, key: str, status: str = "pending") -> None:
        connection.execute(
            text(
                "INSERT INTO enrollment_requests (id, user_id, code_digest, public_jwk,"
                " key_thumbprint, device_name, status, created_at, expires_at, decided_by)"
                " VALUES (:id, 1, :digest, '{}', :key, 'New', :status,"
                " '2026-01-01 00:00:00', '2026-01-01 00:10:00', 5)"
            ),
            {"id": id_, "digest": f"d-{id_}", "key": key, "status": status},
        )

    def foreign_keys_on(connection) -> None:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")

    with engine.begin() as connection:
        assert connection.exec_driver_sql("SELECT enrolled_via FROM devices").all() == [(None,)]
        request(connection, "r1", "k1")
        request(connection, "r2", "k1", "denied")  # a decided request may share its key
        request(connection, "r3", "k1", "expired")
    with pytest.raises(IntegrityError), engine.begin() as connection:
        request(connection, "r4", "k1")  # a second pending request of one key
    with engine.begin() as connection:
        foreign_keys_on(connection)
        connection.exec_driver_sql("DELETE FROM devices WHERE id = 5")
        decided_by = connection.exec_driver_sql("SELECT decided_by FROM enrollment_requests")
        assert decided_by.scalars().all() == [None, None, None]
        connection.exec_driver_sql("DELETE FROM users WHERE id = 1")
        assert connection.exec_driver_sql("SELECT * FROM enrollment_requests").all() == []
    command.downgrade(alembic_config(url), "0008")
    with engine.connect() as connection:
        inspector = inspect(connection)
        tables = set(inspector.get_table_names())
        device_columns = {column["name"] for column in inspector.get_columns("devices")}
    engine.dispose()
    assert "enrollment_requests" not in tables
    assert "enrolled_via" not in device_columns and "key_thumbprint" in device_columns

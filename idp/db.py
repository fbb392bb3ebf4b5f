"""Engine, session and declarative base.

Each app gets its own engine and a scoped session (one per thread or greenlet),
removed when the app context ends. Services use :data:`session`; they commit
their own unit of work.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app
from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, scoped_session, sessionmaker
from werkzeug.local import LocalProxy

from idp.instance import create_sqlite_file

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base of every model; constraint names are fixed for Alembic."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    """Now, in UTC, without tzinfo (as every timestamp column stores it)."""
    return datetime.now(UTC).replace(tzinfo=None)


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and write-ahead locking."""
    if url.startswith("sqlite"):
        create_sqlite_file(url)  # private before SQLite creates it (and its -wal, -shm)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
            # Take the write lock at BEGIN: a transaction that reads, then
            # writes, would otherwise fail at once when another writer went first.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL syncs at checkpoints, not at every commit: a commit
            # survives a crash of the process, and only an OS crash or power cut may
            # lose the last ones (never corruption). FULL made each commit wait for a disk
            # sync while the one worker's every other request waited too.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # A database that does not answer fails a request within seconds (a 503), not never.
    # No ping before each checkout (a round trip per transaction): a connection that died
    # meanwhile fails its request with a 503 (idp.errors), and that first disconnect error
    # makes the pool drop every older connection. pool_recycle replaces connections before
    # an idle-timeout on the way (a proxy, a firewall) can cut them.
    return create_engine(
        url,
        pool_recycle=300,
        pool_size=10,
        max_overflow=20,
        pool_timeout=10,
        connect_args={"connect_timeout": 5},
    )


class Database:
    """The app's engine and scoped session."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.session: scoped_session[Session] = scoped_session(
            sessionmaker(bind=self.engine, expire_on_commit=False)
        )


def init_app(app: Flask) -> None:
    """Attach the database to ``app``; the session is removed after each context."""
    database = Database(app.config["IDP_DATABASE_URL"])
    app.extensions["idp.db"] = database

    @app.teardown_appcontext
    def _remove_session(_exc: BaseException | None) -> None:
        database.session.remove()


def reads_only() -> None:
    """Declare that the current request only reads: on PostgreSQL its statements then run
    without BEGIN and ROLLBACK (autocommit: each statement is its own transaction), two
    round trips less. Call it before the request's first statement. A request that
    writes, or needs several reads to agree, must not call it.
    """
    session = _current_session()()
    if not session.in_transaction() and session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def _current_session() -> scoped_session[Session]:
    return current_app.extensions["idp.db"].session


#: The current app's session (a scoped session: one per thread or greenlet).
session: scoped_session[Session] = LocalProxy(_current_session)  # type: ignore[assignment]

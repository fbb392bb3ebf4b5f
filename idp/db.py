"""Engine, session and declarative base, and the rules of the unit of work.

Each app gets its own engine and a scoped session (one per thread or greenlet),
removed when the app context ends. Services use :data:`session`.

The unit of work (``tests/unit/idp/test_commit_rule.py`` reads the source for it):

- A request's writes are one transaction, committed at the view edge once the answer is
  built (a ``views.py`` module: ``db.session.commit()`` before it returns), or by
  :func:`unit_of_work` for a CLI command or a WebSocket step, and rolled back otherwise.
  A service writes into its caller's transaction and never commits it. A failure that
  is itself the answer is committed by its view too: a refused enrollment's audit
  record, a wrong short code's failure (it holds the user's row locked until then, so
  that guesses cannot race the count), a wrong number's denial.
- What others may see only once it is committed (a login request's new state on the
  broker, a denied sign-in of a revoked phone, a rotated key in this process's cache;
  that a proof's ``jti`` is stored) is registered with :func:`on_commit`, run by this
  app's own session events after COMMIT, and dropped by a rollback.
- Nothing holds a write transaction or a row lock across anything that can yield to
  other requests: Redis (the abuse limits, publishing), a socket, a sleep. Under gevent
  such a wait lets another request run, which may then wait for that lock; on SQLite a
  writer waiting for the lock blocks the whole process. Do the Redis call first (a
  proof is checked, the device's budget charged, and only then are its ``jti`` and
  ``last_used_at`` written), or commit first (publishing is an :func:`on_commit`).
- The few writes that must stand whatever becomes of the request are committed alone,
  never as part of someone else's work, each named here and in the test above:

  - with :func:`stand_alone` (the failing request's work is rolled back first, then the
    write is committed by itself; a second transaction beside the request's would wait
    for its locks, on SQLite for the one write lock): a refused proof's ``jti``
    (``idp.mobile.proof.settle_proof``), an expiry seen on read by a request that then
    fails (``idp.qrlogin.services._check_open``), and the family revocation of a
    replayed code or reused refresh token (``idp.oauth.family.revoke_family``: the token
    request that found the replay fails), the audit line of a refused invitation
    (``idp.mobile.invitations._refuse``: the enrollment it came with fails), and what a
    device's or site's poll learned (``idp.oauth.polling``: its next allowed time and
    interval, an expiry; the poll answers an error);
  - with :func:`independent_transaction`: the first signing keys (on SQLite, where the
    request may hold the write lock, a savepoint of the request's, cached only once
    committed) and each ``idp purge`` batch;
  - on SQLite, a proof's ``jti`` and ``last_used_at`` are committed at once by
    ``record_proof``, before the request's own work begins;
  - the phone API's ``after_request`` (its view edge) commits a successful request's
    ``jti`` when the view had nothing of its own to commit (a read).
- On PostgreSQL a wait for a lock or a slow statement ends after
  ``IDP_DATABASE_LOCK_TIMEOUT`` / ``IDP_DATABASE_STATEMENT_TIMEOUT`` seconds, and a
  server that stops answering after the statement timeout plus :data:`ANSWER_GRACE`:
  each is a 503 (``idp.errors.database_unavailable``), never a frozen process. In a
  gevent worker every database wait yields (:func:`cooperate_with_gevent`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from flask import Flask, current_app
from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, scoped_session, sessionmaker
from werkzeug.local import LocalProxy

from idp.instance import create_sqlite_file

if TYPE_CHECKING:
    from sqlalchemy import Table

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
    if TYPE_CHECKING:  # every model here maps one table (SQLAlchemy types it FromClause)
        __table__: ClassVar[Table]


def utcnow() -> datetime:
    """Now, in UTC, without tzinfo (as every timestamp column stores it)."""
    return datetime.now(UTC).replace(tzinfo=None)


def make_engine(url: str, *, lock_timeout: int = 0, statement_timeout: int = 0) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and write-ahead locking.

    On PostgreSQL every connection waits at most ``lock_timeout`` seconds for a lock and
    runs a statement for at most ``statement_timeout`` seconds (0: no limit, the default,
    as for migrations), and a round trip the server never answers (a frozen host, a dead
    network) fails ``statement_timeout`` + :data:`ANSWER_GRACE` seconds after it began:
    each becomes a 503 (``idp.errors``), never a request that waits for ever. (They are
    sent as the connection's startup ``options``: behind PgBouncer, set them on the
    database role instead and list ``options`` in its ``ignore_startup_parameters``.)
    """
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
    options = (
        f"-c lock_timeout={lock_timeout * 1000} -c statement_timeout={statement_timeout * 1000}"
    )
    engine = create_engine(
        url,
        pool_recycle=300,
        pool_size=10,
        max_overflow=20,
        pool_timeout=10,
        connect_args={"connect_timeout": 5, "options": options},
    )
    if engine.dialect.driver == "psycopg":
        answer_within = statement_timeout + ANSWER_GRACE if statement_timeout else None

        @event.listens_for(engine, "do_connect")
        def _bounded_connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
            connection = _bounded_connection_class().connect(*cargs, **cparams)
            connection.answer_within = answer_within
            return connection

    return engine


#: Seconds past ``statement_timeout`` that a round trip may take before the connection is
#: given up for dead: the server cancels a slow statement itself, and says so, first.
ANSWER_GRACE = 5


@functools.cache
def _bounded_connection_class() -> Any:  # a psycopg.Connection subclass, made on first use
    import psycopg
    from psycopg import errors

    class BoundedConnection(psycopg.Connection):
        """A psycopg connection whose every round trip has a deadline.

        ``statement_timeout`` is enforced by the server, so it cannot help when the
        server (or the network to it) stops answering; this deadline can. A connection
        whose deadline passed is closed: it is mid-protocol, so it can never be reused,
        and SQLAlchemy, seeing it closed, treats the error as a disconnect.
        """

        answer_within: float | None = None

        def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
            try:
                return super().wait(
                    gen, interval, self.answer_within if timeout is None else timeout
                )
            except errors._WaitTimeout:
                self.pgconn.finish()
                raise errors.OperationalError(
                    f"the database did not answer within {self.answer_within} s"
                ) from None

    return BoundedConnection


def cooperate_with_gevent() -> None:
    """Make psycopg's waits for the database gevent waits, whatever was imported first.

    psycopg picks its wait function when it is first imported: the C ``wait_c`` unless
    gevent has already patched ``select``. ``wait_c`` blocks the whole process, so in a
    gevent worker one request waiting for a row lock froze every other request, the one
    holding the lock included (for good). Call this once gevent has patched the standard
    library: every later wait, and every new connection's, then yields to other greenlets
    (psycopg's own choice under gevent: ``poll``, which gevent has patched).
    """
    import selectors

    from psycopg import waiting

    waiting.wait = waiting.wait_poll
    # used by wait_conn (connecting); mypy takes the patched name for a class definition
    waiting.DefaultSelector = selectors.DefaultSelector  # type: ignore[misc]


#: ``Session.info`` key of the callbacks waiting for the current transaction's commit.
_ON_COMMIT = "idp.on_commit"


class Database:
    """The app's engine and scoped session."""

    def __init__(self, url: str, *, lock_timeout: int = 0, statement_timeout: int = 0) -> None:
        self.engine = make_engine(
            url, lock_timeout=lock_timeout, statement_timeout=statement_timeout
        )
        factory = sessionmaker(bind=self.engine, expire_on_commit=False)
        # This app's sessions only (another app in the process has its own factory).
        event.listen(factory, "after_commit", _run_on_commit)
        event.listen(factory, "after_rollback", _drop_on_commit)
        self.session: scoped_session[Session] = scoped_session(factory)


def on_commit(callback: Callable[[], object]) -> None:
    """Run ``callback`` once the current transaction has committed; never if it rolls back.

    What others may see only once it is true goes here: publishing a login request's new
    state, forgetting that a proof's ``jti`` is still to be committed. The callback runs
    after COMMIT, so the locks are released: it may yield (Redis, a socket). It runs
    between two transactions, so it must not use the session.
    """
    session = _current_session()()
    session.info.setdefault(_ON_COMMIT, []).append(callback)


def _run_on_commit(session: Session) -> None:
    for callback in session.info.pop(_ON_COMMIT, []):
        callback()


def _drop_on_commit(session: Session) -> None:
    session.info.pop(_ON_COMMIT, None)


@contextlib.contextmanager
def unit_of_work() -> Iterator[Session]:
    """The current request's (or command's) transaction, committed when the block ends
    and rolled back if it raises: for callers that are not a view (a CLI command, a
    WebSocket handler's step)."""
    current = _current_session()()
    try:
        yield current
    except BaseException:
        current.rollback()
        raise
    current.commit()


@contextlib.contextmanager
def stand_alone() -> Iterator[Session]:
    """For a write that must stand though the request that makes it fails (a refused
    proof's ``jti``, an expiry seen on read, a replayed code's family revocation): the
    request's work so far is rolled back first, then the block's writes are committed
    alone, in a transaction of their own, and rolled back if it raises.

    Rolling back first is what lets it stand alone on both backends: on SQLite the
    request's transaction holds the one write lock, which a second transaction would
    wait for; on PostgreSQL it may hold row locks the write would wait for. The request
    is failing, so nothing it did is lost. :func:`on_commit` callbacks registered in the
    block run after its commit, when nothing is locked.
    """
    current = _current_session()()
    current.rollback()
    with unit_of_work() as own:
        yield own


@contextlib.contextmanager
def independent_transaction() -> Iterator[Session]:
    """A transaction of its own, on a connection of its own, whatever the caller's
    session holds: committed when the block ends, rolled back if it raises.

    For a write that stands beside the caller's work, which goes on (the first signing
    keys, a purge batch: see the module docstring). On SQLite, where one writer locks
    the whole file, only while the request's own session holds no transaction: it would
    otherwise wait for itself.
    """
    database: Database = current_app.extensions["idp.db"]
    with Session(database.engine, expire_on_commit=False) as own, own.begin():
        yield own


def release_before_yield() -> None:
    """Before something that may yield to other requests (Redis, a socket): end the
    current transaction if it holds a lock. On SQLite every transaction does (it begins
    with BEGIN IMMEDIATE); a PostgreSQL transaction that has only read holds no row lock
    and is left open. Must be called before the request has written anything.
    """
    current = _current_session()()
    if current.in_transaction() and current.get_bind().dialect.name == "sqlite":
        assert not (current.new or current.dirty or current.deleted), "a write would be lost"
        current.commit()


def init_app(app: Flask) -> None:
    """Attach the database to ``app``; the session is removed after each context."""
    config = app.config
    database = Database(
        config["IDP_DATABASE_URL"],
        lock_timeout=config["IDP_DATABASE_LOCK_TIMEOUT"],
        statement_timeout=config["IDP_DATABASE_STATEMENT_TIMEOUT"],
    )
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

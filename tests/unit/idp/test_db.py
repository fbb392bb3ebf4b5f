"""idp.db: the unit of work's hooks, and database waits that never block a gevent worker."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import select

from idp import db
from idp.accounts.models import User

POSTGRES_ONLY = pytest.mark.parametrize("backend", ["postgres+redis"], indirect=True)


def test_on_commit_runs_after_the_commit_and_never_after_a_rollback(app, tmp_path):
    from support import running_app

    seen: list[str] = []
    with running_app(tmp_path / "other") as other, app.app_context():
        db.session.add(User(subject="s0", username="u0", password_hash="x"))
        db.session.flush()
        db.on_commit(lambda: seen.append("rolled back"))
        db.session.rollback()
        db.session.add(User(subject="s1", username="u1", password_hash="x"))
        db.on_commit(lambda: seen.append("u1"))
        with other.app_context():  # another app's commit is not this one's
            db.session.commit()
        assert seen == []
        db.session.commit()
        assert seen == ["u1"]
        db.session.commit()
        assert seen == ["u1"]  # once
        assert db.session.scalar(select(User.username)) == "u1"


def test_unit_of_work_commits_or_rolls_back(app):
    with app.app_context():
        with db.unit_of_work() as session:
            session.add(User(subject="s1", username="kept", password_hash="x"))
        with pytest.raises(RuntimeError), db.unit_of_work() as session:
            session.add(User(subject="s2", username="dropped", password_hash="x"))
            session.flush()
            raise RuntimeError
        names = set(db.session.scalars(select(User.username)))
    assert names == {"kept"}


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | env,
    )


@POSTGRES_ONLY
def test_the_serving_master_never_imports_the_database_driver(backend, tmp_path):
    """`idp serve` checks the settings in the master without building the app: psycopg,
    imported before a worker's gevent patching, would keep its blocking wait."""
    result = run_python(
        """
        import sys
        import idp.server
        idp.server.run = lambda **_: print("psycopg imported:", "psycopg" in sys.modules)
        from idp.cli import main
        main(["serve"], standalone_mode=False)
        """,
        IDP_DATABASE_URL=backend["IDP_DATABASE_URL"],
        IDP_BROKER_URL=backend["IDP_BROKER_URL"],
        IDP_INSTANCE_PATH=str(tmp_path),
        IDP_SECRET_KEY="test-secret-key",
    )
    assert result.stdout.strip() == "psycopg imported: False", result.stderr


@POSTGRES_ONLY
def test_database_waits_yield_even_when_psycopg_came_first(backend):
    """psycopg imported before gevent's patching picks its blocking C wait; the worker's
    cooperate_with_gevent() makes the waits yield all the same: a greenlet waiting for a
    lock lets the one holding it go on (it froze the process before)."""
    url = backend["IDP_DATABASE_URL"].replace("postgresql+psycopg", "postgresql")
    result = run_python(
        """
        import psycopg  # first: psycopg chooses its wait function now
        from gevent import monkey

        monkey.patch_all()
        import gevent
        from idp.db import cooperate_with_gevent

        cooperate_with_gevent()
        holder = psycopg.connect(URL, autocommit=True)
        holder.execute("SELECT pg_advisory_lock(42)")
        waiter = psycopg.connect(URL, autocommit=True)
        waiting = gevent.spawn(waiter.execute, "SELECT pg_advisory_lock(42)")
        waiters = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        while not holder.execute(waiters).fetchone()[0]:
            gevent.sleep(0.05)  # only a green wait gives the hub back
        holder.execute("SELECT pg_advisory_unlock(42)")
        waiting.get(timeout=30)
        print("the holder went on while the other waited")
        """.replace("URL", repr(url)),
    )
    assert result.stdout.strip() == "the holder went on while the other waited", result.stderr

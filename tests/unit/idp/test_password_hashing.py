"""Password checks never stall the gevent worker: argon2id is slow on purpose, so under
gevent it runs on a bounded pool of real threads while the event loop serves others, and
no database lock is held while it runs (on SQLite a request waiting for the one write
lock would block the whole process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    from gevent import monkey

    monkey.patch_all()

    import sys
    import threading

    import gevent
    from argon2 import PasswordHasher
    from sqlalchemy import select

    from idp import db
    from idp.accounts import services
    from idp.accounts.models import User
    from idp.errors import InvalidCredentials
    from support import add_user, dispose_app, make_app

    app = make_app(__import__("pathlib").Path(sys.argv[1]))
    add_user(app, "alice")
    # An expensive hash: one check takes a while, long enough to be seen blocking.
    slow = PasswordHasher(time_cost=6, memory_cost=64 * 1024).hash("the-password")
    with app.app_context():
        db.session.query(User).update({User.password_hash: slow})
        db.session.commit()

    events = []
    loop_thread = threading.get_native_id()
    checked_on = []

    class RecordingHasher(PasswordHasher):
        def verify(self, *args):
            checked_on.append(threading.get_native_id())
            return super().verify(*args)

    services._hasher = RecordingHasher()

    def wrong_password():
        with app.app_context():
            try:
                services.authenticate("alice", "not-the-password")
            except InvalidCredentials:
                events.append("password checked")

    def other_request():  # it reads the database: on SQLite it needs the write lock too
        with app.app_context():
            db.session.execute(select(1))
            db.session.rollback()
        events.append("other request served")

    gevent.joinall([gevent.spawn(wrong_password), gevent.spawn(other_request)])
    dispose_app(app)
    print(events, checked_on != [loop_thread])
    """
)


def test_a_password_check_lets_the_event_loop_serve_others(tmp_path: Path):
    tests = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(tests), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The other greenlet ran while the hash was being checked (on another thread), not
    # after it: the check was started first, and nothing else in it yields.
    assert result.stdout.split("\n")[-2] == "['other request served', 'password checked'] True"


def test_redis_over_a_unix_socket_takes_the_bounded_options():
    """TCP keepalive is refused by redis-py for a unix socket: it must not be asked for."""
    import redis
    from limits.storage import storage_from_string

    from idp.limits import storage_uri
    from idp.realtime.broker import bounded_redis_options

    url = "unix:///tmp/no-such-redis.sock"
    client = redis.Redis.from_url(url, **bounded_redis_options(2, url))
    assert "socket_keepalive" not in client.connection_pool.connection_kwargs
    storage_from_string(storage_uri(url), **bounded_redis_options(2, url))  # no TypeError
    tcp = "redis://127.0.0.1:6379/0"
    assert bounded_redis_options(2, tcp)["socket_keepalive"] is True

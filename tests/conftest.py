"""Shared fixtures: a migrated database per test, and a live IdP server.

The live server is a real HTTP + WebSocket server (werkzeug, threaded) in this
process, so that a test can drive the browser side, the phone side and the
relying party against it and still look into the database.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask import Flask
from werkzeug.serving import BaseWSGIServer
from xdist.scheduler import LoadScopeScheduling

from idp.accounts import services as accounts
from idp.oauth import keys
from idp.oauth.keys import SigningJWK
from support import (
    dispose_app,
    listening_socket,
    make_app,
    postgres_database,
    redis_url,
    serve_in_thread,
)

# Tests only: test users' passwords are hashed with argon2id's cheapest parameters. A
# check follows the parameters stored in the hash, so every enrollment in the suite (and
# in the servers it starts) then costs about a millisecond instead of ~50 ms of CPU.
accounts._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


class KeyPool:
    """Tests only: signing keys from a pool made once per test process, in turn. A
    2048-bit RSA key takes 30-100 ms to make, and every app that signs makes one; a test
    has a database of its own, and the keys it draws one after another (its first
    keys, then each rotation's) all differ, up to ``SIZE`` of them."""

    SIZE = 16

    def __init__(self) -> None:
        self._made: dict[str, list[SigningJWK]] = {}
        self._turn: dict[str, itertools.count] = {}
        self._lock = threading.Lock()

    def __call__(self, alg: str) -> SigningJWK:
        with self._lock:
            made = self._made.setdefault(alg, [])
            turn = next(self._turn.setdefault(alg, itertools.count())) % self.SIZE
            if turn == len(made):
                made.append(_generate_key(alg))
            return made[turn]


_generate_key = keys.generate_key
keys.generate_key = KeyPool()


#: Modules whose tests all run on one pytest-xdist worker: their module fixture (a built
#: and installed wheel; two fuzzed IdPs) is costly, and is made once per worker that runs
#: any of them.
ONE_WORKER = {"tests/integration/test_install.py", "tests/integration/test_openapi_fuzz.py"}


class _OneWorkerModules(LoadScopeScheduling):
    """``--dist load``, except for the ``ONE_WORKER`` modules. (``--dist loadgroup`` with
    ``xdist_group`` marks would say it, but pytest-xdist 3.8 renames ``item._nodeid``,
    which pytest 9 no longer reads: every test stays in a group of its own.)"""

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        return module if module in ONE_WORKER else nodeid


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadScopeScheduling | None:
    """For ``-n N`` (``--dist load``) and ``--dist loadgroup``; other modes as they are."""
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None
    return _OneWorkerModules(config, log)


@pytest.fixture(params=["sqlite", "postgres+redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Storage and broker settings: ``sqlite`` (embedded) or ``postgres+redis``.

    Every test that uses an app or a live server (through this fixture) runs on both,
    each PostgreSQL test in a database of its own, created and dropped here.
    """
    if request.param == "sqlite":
        yield {}
    elif request.param == "postgres+redis":
        broker = redis_url()
        with postgres_database(migrated=True) as url:
            # Abuse-limit counters live in Redis too: each test gets keys of its own.
            prefix = "test-" + url.rsplit("/", 1)[-1]
            yield {
                "IDP_DATABASE_URL": url,
                "IDP_BROKER_URL": broker,
                "IDP_RATELIMIT_PREFIX": prefix,
            }
    else:
        raise ValueError(request.param)


@pytest.fixture
def app(tmp_path: Path, backend: dict[str, str]) -> Iterator[Flask]:
    app = make_app(tmp_path, **backend)
    yield app
    dispose_app(app)


@pytest.fixture
def client(app: Flask):
    return app.test_client()


@dataclass
class LiveServer:
    app: Flask
    url: str
    server: BaseWSGIServer

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")


def start_live_server(tmp_path: Path, **config: Any) -> tuple[LiveServer, threading.Thread]:
    listener = listening_socket()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        app = make_app(tmp_path, issuer=url, **config)
    except BaseException:
        listener.close()
        raise
    server, thread = serve_in_thread(listener, app)
    return LiveServer(app=app, url=url, server=server), thread


@pytest.fixture
def live_server(
    tmp_path: Path, request: pytest.FixtureRequest, backend: dict[str, str]
) -> Iterator[LiveServer]:
    """A live IdP; ``@pytest.mark.idp_config(KEY=value)`` overrides its settings."""
    marker = request.node.get_closest_marker("idp_config")
    config = backend | (dict(marker.kwargs) if marker else {})
    live, thread = start_live_server(tmp_path, **config)
    yield live
    live.server.shutdown()
    thread.join(timeout=5)
    dispose_app(live.app)

"""Shared fixtures: a migrated database per test, and a live IdP server.

The live server is a real HTTP + WebSocket server (werkzeug, threaded) in this
process, so that a test can drive the browser side, the phone side and the
relying party against it and still look into the database.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from werkzeug.serving import BaseWSGIServer, make_server

from support import dispose_app, free_port, make_app

IN_CI = os.environ.get("CI") == "true"
POSTGRES_ADMIN_URL = os.environ.get(
    "IDP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("IDP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def service_missing(what: str, error: Exception) -> None:
    """Outside CI a missing service skips its tests, saying so; in CI it fails them."""
    message = f"{what} is not reachable ({error}); start it (see .ci/run)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"idp_test_{secrets.token_hex(6)}"
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except OperationalError as error:
        admin.dispose()
        service_missing("PostgreSQL", error)
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def redis_url() -> str:
    """The test Redis, checked to answer."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        service_missing("Redis", error)
    return REDIS_URL


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Storage and broker settings: ``sqlite`` (embedded) or ``postgres+redis``.

    Parametrize a test or module with ``indirect=True`` to run it on both.
    """
    if request.param == "sqlite":
        yield {}
    elif request.param == "postgres+redis":
        broker = redis_url()
        with postgres_database() as url:
            yield {"IDP_DATABASE_URL": url, "IDP_BROKER_URL": broker}
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
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = make_app(tmp_path, issuer=url, **config)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
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

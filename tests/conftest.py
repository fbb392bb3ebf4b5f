"""Shared fixtures: a migrated database per test, and a live IdP server.

The live server is a real HTTP + WebSocket server (werkzeug, threaded) in this
process, so that a test can drive the browser side, the phone side and the
relying party against it and still look into the database.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from idp import create_app
from idp.migrate import upgrade

IN_CI = os.environ.get("CI") == "true"
USER_PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_app(tmp_path: Path, issuer: str = "http://127.0.0.1:8000", **config: Any) -> Flask:
    """A migrated SQLite IdP in ``tmp_path``."""
    url = f"sqlite:///{tmp_path / 'idp.sqlite3'}"
    upgrade(url)
    settings = {
        "TESTING": True,
        "IDP_DATABASE_URL": url,
        "IDP_ISSUER": issuer,
        "IDP_SECRET_KEY": "test-secret-key",
    }
    settings.update(config)
    return create_app(settings, instance_path=str(tmp_path / "instance"))


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return make_app(tmp_path)


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
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return LiveServer(app=app, url=url, server=server), thread


@pytest.fixture
def live_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """A live IdP; ``@pytest.mark.idp_config(KEY=value)`` overrides its settings."""
    marker = request.node.get_closest_marker("idp_config")
    config = dict(marker.kwargs) if marker else {}
    live, thread = start_live_server(tmp_path, **config)
    yield live
    live.server.shutdown()
    thread.join(timeout=5)

"""``idp serve``: gunicorn with gevent workers.

Each waiting page holds a WebSocket; a gevent worker holds thousands of them
as cheap greenlets, where a thread-per-socket worker would need a thread each.
"""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication


class _Gunicorn(BaseApplication):
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Built inside each worker, after gevent has patched the standard library.
        from idp import create_app

        return create_app()


def run(*, host: str, port: int, workers: int, worker_connections: int) -> None:
    """Serve until stopped (SIGTERM or Ctrl-C finish open requests first)."""
    _Gunicorn(
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "worker_class": "gevent",
            "worker_connections": worker_connections,
            "timeout": 30,
            "graceful_timeout": 10,
            "keepalive": 5,
            "accesslog": "-",
            "control_socket_disable": True,
        }
    ).run()

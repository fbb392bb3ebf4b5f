"""``idp serve``: gunicorn with gevent workers.

Each waiting page holds a WebSocket; a gevent worker holds thousands of them
as cheap greenlets, where a thread-per-socket worker would need a thread each.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.workers.ggevent import GeventWorker


class Worker(GeventWorker):
    """A gevent worker whose waiting pages move on when it stops.

    On SIGTERM (a deploy, a scale-down) gunicorn stops accepting and waits for
    open requests; a waiting page's WebSocket would hold it until the graceful
    timeout. Instead every socket is closed at once with 1012 (service restart),
    and the page reconnects, through the load balancer, to a worker that stays.
    """

    def patch(self) -> None:
        """gevent patches the standard library here, in the new worker; psycopg's waits
        must then yield too, even if something imported psycopg before (see
        :func:`idp.db.cooperate_with_gevent`)."""
        super().patch()
        from idp.db import cooperate_with_gevent

        cooperate_with_gevent()

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        import gevent

        from idp.realtime.broker import announce_shutdown

        gevent.spawn(announce_shutdown)  # out of the signal handler


class _Gunicorn(BaseApplication):
    def __init__(self, options: dict[str, Any], app_factory: Callable[[], Any] | None) -> None:
        self.options = options
        self.app_factory = app_factory
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Built inside each worker, after gevent has patched the standard library.
        if self.app_factory is not None:
            return self.app_factory()
        from idp import create_app

        return create_app()


def _child_exit(_server: Any, worker: Any) -> None:
    """A worker died: drop its live gauges from the shared metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


@contextlib.contextmanager
def shared_metrics(workers: int) -> Iterator[None]:
    """With several workers, each writes its metrics to one folder that /metrics
    (on any worker) adds up. Must be entered before ``prometheus_client`` is imported.

    The folder belongs to the master: gunicorn forks the workers inside this block, and
    a worker leaving it (its exit unwinds the same stack) must not remove the folder
    that the other workers write to (without it every request of theirs fails).
    """
    if workers <= 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    folder = tempfile.mkdtemp(prefix="idp-metrics-")
    master = os.getpid()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    try:
        yield
    finally:
        if os.getpid() == master:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]
            shutil.rmtree(folder, ignore_errors=True)


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """gunicorn's and the app's log lines, in one format, to standard error."""
    formatter = (
        {"()": "idp.ops.logs.JsonFormatter"}
        if log_format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    handler: dict[str, Any] = {
        "class": "logging.StreamHandler",
        "formatter": "main",
        "stream": "ext://sys.stderr",
    }
    handler["filters"] = ["redact"]  # no token, code or login request id, at any level
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "idp.ops.logs.RedactSecrets"}},
        "formatters": {"main": formatter},
        "handlers": {"main": handler},
        "root": {"level": level, "handlers": ["main"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["main"], "propagate": False},
            "gunicorn.access": {"level": "WARNING", "handlers": ["main"], "propagate": False},
        },
    }


def run(
    *,
    host: str,
    port: int,
    workers: int,
    worker_connections: int,
    log_format: str = "json",
    log_level: str = "INFO",
    app_factory: Callable[[], Any] | None = None,
) -> None:
    """Serve until stopped (SIGTERM: open pages are sent elsewhere, requests finish).

    ``app_factory`` builds the app in each worker (``idp demo``'s adds its hook); the
    default is :func:`idp.create_app`.
    """
    _Gunicorn(
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "worker_class": "idp.server.Worker",
            "worker_connections": worker_connections,
            "timeout": 30,
            "graceful_timeout": 10,
            "keepalive": 5,
            # One line per request comes from the app (idp.request), with its id.
            "accesslog": None,
            "logconfig_dict": logging_config(log_format, log_level),
            "child_exit": _child_exit,
            "control_socket_disable": True,
        },
        app_factory,
    ).run()

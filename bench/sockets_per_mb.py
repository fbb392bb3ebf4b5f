"""How many idle waiting-page WebSockets one gunicorn worker holds per MB of memory.

Compares gunicorn's ``gevent`` worker (one greenlet per connection) with its
``gthread`` worker (one pool thread per connection, so ``--threads`` above the
socket count) on this app. For each worker class and each count K it:

1. starts ``gunicorn -w 1`` against a temporary SQLite IdP, made and configured as
   ``python -m bench`` makes its own (``bench.server.IdP``);
2. warms up: a few authorize pages, whose WebSockets stay open throughout,
   then reads the worker's RSS ("before");
3. opens K authorize pages and then their K WebSockets as ``python -m bench``'s
   figure 2 does (``bench.figures``, ``bench.actors``: each page a new browser with
   its own binding cookie, PKCE S256, the socket with the page's cookie and
   ``Origin``, offering permessage-deflate as browsers do); a socket counts as open
   once the server has sent its first state;
4. lets them idle, reads the RSS ("after"), then the worker's CPU time over an
   idle window, and checks how many sockets are still open.

gthread also gets ``--worker-connections 20000``: its default (1000) caps open
connections, WebSockets included. With the default heartbeat (25 s) the idle
window ends before the sockets' first heartbeat; ``--heartbeat 5`` includes them.
Memory and CPU come from ``/proc`` (Linux only).

    .venv/bin/python -m bench.sockets_per_mb [--counts 200,1000,2000]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench import actors, figures
from bench.proc import cpu_seconds, raise_file_limit, rss_kb, thread_count
from bench.server import HOST, REPO, IdP, backend

WARMUP_PAGES = 5


@dataclass
class GunicornIdP(IdP):
    """The bench's IdP served by ``gunicorn -w 1`` with a chosen worker class (not pinned)."""

    worker_class: str = "gevent"
    threads: int = 1

    def serve_command(self, worker_connections: int) -> list[str]:
        """``gunicorn -w 1 -k <worker_class>``, with ``--threads`` for gthread."""
        cmd = [sys.executable, "-m", "gunicorn", "--no-control-socket", "-w", "1"]
        cmd += ["-k", self.worker_class, "--worker-connections", str(worker_connections)]
        if self.worker_class == "gthread":
            cmd += ["--threads", str(self.threads)]
        cmd += ["--graceful-timeout", "3", "-b", f"{HOST}:{self.port}", "idp:create_app()"]
        return cmd


# --- one measurement -----------------------------------------------------------


@dataclass
class Result:
    worker_class: str
    count: int
    opened: int = 0
    rss_before_kb: int = 0
    rss_after_kb: int = 0
    threads_after: int = 0
    idle_cpu_percent: float = 0.0
    still_open: int = 0
    seconds: float = 0.0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def kb_per_socket(self) -> float:
        return (self.rss_after_kb - self.rss_before_kb) / max(self.opened, 1)

    @property
    def sockets_per_mb(self) -> float:
        return 1024 / self.kb_per_socket if self.kb_per_socket > 0 else float("inf")


async def open_waiting(
    http: aiohttp.ClientSession, idp: IdP, count: int, page_parallel: int, ws_parallel: int
) -> tuple[list[actors.PageSocket], collections.Counter[str]]:
    """``count`` authorize pages and their sockets; the sockets open and the errors."""
    started = time.monotonic()
    pages, errors = await figures.fetch_pages(http, idp, count, page_parallel)
    progress(f"  {len(pages)} pages in {time.monotonic() - started:.1f} s")
    sockets, ws_errors = await figures.open_sockets(http, idp, pages, ws_parallel)
    progress(f"  {len(sockets)} sockets open at {time.monotonic() - started:.1f} s")
    return sockets, errors + ws_errors


async def measure(idp: GunicornIdP, count: int, args: argparse.Namespace) -> Result:
    """One worker's RSS growth, threads and idle CPU with ``count`` waiting pages."""
    result = Result(idp.worker_class, count)
    pid = idp.worker_pids()[0]
    started = time.monotonic()
    sockets: list[actors.PageSocket] = []
    async with actors.new_session() as http:
        warm, warm_errors = await open_waiting(http, idp, WARMUP_PAGES, 1, WARMUP_PAGES)
        if warm_errors or len(warm) != WARMUP_PAGES:
            raise RuntimeError(f"warm-up failed: {warm_errors}")
        try:
            await asyncio.sleep(2)
            result.rss_before_kb = rss_kb(pid)
            sockets, result.errors = await open_waiting(
                http, idp, count, args.http_parallel, args.ws_concurrency
            )
            result.opened = len(sockets)
            await idle(result, pid, sockets, args)
        finally:
            await figures.close_sockets([*sockets, *warm])
    result.seconds = time.monotonic() - started
    return result


async def idle(
    result: Result, pid: int, sockets: Sequence[actors.PageSocket], args: argparse.Namespace
) -> None:
    """Let the sockets idle; the RSS and threads after, the idle CPU, the sockets lost."""
    await asyncio.sleep(args.settle)
    result.rss_after_kb = rss_kb(pid)
    result.threads_after = thread_count(pid)
    cpu_start, clock_start = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(args.cpu_window)
    cpu = cpu_seconds(pid) - cpu_start
    result.idle_cpu_percent = 100 * cpu / (time.monotonic() - clock_start)
    result.still_open = sum(not s.ws.closed for s in sockets)
    if lost := result.opened - result.still_open:
        result.errors["WS closed while idle"] += lost


# --- output ----------------------------------------------------------------------


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def code_version() -> str:
    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "idp")
    return head + (" + uncommitted changes in idp/" if dirty else "")


def print_table(results: Sequence[Result]) -> None:
    header = (
        f"{'worker':<8} {'K':>6} {'open':>6} {'RSS before':>11} {'RSS after':>10} "
        f"{'KB/socket':>10} {'sockets/MB':>11} {'threads':>8} {'idle CPU':>9} {'errors':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.worker_class:<8} {r.count:>6} {r.still_open:>6} "
            f"{r.rss_before_kb / 1024:>8.1f} MB {r.rss_after_kb / 1024:>7.1f} MB "
            f"{r.kb_per_socket:>10.1f} {r.sockets_per_mb:>11.2f} {r.threads_after:>8} "
            f"{r.idle_cpu_percent:>8.2f}% {sum(r.errors.values()):>7}"
        )
    for r in results:
        if r.errors:
            details = ", ".join(f"{k}: {n}" for k, n in r.errors.most_common())
            print(f"errors {r.worker_class} K={r.count}: {details}")


def warn_if_few_files(needed: int) -> None:
    """Raise the open-file limit; warn when the hard limit keeps it below ``needed``."""
    soft = raise_file_limit(needed)
    if soft != resource.RLIM_INFINITY and soft < needed:
        progress(f"warning: open-file limit {soft} < {needed}; raise the hard limit")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])

    def int_list(text: str) -> list[int]:
        return [int(n) for n in text.split(",") if n]

    parser.add_argument(
        "--counts",
        type=int_list,
        default=[200, 1000, 2000],
        help="socket counts K, comma-separated (default 200,1000,2000)",
    )
    parser.add_argument(
        "--classes",
        type=lambda s: s.split(","),
        default=["gevent", "gthread"],
        help="gunicorn worker classes (default gevent,gthread)",
    )
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds idle before reading the RSS (default 5)"
    )
    parser.add_argument(
        "--cpu-window",
        type=float,
        default=10.0,
        help="seconds of idle CPU measured (default 10)",
    )
    parser.add_argument(
        "--heartbeat",
        type=int,
        default=25,
        help="IDP_WS_HEARTBEAT for the server (default 25, the app's)",
    )
    parser.add_argument(
        "--http-parallel",
        type=int,
        default=4,
        help="keep-alive sessions fetching pages at once (default 4)",
    )
    parser.add_argument(
        "--ws-concurrency",
        type=int,
        default=100,
        help="WebSocket handshakes in flight at once (default 100)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if not Path("/proc/self/status").exists():
        raise SystemExit("this bench reads /proc: Linux only")
    warn_if_few_files(2 * max(args.counts) + 1000)
    results: list[Result] = []
    began = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="idp-bench-") as tmp,
        backend("sqlite", Path(tmp)) as be,
    ):
        idp = GunicornIdP(be, Path(tmp))
        idp.set_up()
        for worker_class in args.classes:
            for count in args.counts:
                idp.worker_class, idp.threads = worker_class, count + 50
                progress(f"{worker_class} K={count}: {' '.join(idp.serve_command(20000))}")
                with idp.running(heartbeat=args.heartbeat, worker_connections=20000):
                    results.append(asyncio.run(measure(idp, count, args)))
    print(
        f"\ncode {code_version()}; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}; "
        f"IDP_WS_HEARTBEAT={args.heartbeat}; settle {args.settle:g} s; "
        f"idle CPU over {args.cpu_window:g} s; total {time.monotonic() - began:.0f} s\n"
    )
    print_table(results)


if __name__ == "__main__":
    main()

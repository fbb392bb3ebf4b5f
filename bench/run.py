"""The entry point: ``python -m bench [--quick | --full] [--peer] [--profile]``.

For each backend (SQLite; PostgreSQL + Redis) it makes a fresh IdP (``idp db upgrade``,
``idp users create``, ``idp clients create``), serves it with ``idp serve`` (one gevent
worker) pinned to CPU 0, pins itself (the load generator) to CPU 1, enrolls phones through
the phone API, and measures. One line per figure on stdout; JSON, Markdown and PNG plots
in ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from bench import actors, figures, goals, peer, profiling, report
from bench import endpoints as endpoint_figures
from bench import source as bench_source
from bench.modes import FULL, QUICK, Mode
from bench.proc import raise_file_limit, rss_kb
from bench.server import LOADGEN_CPU, REPO, IdP, backend, pinning_available

RESULTS = REPO / "bench" / "results"


def say(line: str) -> None:
    print(line, flush=True)


def pin_load_generator() -> str:
    """Put this process (the load generator) on its own core."""
    if not pinning_available():
        return "none (taskset or a second core missing)"
    os.sched_setaffinity(0, {LOADGEN_CPU})
    return f"server:cpu0 (taskset), loadgen:cpu{LOADGEN_CPU}"


def fmt_latency(row: dict[str, Any]) -> str:
    return f"p50={row['p50_ms']}ms p95={row['p95_ms']}ms p99={row['p99_ms']}ms"


@dataclass
class Server:
    """What the steps of figures 1, 4 and 3 share: one running server, its phones, the
    load generator's session, the mode, and the backend's results so far."""

    http: aiohttp.ClientSession
    idp: IdP
    phones: list[actors.Phone]
    mode: Mode
    results: dict[str, Any]

    @property
    def name(self) -> str:
        return self.idp.backend.name


async def main_figures(idp: IdP, mode: Mode, results: dict[str, Any], args: Any) -> None:
    """Figures 1, 4 and 3 on one running server (figure 2 needs its own)."""
    async with actors.new_session() as http:
        phones = await figures.enroll_phones(http, idp, max(max(mode.login_concurrencies), 16))
        server = Server(http, idp, phones, mode, results)
        tokens = await _fig1(server)
        if args.profile:
            load = figures.qr_logins(http, idp, phones, 16, mode.profile_seconds + 2, 0)
            await _profile(server, "profile_login", load, "login", "login")
        codes = await figures.harvest_codes(
            http, idp, phones[:16], mode.codes, mode.harvest_seconds
        )
        results["codes_harvested"] = len(codes)
        spent: set[str] = set()
        if args.profile:
            spent = await _profile_tokens(server, tokens)
        await _top_up_refresh_chains(server, tokens)
        await _fig4(server, codes, tokens, spent)
    await _fig3(idp, mode, results)
    results["memory_after_load_mb"] = round(sum(rss_kb(p) for p in idp.server_pids) / 1024, 1)


async def _fig1(s: Server) -> list[dict[str, Any]]:
    """Figure 1 at each login concurrency; the logins' tokens."""
    tokens: list[dict[str, Any]] = []
    s.results["fig1_qr_logins"] = []
    for concurrency in s.mode.login_concurrencies:
        row, got = await figures.qr_logins(
            s.http, s.idp, s.phones, concurrency, s.mode.login_seconds, s.mode.warmup_seconds
        )
        tokens += got
        s.results["fig1_qr_logins"].append(row)
        say(
            f"fig1 qr_logins      {s.name:<8} c={concurrency:<3} {row['per_s']:>7} logins/s "
            f"{fmt_latency(row)} errors={row['errors']} srv_cpu={row['server_cpu_percent']}% "
            f"gen_cpu={row['loadgen_cpu_percent']}% approve->page "
            f"p50={row['approve_to_page']['p50_ms']}ms p99={row['approve_to_page']['p99_ms']}ms"
            + ("" if row["counts"] else "  (DOES NOT COUNT: errors)")
        )
    return tokens


async def _profile(s: Server, key: str, load: Awaitable[Any], label: str, short: str) -> None:
    """py-spy the worker while ``load`` runs; the result goes to ``results[key]``."""
    s.results[key] = await profiling.profile_while(
        s.idp, s.mode.profile_seconds, load, label=f"{s.name}-{label}"
    )
    say(profiling.one_line(f"prof {short:<13} {s.name:<8}", s.results[key]))


async def _profile_tokens(s: Server, tokens: list[dict[str, Any]]) -> set[str]:
    """Profiles of the three grants; the access tokens the refreshes revoked."""
    seconds = s.mode.profile_seconds + 2
    codes = await figures.harvest_codes(
        s.http, s.idp, s.phones[:16], s.mode.codes, s.mode.harvest_seconds
    )
    load = figures.token_exchanges(s.http, s.idp, codes, seconds)
    await _profile(s, "profile_token", load, "token", "token_ac")
    # Rotating a refresh token revokes its access token: keep these out of UserInfo.
    spent = {t["access_token"] for t in tokens[-16:]}
    load = figures.refreshes(s.http, s.idp, tokens[-16:], seconds)
    await _profile(s, "profile_refresh", load, "refresh", "token_rt")
    if s.idp.service_id:
        load = figures.client_credentials(s.http, s.idp, 16, seconds)
        await _profile(s, "profile_client_credentials", load, "client-credentials", "token_cc")
    return spent


async def _top_up_refresh_chains(s: Server, tokens: list[dict[str, Any]]) -> None:
    """One refresh chain per worker of the widest window: on a loaded machine the short
    login window may not have made that many, so top them up from fresh codes."""
    short = max(s.mode.endpoint_concurrencies) - len(tokens)
    if short > 0:
        extra = await figures.harvest_codes(s.http, s.idp, s.phones[:16], short, 60)
        tokens += [await actors.exchange(s.http, s.idp, code, v) for code, v in extra]
        s.results["refresh_chains_topped_up"] = len(extra)


async def _fig4(
    s: Server, codes: list[tuple[str, str]], tokens: list[dict[str, Any]], spent: set[str]
) -> None:
    """Figure 4: every endpoint at each concurrency."""
    s.results["fig4_endpoints"] = endpoints = await endpoint_figures.endpoints(
        s.http,
        s.idp,
        concurrencies=s.mode.endpoint_concurrencies,
        duration=s.mode.endpoint_seconds,
        warmup=s.mode.endpoint_warmup,
        codes=codes,
        tokens=tokens,
        access_tokens=[t["access_token"] for t in tokens if t["access_token"] not in spent],
    )
    for endpoint, rows in endpoints.items():
        for line in _fig4_lines(s.name, endpoint, rows):
            say(line)


def _fig4_lines(name: str, endpoint: str, rows: dict[str, Any]) -> list[str]:
    """One endpoint's lines: one per concurrency, or one saying why it was skipped."""
    if isinstance(rows.get("skipped"), str):
        return [f"fig4 {endpoint:<24} {name:<8} skipped: {rows['skipped']}"]
    lines = []
    for concurrency, row in rows.items():
        if "skipped" in row:
            lines.append(
                f"fig4 {endpoint:<24} {name:<8} c={concurrency:<3} skipped: {row['skipped']}"
            )
            continue
        lines.append(
            f"fig4 {endpoint:<24} {name:<8} c={concurrency:<3} {row['per_s']:>7} req/s "
            f"p99={row['p99_ms']}ms n={row['ok']} errors={row['errors']} "
            f"srv_cpu={row['server_cpu_percent']}% gen_cpu={row['loadgen_cpu_percent']}%"
        )
    return lines


async def _fig3(idp: IdP, mode: Mode, results: dict[str, Any]) -> None:
    """Figure 3: push versus polling, in server CPU."""
    row = await figures.push_vs_polling(idp, mode.polling_pages, mode.polling_window)
    results["fig3_push_vs_polling"] = row
    ratio = f"{row['ratio']}x" if row["ratio"] else f">= {row['ratio_at_least']}x"
    say(
        f"fig3 push_vs_poll   {idp.backend.name:<8} K={row['pages']} {row['window_s']:g}s: push "
        f"{row['push_cpu_seconds']} cpu-s ({row['push_cpu_percent']}%), polling "
        f"{row['poll_cpu_seconds']} cpu-s ({row['poll_cpu_percent']}%, "
        f"{row['polls_per_s']} polls/s) -> polling/push {ratio} errors={row['errors']}"
    )


async def waiting_figure(idp: IdP, count: int, mode: Mode) -> dict[str, Any]:
    async with actors.new_session() as http:
        phone = (await figures.enroll_phones(http, idp, 1))[0]
    return await figures.waiting_pages(
        idp, phone, count, idle_window=mode.idle_window, samples=mode.latency_samples
    )


def run_backend(name: str, mode: Mode, args: Any) -> dict[str, Any]:
    results: dict[str, Any] = {"backend": name}
    with tempfile.TemporaryDirectory(prefix="idp-bench-") as tmp, backend(name, Path(tmp)) as be:
        idp = IdP(be, Path(tmp))
        started = time.monotonic()
        idp.set_up()
        results["setup_seconds"] = round(time.monotonic() - started, 1)
        if not args.only or {"1", "3", "4"} & set(args.only):
            with idp.running():
                asyncio.run(main_figures(idp, mode, results, args))
        if not args.only or "2" in args.only:
            results["fig2_waiting_pages"] = []
            for count in mode.waiting_pages:
                with idp.running(worker_connections=max(12000, count + 2000)):
                    row = asyncio.run(waiting_figure(idp, count, mode))
                results["fig2_waiting_pages"].append(row)
                say(
                    f"fig2 waiting_pages  {name:<8} K={count:<6} {row['kb_per_page']:>6} KB/page "
                    f"idle_cpu={row['idle_cpu_percent']}% over {row['idle_window_s']}s "
                    f"approve->page p50={row['approve_to_page']['p50_ms']}ms "
                    f"p99={row['approve_to_page']['p99_ms']}ms "
                    f"(n={row['approve_to_page']['samples']})"
                    f" open={row['opened']} errors={row['errors']}"
                )
        if args.profile:
            rt_root = Path(tmp) / "round-trips"
            rt_root.mkdir()
            try:
                with backend(name, rt_root) as rt_backend:
                    results["round_trips"] = profiling.count_round_trips(
                        rt_backend.database_url, rt_root
                    )
            except Exception as error:  # keep the run's other figures
                results["round_trips_error"] = f"{type(error).__name__}: {str(error)[:300]}"
                say(f"db   round_trips    {name:<8} failed: {results['round_trips_error']}")
            for request, counts in results.get("round_trips", {}).items():
                say(f"db   round_trips    {name:<8} {request:<34} {counts}")
    return results


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    git = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "commit": git.stdout.strip(),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the 2-minute run (default)")
    size.add_argument("--full", action="store_true", help="the issue's sizes (about 30 minutes)")
    parser.add_argument(
        "--backends",
        default="sqlite,postgres",
        help="comma-separated: sqlite, postgres (default both)",
    )
    parser.add_argument("--only", default="", help="figures to run, e.g. 1,4 (default all)")
    parser.add_argument("--peer", action="store_true", help="also run the reference peer (fig 5)")
    parser.add_argument("--peer-output", help="parse this saved run_peer.sh output instead")
    parser.add_argument("--profile", action="store_true", help="py-spy the login and token load")
    parser.add_argument("--out", default=str(RESULTS), help="where the results go")
    parser.add_argument(
        "--ref", help="measure this git revision (git archive), not the working tree"
    )
    args = parser.parse_args(argv)
    args.only = [f for f in args.only.split(",") if f]
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if not Path("/proc/self/stat").exists():
        raise SystemExit("the benchmark reads /proc: Linux only")
    mode = FULL if args.full else QUICK
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    source = bench_source.measured or (f"{args.ref} (git archive)" if args.ref else "working tree")
    raise_file_limit(2 * max(mode.waiting_pages) + 2000)
    pinning = pin_load_generator()
    began = time.monotonic()
    stamp = datetime.datetime.now().astimezone()
    say(f"# qr-idp bench mode={mode.name} pinning={pinning} source={source}")
    data: dict[str, Any] = {
        "date": stamp.isoformat(timespec="seconds"),
        "mode": asdict(mode),
        "machine": machine() | {"pinning": pinning, "source": source},
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "backends": {},
    }
    for name in [b for b in args.backends.split(",") if b]:
        data["backends"][name] = run_backend(name, mode, args)
    if args.peer or args.peer_output:
        data["peer"] = peer.run_peer(mode.peer_seconds, args.peer_output)
        data["ratios"] = peer.ratios(data)
        for line in peer.ratio_lines(data):
            say(line)
    data["goals"] = goals.goals(data)
    for line in goals.goal_lines(data):
        say(line)
    data["seconds"] = round(time.monotonic() - began, 1)
    data["machine"]["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    paths = report.write(data, Path(args.out), stamp)
    say(f"# done in {data['seconds']} s; wrote {', '.join(str(p) for p in paths)}")

"""The measurements: end-to-end QR logins, waiting pages, push versus polling (the
endpoints of figure 4 are in ``bench.endpoints``).

Each function drives a running :class:`~bench.server.IdP` and returns a JSON-able dict.
Server CPU is read from ``/proc`` for the master and its worker (100 % = one core).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench import actors
from bench.proc import CpuWindow, latency_summary, rss_kb
from bench.server import PASSWORD, USERNAME, IdP


def progress(message: str) -> None:
    print(f"  .. {message}", flush=True)


@dataclass
class LoopResult:
    """What a closed loop of ``concurrency`` workers did in its window."""

    ok: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    cpu: CpuWindow | None = None

    def summary(self) -> dict[str, Any]:
        assert self.cpu is not None
        return {
            "ok": self.ok,
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors.most_common(5)),
            "wall_s": round(self.cpu.wall, 2),
            "per_s": round(self.ok / self.cpu.wall, 1) if self.cpu.wall else 0.0,
            **latency_summary(self.latencies),
            "server_cpu_percent": round(self.cpu.server_percent, 1),
            "loadgen_cpu_percent": round(self.cpu.loadgen_percent, 1),
        }


async def closed_loop(
    idp: IdP,
    concurrency: int,
    duration: float,
    one: Callable[[int], Awaitable[Any]],
    *,
    stop_when: Callable[[], bool] = lambda: False,
) -> LoopResult:
    """``concurrency`` workers each call ``one(worker)`` back to back for ``duration`` s."""
    result = LoopResult()
    deadline = time.monotonic() + duration

    async def worker(index: int) -> None:
        while time.monotonic() < deadline and not stop_when():
            started = time.perf_counter()
            try:
                value = await one(index)
            except (actors.FlowError, aiohttp.ClientError, TimeoutError, KeyError) as error:
                result.errors[f"{type(error).__name__}: {str(error)[:80]}"] += 1
                await asyncio.sleep(0.01)
                continue
            except IndexError:  # a pre-made supply (codes) ran out
                return
            result.latencies.append(time.perf_counter() - started)
            result.values.append(value)
            result.ok += 1

    with CpuWindow(idp.server_pids) as window:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    result.cpu = window
    return result


async def enroll_phones(http: aiohttp.ClientSession, idp: IdP, count: int) -> list[actors.Phone]:
    """``count`` devices of the bench user, enrolled through the phone API (one per worker,
    so no two concurrent flows share a device row)."""
    limit = asyncio.Semaphore(8)

    async def one(i: int) -> actors.Phone:
        async with limit:
            return await actors.Phone.enroll(http, idp, USERNAME, PASSWORD, f"bench phone {i}")

    return list(await asyncio.gather(*(one(i) for i in range(count))))


# --- figure 1: QR logins per second, end to end ----------------------------------------


async def qr_logins(
    http: aiohttp.ClientSession,
    idp: IdP,
    phones: Sequence[actors.Phone],
    concurrency: int,
    duration: float,
    warmup: float,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Closed-loop end-to-end logins; returns the figure and the tokens they got."""

    async def one(i: int) -> actors.LoginTimes:
        return await actors.qr_login(http, idp, phones[i])

    await closed_loop(idp, concurrency, warmup, one)
    loop = await closed_loop(idp, concurrency, duration, one)
    figure = {"concurrency": concurrency, **loop.summary()}
    figure["logins_per_server_cpu_s"] = (
        round(loop.ok / loop.cpu.server_cpu, 1) if loop.cpu and loop.cpu.server_cpu else None
    )
    steps: dict[str, list[float]] = collections.defaultdict(list)
    for times in loop.values:
        for name, seconds in times.steps.items():
            steps[name].append(seconds)
        steps["approve_to_page"].append(times.approve_to_page)
    figure["steps_p50_ms"] = {
        name: latency_summary(values)["p50_ms"] for name, values in steps.items()
    }
    figure["approve_to_page"] = latency_summary(steps["approve_to_page"])
    figure["http_requests_per_login"] = 7  # + 1 WebSocket
    figure["counts"] = figure["errors"] == 0 and loop.ok > 0
    return figure, [t.tokens for t in loop.values]


# --- codes for figure 4 (bench.endpoints) and the token loads the profiles sample --------


async def harvest_codes(
    http: aiohttp.ClientSession,
    idp: IdP,
    phones: Sequence[actors.Phone],
    count: int,
    max_seconds: float,
) -> list[tuple[str, str]]:
    """Up to ``count`` fresh authorization codes made by the real flow."""
    codes: list[tuple[str, str]] = []

    async def one(i: int) -> None:
        codes.append(await actors.harvest_code(http, idp, phones[i]))

    await closed_loop(idp, len(phones), max_seconds, one, stop_when=lambda: len(codes) >= count)
    return codes


async def client_credentials(
    http: aiohttp.ClientSession, idp: IdP, concurrency: int, duration: float
) -> dict[str, Any]:
    """Only ``client_credentials`` grants of the service account (the load a profile
    samples)."""

    async def one(_: int) -> str:
        return await actors.service_token(http, idp)

    return (await closed_loop(idp, concurrency, duration, one)).summary()


# --- figures 2 and 3: waiting pages, push versus polling ---------------------------------


async def fetch_pages(
    http: aiohttp.ClientSession, idp: IdP, count: int, parallel: int = 32
) -> tuple[list[actors.Page], collections.Counter[str]]:
    """``count`` authorize pages, each a new browser (its own binding cookie)."""
    limit = asyncio.Semaphore(parallel)
    errors: collections.Counter[str] = collections.Counter()

    async def one() -> actors.Page | None:
        async with limit:
            try:
                return await actors.open_page(http, idp)
            except (actors.FlowError, aiohttp.ClientError, TimeoutError) as error:
                errors[f"page {type(error).__name__}: {str(error)[:60]}"] += 1
                return None

    pages = [p for p in await asyncio.gather(*(one() for _ in range(count))) if p]
    return pages, errors


async def open_sockets(
    http: aiohttp.ClientSession, idp: IdP, pages: Sequence[actors.Page], parallel: int = 200
) -> tuple[list[actors.PageSocket], collections.Counter[str]]:
    limit = asyncio.Semaphore(parallel)
    errors: collections.Counter[str] = collections.Counter()

    async def one(page: actors.Page) -> actors.PageSocket | None:
        async with limit:
            try:
                return await actors.PageSocket.connect(http, idp, page)
            except (actors.FlowError, aiohttp.ClientError, TimeoutError, OSError) as error:
                errors[f"socket {type(error).__name__}: {str(error)[:60]}"] += 1
                return None

    sockets = [s for s in await asyncio.gather(*(one(p) for p in pages)) if s]
    return sockets, errors


async def close_sockets(sockets: Sequence[actors.PageSocket]) -> None:
    for chunk in range(0, len(sockets), 500):
        await asyncio.gather(
            *(s.close() for s in sockets[chunk : chunk + 500]), return_exceptions=True
        )


async def waiting_pages(
    idp: IdP, phone: actors.Phone, count: int, *, idle_window: float, samples: int
) -> dict[str, Any]:
    """``count`` pages wait on one worker: RSS per page, idle CPU, approve-to-page latency."""
    worker = idp.worker_pids()[0]
    errors: collections.Counter[str] = collections.Counter()
    async with actors.new_session() as http:
        warm_pages, _ = await fetch_pages(http, idp, 20)
        warm, _ = await open_sockets(http, idp, warm_pages)
        await asyncio.sleep(1)
        rss_before = rss_kb(worker)
        started = time.monotonic()
        pages, page_errors = await fetch_pages(http, idp, count)
        pages_seconds = time.monotonic() - started
        started = time.monotonic()
        sockets, socket_errors = await open_sockets(http, idp, pages)
        sockets_seconds = time.monotonic() - started
        errors += page_errors + socket_errors
        await asyncio.sleep(2)
        rss_after = rss_kb(worker)
        with CpuWindow(idp.server_pids) as idle:
            await asyncio.sleep(idle_window)
        latencies, approve_http = await _approvals(http, phone, sockets[:samples], errors)
        still_open = sum(not s.ws.closed for s in sockets[samples:])
        await close_sockets([*sockets, *warm])
    opened = len(sockets)
    return {
        "pages": count,
        "opened": opened,
        "still_open_after": still_open,
        "pages_per_s": round(count / pages_seconds, 1),
        "sockets_per_s": round(opened / sockets_seconds, 1) if sockets_seconds else None,
        "rss_before_mb": round(rss_before / 1024, 1),
        "rss_after_mb": round(rss_after / 1024, 1),
        "kb_per_page": round((rss_after - rss_before) / max(opened, 1), 1),
        "idle_window_s": round(idle.wall, 1),
        "idle_cpu_percent": round(idle.server_percent, 2),
        "idle_cpu_seconds": round(idle.server_cpu, 2),
        "approve_to_page": latency_summary(latencies) | {"samples": len(latencies)},
        "approve_http": latency_summary(approve_http),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors.most_common(5)),
        "counts": not errors and opened == count,
    }


async def _approvals(
    http: aiohttp.ClientSession,
    phone: actors.Phone,
    sockets: Sequence[actors.PageSocket],
    errors: collections.Counter[str],
) -> tuple[list[float], list[float]]:
    """Scan and approve each socket's page in turn; approve-to-page and approve-request
    seconds (failures counted in ``errors``)."""
    latencies: list[float] = []
    approve_http: list[float] = []
    for socket in sockets:
        try:
            await phone.scan(http, socket.page)
            sent = time.perf_counter()
            await phone.approve(http, socket.page)
            approve_http.append(time.perf_counter() - sent)
            latencies.append(await socket.wait_for({"approved"}, timeout=10) - sent)
        except (actors.FlowError, aiohttp.ClientError) as error:
            errors[f"sample {type(error).__name__}: {str(error)[:60]}"] += 1
    return latencies, approve_http


async def push_vs_polling(idp: IdP, count: int, window: float) -> dict[str, Any]:
    """Server CPU for ``count`` pages waiting ``window`` s: WebSocket push, then the same
    pages polling ``GET /authorize/complete/<id>`` (JSON) once a second.

    The product has no status URL. ``/authorize/complete/<id>`` is the nearest: while the
    request is pending it only reads it (by primary key, binding cookie checked) and
    answers 409 ``not_approved`` without writing anything; a polling page would call it
    until it stops answering 409.
    """
    async with actors.new_session() as http:
        pages, errors = await fetch_pages(http, idp, count)
        sockets, socket_errors = await open_sockets(http, idp, pages)
        errors += socket_errors
        await asyncio.sleep(1)
        with CpuWindow(idp.server_pids) as push:
            await asyncio.sleep(window)
        await close_sockets(sockets)
        await asyncio.sleep(1)
        polls, unexpected, poll = await _poll(http, idp, pages, window)
    push_cpu = max(push.server_cpu, 0.0)
    floor = 1 / 100  # one clock tick: the resolution of /proc CPU times
    return {
        "pages": count,
        "window_s": window,
        "push_cpu_seconds": round(push_cpu, 3),
        "push_cpu_percent": round(push.server_percent, 3),
        "poll_cpu_seconds": round(poll.server_cpu, 3),
        "poll_cpu_percent": round(poll.server_percent, 2),
        "polls": len(polls),
        "polls_per_s": round(len(polls) / poll.wall, 1),
        "poll_latency": latency_summary(polls),
        "poll_unexpected": dict(unexpected),
        "ratio": round(poll.server_cpu / push_cpu, 1) if push_cpu else None,
        "ratio_at_least": round(poll.server_cpu / floor, 1) if not push_cpu else None,
        "errors": sum(errors.values()) + sum(unexpected.values()),
        "polling_endpoint": "GET /authorize/complete/<id> (Accept: application/json) -> 409",
    }


async def _poll(
    http: aiohttp.ClientSession, idp: IdP, pages: Sequence[actors.Page], window: float
) -> tuple[list[float], collections.Counter[str], CpuWindow]:
    """Every page polls its completion URL once a second for ``window`` s (starts spread
    over the first second); each poll's seconds, the answers other than 409, the CPU."""
    polls: list[float] = []
    unexpected: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + window

    async def poller(page: actors.Page, offset: float) -> None:
        await asyncio.sleep(offset)
        url = idp.issuer + page.state["complete_url"]
        headers = {"Cookie": page.cookie, "Accept": "application/json"}
        while time.monotonic() < deadline:
            tick = time.monotonic()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(url, headers=headers, allow_redirects=False) as response:
                    await response.read()
                    polls.append(time.monotonic() - tick)
                    if response.status != 409:
                        unexpected[f"HTTP {response.status}"] += 1
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))

    with CpuWindow(idp.server_pids) as poll:
        await asyncio.gather(*(poller(p, i / len(pages)) for i, p in enumerate(pages)))
    return polls, unexpected, poll


async def token_exchanges(
    http: aiohttp.ClientSession, idp: IdP, codes: list[tuple[str, str]], duration: float
) -> dict[str, Any]:
    """Only code exchanges at concurrency 16 (the load the token profile samples)."""

    async def one(_: int) -> None:
        code, verifier = codes.pop()
        await actors.exchange(http, idp, code, verifier)

    return (await closed_loop(idp, 16, duration, one)).summary()


async def refreshes(
    http: aiohttp.ClientSession, idp: IdP, tokens: list[dict[str, Any]], duration: float
) -> dict[str, Any]:
    """Refresh-token grants, one rotating chain per worker (the load a profile samples);
    ``tokens`` is updated with each chain's newest refresh token."""

    async def one(worker: int) -> None:
        form = {"grant_type": "refresh_token", "refresh_token": tokens[worker]["refresh_token"]}
        answer = await actors.token_request(http, idp, form)
        tokens[worker]["refresh_token"] = answer["refresh_token"]

    return (await closed_loop(idp, len(tokens), duration, one)).summary()

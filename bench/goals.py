"""The issue's four goals against a run: met, or the gap and what the profile says."""

from __future__ import annotations

from typing import Any

ISSUE_REFERENCE_CC = 2900.0  # the issue's own reference figure, when no peer ran


def _top(shares: dict[str, float], n: int) -> str:
    items = sorted(
        ((k.strip(), v) for k, v in shares.items() if not k.startswith("  ") and v > 0),
        key=lambda kv: -kv[1],
    )
    return ", ".join(f"{k} {v} %" for k, v in items[:n])


def profile_cause(data: dict[str, Any], backend: str, key: str) -> str:
    """What a profile's biggest views, categories and self frames are, in one sentence."""
    p = data["backends"].get(backend, {}).get(key)
    if not p or "error" in p:
        return "no profile in this run (`--profile`)"
    parts = [f"py-spy, {backend}, {p['samples']} samples:"]
    if any(p["views_percent"].values()):
        parts.append(f"views {_top(p['views_percent'], 3)};")
    parts.append(f"inclusive {_top(p['categories_percent'], 4)};")
    parts.append(f"self by package {_top(p.get('self_by_package_percent', {}), 3)}")
    return " ".join(parts)


def _goal(goal: str, measured: str, met: bool | None, cause: str) -> dict[str, Any]:
    verdict = "not measured" if met is None else ("met" if met else "gap")
    return {"goal": goal, "measured": measured, "verdict": verdict, "cause": "" if met else cause}


def goals(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Each of the issue's four goals against this run's figures."""
    backends = data["backends"]
    pg = "postgres" if "postgres" in backends else next(iter(backends), "")
    return [
        _logins_goal(data, pg),
        _token_goal(data, pg),
        _waiting_goal(backends),
        _push_goal(backends),
    ]


def _logins_goal(data: dict[str, Any], pg: str) -> dict[str, Any]:
    """>= 170 QR logins/s per core, from the best counting run on ``pg``."""
    logins = [r for r in data["backends"].get(pg, {}).get("fig1_qr_logins", []) if r["counts"]]
    if not logins:
        return _goal(f">= 170 QR logins/s per core ({pg})", "no counting run", None, "")
    best = max(logins, key=lambda r: r["per_s"])
    per_cpu = max((r.get("logins_per_server_cpu_s") or 0) for r in logins)
    return _goal(
        f">= 170 QR logins/s per core ({pg})",
        f"{best['per_s']} logins/s at c={best['concurrency']} "
        f"(server {best['server_cpu_percent']} % of its core); {per_cpu} per server CPU-s",
        best["per_s"] >= 170,
        f"{170 / max(best['per_s'], 0.1):.1f}x short; "
        + profile_cause(data, pg, "profile_login"),
    )  # fmt: skip


def _token_goal(data: dict[str, Any], pg: str) -> dict[str, Any]:
    """client_credentials req/s >= the reference's, at every backend and concurrency."""
    peer_cc = data.get("peer", {}).get("figures", {}).get("token_cc", {})
    cc_rows = [
        (name, c, r)
        for name, b in data["backends"].items()
        for c, r in b.get("fig4_endpoints", {}).get("token_client_credentials", {}).items()
        if isinstance(r, dict) and "per_s" in r
    ]
    if not cc_rows:
        return _goal("token endpoint >= the reference's req/s", "not measured", None, "")
    measured, worst = [], None
    for name, c, r in cc_rows:
        ref = peer_cc.get(c, {}).get("rps") or ISSUE_REFERENCE_CC
        ratio = r["per_s"] / ref
        measured.append(f"{name} c={c}: {r['per_s']}/s vs {ref:g}/s ({ratio:.3f}x)")
        if worst is None or ratio < worst[0]:
            worst = (ratio, name)
    source = "this run's reference" if peer_cc else "the issue's 2,900/s (no peer run)"
    assert worst is not None
    return _goal(
        f"token endpoint (client_credentials) >= the reference's req/s per core ({source})",
        "; ".join(measured),
        worst[0] >= 1,
        f"{1 / max(worst[0], 1e-6):.1f}x short at worst; "
        + profile_cause(data, pg, "profile_client_credentials"),
    )  # fmt: skip


def _waiting_goal(backends: dict[str, Any]) -> dict[str, Any]:
    """10,000 waiting pages at <= 40 KB each and p99 <= 20 ms, from each backend's
    largest count."""
    waits = [
        (name, r)
        for name, b in backends.items()
        for r in b.get("fig2_waiting_pages", [])
        if r["pages"] == max(x["pages"] for x in b["fig2_waiting_pages"])
    ]
    if not waits:
        return _goal("10,000 waiting pages", "not measured", None, "")
    ok = all(
        r["pages"] >= 10000
        and r["opened"] == r["pages"]
        and r["kb_per_page"] <= 40
        and r["approve_to_page"]["p99_ms"] <= 20
        for _, r in waits
    )
    return _goal(
        "10,000 waiting pages on one worker, <= 40 KB/page, approve-to-page p99 <= 20 ms",
        "; ".join(
            f"{name} K={r['pages']} (open {r['opened']}): {r['kb_per_page']} KB/page, "
            f"p99 {r['approve_to_page']['p99_ms']} ms"
            for name, r in waits
        ),
        ok,
        _waiting_cause(waits),
    )  # fmt: skip


def _waiting_cause(waits: list[tuple[str, dict[str, Any]]]) -> str:
    """What kept the waiting-pages goal from being met: memory, latency or size."""
    over = [
        f"{name}: {r['kb_per_page']} KB/page, RSS {r['rss_before_mb']} -> {r['rss_after_mb']} MB"
        for name, r in waits
        if r["kb_per_page"] > 40
    ]
    slow = [
        f"{name}: p99 {r['approve_to_page']['p99_ms']} ms, of which the phone's approve "
        f"request itself p99 {r.get('approve_http', {}).get('p99_ms')} ms (the push after "
        "it is the rest)"
        for name, r in waits
        if r["approve_to_page"]["p99_ms"] > 20
    ]
    cause = []
    if over:
        cause.append(
            f"memory over 40 KB ({'; '.join(over)}): the worker's resident growth per "
            "open socket (greenlet, socket buffers, WebSocket and request objects); "
            "py-spy samples CPU, not memory"
        )
    if slow:
        cause.append(f"latency over 20 ms ({'; '.join(slow)})")
    if any(r["pages"] < 10000 for _, r in waits):
        cause.append("this run did not open 10,000 pages (--full does)")
    return "; ".join(cause)


def _push_goal(backends: dict[str, Any]) -> dict[str, Any]:
    """Push >= 50x cheaper than 1 s polling on every backend."""
    pushes = [(n, b["fig3_push_vs_polling"]) for n, b in backends.items()
              if b.get("fig3_push_vs_polling")]  # fmt: skip
    if not pushes:
        return _goal("push >= 50x cheaper than polling", "not measured", None, "")
    ratios = [(n, r["ratio"] or r["ratio_at_least"] or 0.0) for n, r in pushes]
    return _goal(
        "push >= 50x cheaper in server CPU than 1 s polling",
        "; ".join(
            f"{n}: {'>= ' if not r['ratio'] else ''}{v}x ({r['pages']} pages, "
            f"{r['window_s']:g} s)"
            for (n, v), (_, r) in zip(ratios, pushes, strict=True)
        ),
        all(v >= 50 for _, v in ratios),
        "push CPU is the sockets' heartbeats and the broker subscription; polling pays "
        "one HTTP request and one database read per page per second",
    )  # fmt: skip


def goal_lines(data: dict[str, Any]) -> list[str]:
    """One stdout line per goal: verdict, goal, measured and (for a gap) its cause."""
    return [
        f"goal {g['verdict']:<12} {g['goal']}: {g['measured']}"
        + (f" -- {g['cause']}" if g["cause"] else "")
        for g in data.get("goals", [])
    ]

"""``bench/results/<date>.json`` and ``<date>.md`` with matplotlib PNG plots."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from bench.plots import draw

GOALS = (
    "Goals (issue 6): >= 170 QR logins/s per core on PostgreSQL; token endpoint >= the "
    "reference's req/s per core; 10,000 waiting pages on one worker at <= 40 KB per page "
    "with approve-to-page p99 <= 20 ms; push >= 50x cheaper in server CPU than 1 s polling."
)

PEER_HEADER = [
    "figure", "backend", "c", "ours", "reference", "ours / reference",
    "ours per CPU-s", "reference per CPU-s", "ours / reference per CPU-s",
]  # fmt: skip


def write(data: dict[str, Any], out: Path, stamp: datetime.datetime) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    base = stamp.strftime("%Y-%m-%d-%H%M%S") + f"-{data['mode']['name']}"
    json_path = out / f"{base}.json"
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    plots = draw(data, out, base)
    md_path = out / f"{base}.md"
    md_path.write_text(markdown(data, [p.name for p in plots]))
    return [json_path, md_path, *plots]


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


FIG1_HEADER = [
    "backend", "c", "logins/s", "p50 ms", "p95 ms", "p99 ms", "errors", "server CPU %",
    "loadgen CPU %", "approve→page p50", "p99", "counts",
]  # fmt: skip
FIG2_HEADER = [
    "backend", "pages", "open", "KB/page", "RSS before MB", "RSS after MB", "idle CPU %",
    "idle window s", "approve→page p50 ms", "p99 ms", "samples", "pages/s (GET /authorize)",
    "errors",
]  # fmt: skip
FIG3_HEADER = [
    "backend", "pages", "window s", "push CPU s", "polling CPU s", "polling CPU %", "polls/s",
    "poll p99 ms", "polling / push", "errors",
]  # fmt: skip
FIG4_HEADER = ["backend", "endpoint", "c", "req/s", "p99 ms", "server CPU %", "notes"]
PROFILE_KINDS = (
    ("QR login", "profile_login"),
    ("token (authorization_code)", "profile_token"),
    ("token (refresh_token)", "profile_refresh"),
    ("token (client_credentials)", "profile_client_credentials"),
)
ROUND_TRIP_KEYS = ["checkouts", "pings", "begins", "statements", "commits", "rollbacks"]


def markdown(data: dict[str, Any], plots: list[str]) -> str:
    """The run's report: the setting, the goals, one section per figure, the profiles,
    the database round trips and the plots."""
    backends = data["backends"]
    parts = [
        *_setting(data),
        *_goals_section(data),
        *_fig1_section(backends),
        *_fig2_section(backends),
        *_fig3_section(backends),
        *_fig4_section(backends),
        *_peer_section(data),
        *_profiles_section(backends),
        *_round_trips_section(backends),
    ]
    parts += [f"![{p}]({p})\n" for p in plots]
    return "\n".join(parts)


def _setting(data: dict[str, Any]) -> list[str]:
    """The title, the machine and how the server ran, and the goals in one paragraph."""
    m = data["machine"]
    return [
        f"# QR-IdP benchmark, {data['date']} ({data['mode']['name']} mode)\n",
        f"`{data['command']}` on {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        f"kernel {m['kernel']}, checkout {m['commit']}, code measured: {m.get('source')}; "
        f"pinning {m['pinning']}. "
        f"`idp serve` with one gevent worker; production settings except "
        f"IDP_LOGIN_REQUEST_TTL=900 and IDP_CODE_TTL=600 (nothing expires mid-run). "
        f"Run took {data.get('seconds')} s; 1-minute load average "
        f"{m.get('loadavg_1m_at_start')} at the start, {m.get('loadavg_1m_at_end')} at the end "
        "(above ~1.5 other work shared the cores).\n",
        GOALS + "\n",
    ]


def _goals_section(data: dict[str, Any]) -> list[str]:
    """The goals table, when the run has verdicts."""
    if not data.get("goals"):
        return []
    return [
        "## Goals\n",
        "Each of the issue's four goals against this run; for a gap, what the profile "
        "(or the figure itself) says causes it.\n",
        _table(
            ["goal", "measured", "verdict", "gap: cause"],
            [[g["goal"], g["measured"], g["verdict"], g["cause"]] for g in data["goals"]],
        ),
    ]


def _fig1_section(backends: dict[str, Any]) -> list[str]:
    """Figure 1: QR logins per second, and (when there are any) their steps' p50."""
    rows = []
    for name, b in backends.items():
        for r in b.get("fig1_qr_logins", []):
            rows.append([
                name, r["concurrency"], r["per_s"], r["p50_ms"], r["p95_ms"], r["p99_ms"],
                r["errors"], r["server_cpu_percent"], r["loadgen_cpu_percent"],
                r["approve_to_page"]["p50_ms"], r["approve_to_page"]["p99_ms"],
                "yes" if r["counts"] else "no",
            ])  # fmt: skip
    parts = [
        "## 1. QR logins per second (one server core), end to end\n",
        "Authorize page → WebSocket → scan → approve → page's message → completion redirect "
        "→ code exchange → UserInfo (7 HTTP requests + 1 WebSocket), closed loop.\n",
        _table(FIG1_HEADER, rows),
    ]
    return parts + _fig1_steps(backends)


def _fig1_steps(backends: dict[str, Any]) -> list[str]:
    """Figure 1's per-step p50 table, headed by the first row's step names."""
    steps = []
    for name, b in backends.items():
        for r in b.get("fig1_qr_logins", []):
            steps.append([name, r["concurrency"], *r["steps_p50_ms"].values()])
    if not steps:
        return []
    first = next(iter(backends.values()))["fig1_qr_logins"][0]["steps_p50_ms"]
    return ["Per step, p50 ms:\n", _table(["backend", "c", *first.keys()], steps)]


def _fig2_section(backends: dict[str, Any]) -> list[str]:
    """Figure 2: waiting pages on one worker."""
    rows = []
    for name, b in backends.items():
        for r in b.get("fig2_waiting_pages", []):
            a = r["approve_to_page"]
            rows.append([
                name, r["pages"], r["opened"], r["kb_per_page"], r["rss_before_mb"],
                r["rss_after_mb"], r["idle_cpu_percent"], r["idle_window_s"], a["p50_ms"],
                a["p99_ms"], a["samples"], r["pages_per_s"], r["errors"],
            ])  # fmt: skip
    return [
        "## 2. Waiting pages on one worker\n",
        "Approve-to-page: phone's approve request sent → that page's WebSocket message "
        "received, sampled one at a time while all the others wait.\n",
        _table(FIG2_HEADER, rows),
    ]


def _fig3_section(backends: dict[str, Any]) -> list[str]:
    """Figure 3: push versus polling, in server CPU."""
    rows = []
    for name, b in backends.items():
        r = b.get("fig3_push_vs_polling")
        if r:
            ratio = f"{r['ratio']}x" if r["ratio"] else f">= {r['ratio_at_least']}x"
            rows.append([
                name, r["pages"], r["window_s"], r["push_cpu_seconds"], r["poll_cpu_seconds"],
                r["poll_cpu_percent"], r["polls_per_s"], r["poll_latency"]["p99_ms"], ratio,
                r["errors"],
            ])  # fmt: skip
    return [
        "## 3. Push versus polling\n",
        "The product has no status URL. The poller calls `GET /authorize/complete/<id>` "
        "(`Accept: application/json`) once a second per page: for a pending request it only "
        "reads it (primary key, binding cookie) and answers 409 `not_approved`, writing "
        "nothing. Push CPU includes the sockets' heartbeats when the window is longer than "
        "IDP_WS_HEARTBEAT (25 s). CPU times have a 10 ms resolution, so a push figure of 0 "
        "gives only a lower bound.\n",
        _table(FIG3_HEADER, rows),
    ]


def _fig4_section(backends: dict[str, Any]) -> list[str]:
    """Figure 4: each endpoint's rate per concurrency."""
    rows = []
    for name, b in backends.items():
        for endpoint, per_c in b.get("fig4_endpoints", {}).items():
            rows += _fig4_rows(name, endpoint, per_c)
    return [
        "## 4. Endpoints\n",
        "Closed loop per concurrency. Authorization codes are made beforehand by the real "
        "flow (a fixed supply, so that window may end early: see n); refresh tokens rotate "
        "in one chain per worker. `token_client_credentials`: a service account "
        "(`idp clients create --service-account`) with `client_secret_basic`; "
        "`introspection`: that account introspects its own `client_credentials` access "
        "tokens (every answer checked for `active: true`).\n",
        _table(FIG4_HEADER, rows),
    ]


def _fig4_rows(name: str, endpoint: str, per_c: dict[str, Any]) -> list[list[Any]]:
    """One endpoint's rows: one per concurrency, or one saying why it was skipped."""
    if isinstance(per_c.get("skipped"), str):
        return [[name, endpoint, "-", "skipped", "", "", per_c["skipped"]]]
    rows: list[list[Any]] = []
    for c, r in per_c.items():
        if not isinstance(r, dict):  # an older run's "not implemented" probe
            continue
        if "skipped" in r:
            rows.append([name, endpoint, c, "skipped", "", "", r["skipped"]])
            continue
        rows.append([
            name, endpoint, c, r["per_s"], r["p99_ms"], r["server_cpu_percent"],
            f"n={r['ok']} errors={r['errors']} loadgen CPU {r['loadgen_cpu_percent']}%",
        ])  # fmt: skip
    return rows


def _peer_section(data: dict[str, Any]) -> list[str]:
    """Figure 5: the ratios to the reference peer, its raw output, or its error."""
    if not data.get("ratios"):
        if data.get("peer", {}).get("error"):
            return [f"## 5. Reference\n\nerror: {data['peer']['error']}\n"]
        return []
    rows = [
        [r["figure"], r["backend"], r["concurrency"], r["ours"], r["reference"],
         r["ratio"], r.get("ours_per_cpu_s"), r.get("reference_per_cpu_s"),
         r.get("ratio_per_cpu_s")]
        for r in data["ratios"]
    ]  # fmt: skip
    return [
        "## 5. Side by side with the reference (oidc-provider, in-memory)\n",
        "The reference login is a password + consent login (8 HTTP requests, no phone, "
        "no database); ours is the QR login above. `client_credentials` and introspection "
        "are like for like (both: `client_secret_basic`, an opaque access token, "
        "introspected by the client it was issued to; ours keeps tokens in the database, "
        "the reference in memory). Our authorization-code and refresh grants are also "
        "set against its `client_credentials`, for scale only. Per server CPU-s: each "
        "rate divided by its server's CPU share, which other load on the machine moves "
        "less than the rate.\n",
        _table(PEER_HEADER, rows),
        "```\n" + data["peer"].get("output", "").strip() + "\n```\n",
    ]


def _profiles_section(backends: dict[str, Any]) -> list[str]:
    """Every py-spy profile of the run, backend by backend."""
    profiles = [
        (name, kind, b[key]) for name, b in backends.items() for kind, key in PROFILE_KINDS
        if key in b
    ]  # fmt: skip
    if not profiles:
        return []
    parts = ["## Profile (py-spy, inclusive share of the worker's samples)\n"]
    for name, kind, p in profiles:
        parts += _profile_tables(name, kind, p)
    return parts


def _profile_tables(name: str, kind: str, p: dict[str, Any]) -> list[str]:
    """One profile: its categories, views, self time by package and top self frames."""
    if "error" in p:
        return [f"{name} {kind}: {p['error']}\n"]
    views = [list(kv) for kv in p["views_percent"].items()]
    top = [list(kv) for kv in p["top_self_percent"].items()]
    packages = [list(kv) for kv in p.get("self_by_package_percent", {}).items()]
    cats = sorted(p["categories_percent"].items(), key=lambda kv: -kv[1])
    return [
        f"### {name}, {kind}: {p['samples']} samples\n",
        _table(["category", "% of samples"], [list(kv) for kv in cats]),
        _table(["view", "% of samples"], views),
        _table(["self time by package", "%"], packages),
        _table(["top self frames", "%"], top),
    ]


def _round_trips_section(backends: dict[str, Any]) -> list[str]:
    """Per backend: why round trips were not counted, or the counts per request."""
    parts = []
    for name, b in backends.items():
        if b.get("round_trips_error"):
            parts.append(
                f"## Database round trips per request ({name})\n\n"
                f"not counted: {b['round_trips_error']}\n"
            )
        if b.get("round_trips"):
            parts += _round_trips_table(name, b["round_trips"])
    return parts


def _round_trips_table(name: str, trips: dict[str, dict[str, int]]) -> list[str]:
    """One backend's counts per request, with the estimated round trips on the wire."""
    keys = ROUND_TRIP_KEYS
    wire = keys[1:]  # a checkout without a ping does not reach the database
    rows = [
        [req, *[v.get(k, 0) for k in keys], sum(v.get(k, 0) for k in wire), v["status"]]
        for req, v in trips.items()
    ]
    return [
        f"## Database round trips per request ({name}, counted in-process)\n",
        "Round trips ≈ pings + BEGINs + statements + COMMIT/ROLLBACKs: a pool checkout "
        "pings only with `pool_pre_ping`; each transaction sends BEGIN, then the "
        "statements and COMMIT/ROLLBACK; on SQLite they are in-process calls, BEGIN "
        "IMMEDIATE included.\n",
        _table(["request", *keys, "≈ round trips", "status"], rows),
    ]

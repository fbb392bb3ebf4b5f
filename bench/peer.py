"""Figure 5: the reference peer (panva's oidc-provider, ``../shared/bench-peer/run_peer.sh``)
run on the same cores, and each ratio ours / reference."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

from bench.server import REPO

#: Beside the checkout by default; BENCH_PEER_SCRIPT names it for a checkout elsewhere.
PEER_SCRIPT = Path(
    os.environ.get("BENCH_PEER_SCRIPT") or REPO.parent / "shared" / "bench-peer" / "run_peer.sh"
)
LINE_RE = re.compile(r"^(\w+)\s+c=(\d+)\s+(.*)$")


def run_peer(seconds: int, saved_output: str | None = None) -> dict[str, Any]:
    """Run the reference script (or read its saved output) and parse its figures."""
    if saved_output:
        text = Path(saved_output).read_text()
    else:
        if not PEER_SCRIPT.exists():
            return {"error": f"{PEER_SCRIPT} is missing"}
        env = os.environ | {"DUR": str(seconds), "WARM": str(max(1, min(3, seconds // 3)))}
        done = subprocess.run(
            ["taskset", "-c", "0,1", "bash", str(PEER_SCRIPT)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=1800,
        )
        text = done.stdout
        if done.returncode != 0:
            return {"error": f"run_peer.sh exited {done.returncode}: {done.stderr[-800:]}"}
    return parse(text) | {"output": text}


def parse(text: str) -> dict[str, Any]:
    """``name c=N key=value ...`` lines and the ``# server_rss_mb=`` line."""
    figures: dict[str, dict[str, dict[str, Any]]] = {}
    meta: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            meta.update(dict(re.findall(r"(\w+)=(\S+)", line)))
            continue
        match = LINE_RE.match(line.strip())
        if not match:
            continue
        name, concurrency, rest = match.groups()
        values: dict[str, Any] = {}
        for key, value in re.findall(r"(\w+)=(\S+)", rest):
            try:
                values[key] = float(value.rstrip("%s"))
            except ValueError:
                values[key] = value
        figures.setdefault(name, {})[concurrency] = values
    return {"figures": figures, "meta": meta}


#: (our figure 4 endpoint, the reference's figure, the row's label)
ENDPOINT_PAIRS = (
    ("token_client_credentials", "token_cc", "token req/s (client_credentials, both)"),
    ("introspection", "introspect", "introspection req/s (a cc access token, both)"),
    ("token_authorization_code", "token_cc", "token req/s (our auth code vs their cc)"),
    ("token_refresh_token", "token_cc", "token req/s (our refresh vs their cc)"),
    ("jwks", "jwks", "JWKS req/s"),
    ("discovery", "discovery", "discovery req/s"),
)


def ratios(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Each comparable figure, ours / reference, per backend and concurrency."""
    peer = data.get("peer", {})
    if "figures" not in peer:
        return []
    rows: list[dict[str, Any] | None] = []
    for backend, ours in data["backends"].items():
        rows += _login_ratios(backend, ours, peer["figures"])
        rows += _endpoint_ratios(backend, ours, peer["figures"])
        rss = peer.get("meta", {}).get("server_rss_mb")
        rows.append(_ratio(
            "server RSS MB after load (lower is better)", backend, "-",
            ours.get("memory_after_load_mb"), float(rss) if rss else None,
        ))  # fmt: skip
    return [row for row in rows if row is not None]


def _login_ratios(
    backend: str, ours: dict[str, Any], theirs: dict[str, Any]
) -> list[dict[str, Any] | None]:
    """Our QR logins/s against the reference's password + consent logins/s."""
    rows = []
    for row in ours.get("fig1_qr_logins", []):
        c = str(row["concurrency"])
        ref = theirs.get("login_flow", {}).get(c, {})
        rows.append(_ratio(
            "logins/s (QR login vs password+consent login)", backend, c, row["per_s"],
            ref.get("logins_per_s"), (row.get("server_cpu_percent"), ref.get("srv_cpu")),
        ))  # fmt: skip
    return rows


def _endpoint_ratios(
    backend: str, ours: dict[str, Any], theirs: dict[str, Any]
) -> list[dict[str, Any] | None]:
    """Our endpoints' req/s against the reference's (``ENDPOINT_PAIRS``)."""
    endpoints = ours.get("fig4_endpoints", {})
    rows = []
    for mine, their, what in ENDPOINT_PAIRS:
        for c, row in endpoints.get(mine, {}).items():
            if isinstance(row, dict) and "per_s" in row:
                ref = theirs.get(their, {}).get(c, {})
                cpu = (row.get("server_cpu_percent"), ref.get("srv_cpu"))
                rows.append(_ratio(what, backend, c, row["per_s"], ref.get("rps"), cpu))
    return rows


def _ratio(
    what: str,
    backend: str,
    c: str,
    ours: float | None,
    ref: float | None,
    cpu: tuple[float | None, float | None] = (None, None),
) -> dict[str, Any] | None:
    """One row, or None without both figures; ``cpu`` (our, their server CPU %) adds the
    rate per server CPU second, which other load on the machine moves less than the rate."""
    if ours is None or not ref:
        return None
    row = {
        "figure": what, "backend": backend, "concurrency": c,
        "ours": ours, "reference": ref, "ratio": round(ours / ref, 3),
    }  # fmt: skip
    if cpu[0] and cpu[1]:
        ours_cpu, ref_cpu = 100 * ours / cpu[0], 100 * ref / cpu[1]
        row |= {
            "ours_per_cpu_s": round(ours_cpu, 1),
            "reference_per_cpu_s": round(ref_cpu, 1),
            "ratio_per_cpu_s": round(ours_cpu / ref_cpu, 3),
        }
    return row


def ratio_lines(data: dict[str, Any]) -> list[str]:
    """One stdout line per ratio, or the peer's error."""
    peer = data.get("peer", {})
    if "error" in peer:
        return [f"fig5 peer            error: {peer['error']}"]
    lines = []
    for row in data.get("ratios", []):
        per_cpu = (
            f" per server CPU-s: ours={row['ours_per_cpu_s']} ref={row['reference_per_cpu_s']} "
            f"ours/ref={row['ratio_per_cpu_s']}"
            if "ratio_per_cpu_s" in row
            else ""
        )
        lines.append(
            f"fig5 ratio {row['figure']:<50} {row['backend']:<8} c={row['concurrency']:<3} "
            f"ours={row['ours']} ref={row['reference']} ours/ref={row['ratio']}{per_cpu}"
        )
    return lines

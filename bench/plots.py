"""The run's four figures as one matplotlib PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ENDPOINTS = (
    "discovery",
    "jwks",
    "userinfo",
    "token_refresh_token",
    "token_authorization_code",
    "token_client_credentials",
    "introspection",
)
ENDPOINT_LABELS = ("discovery", "jwks", "userinfo", "token rt", "token ac", "token cc",
                   "introspect")  # fmt: skip


def draw(data: dict[str, Any], out: Path, base: str) -> list[Path]:
    """``<out>/<base>.png``: figures 1 to 4 side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = data["backends"]
    fig, axes = plt.subplots(1, 4, figsize=(22, 4.5))
    _logins(axes[0], data)
    _waiting_pages(axes[1], backends)
    _push_vs_polling(axes[2], backends)
    _endpoints(axes[3], backends)
    fig.tight_layout()
    path = out / f"{base}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path]


def _logins(ax: Any, data: dict[str, Any]) -> None:
    """Figure 1: logins/s per backend and concurrency, the reference's in grey."""
    labels, values = [], []
    for name, b in data["backends"].items():
        for r in b.get("fig1_qr_logins", []):
            labels.append(f"{name}\nc={r['concurrency']}")
            values.append(r["per_s"])
    peer = data.get("peer", {}).get("figures", {}).get("login_flow", {})
    for c, r in peer.items():
        labels.append(f"reference\nc={c}")
        values.append(r.get("logins_per_s", 0))
    ax.bar(labels, values, color=["C0"] * (len(labels) - len(peer)) + ["C7"] * len(peer))
    ax.axhline(170, color="r", linestyle="--", linewidth=1, label="goal 170/s")
    ax.set_title("1. logins/s per server core")
    ax.legend()


def _waiting_pages(ax: Any, backends: dict[str, Any]) -> None:
    """Figure 2: KB per page and approve-to-page p99 against the page count."""
    for name, b in backends.items():
        rows = b.get("fig2_waiting_pages", [])
        if rows:
            ks = [r["pages"] for r in rows]
            ax.plot(ks, [r["kb_per_page"] for r in rows], "o-", label=f"{name} KB/page")
            ax.plot(ks, [r["approve_to_page"]["p99_ms"] for r in rows], "s--",
                    label=f"{name} approve→page p99 ms")  # fmt: skip
    ax.axhline(40, color="r", linestyle=":", linewidth=1)
    ax.set_xlabel("waiting pages")
    ax.set_title("2. waiting pages (goal 40 KB, 20 ms)")
    ax.legend(fontsize=7)


def _push_vs_polling(ax: Any, backends: dict[str, Any]) -> None:
    """Figure 3: server CPU seconds of push and of polling, on a log scale."""
    labels, push, poll = [], [], []
    for name, b in backends.items():
        r = b.get("fig3_push_vs_polling")
        if r:
            labels.append(name)
            push.append(max(r["push_cpu_seconds"], 0.005))
            poll.append(r["poll_cpu_seconds"])
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], push, 0.4, label="push (WebSocket)")
    ax.bar([i + 0.2 for i in x], poll, 0.4, label="polling 1/s")
    ax.set_xticks(list(x), labels)
    ax.set_yscale("log")
    ax.set_ylabel("server CPU seconds")
    ax.set_title("3. push vs polling")
    ax.legend()


def _endpoints(ax: Any, backends: dict[str, Any]) -> None:
    """Figure 4: req/s per endpoint, one bar per backend and concurrency (16, 64)."""
    width = 0.8 / max(1, 2 * len(backends))
    i = 0
    for name, b in backends.items():
        for c in ("16", "64"):
            values = [b.get("fig4_endpoints", {}).get(n, {}).get(c, {}).get("per_s", 0)
                      for n in ENDPOINTS]  # fmt: skip
            ax.bar([j + i * width for j in range(len(ENDPOINTS))], values, width,
                   label=f"{name} c={c}")  # fmt: skip
            i += 1
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(ENDPOINTS))], list(ENDPOINT_LABELS),
                  fontsize=8)  # fmt: skip
    ax.set_title("4. endpoints req/s")
    ax.legend(fontsize=7)

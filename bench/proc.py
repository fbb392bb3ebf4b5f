"""Process figures from ``/proc`` (Linux) and latency statistics."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of every thread of ``pid``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def thread_count(pid: int) -> int:
    """How many threads ``pid`` has."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (a gunicorn master's workers)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def raise_file_limit(needed: int) -> int:
    """Raise this process's open-file limit towards ``needed`` (up to the hard limit);
    the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard == resource.RLIM_INFINITY else min(hard, max(soft, needed))
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def own_cpu_seconds() -> float:
    """CPU seconds used by this (load generator) process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuWindow:
    """Server and load-generator CPU over a wall-clock window (100 % = one core)."""

    pids: tuple[int, ...]
    wall: float = 0.0
    server_cpu: float = 0.0
    loadgen_cpu: float = 0.0
    _t0: float = 0.0
    _s0: float = 0.0
    _l0: float = 0.0

    def __enter__(self) -> CpuWindow:
        self._t0 = time.monotonic()
        self._s0 = sum(cpu_seconds(p) for p in self.pids)
        self._l0 = own_cpu_seconds()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.wall = time.monotonic() - self._t0
        self.server_cpu = sum(cpu_seconds(p) for p in self.pids) - self._s0
        self.loadgen_cpu = own_cpu_seconds() - self._l0

    @property
    def server_percent(self) -> float:
        return 100 * self.server_cpu / self.wall if self.wall else 0.0

    @property
    def loadgen_percent(self) -> float:
        return 100 * self.loadgen_cpu / self.wall if self.wall else 0.0


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (``nan`` when empty)."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds."""
    values = sorted(seconds)
    return {
        "p50_ms": round(1000 * percentile(values, 50), 2),
        "p95_ms": round(1000 * percentile(values, 95), 2),
        "p99_ms": round(1000 * percentile(values, 99), 2),
        "max_ms": round(1000 * values[-1], 2) if values else float("nan"),
    }

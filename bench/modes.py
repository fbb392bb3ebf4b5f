"""The benchmark's two sizes: ``--quick`` (the default) and ``--full`` (the issue's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Mode:
    """How long and how large each measurement is."""

    name: str
    login_concurrencies: tuple[int, ...]
    login_seconds: float
    warmup_seconds: float
    endpoint_concurrencies: tuple[int, ...]
    endpoint_seconds: float
    endpoint_warmup: float
    codes: int
    harvest_seconds: float
    waiting_pages: tuple[int, ...]
    idle_window: float
    latency_samples: int
    polling_pages: int
    polling_window: float
    profile_seconds: float = 10.0
    peer_seconds: int = 15
    extra: dict[str, Any] = field(default_factory=dict)


QUICK = Mode(
    name="quick",
    login_concurrencies=(16,),
    login_seconds=3,
    warmup_seconds=1,
    endpoint_concurrencies=(16, 64),
    endpoint_seconds=0.6,
    endpoint_warmup=0.15,
    codes=300,
    harvest_seconds=5,
    waiting_pages=(400,),
    idle_window=2,
    latency_samples=30,
    polling_pages=100,
    polling_window=3,
    profile_seconds=6,
    peer_seconds=5,
)
FULL = Mode(
    name="full",
    login_concurrencies=(16, 64),
    login_seconds=15,
    warmup_seconds=3,
    endpoint_concurrencies=(16, 64),
    endpoint_seconds=8,
    endpoint_warmup=2,
    codes=3000,
    harvest_seconds=45,
    waiting_pages=(1000, 5000, 10000),
    idle_window=30,
    latency_samples=200,
    polling_pages=200,
    polling_window=60,
    profile_seconds=20,
    peer_seconds=15,
)

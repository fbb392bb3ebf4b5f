"""Figure 4: req/s and latency of each endpoint, closed loop per concurrency."""

from __future__ import annotations

import itertools
import random
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench import actors
from bench.figures import closed_loop
from bench.server import IdP

Case = Callable[[int], Awaitable[Any]]


@dataclass
class EndpointLoad:
    """One request of each endpoint, and what those requests share: unrevoked access
    tokens, one refresh chain per worker, a supply of codes, the service's tokens."""

    http: aiohttp.ClientSession
    idp: IdP
    access_tokens: list[str]
    chains: list[str]  # each chain is used by one worker at a time
    # The codes are shared out evenly between the concurrencies; a window ends early when
    # its share runs out (IndexError ends a worker).
    supply: list[tuple[str, str]] = field(default_factory=list)
    # The service account's client_credentials tokens; introspection asks about them.
    service_tokens: list[str] = field(default_factory=list)
    counter: Iterator[int] = field(default_factory=itertools.count)

    def cases(self) -> dict[str, Case]:
        """The endpoints in the order they are measured."""
        return {
            "discovery": self.discovery,
            "jwks": self.jwks,
            "userinfo": self.userinfo,
            "token_refresh_token": self.refresh,
            "token_authorization_code": self.authorization_code,
            "token_client_credentials": self.client_credentials,
            "introspection": self.introspection,
        }

    def skipped(self, name: str, widest: int) -> str | None:
        """Why ``name`` cannot be measured in this run, if it cannot."""
        if name == "token_refresh_token" and len(self.chains) < widest:
            return f"only {len(self.chains)} refresh tokens"
        if name in ("token_client_credentials", "introspection") and not self.idp.service_id:
            return f"no service account: {self.idp.service_error}"
        if name == "introspection" and not self.service_tokens:
            return "no client_credentials token to introspect"
        return None

    async def _get(self, url: str, headers: dict[str, str] | None = None) -> None:
        async with self.http.get(url, headers=headers) as response:
            await response.read()
            if response.status != 200:
                raise actors.FlowError(f"GET {url.rsplit('/', 1)[-1]} HTTP {response.status}")

    async def jwks(self, _: int) -> None:
        await self._get(f"{self.idp.issuer}/jwks")

    async def discovery(self, _: int) -> None:
        await self._get(f"{self.idp.issuer}/.well-known/openid-configuration")

    async def userinfo(self, _: int) -> None:
        token = self.access_tokens[next(self.counter) % len(self.access_tokens)]
        await self._get(f"{self.idp.issuer}/userinfo", {"Authorization": f"Bearer {token}"})

    async def refresh(self, worker: int) -> None:
        form = {"grant_type": "refresh_token", "refresh_token": self.chains[worker]}
        answer = await actors.token_request(self.http, self.idp, form)
        self.chains[worker] = answer["refresh_token"]

    async def authorization_code(self, _: int) -> None:
        code, verifier = self.supply.pop()
        await actors.exchange(self.http, self.idp, code, verifier)

    async def client_credentials(self, _: int) -> str:
        return await actors.service_token(self.http, self.idp)

    async def introspection(self, _: int) -> dict[str, Any]:
        token = self.service_tokens[next(self.counter) % len(self.service_tokens)]
        return await actors.introspect(self.http, self.idp, token)


async def endpoints(
    http: aiohttp.ClientSession,
    idp: IdP,
    *,
    concurrencies: Sequence[int],
    duration: float,
    warmup: float,
    codes: list[tuple[str, str]],
    tokens: list[dict[str, Any]],
    access_tokens: list[str],
) -> dict[str, Any]:
    """req/s and latency per endpoint and concurrency (``access_tokens``: unrevoked ones;
    ``codes`` are used up)."""
    load = EndpointLoad(http, idp, list(access_tokens), [t["refresh_token"] for t in tokens])
    random.shuffle(load.access_tokens)
    figures: dict[str, Any] = {}
    for name, one in load.cases().items():
        if reason := load.skipped(name, max(concurrencies)):
            figures[name] = {"skipped": reason}
            continue
        figures[name] = {
            str(c): await _endpoint_row(
                load, name, one, c, duration, warmup, codes, len(concurrencies)
            )
            for c in concurrencies
        }
    return figures


async def _endpoint_row(
    load: EndpointLoad,
    name: str,
    one: Case,
    concurrency: int,
    duration: float,
    warmup: float,
    codes: list[tuple[str, str]],
    windows: int,
) -> dict[str, Any]:
    """One endpoint at one concurrency: warm up (or take this window's share of the
    codes), then measure; keep the service's tokens and a sample introspection."""
    if name != "token_authorization_code":
        await closed_loop(load.idp, concurrency, warmup, one)
    else:
        share = len(codes) // windows
        load.supply[:] = codes[:share]
        del codes[:share]
        if not load.supply:
            return {"skipped": "no authorization codes"}
    loop = await closed_loop(load.idp, concurrency, duration, one)
    row = {"concurrency": concurrency, **loop.summary()}
    row["counts"] = loop.ok > 0 and not loop.errors
    if name == "token_client_credentials":
        load.service_tokens[:] = loop.values[-256:]
    elif name == "introspection" and loop.values:
        sample = loop.values[-1]  # every answer was checked for active=true
        row["sample"] = {k: sample.get(k) for k in ("active", "client_id", "token_type", "exp")}
    return row

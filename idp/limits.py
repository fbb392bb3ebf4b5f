"""Abuse limits (Flask-Limiter): per IP address, per device, and per account password.

- Per browser IP address, one budget for ``/authorize`` and the page's own calls
  (renewing the code, asking for a short code): ``IDP_LIMIT_BROWSER``.
- Per IP address on enrollment (a password check): ``IDP_LIMIT_ENROLL``; and on the
  rest of the phone API, before the proof is checked: ``IDP_LIMIT_PHONE_IP``.
- Per enrolled device, after its proof is checked, one budget for scanning,
  approving and denying: ``IDP_LIMIT_DEVICE``.
- Per username, wrong passwords at enrollment: ``IDP_LIMIT_PASSWORD``. Once used up,
  enrollment for that username is refused even with the right password until the
  window has passed (a lockout); the per-IP limit slows guessing before that. The
  attempt is counted *before* the password is checked (one atomic hit) and forgiven
  when the password was right: N concurrent guesses check at most the limit's number
  of passwords (Flask-Limiter's ``deduct_when`` tests first and counts afterwards, so
  every concurrent guess would pass its test).

Every limit answers 429 ``too_many_requests`` with ``Retry-After``. Counters live in
``IDP_RATELIMIT_STORAGE_URL``: by default the Redis of ``IDP_BROKER_URL`` when there
is one (so that every worker shares them), else this process's memory. If Redis is
unreachable, or stops answering (every call is bounded by ``IDP_REDIS_TIMEOUT``),
each process falls back to its own memory counters: limits stay on, and sign-in
keeps working; Flask-Limiter looks at Redis again now and then, and goes back to it.
The requests already waiting on Redis when it failed pass uncounted (no 500).

Views declare their per-IP limit with :func:`per_ip`. A ``Limiter`` is made per app,
and the limits are attached to the app's registered view functions, so that several
apps in one process (as in the tests) never share counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, current_app
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter, RateLimiter

from idp.config import is_redis_url
from idp.errors import TooManyRequests, render_error
from idp.realtime.broker import bounded_redis_options

#: The attribute :func:`per_ip` sets on a view: ``(setting, scope)``.
PER_IP_MARK = "idp_per_ip"

View = TypeVar("View", bound=Callable[..., Any])


def per_ip(setting: str, *, scope: str) -> Callable[[View], View]:
    """Mark a view as limited per client IP address by the limit in ``setting``; views of
    one ``scope`` share one budget. :func:`init_app` attaches the limit, with each app's
    own limiter, so that several apps in one process never share counters."""

    def mark(view: View) -> View:
        setattr(view, PER_IP_MARK, (setting, scope))
        return view

    return mark


def init_app(app: Flask) -> None:
    """Make this app's limiter and attach its limits to the registered views."""
    config = app.config
    storage = config["IDP_RATELIMIT_STORAGE_URL"]
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=storage_uri(storage),
        # Without a timeout a frozen Redis holds each request for ever, and the fallback
        # below (which needs a call to fail) never starts.
        storage_options=bounded_redis_options(config["IDP_REDIS_TIMEOUT"], storage)
        if is_redis_url(storage)
        else {},
        strategy="moving-window",
        key_prefix=config["IDP_RATELIMIT_PREFIX"],
        in_memory_fallback_enabled=True,
        # The fallback starts with the first call that fails; calls already waiting on
        # Redis then fail too, and would answer 500. Those few are let through uncounted
        # (and logged) instead; every later request counts in memory.
        swallow_errors=True,
        headers_enabled=False,
        enabled=config["IDP_RATELIMIT_ENABLED"],
    )
    app.extensions["idp.limiter"] = limiter
    _limit_marked_views(app, limiter)
    # The password budget is counted by hand (charge_password), before the check.
    app.extensions["idp.password_fallback"] = MovingWindowRateLimiter(MemoryStorage())

    @app.errorhandler(RateLimitExceeded)
    def _too_many(error: RateLimitExceeded) -> Response:
        current = limiter.current_limit
        reset_at = current.reset_at if current else time.time() + 60
        retry_after = max(1, int(reset_at - time.time()) + 1)
        description = f"too many requests ({error.description}): wait, then try again"
        return render_error(TooManyRequests(description, retry_after=retry_after))


def _limit_marked_views(app: Flask, limiter: Limiter) -> None:
    """Wrap every view of ``app`` marked with :func:`per_ip` in its limit."""
    views = app.view_functions
    for endpoint, view in list(views.items()):
        if mark := getattr(view, PER_IP_MARK, None):
            setting, scope = mark
            limit = limiter.shared_limit(app.config[setting], scope=scope)
            # Typed as sync or async; a sync view stays sync.
            views[endpoint] = limit(view)  # type: ignore[assignment]


def storage_uri(url: str) -> str:
    """Flask-Limiter's name for ``IDP_RATELIMIT_STORAGE_URL``: the same Redis URLs as the
    broker (``idp.config.is_redis_url``), but a socket is ``redis+unix://`` to it."""
    if is_redis_url(url) and url.startswith("unix://"):
        return "redis+" + url
    return url


def charge_device(device_id: str) -> None:
    """Count one phone action (scan, approve, deny) against this device's budget; when it
    is used up Flask-Limiter raises ``RateLimitExceeded``, answered as 429 above."""
    limiter: Limiter = current_app.extensions["idp.limiter"]
    budget = limiter.shared_limit(
        current_app.config["IDP_LIMIT_DEVICE"], scope="device", key_func=lambda: device_id
    )
    with budget:  # Flask-Limiter checks (and counts) a limit used as a context manager
        pass


def charge_password(username: str) -> None:
    """Count one password check against ``username`` *before* it is made; raise
    ``TooManyRequests`` when the budget (``IDP_LIMIT_PASSWORD``) is used up. A right password
    is then forgiven with :func:`forgive_password`, so only wrong ones use the budget.

    Each hit is one atomic check-and-count in the limiter's storage (a Lua script on
    Redis, a lock in memory): of N concurrent attempts, at most the limit get through.
    """
    for item in _password_limits():
        keys = _password_keys(username)
        if not _on_storage("hit", item, keys):
            stats = _on_storage("get_window_stats", item, keys)
            raise TooManyRequests(
                "too many wrong passwords for this user: wait, then try again",
                retry_after=max(1, int(stats.reset_time - time.time()) + 1),
            )


def forgive_password(username: str) -> None:
    """The password was right: the attempts counted for ``username`` are forgiven (a
    person who knows the password never locks the account by enrolling phones)."""
    for item in _password_limits():
        _on_storage("clear", item, _password_keys(username))


def _password_limits() -> list[RateLimitItem]:
    config = current_app.config
    return parse_many(config["IDP_LIMIT_PASSWORD"]) if config["IDP_RATELIMIT_ENABLED"] else []


def _password_keys(username: str) -> tuple[str, ...]:
    return (current_app.config["IDP_RATELIMIT_PREFIX"], "password", username)


def _on_storage(method: str, item: RateLimitItem, keys: tuple[str, ...]) -> Any:
    """Call the limiter strategy's ``method`` on the shared storage; when that storage
    fails, on this process's own memory counters (as Flask-Limiter does for the other
    limits): the lockout stays on while Redis is away."""
    limiter: Limiter = current_app.extensions["idp.limiter"]
    try:
        return getattr(limiter.limiter, method)(item, *keys)
    except limiter.storage.base_exceptions:
        fallback: RateLimiter = current_app.extensions["idp.password_fallback"]
        return getattr(fallback, method)(item, *keys)

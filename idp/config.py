"""The one place that reads ``IDP_*`` environment variables.

Every setting has a safe default for the embedded mode (one process, a SQLite
file in the instance folder, the in-process broker).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_ISSUER = "http://127.0.0.1:8000"

#: name -> (type, default); defaults computed at load time are ``None`` here.
SETTINGS: dict[str, tuple[type, Any]] = {
    "IDP_ISSUER": (str, DEFAULT_ISSUER),
    # The name people see at the top of every page.
    "IDP_NAME": (str, "QR-IdP"),
    "IDP_DATABASE_URL": (str, None),
    "IDP_BROKER_URL": (str, "memory://"),
    "IDP_SECRET_KEY": (str, None),
    # Lifetimes, in seconds.
    "IDP_LOGIN_REQUEST_TTL": (int, 120),
    "IDP_CODE_TTL": (int, 50),
    "IDP_ACCESS_TOKEN_TTL": (int, 3600),
    "IDP_REFRESH_TOKEN_TTL": (int, 30 * 24 * 3600),
    "IDP_ID_TOKEN_TTL": (int, 3600),
    # After `idp keys rotate`, seconds the new key is published before it signs (relying
    # parties cache the JWKS: ours says max-age=300).
    "IDP_KEY_PUBLISH_AHEAD": (int, 600),
    "IDP_PROOF_MAX_AGE": (int, 60),
    # Seconds a browser stays signed in at the IdP after a QR sign-in (single sign-on).
    "IDP_SESSION_TTL": (int, 8 * 3600),
    # Seconds between a waiting page's heartbeats (they keep proxies from closing it).
    "IDP_WS_HEARTBEAT": (int, 25),
    # "Can't scan?": seconds a short typable code lives (at most as long as its request),
    # and how many wrong codes a user may type per window of seconds.
    "IDP_SHORT_CODE_TTL": (int, 120),
    "IDP_SHORT_CODE_ATTEMPTS": (int, 5),
    "IDP_SHORT_CODE_WINDOW": (int, 600),
    # How many times a page renews its QR code by itself before it asks.
    "IDP_QR_MAX_RENEWALS": (int, 5),
    # Demo only: print "<this command> <QR URL> --approve" for each new code.
    "IDP_DEMO_PHONE_COMMAND": (str, ""),
    # How many reverse proxies in front set X-Forwarded-* (0: trust none).
    "IDP_TRUSTED_PROXIES": (int, 0),
    # When set, /metrics answers only to "Authorization: Bearer <this token>".
    "IDP_METRICS_TOKEN": (str, ""),
    # A MaxMind City or Country database (.mmdb): the phone shows where the browser is.
    "IDP_GEOIP_DATABASE": (str, ""),
    # Days `idp purge` keeps the audit log (0: for ever).
    "IDP_AUDIT_RETENTION_DAYS": (int, 365),
    # Number matching for every client (else only for clients registered with it): after
    # the scan the page shows two digits, and the phone must pick them to approve.
    "IDP_NUMBER_MATCHING": (bool, False),
    # Abuse limits (see idp/limits.py), in Flask-Limiter's notation ("10/minute;50/hour").
    "IDP_RATELIMIT_ENABLED": (bool, True),
    # Where the counters live: "memory://" or a Redis URL (default: the broker's Redis,
    # if the broker is Redis, so that all workers share them; else memory).
    "IDP_RATELIMIT_STORAGE_URL": (str, None),
    # Prefix of the counters' keys (several IdPs can share one Redis).
    "IDP_RATELIMIT_PREFIX": (str, "qridp-limits"),
    # Per browser IP: /authorize and the page's renewals and short codes, together.
    "IDP_LIMIT_BROWSER": (str, "60/minute;600/hour"),
    # Per IP: enrollments (each checks a password).
    "IDP_LIMIT_ENROLL": (str, "10/minute;30/hour"),
    # Per IP: the phone API's other calls, counted before the proof is checked.
    "IDP_LIMIT_PHONE_IP": (str, "300/minute"),
    # Per device: scans, approvals and denials, together.
    "IDP_LIMIT_DEVICE": (str, "30/minute;300/hour"),
    # Per username: wrong passwords at enrollment, then a lockout until the window passes.
    "IDP_LIMIT_PASSWORD": (str, "5 per 15 minutes"),
    # Log lines: "json" (one object per line, with the request id) or "text".
    "IDP_LOG_FORMAT": (str, "json"),
    "IDP_LOG_LEVEL": (str, "INFO"),
    # Realtime and Redis faults (see idp/realtime/ and docs/deploying.md).
    # Seconds one Redis call (connect, command, a ping of the pub/sub link) may take.
    "IDP_REDIS_TIMEOUT": (int, 2),
    # Seconds of silence on the broker's pub/sub link before it pings Redis.
    "IDP_REDIS_PING_INTERVAL": (int, 5),
    # Open page sockets allowed per login request, and per browser IP, in each process.
    "IDP_WS_MAX_PER_REQUEST": (int, 4),
    "IDP_WS_MAX_PER_IP": (int, 100),
}


def instance_path() -> str | None:
    """``IDP_INSTANCE_PATH``: where the SQLite file and the secret key live (default:
    Flask's instance folder, ``instance/`` beside the ``idp`` package)."""
    return os.environ.get("IDP_INSTANCE_PATH") or None


class ConfigError(ValueError):
    """A setting has a value the IdP refuses to start with."""


def _parse(kind: type, name: str, raw: str) -> Any:
    if kind is bool:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if kind is int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
        if value < 0:
            raise ConfigError(f"{name} must not be negative, not {value}")
        return value
    return raw


def load(instance_path: Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the settings: defaults, then ``IDP_*`` variables, then ``overrides``."""
    values: dict[str, Any] = {}
    for name, (kind, default) in SETTINGS.items():
        raw = os.environ.get(name)
        values[name] = default if raw in (None, "") else _parse(kind, name, raw)
    values.update(overrides or {})

    if not values["IDP_DATABASE_URL"]:
        values["IDP_DATABASE_URL"] = f"sqlite:///{instance_path / 'idp.sqlite3'}"
    if not values["IDP_SECRET_KEY"]:
        values["IDP_SECRET_KEY"] = _instance_secret(instance_path)
    values["IDP_ISSUER"] = check_issuer(values["IDP_ISSUER"])
    if not values["IDP_RATELIMIT_STORAGE_URL"]:
        broker = values["IDP_BROKER_URL"]
        redis = broker.startswith(("redis://", "rediss://"))
        values["IDP_RATELIMIT_STORAGE_URL"] = broker if redis else "memory://"
    for name in LIMIT_SETTINGS:
        check_limit(name, values[name])
    for name in AT_LEAST_ONE:  # 0 would mean "no bound" to redis-py, or refuse every socket
        if values[name] < 1:
            raise ConfigError(f"{name} must be at least 1, not {values[name]}")
    if values["IDP_LOG_FORMAT"] not in {"json", "text"}:
        raise ConfigError(f"IDP_LOG_FORMAT must be json or text, not {values['IDP_LOG_FORMAT']!r}")
    values["IDP_LOG_LEVEL"] = str(values["IDP_LOG_LEVEL"]).upper()
    if values["IDP_LOG_LEVEL"] not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError("IDP_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
    return values


AT_LEAST_ONE = (
    "IDP_REDIS_TIMEOUT",
    "IDP_REDIS_PING_INTERVAL",
    "IDP_WS_MAX_PER_REQUEST",
    "IDP_WS_MAX_PER_IP",
)

LIMIT_SETTINGS = (
    "IDP_LIMIT_BROWSER",
    "IDP_LIMIT_ENROLL",
    "IDP_LIMIT_PHONE_IP",
    "IDP_LIMIT_DEVICE",
    "IDP_LIMIT_PASSWORD",
)


def check_limit(name: str, value: str) -> None:
    """Refuse a limit Flask-Limiter cannot read (it would otherwise fail per request)."""
    from limits import parse_many

    try:
        if not parse_many(value):
            raise ValueError(value)
    except ValueError:
        message = f"{name} must be limits like '10/minute;50/hour', not {value!r}"
        raise ConfigError(message) from None


def check_issuer(issuer: str) -> str:
    """Return the issuer without a trailing slash, or refuse it.

    OpenID Connect Discovery §3: an https URL with no query or fragment. Plain
    ``http`` is accepted only on a loopback host, for trying it out locally.
    """
    if issuer != issuer.strip() or any(c.isspace() for c in issuer):
        raise ConfigError(f"IDP_ISSUER must not contain spaces: {issuer!r}")
    issuer = issuer.rstrip("/")
    if "?" in issuer or "#" in issuer:
        raise ConfigError("IDP_ISSUER must not have a query or a fragment")
    parts = urlsplit(issuer)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"IDP_ISSUER must be an https:// URL, not {issuer!r}")
    if parts.query or parts.fragment:
        raise ConfigError("IDP_ISSUER must not have a query or a fragment")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(
            f"IDP_ISSUER {issuer!r} is plain http on a host that is not loopback: "
            "use https:// (http is only for 127.0.0.1, ::1 or localhost)"
        )
    return issuer


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _instance_secret(instance_path: Path) -> str:
    """A random secret kept in the instance folder, made on first start (0600)."""
    path = instance_path / "secret_key"
    if path.exists():
        return path.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # Write a private temporary file, then link it into place: a process starting
    # at the same moment sees either no file or the whole secret, never half of it.
    tmp = instance_path / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    try:
        os.link(tmp, path)
    except FileExistsError:  # another process made it first
        return path.read_text().strip()
    finally:
        tmp.unlink()
    return secret

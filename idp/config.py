"""The one place that reads ``IDP_*`` environment variables.

Every setting has a safe default for the embedded mode (one process, a SQLite
file in the instance folder, the in-process broker). :data:`SETTINGS` declares
each one as ``name -> (kind, default)``; :func:`load` reads them all once into a
frozen :class:`Settings`, refusing a malformed value (naming the variable and what
it accepts) and checking the rules between settings in :func:`check_rules`. The
app's ``config`` gets the same ``IDP_*`` keys. The instance folder's files (the secret
key, SQLite's) are made and checked by :mod:`idp.instance`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_ISSUER = "http://127.0.0.1:8000"


class ConfigError(ValueError):
    """A setting has a value the IdP refuses to start with."""


# Kinds: how a setting's text is read ------------------------------------------------------


class Kind:
    """Reads one setting: text from the environment, or a value given in code."""

    #: The Python type of the value (the field's type in :class:`Settings`).
    type: type = str
    #: Kept out of ``repr`` (a secret is never printed with the settings).
    secret: bool = False
    #: What the setting accepts, for messages.
    accepts: str = "text"

    def parse(self, name: str, raw: str) -> Any:
        """The value of ``raw`` (the variable's text), or :class:`ConfigError`."""
        return raw

    def coerce(self, name: str, value: Any) -> Any:
        """Check a value given in code (``create_app(config)``); text is parsed."""
        if isinstance(value, str):
            return self.parse(name, value)
        if not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
            raise ConfigError(f"{name} must be {self.accepts}, not {value!r}")
        return self.check(name, value)

    def check(self, name: str, value: Any) -> Any:
        """Rules on a parsed value (a range, a choice); returns it, maybe normalized."""
        return value


class Text(Kind):
    """Any text (``secret=True``: never shown in ``repr``)."""

    def __init__(self, *, secret: bool = False) -> None:
        self.secret = secret


class Boolean(Kind):
    """Exactly one of :data:`TRUE` or :data:`FALSE`, in any case; anything else is refused
    (``IDP_RATELIMIT_ENABLED=ture`` must not quietly mean "off")."""

    TRUE = ("1", "true", "yes", "on")
    FALSE = ("0", "false", "no", "off")
    type = bool
    accepts = f"one of {', '.join(TRUE)} (on) or {', '.join(FALSE)} (off)"

    def parse(self, name: str, raw: str) -> bool:
        word = raw.strip().lower()
        if word in self.TRUE:
            return True
        if word in self.FALSE:
            return False
        raise ConfigError(f"{name} must be {self.accepts}, not {raw!r}")


class WholeNumber(Kind):
    """A whole number in decimal digits, at least ``minimum``."""

    type = int
    unit = ""

    def __init__(self, minimum: int = 0) -> None:
        self.minimum = minimum
        self.accepts = f"a whole number{self.unit}"

    def parse(self, name: str, raw: str) -> int:
        # Only ASCII digits: int() would also take "1_000", "١٢" or " +5".
        if not re.fullmatch(r"-?[0-9]+", raw.strip()):
            raise ConfigError(f"{name} must be {self.accepts}, not {raw!r}")
        return self.check(name, int(raw))

    def check(self, name: str, value: int) -> int:
        if value < self.minimum:
            if self.minimum == 0:
                raise ConfigError(f"{name} must not be negative, not {value}")
            raise ConfigError(f"{name} must be at least {self.minimum}, not {value}")
        return value


class Seconds(WholeNumber):
    """A duration: a whole number of seconds, at least ``minimum``."""

    unit = " of seconds"


class Choice(Kind):
    """One of a few words (compared without case; stored as given in ``options``)."""

    def __init__(self, *options: str) -> None:
        self.options = options
        self.accepts = (
            " or ".join(options)
            if len(options) <= 2
            else (", ".join(options[:-1]) + " or " + options[-1])
        )

    def parse(self, name: str, raw: str) -> str:
        return self.check(name, raw)

    def check(self, name: str, value: str) -> str:
        for option in self.options:
            if value.strip().lower() == option.lower():
                return option
        raise ConfigError(f"{name} must be {self.accepts}, not {value!r}")


class Limit(Kind):
    """Rate limits in Flask-Limiter's notation: ``10/minute;50/hour``."""

    accepts = "limits like '10/minute;50/hour'"

    def parse(self, name: str, raw: str) -> str:
        from limits import parse_many

        try:
            if not parse_many(raw):
                raise ValueError(raw)
        except ValueError:
            # Refused here: Flask-Limiter would otherwise fail on every request.
            raise ConfigError(f"{name} must be {self.accepts}, not {raw!r}") from None
        return raw


class Issuer(Kind):
    """The issuer URL (see :func:`check_issuer`)."""

    accepts = "an https:// URL"

    def parse(self, name: str, raw: str) -> str:
        return check_issuer(raw)


class DatabaseURL(Kind):
    """A SQLAlchemy URL for SQLite or PostgreSQL (psycopg 3)."""

    accepts = "sqlite:///path/to/file or postgresql+psycopg://user@host/database"

    def parse(self, name: str, raw: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(raw)
        except ArgumentError:
            raise ConfigError(f"{name} must be {self.accepts}, not {raw!r}") from None
        if url.drivername not in {"sqlite", "sqlite+pysqlite", "postgresql+psycopg"}:
            raise ConfigError(f"{name} must be {self.accepts}, not {url.drivername}://...")
        return raw


#: The schemes of a Redis URL, for the broker and the limits' counters alike.
REDIS_SCHEMES = ("redis", "rediss", "unix")


class StoreURL(Kind):
    """``memory://`` (this process only) or a Redis URL: ``redis://host:port/db``,
    ``rediss://`` (TLS) or ``unix:///path/to/socket``."""

    accepts = "memory:// or a Redis URL (redis://host:6379/0, rediss://... or unix:///path)"

    def parse(self, name: str, raw: str) -> str:
        if raw == "memory://":
            return raw
        parts = urlsplit(raw)
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        if parts.scheme == "unix":
            well_formed = bool(parts.path) and not parts.netloc
        else:
            path = parts.path.strip("/")
            well_formed = bool(parts.hostname) and port_ok and (not path or path.isdigit())
        if parts.scheme not in REDIS_SCHEMES or not well_formed:
            raise ConfigError(f"{name} must be {self.accepts}, not {raw!r}")
        return raw


def is_redis_url(url: str) -> bool:
    """Whether ``url`` (an :class:`StoreURL`) names a Redis server: the one rule the broker
    and the abuse limits both follow."""
    return urlsplit(url).scheme in REDIS_SCHEMES


def _kind(kind: type | Kind) -> Kind:
    """The parser for a :data:`SETTINGS` entry; plain ``int``, ``bool``, ``str`` work too."""
    if isinstance(kind, Kind):
        return kind
    plain: dict[type, Kind] = {int: WholeNumber(), bool: Boolean(), str: Text()}
    if kind not in plain:
        raise TypeError(f"no parser for settings of type {kind!r}")
    return plain[kind]


#: name -> (kind, default); a ``None`` default is computed at load time. A kind is a
#: :class:`Kind` or plain ``int``, ``bool``, ``str``.
SETTINGS: dict[str, tuple[type | Kind, Any]] = {
    "IDP_ISSUER": (Issuer(), DEFAULT_ISSUER),
    # The name people see at the top of every page.
    "IDP_NAME": (str, "QR-IdP"),
    "IDP_DATABASE_URL": (DatabaseURL(), None),
    "IDP_BROKER_URL": (StoreURL(), "memory://"),
    "IDP_SECRET_KEY": (Text(secret=True), None),
    # Lifetimes, in seconds.
    "IDP_LOGIN_REQUEST_TTL": (Seconds(minimum=1), 120),
    "IDP_CODE_TTL": (Seconds(), 50),
    "IDP_ACCESS_TOKEN_TTL": (Seconds(), 3600),
    "IDP_REFRESH_TOKEN_TTL": (Seconds(), 30 * 24 * 3600),
    "IDP_ID_TOKEN_TTL": (Seconds(), 3600),
    # After `idp keys rotate`, seconds the new key is published before it signs (relying
    # parties cache the JWKS: ours says max-age=300).
    "IDP_KEY_PUBLISH_AHEAD": (Seconds(), 600),
    "IDP_PROOF_MAX_AGE": (Seconds(), 60),
    # Seconds a browser stays signed in at the IdP after a QR sign-in (single sign-on).
    "IDP_SESSION_TTL": (Seconds(), 8 * 3600),
    # Which clients that session answers without a scan: "per_client", only those
    # approved on the phone in it (one approval signs in one site); "all", any client.
    "IDP_SSO_SCOPE": (Choice("per_client", "all"), "per_client"),
    # Who may enroll a phone with a password alone: "first_phone", only a user who has no
    # active phone (another phone must approve the next ones); "always"; "never" (an
    # admin's invitation, or an approval from a phone the user has).
    "IDP_PASSWORD_ENROLLMENT": (Choice("first_phone", "always", "never"), "first_phone"),
    # Seconds a phone's request to be enrolled waits for another phone's approval.
    "IDP_ENROLLMENT_TTL": (Seconds(minimum=60), 600),
    # Seconds between a waiting page's heartbeats (they keep proxies from closing it).
    "IDP_WS_HEARTBEAT": (Seconds(minimum=1), 25),
    # "Can't scan?": seconds a short typable code lives (at most as long as its request),
    # and how many wrong codes a user may type per window of seconds.
    "IDP_SHORT_CODE_TTL": (Seconds(), 120),
    "IDP_SHORT_CODE_ATTEMPTS": (int, 5),
    "IDP_SHORT_CODE_WINDOW": (Seconds(), 600),
    # Device authorization grant (RFC 8628, idp.oauth.device): seconds a device_code and
    # its user code live, and the seconds a device must wait between polls.
    "IDP_DEVICE_CODE_TTL": (Seconds(minimum=1), 600),
    "IDP_DEVICE_POLL_INTERVAL": (Seconds(minimum=1), 5),
    # How many times a page renews its QR code by itself before it asks.
    "IDP_QR_MAX_RENEWALS": (int, 5),
    # How many reverse proxies in front set X-Forwarded-* (0: trust none).
    "IDP_TRUSTED_PROXIES": (int, 0),
    # When set, /metrics answers only to "Authorization: Bearer <this token>"; when empty,
    # only to loopback clients (127.0.0.1, ::1; the address after IDP_TRUSTED_PROXIES).
    "IDP_METRICS_TOKEN": (Text(secret=True), ""),
    # A MaxMind City or Country database (.mmdb): the phone shows where the browser is.
    "IDP_GEOIP_DATABASE": (str, ""),
    # Days `idp purge` keeps the audit log (0: for ever).
    "IDP_AUDIT_RETENTION_DAYS": (int, 365),
    # Number matching for every client (else only for clients registered with it): after
    # the scan the page shows two digits, and the phone must pick them to approve.
    "IDP_NUMBER_MATCHING": (bool, False),
    # How near the phone must be to the browser (idp.qrlogin.proximity): "warn", the phone
    # says where the sign-in was started; "require_same_network", only a phone on the
    # browser's network may approve (the relay's defence); "off", nothing is measured.
    # A client may ask for more (``idp clients create --proximity``), never for less.
    "IDP_PROXIMITY": (Choice("warn", "require_same_network", "off"), "warn"),
    # Abuse limits (see idp/limits.py), in Flask-Limiter's notation ("10/minute;50/hour").
    "IDP_RATELIMIT_ENABLED": (bool, True),
    # Where the counters live: "memory://" or a Redis URL (default: the broker's Redis,
    # if the broker is Redis, so that all workers share them; else memory).
    "IDP_RATELIMIT_STORAGE_URL": (StoreURL(), None),
    # Prefix of the counters' keys (several IdPs can share one Redis).
    "IDP_RATELIMIT_PREFIX": (str, "qridp-limits"),
    # Per browser IP: /authorize and the page's renewals and short codes, together.
    "IDP_LIMIT_BROWSER": (Limit(), "60/minute;600/hour"),
    # Per IP: enrollments (each checks a password).
    "IDP_LIMIT_ENROLL": (Limit(), "10/minute;30/hour"),
    # Per IP: the phone API's other calls, counted before the proof is checked.
    "IDP_LIMIT_PHONE_IP": (Limit(), "300/minute"),
    # Per device: scans, approvals and denials, together.
    "IDP_LIMIT_DEVICE": (Limit(), "30/minute;300/hour"),
    # Per username: wrong passwords at enrollment, then a lockout until the window passes.
    "IDP_LIMIT_PASSWORD": (Limit(), "5 per 15 minutes"),
    # Per IP: device authorization requests (RFC 8628: each starts a sign-in, with a code).
    "IDP_LIMIT_DEVICE_AUTHORIZATION": (Limit(), "20/minute;200/hour"),
    # Per IP: backchannel authentication requests (CIBA: each is a row waiting for a phone;
    # a hint that names nobody too, which the per-subject budget alone does not bound).
    "IDP_LIMIT_BACKCHANNEL": (Limit(), "60/minute;600/hour"),
    # Log lines: "json" (one object per line, with the request id) or "text".
    "IDP_LOG_FORMAT": (Choice("json", "text"), "json"),
    "IDP_LOG_LEVEL": (Choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),
    # Secrets at rest: while IDP_SECRET_KEY is changed, the one before. Signing keys sealed
    # with it are sealed again with IDP_SECRET_KEY at start.
    "IDP_PREVIOUS_SECRET_KEY": (Text(secret=True), ""),
    # Database waits (PostgreSQL), in seconds (0: none): a lock waited for longer, or a
    # statement running longer, fails its request with a 503 instead of holding it.
    "IDP_DATABASE_LOCK_TIMEOUT": (Seconds(), 5),
    "IDP_DATABASE_STATEMENT_TIMEOUT": (Seconds(), 15),
    # Realtime and Redis faults (see idp/realtime/ and docs/deploying.md).
    # Seconds one Redis call (connect, command, a ping of the pub/sub link) may take.
    "IDP_REDIS_TIMEOUT": (Seconds(minimum=1), 2),
    # Seconds of silence on the broker's pub/sub link before it pings Redis.
    "IDP_REDIS_PING_INTERVAL": (Seconds(minimum=1), 5),
    # Open page sockets allowed per login request, and per browser IP, in each process.
    "IDP_WS_MAX_PER_REQUEST": (WholeNumber(minimum=1), 4),
    "IDP_WS_MAX_PER_IP": (WholeNumber(minimum=1), 100),
    # OpenID CIBA (idp.oauth.ciba): seconds a backchannel request waits for the phone at
    # most (a client's requested_expiry may only shorten it), and seconds between polls.
    "IDP_CIBA_TTL": (Seconds(minimum=10), 300),
    "IDP_CIBA_POLL_INTERVAL": (Seconds(minimum=1), 5),
    # Against push bombing: backchannel requests per subject (a user, or a hint naming
    # nobody), from every client together; and how long a user who denied three in a row
    # from one client hears no more from it.
    "IDP_LIMIT_CIBA_SUBJECT": (Limit(), "5/10 minutes;20/day"),
    "IDP_CIBA_MUTE": (Seconds(), 3600),
    # Ping mode: seconds one notification POST may take, and how many tries it gets.
    "IDP_CIBA_PING_TIMEOUT": (Seconds(minimum=1), 3),
    "IDP_CIBA_PING_ATTEMPTS": (WholeNumber(minimum=1), 4),
}


def _field_name(name: str) -> str:
    return name.removeprefix("IDP_").lower()


def _settings_class() -> type:
    fields = []
    for name, (kind, _default) in SETTINGS.items():
        parser = _kind(kind)
        fields.append((_field_name(name), parser.type, dataclasses.field(repr=not parser.secret)))
    namespace = {
        "__doc__": "Every ``IDP_*`` setting, parsed once (``settings.code_ttl`` is "
        "``IDP_CODE_TTL``); frozen.",
        "__getitem__": lambda self, name: getattr(self, _field_name(name)),
        "as_config": lambda self: {n: getattr(self, _field_name(n)) for n in SETTINGS},
    }
    return dataclasses.make_dataclass("Settings", fields, frozen=True, namespace=namespace)


#: The settings as one frozen object: ``settings.code_ttl``, ``settings["IDP_CODE_TTL"]``,
#: ``settings.as_config()`` (the ``IDP_*`` dict for ``app.config``).
Settings = _settings_class()


def instance_path() -> str | None:
    """``IDP_INSTANCE_PATH``: where the SQLite file and the secret key live (default:
    Flask's instance folder, ``instance/`` beside the ``idp`` package)."""
    return os.environ.get("IDP_INSTANCE_PATH") or None


def load(instance_path: Path, overrides: Mapping[str, Any] | None = None) -> Any:
    """The :class:`Settings`: defaults, then ``IDP_*`` variables, then ``overrides``.

    Every environment variable is parsed (a bad one fails even under an override); an
    ``IDP_*`` key of ``overrides`` that is not a setting is refused, others are ignored.
    """
    values: dict[str, Any] = {}
    for name, (kind, default) in SETTINGS.items():
        raw = os.environ.get(name)
        values[name] = default if raw in (None, "") else _kind(kind).parse(name, raw)
    for name, value in (overrides or {}).items():
        if not name.startswith("IDP_"):
            continue  # Flask's own (TESTING...): create_app passes them on as they are
        if name not in SETTINGS:
            raise ConfigError(f"{name} is not a setting of the IdP")
        default = SETTINGS[name][1]
        values[name] = (
            default if value in (None, "") else _kind(SETTINGS[name][0]).coerce(name, value)
        )

    secret_given = bool(values["IDP_SECRET_KEY"])
    if not values["IDP_DATABASE_URL"]:
        values["IDP_DATABASE_URL"] = f"sqlite:///{instance_path / 'idp.sqlite3'}"
    if not values["IDP_RATELIMIT_STORAGE_URL"]:
        broker = values["IDP_BROKER_URL"]
        values["IDP_RATELIMIT_STORAGE_URL"] = broker if is_redis_url(broker) else "memory://"
    check_rules(values, secret_given=secret_given)
    from idp import instance  # imports ConfigError from here

    if not secret_given:
        values["IDP_SECRET_KEY"] = instance.instance_secret(instance_path)
    instance.check_sqlite_files(values["IDP_DATABASE_URL"])
    path = instance.sqlite_path(values["IDP_DATABASE_URL"])
    if path and path.parent == instance_path:
        instance.check_private(instance_path, folder=True)
    return Settings(**{_field_name(name): value for name, value in values.items()})


def database_url(instance_path: Path) -> str:
    """``IDP_DATABASE_URL`` alone (for ``alembic`` run by hand), with the same default."""
    raw = os.environ.get("IDP_DATABASE_URL")
    if not raw:
        return f"sqlite:///{instance_path / 'idp.sqlite3'}"
    return _kind(SETTINGS["IDP_DATABASE_URL"][0]).parse("IDP_DATABASE_URL", raw)


def runs_on_several_hosts(values: Mapping[str, Any]) -> bool:
    """Whether these settings let the IdP serve from several hosts: a PostgreSQL database
    or a Redis broker is shared by design (the embedded SQLite file and the in-process
    broker are not)."""
    return values["IDP_DATABASE_URL"].startswith("postgresql") or is_redis_url(
        values["IDP_BROKER_URL"]
    )


def check_rules(values: Mapping[str, Any], *, secret_given: bool) -> None:
    """The rules between settings, all here. ``secret_given``: ``IDP_SECRET_KEY`` was set
    (else each instance folder makes its own)."""
    if values["IDP_PREVIOUS_SECRET_KEY"] and not secret_given:
        raise ConfigError(
            "IDP_PREVIOUS_SECRET_KEY is set but IDP_SECRET_KEY is not: set IDP_SECRET_KEY to "
            "the new secret"
        )
    # PostgreSQL with memory:// stays allowed: one process (or an admin's `idp` command)
    # needs no broker; `idp serve --workers N` refuses it (idp.cli).
    if runs_on_several_hosts(values) and not secret_given:
        raise ConfigError(
            "IDP_SECRET_KEY must be set when IDP_DATABASE_URL is PostgreSQL or "
            "IDP_BROKER_URL is Redis: the IdP may then run on several hosts, and each "
            "would make a secret of its own (number matching and logout forms would not "
            "work across hosts, and none could open the signing keys another sealed). "
            "Set the same long random value on every host, e.g. the output of "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )


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

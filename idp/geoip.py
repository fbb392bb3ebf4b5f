"""The browser's approximate location, for the phone's approval view (optional).

Set ``IDP_GEOIP_DATABASE`` to a MaxMind City or Country database (``.mmdb``, e.g.
GeoLite2-City, downloaded from MaxMind with a free account) and install the ``geoip``
extra (MaxMind's ``maxminddb`` reader). The phone then shows "London, United Kingdom"
beside the browser's IP address, in the phone's language where the database has it,
so that a person who is asked to approve a sign-in from another country notices.
Without a database, or for an address it does not know (private, loopback), there is
no location: nothing is guessed.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app

from idp.config import ConfigError
from idp.i18n import html_lang


def init_app(app: Flask) -> None:
    """Open the configured database once, or refuse to start if it cannot be read."""
    path = app.config["IDP_GEOIP_DATABASE"]
    if not path:
        return
    try:
        import maxminddb
    except ImportError:
        raise ConfigError(
            "IDP_GEOIP_DATABASE needs the maxminddb package: pip install 'qr-idp[geoip]'"
        ) from None
    try:
        reader = maxminddb.open_database(path)
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as error:
        raise ConfigError(f"IDP_GEOIP_DATABASE {path!r} is not a readable .mmdb: {error}") from None
    kind = reader.metadata().database_type
    if "City" not in kind and "Country" not in kind:
        raise ConfigError(f"IDP_GEOIP_DATABASE must be a City or Country database, not {kind}")
    app.extensions["idp.geoip"] = reader


def locate(ip: str | None) -> str | None:
    """``"City, Country"`` (or just the country) for an address, in the request's
    language where the database has it, else English; ``None`` if unknown."""
    record = _record(ip)
    if record is None:
        return None
    language = html_lang()
    parts = [_name(record.get("city"), language), _name(record.get("country"), language)]
    found = [p for p in parts if p]
    return ", ".join(found) or None


def country_code(ip: str | None) -> str | None:
    """The ISO 3166 country code of an address (``"GB"``), or ``None``: no database, an
    address it does not know, or a record without a country."""
    record = _record(ip)
    country = record.get("country") if record else None
    code = country.get("iso_code") if isinstance(country, dict) else None
    return code if isinstance(code, str) else None


def _record(ip: str | None) -> dict[str, Any] | None:
    """The database's record of an address, or ``None`` (no database, not an address,
    an address it does not know)."""
    reader = current_app.extensions.get("idp.geoip")
    if reader is None or not ip:
        return None
    try:
        record = reader.get(ip)
    except ValueError:  # not an IP address
        return None
    return record if isinstance(record, dict) else None


def _name(entry: Any, language: str) -> str | None:
    names = entry.get("names") if isinstance(entry, dict) else None
    if not isinstance(names, dict):
        return None
    name = names.get(language) or names.get("en")
    return name if isinstance(name, str) else None

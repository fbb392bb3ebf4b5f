"""Client registration: what admins do with the ``idp clients`` commands."""

from __future__ import annotations

import ipaddress
import re
import secrets
from urllib.parse import urlsplit

from sqlalchemy import delete, select

from idp import audit, db
from idp.config import is_loopback
from idp.errors import InvalidRequest
from idp.oauth.keys import ALGORITHMS
from idp.oauth.models import Client, ClientOrigin, digest
from idp.oauth.polling import CIBA_GRANT_TYPE
from idp.qrlogin.proximity import POLICIES
from idp.terminal import has_control_characters

_DEFAULT_PORTS = {"http": 80, "https": 443}
#: RFC 8628's grant type (``idp.oauth.device.GRANT_TYPE``).
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def check_redirect_uri(uri: str) -> str:
    """Accept https URIs, http on loopback, and private-use schemes of native apps (RFC 8252)."""
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        raise InvalidRequest(f"redirect URI {uri!r} must not have a fragment (RFC 6749 §3.1.2)")
    if parts.scheme == "https" and parts.hostname:
        return uri
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return uri
    if parts.scheme and "." in parts.scheme and parts.scheme not in {"http", "https"}:
        return uri  # e.g. com.example.app:/callback
    raise InvalidRequest(
        f"redirect URI {uri!r} must be https, http on a loopback host, "
        "or a reverse-domain scheme of a native app"
    )


#: A DNS name as a URL carries it: letters, digits and hyphens in dot-separated labels
#: (internationalized names in their ``xn--`` form).
_HOSTNAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?")


def logo_origin(uri: str) -> str | None:
    """The origin (``scheme://host[:port]``) of a logo URI, parsed and written anew, or
    ``None`` if it has none we accept. The authorize page adds exactly this to its
    Content-Security-Policy's ``img-src``: nothing of the URI is copied into the header
    as it was written, so no ``;`` or space can add a directive or a source."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    secure = parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host))
    if not secure or parts.username is not None or parts.password is not None:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.fullmatch(host) or len(host) > 253:
            return None
        netloc = host
    else:
        netloc = f"[{address.compressed}]" if address.version == 6 else address.compressed
    return f"{parts.scheme}://{netloc}" + (f":{port}" if port is not None else "")


def check_logo_uri(uri: str) -> str:
    """A logo is fetched by every browser that shows the page: an https URL (or http on
    loopback) with a plain host and no credentials, spaces, quotes, backslashes or controls."""
    if (
        len(uri) > 500
        or any(c in uri for c in "\"' <>\\")
        or has_control_characters(uri)
        or logo_origin(uri) is None
    ):
        raise InvalidRequest(f"logo URI {uri!r} must be an https URL of at most 500 characters")
    return uri


def origin_of(uri: str) -> str | None:
    """The origin a browser sends (``Origin``, RFC 6454 §6.2) for a page at an http(s)
    ``uri``: lower-case scheme and host, an IDN host in punycode, no default port; None
    for other schemes (a native app's redirect URI has no web origin)."""
    try:
        parts = urlsplit(uri)
        port = parts.port
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not host:
        return None
    scheme = parts.scheme.lower()
    if ":" in host:
        host = f"[{host}]"
    suffix = f":{port}" if port is not None and port != _DEFAULT_PORTS[scheme] else ""
    return f"{scheme}://{host}{suffix}"


def check_web_origin(value: str) -> str:
    """An origin a browser app is served from: ``https://host[:port]``, or http on a
    loopback host; nothing after the port. Returned as browsers send it."""
    parts = urlsplit(value)
    origin = origin_of(value)
    secure = parts.scheme == "https" or (
        parts.scheme == "http" and parts.hostname is not None and is_loopback(parts.hostname)
    )
    bare = not (parts.path or parts.query or parts.fragment or "#" in value or "?" in value)
    if origin is None or not secure or not bare or parts.username or parts.password:
        raise InvalidRequest(
            f"web origin {value!r} must be an origin: https://host[:port] "
            "(http only on a loopback host), with no path"
        )
    if len(origin) > 300:
        raise InvalidRequest(f"web origin {value!r} is longer than 300 characters")
    return origin


def create_client(
    name: str,
    redirect_uris: list[str],
    *,
    public: bool = False,
    logo_uri: str | None = None,
    service_account: bool = False,
    post_logout_redirect_uris: list[str] | None = None,
    number_matching: bool = False,
    web_origins: list[str] | None = None,
    id_token_alg: str = "RS256",  # noqa: S107 (an algorithm name)
    proximity: str | None = None,
    device_grant: bool = False,
    ciba_mode: str | None = None,
    ciba_notification_endpoint: str | None = None,
) -> tuple[Client, str | None]:
    """Register a client in the caller's transaction; returns it and, for a confidential
    one, its secret (shown once).

    ``proximity``: its own proximity policy (``warn``, ``require_same_network``, ``off``),
    or ``None`` to follow ``IDP_PROXIMITY``; the stricter of the two applies.

    ``device_grant``: it may also use the device authorization grant (RFC 8628: a TV or
    a command line shows a code the person approves on the phone); such a client needs
    no redirect URI (a command line has none), public or confidential.
    ``ciba_mode``: ``poll`` or ``ping`` for a client of OpenID CIBA (``POST /bc-authorize``,
    confidential only); ping needs ``ciba_notification_endpoint`` (see
    :func:`check_notification_endpoint`).

    Its web origins (CORS) are ``web_origins`` and the origins of its http(s) redirect URIs.
    """
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("a client needs a name of 1-200 characters")
    if has_control_characters(name):
        raise InvalidRequest("a client name must not contain control characters")
    logo = check_logo_uri(logo_uri) if logo_uri else None
    if service_account and public:
        raise InvalidRequest("a service account needs a secret: it cannot be a public client")
    # Without a redirect URI there is nowhere to send a code: such a client (a device's, a
    # CIBA site's) is not registered for the authorization code grant at all.
    grant_types = ["authorization_code", "refresh_token"] if redirect_uris else ["refresh_token"]
    if service_account:
        grant_types.append("client_credentials")
    if device_grant:
        grant_types.append(DEVICE_CODE_GRANT)
    endpoint = _check_ciba(ciba_mode, ciba_notification_endpoint, public=public)
    if ciba_mode is not None:
        grant_types.append(CIBA_GRANT_TYPE)
    if not redirect_uris and not device_grant and ciba_mode is None:
        raise InvalidRequest(
            "a client needs at least one redirect URI, unless it is only for devices"
            " (the device grant) or for CIBA"
        )
    uris = list(dict.fromkeys(check_redirect_uri(u) for u in redirect_uris))
    logout_uris = list(
        dict.fromkeys(check_redirect_uri(u) for u in post_logout_redirect_uris or [])
    )
    if id_token_alg not in ALGORITHMS:
        raise InvalidRequest(f"the ID-token algorithm must be one of {', '.join(ALGORITHMS)}")
    if proximity is not None and proximity not in POLICIES:
        raise InvalidRequest(f"the proximity policy must be one of {', '.join(POLICIES)}")
    origins = {check_web_origin(o) for o in web_origins or []}
    origins |= {o for o in map(origin_of, uris) if o is not None and len(o) <= 300}
    secret = None if public else secrets.token_urlsafe(32)
    client = Client(
        client_id=secrets.token_urlsafe(18),
        client_secret_hash=digest(secret) if secret else None,
        name=name,
        logo_uri=logo,
        redirect_uris=uris,
        post_logout_redirect_uris=logout_uris,
        grant_types=grant_types,
        token_endpoint_auth_method="none" if public else "client_secret_basic",
        number_matching=number_matching,
        proximity=proximity,
        id_token_signed_response_alg=id_token_alg,
        backchannel_token_delivery_mode=ciba_mode,
        backchannel_client_notification_endpoint=endpoint,
        web_origins=[ClientOrigin(origin=o) for o in sorted(origins)],
    )
    db.session.add(client)
    audit.record(
        "client.created",
        client_id=client.client_id,
        name=name,
        public=public,
        device_grant=device_grant or None,
    )
    return client, secret


CIBA_MODES = ("poll", "ping")


def check_notification_endpoint(uri: str) -> str:
    """Where a ping-mode client hears that a request was decided: an https URL (http only
    on a loopback host), without credentials or fragment (CIBA Core §4), of at most 500
    characters."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        parts = None
    host = parts.hostname if parts else None
    secure = parts is not None and (
        (parts.scheme == "https" and bool(host))
        or (parts.scheme == "http" and bool(host) and is_loopback(host or ""))
    )
    if (
        not secure
        or parts is None
        or parts.username is not None
        or parts.password is not None
        or parts.fragment
        or "#" in uri
        or len(uri) > 500
        or has_control_characters(uri)
        or any(c.isspace() for c in uri)
    ):
        raise InvalidRequest(
            f"CIBA notification endpoint {uri!r} must be an https URL (http only on a loopback"
            " host) without credentials or fragment, of at most 500 characters"
        )
    return uri


def _check_ciba(mode: str | None, endpoint: str | None, *, public: bool) -> str | None:
    """The client's CIBA settings, checked; returns its notification endpoint."""
    if mode is None:
        if endpoint:
            raise InvalidRequest("a CIBA notification endpoint needs --ciba (ping mode)")
        return None
    if mode not in CIBA_MODES:
        raise InvalidRequest(f"the CIBA mode must be one of {', '.join(CIBA_MODES)}")
    if public:
        raise InvalidRequest("a CIBA client needs a secret: it cannot be a public client")
    if mode == "ping" and not endpoint:
        raise InvalidRequest("CIBA ping mode needs a notification endpoint")
    if mode == "poll" and endpoint:
        raise InvalidRequest("a CIBA notification endpoint is for ping mode only")
    return check_notification_endpoint(endpoint) if endpoint else None


def list_clients() -> list[Client]:
    """Every client, oldest first."""
    return list(db.session.scalars(select(Client).order_by(Client.created_at, Client.id)))


def delete_client(client_id: str) -> bool:
    """Delete a client and (by cascade) its codes, tokens and login requests, in the
    caller's transaction; False if there was none."""
    result = db.session.execute(delete(Client).where(Client.client_id == client_id))
    if result.rowcount == 1:  # type: ignore[attr-defined]
        audit.record("client.deleted", client_id=client_id)
    return result.rowcount == 1  # type: ignore[attr-defined]

"""CORS for browser apps on other origins (single-page apps using oidc-client-ts and the like).

Only these endpoints answer CORS; every other one (the authorize page and its own
calls, ``/ws/login``, the phone API, ``/logout``, introspection) never does, so a
browser refuses a cross-origin page any read of them.

- Discovery and JWKS are public documents, the same for everyone and free of any
  secret: they answer ``Access-Control-Allow-Origin: *`` (as node oidc-provider does),
  which shared caches can keep, and no origin needs registering to find the keys.
- Token, device authorization, UserInfo and revocation answer only an ``Origin``
  registered for a client (``idp clients create --web-origin``, or the origin of one of
  its redirect URIs),
  reflected with ``Vary: Origin``. A preflight cannot know the client (it has no body),
  so it answers any origin registered for *some* client; the actual response names
  the origin only when it is registered for the client the request turned out to be
  about: the client that authenticated at the token, device authorization and
  revocation endpoints, the
  access token's client at UserInfo. A request that fails before any client is known
  (an unknown client, an unknown token) is readable by any registered origin, so the
  app can see its error.

No response ever says ``Access-Control-Allow-Credentials``: none of these endpoints
reads a cookie, so a page never needs to send one. A page on an origin that is not
allowed may still send a form POST (no preflight is needed for one), as any server
can; it just cannot read the answer.
"""

from __future__ import annotations

from flask import Flask, Response, g, request
from sqlalchemy import bindparam, select

from idp import db
from idp.oauth.models import ClientOrigin

#: endpoint -> the methods a page may use; "public" endpoints answer any origin.
PUBLIC = {"oauth.discovery": "GET", "oauth.jwks": "GET"}
FOR_CLIENTS = {
    "oauth.token": "POST",
    "oauth.device_authorization": "POST",
    "oauth.revoke": "POST",
    "oauth.userinfo": "GET, POST",
}
#: What a page may send besides the CORS-safelisted headers (no DPoP: not supported).
ALLOW_HEADERS = "Authorization, Content-Type"
#: Seconds a browser may keep a preflight's answer: an origin removed from a client
#: stops being let through within this time.
MAX_AGE = "600"

_ANY_CLIENT = select(ClientOrigin.origin).where(ClientOrigin.origin == bindparam("origin"))
_THIS_CLIENT = _ANY_CLIENT.where(ClientOrigin.client_id == bindparam("client_id"))


def note_client(client_id: str) -> None:
    """Say which client this request is about: only its origins may read the answer."""
    g.idp_cors_client = client_id


def origin_allowed(origin: str, client_id: str | None) -> bool:
    """Whether pages of ``origin`` may read an answer about ``client_id`` (None: about no
    known client, so any client's registered origin)."""
    if not origin or len(origin) > 300:
        return False
    db.reads_only()
    if client_id is None:
        return db.session.scalar(_ANY_CLIENT.limit(1), {"origin": origin}) is not None
    found = db.session.scalar(_THIS_CLIENT, {"origin": origin, "client_id": client_id})
    return found is not None


def _is_preflight() -> bool:
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers


def _preflight(methods: str, allow_origin: str) -> Response:
    response = Response(status=204)
    del response.headers["Content-Type"]  # no body
    response.headers["Access-Control-Allow-Origin"] = allow_origin
    response.headers["Access-Control-Allow-Methods"] = methods
    response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
    response.headers["Access-Control-Max-Age"] = MAX_AGE
    return response


def add_headers(response: Response) -> Response:
    """The CORS answer of one of the endpoints above (an ``after_request`` hook)."""
    endpoint = request.endpoint or ""
    origin = request.headers.get("Origin", "")
    if endpoint in PUBLIC:
        if _is_preflight():
            response = _preflight(PUBLIC[endpoint], "*")
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response
    if endpoint not in FOR_CLIENTS:
        return response
    response.vary.add("Origin")
    if _is_preflight():
        if origin_allowed(origin, None):
            response = _preflight(FOR_CLIENTS[endpoint], origin)
            response.vary.add("Origin")
        return response
    if origin and origin_allowed(origin, g.get("idp_cors_client")):
        response.headers["Access-Control-Allow-Origin"] = origin
        # A page reads the challenge of a refused token (RFC 6750 §3).
        response.headers["Access-Control-Expose-Headers"] = "WWW-Authenticate"
    return response


def init_app(app: Flask) -> None:
    """Answer CORS on the endpoints above, and only there (register it after the other
    ``after_request`` hooks: Flask runs it first, so they see a preflight's answer)."""
    app.after_request(add_headers)

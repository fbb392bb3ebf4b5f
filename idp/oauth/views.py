"""OAuth 2.0 / OpenID Connect endpoints other than authorize: token, UserInfo,
discovery and JWKS. (Authorize is the QR page, in ``idp.qrlogin.views``.)"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from idp import db, limits, web
from idp.errors import json_errors
from idp.oauth import ciba, device
from idp.oauth.claims import ACR
from idp.oauth.endpoints import CONFIDENTIAL_AUTH_METHODS, REVOCATION_AUTH_METHODS
from idp.oauth.grants import TOKEN_AUTH_METHODS
from idp.oauth.keys import ALGORITHMS, key_store
from idp.oauth.models import SUPPORTED_SCOPES
from idp.oauth.server import authorization_server
from idp.ops import metrics

bp = json_errors(Blueprint("oauth", __name__))


@bp.post("/token")
def token() -> Response:
    """Token endpoint (RFC 6749 §3.2): the new rows commit only with a 200."""
    response = authorization_server().create_token_response()
    if response.status_code == 200:
        db.session.commit()
        result = "success"
    else:
        db.session.rollback()
        result = (response.get_json(silent=True) or {}).get("error", "error")
    grant_type = request.form.get("grant_type", "")
    grant_type = grant_type if grant_type in metrics.GRANT_TYPES else "other"
    metrics.TOKEN_REQUESTS.labels(grant_type, str(result)[:40]).inc()
    return response


@bp.post("/device_authorization")
@limits.per_ip("IDP_LIMIT_DEVICE_AUTHORIZATION", scope="device_authorization")
def device_authorization() -> Response:
    """Device authorization (RFC 8628 §3.1): a device's codes, committed only with a 200."""
    response = authorization_server().create_endpoint_response("device_authorization")
    if response.status_code == 200:
        db.session.commit()
    else:
        db.session.rollback()
    return web.no_store(response)


@bp.post("/revoke")
def revoke() -> Response:
    """Token revocation (RFC 7009), for the client the token was issued to (a public
    client by its ``client_id`` alone)."""
    response = authorization_server().create_endpoint_response("revocation")
    if response.status_code == 200:
        db.session.commit()
    else:
        db.session.rollback()
    return web.no_store(response)


@bp.post("/introspect")
def introspect() -> Response:
    """Token introspection (RFC 7662), for the client the token was issued to."""
    db.reads_only()
    response = authorization_server().create_endpoint_response("introspection")
    return web.no_store(response)


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    """UserInfo endpoint (OIDC Core §5.3), GET and POST."""
    db.reads_only()
    response = authorization_server().create_endpoint_response("userinfo")
    return web.no_store(response)


@bp.get("/.well-known/openid-configuration")
def discovery() -> Response:
    """OpenID Provider metadata (OIDC Discovery §3, RFC 8414)."""
    issuer = current_app.config["IDP_ISSUER"]
    metadata = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "device_authorization_endpoint": f"{issuer}/device_authorization",
        "end_session_endpoint": f"{issuer}/logout",
        "jwks_uri": f"{issuer}/jwks",
        "scopes_supported": list(SUPPORTED_SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            device.GRANT_TYPE,
        ],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(ALGORITHMS),
        "token_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": REVOCATION_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": CONFIDENTIAL_AUTH_METHODS,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "at_hash",
            "acr",
            "amr",
            "name",
            "preferred_username",
            "email",
            "email_verified",
        ],
        "acr_values_supported": [ACR],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "authorization_response_iss_parameter_supported": True,
        "prompt_values_supported": ["none", "login"],
    }
    ciba.add_discovery(metadata, issuer)
    response = jsonify(metadata)
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/jwks")
def jwks() -> Response:
    """The public signing keys (RFC 7517); each has a ``kid``."""
    response = jsonify(key_store().jwks())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response

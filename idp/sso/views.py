"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): ``/logout``.

With a valid ``id_token_hint`` for the signed-in user, the session ends at once and
the browser goes back to the client's registered ``post_logout_redirect_uri`` (with
``state``). Without one, the IdP asks first: a sign-out form, protected against
cross-site posts by a token bound to the session cookie.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, make_response, redirect, render_template, request
from sqlalchemy import select
from werkzeug.wrappers import Response

from idp import db
from idp.errors import InvalidRequest
from idp.oauth.models import Client
from idp.sso import services as sso

bp = Blueprint("sso", __name__)


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Response:
    """End this browser's session at the IdP."""
    params = request.values
    claims = _hint_claims(params.get("id_token_hint", ""))
    client = _client(claims, params.get("client_id"))
    back = params.get("post_logout_redirect_uri")
    if back is not None and (client is None or back not in client.post_logout_redirect_uris):
        raise InvalidRequest("post_logout_redirect_uri is not registered for this client")
    current = sso.current_session()
    confirmed = request.method == "POST" and hmac.compare_digest(
        params.get("logout_token", "").encode(), sso.logout_token().encode()
    )
    if request.method == "POST" and not confirmed:
        raise InvalidRequest("the sign-out form expired: open the sign-out page again")
    hinted_user = current is not None and claims.get("sub") == current.user.subject
    if current is not None and not (confirmed or hinted_user):
        return _no_store(make_response(render_template(
            "sso/logout_confirm.html",
            token=sso.logout_token(),
            back=back,
            client=client,
            state=params.get("state"),
        )))  # fmt: skip
    if back is not None:
        target = back
        if state := params.get("state"):
            target += ("&" if "?" in back else "?") + urlencode({"state": state})
        response = redirect(target)
    else:
        response = make_response(render_template("sso/logged_out.html"))
    sso.end_current(response)
    db.session.commit()
    return _no_store(response)


def _hint_claims(id_token: str) -> dict[str, Any]:
    """The claims of an ID token we issued (expired ones too), or ``{}``."""
    from idp.qrlogin.views import hinted_claims

    return hinted_claims(id_token) if id_token else {}


def _client(claims: dict[str, Any], client_id: str | None) -> Client | None:
    audience = claims.get("aud")
    wanted = audience if isinstance(audience, str) else client_id
    if not wanted or len(wanted) > 64:
        return None
    return db.session.scalar(select(Client).where(Client.client_id == wanted))


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response

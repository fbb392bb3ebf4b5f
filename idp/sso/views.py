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

from idp import db, web
from idp.errors import InvalidRequest
from idp.oauth.keys import hinted_claims
from idp.oauth.models import Client
from idp.sso import services as sso

bp = Blueprint("sso", __name__)


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Response:
    """End this browser's session at the IdP."""
    params = request.values
    hint = params.get("id_token_hint", "")
    claims = hinted_claims(hint) if hint else {}
    client = _client(claims, params.get("client_id"))
    back = params.get("post_logout_redirect_uri")
    if back is not None and (client is None or back not in client.post_logout_redirect_uris):
        raise InvalidRequest("post_logout_redirect_uri is not registered for this client")
    secret = web.read_cookie(web.SESSION_COOKIE)
    current = sso.current_session(secret)
    confirmed = request.method == "POST" and hmac.compare_digest(
        params.get("logout_token", "").encode(), sso.logout_token(secret).encode()
    )
    if request.method == "POST" and not confirmed:
        raise InvalidRequest("the sign-out form expired: open the sign-out page again")
    hinted_user = current is not None and claims.get("sub") == current.user.subject
    if current is not None and not (confirmed or hinted_user):
        return web.no_store(make_response(render_template(
            "sso/logout_confirm.html",
            token=sso.logout_token(secret),
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
    sso.end_session(secret)
    web.delete_cookie(response, web.SESSION_COOKIE)
    db.session.commit()
    return web.no_store(response)


def _client(claims: dict[str, Any], client_id: str | None) -> Client | None:
    audience = claims.get("aud")
    wanted = audience if isinstance(audience, str) else client_id
    if not wanted or len(wanted) > 64:
        return None
    return db.session.scalar(select(Client).where(Client.client_id == wanted))

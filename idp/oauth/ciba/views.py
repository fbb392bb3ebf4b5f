"""``POST /bc-authorize``, the backchannel authentication endpoint (CIBA Core §7): the
client authenticates, ``idp.oauth.ciba`` checks and adds the request, this view commits
it and tells the user's inbox."""

from __future__ import annotations

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, Response, jsonify, request

from idp import db, limits, web
from idp.errors import json_errors
from idp.mobile import inbox
from idp.oauth import ciba
from idp.oauth.endpoints import CONFIDENTIAL_AUTH_METHODS
from idp.oauth.models import Client
from idp.oauth.server import authorization_server
from idp.web import Caller

bp = json_errors(Blueprint("ciba", __name__))


@bp.post("/bc-authorize")
@limits.per_ip("IDP_LIMIT_BACKCHANNEL", scope="backchannel")
def bc_authorize() -> Response:
    """200 with the ``auth_req_id``, or an error (CIBA Core §13)."""
    server = authorization_server()
    oauth_request = server.create_oauth2_request(request)
    try:
        client: Client = server.authenticate_client(
            oauth_request, CONFIDENTIAL_AUTH_METHODS, "backchannel"
        )
    except OAuth2Error as error:
        db.session.rollback()
        return web.no_store(server.handle_error_response(oauth_request, error))
    started = ciba.start(client, request.form, caller=Caller.from_request())
    response = web.no_store(jsonify(started.answer))
    db.session.commit()
    inbox.announce(started.user_id)  # an unknown hint's announcement reaches nobody
    return response

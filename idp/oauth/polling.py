"""Clients that poll the token endpoint while a phone decides: a device with its
``device_code`` (RFC 8628 §3.4) and a site with its ``auth_req_id`` (OpenID CIBA §10.1).

Both are login requests (``idp.qrlogin.lifecycle``: kind ``device`` or ``backchannel``)
whose secret's digest is ``secret_hash``. A poll is answered, in this order:

- ``invalid_grant``: no such secret for this client; or one already redeemed, and then
  what it gave is revoked (a replay means someone else may hold it, as for codes);
- ``expired_token``: the request's lifetime has passed (or its approval's grace);
- ``slow_down``: the client came back sooner than its interval; the interval grows by
  5 s, for this and every later poll (RFC 8628 §3.5), every time it happens;
- ``access_denied``: the phone denied it (or the phone was revoked);
- ``authorization_pending``: the phone has not decided yet;
- tokens: the approval is redeemed (``approved -> completed``) and the access token, a
  refresh token (if the client has that grant) and an ID token (``openid`` in the scope,
  with ``auth_time``, ``amr`` and ``acr`` as for QR sign-ins) are issued, bound to the
  approving phone (revoking it revokes them) and to one family (the secret's digest).

The interval and the next allowed poll are written even though the poll fails
(``db.stand_alone``): the token view rolls back every failed request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from authlib.oauth2.rfc6749 import (
    AccessDeniedError,
    BaseGrant,
    InvalidGrantError,
    InvalidRequestError,
    TokenEndpointMixin,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.hooks import hooked
from authlib.oauth2.rfc8628 import (
    DEVICE_CODE_GRANT_TYPE,
    AuthorizationPendingError,
    ExpiredTokenError,
    SlowDownError,
)
from flask import current_app
from sqlalchemy import bindparam, or_, select, update

from idp import audit, db
from idp.db import utcnow
from idp.oauth.claims import ACR, AMR
from idp.oauth.family import revoke_family
from idp.oauth.grants import TOKEN_AUTH_METHODS
from idp.oauth.models import Client, digest
from idp.qrlogin import lifecycle
from idp.qrlogin.lifecycle import OPEN, Kind, Status
from idp.qrlogin.models import LoginRequest
from idp.web import Caller

CIBA_GRANT_TYPE = "urn:openid:params:grant-type:ciba"
#: What slow_down adds to the interval, each time (RFC 8628 §3.5).
SLOW_DOWN_STEP = 5

BY_SECRET = select(LoginRequest).where(LoginRequest.secret_hash == bindparam("digest"))


def secret_for(login: LoginRequest) -> str:
    """The request's secret (its ``device_code`` or ``auth_req_id``): 256 bits derived by
    HMAC from ``IDP_SECRET_KEY`` and the request's id and kind, so that it need not be
    stored (only its digest is) and a ping can name it again."""
    key = current_app.config["IDP_SECRET_KEY"].encode()
    mac = hmac.new(key, f"qr-idp poll secret v1:{login.kind}:{login.id}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def new_request(
    *,
    kind: Kind,
    client: Client,
    scope: str,
    caller: Caller,
    ttl: int,
    interval: int,
    **columns: Any,
) -> tuple[LoginRequest, str]:
    """A device or backchannel request for ``client``, in the caller's transaction, and
    its secret. ``caller``: who asked (the device itself, or the site's server);
    ``columns``: the kind's own (``short_code_hash``, ``user_id``, ``binding_message``...)."""
    now = utcnow()
    login = LoginRequest(
        id=lifecycle.new_request_id(),
        kind=kind,
        binding_hash=digest(secrets.token_urlsafe(32)),  # no page: no browser holds it
        client_id=client.client_id,
        params={"client_id": client.client_id, "scope": scope},
        status=Status.PENDING,
        renewals=0,
        browser_ip=caller.ip,
        browser_user_agent=(caller.user_agent or "").replace("\x00", "")[:1000] or None,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl),
        poll_interval=interval,
        **columns,
    )
    login.client = client
    secret = secret_for(login)
    login.secret_hash = digest(secret)
    db.session.add(login)
    return login, secret


class _Approval:
    """What the ID token says of the approval (Authlib reads it as an authorization code)."""

    def __init__(self, login: LoginRequest) -> None:
        self.login = login

    def get_nonce(self) -> None:
        return None

    def get_auth_time(self) -> int | None:
        decided = self.login.decided_at
        return int(decided.replace(tzinfo=UTC).timestamp()) if decided else None

    def get_acr(self) -> str:
        return ACR

    def get_amr(self) -> list[str]:
        return list(AMR)


class PolledGrant(BaseGrant, TokenEndpointMixin):
    """The token endpoint's answer to a poll (see the module docstring)."""

    KIND: Kind
    PARAMETER: str
    #: What the secret is called in error descriptions.
    NAME: str

    def validate_token_request(self) -> None:
        secret = self.request.payload.data.get(self.PARAMETER)
        if not secret or not isinstance(secret, str):
            raise InvalidRequestError(f"send '{self.PARAMETER}'")
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(f"this client is not registered for {self.GRANT_TYPE}")
        login = (
            db.session.scalar(BY_SECRET, {"digest": digest(secret)}) if len(secret) < 200 else None
        )
        if login is None or login.kind != self.KIND or login.client_id != client.client_id:
            raise InvalidGrantError(f"unknown {self.NAME}")
        now = utcnow()
        if login.status == Status.COMPLETED:
            self._replayed(login)
        if not lifecycle.is_open(login, now) and login.status != Status.DENIED:
            self._expire(login)
            raise ExpiredTokenError(f"the {self.NAME} expired: start again")
        self._pace(login, now)
        if login.status == Status.DENIED:
            raise AccessDeniedError(login.denial_description or "the user denied the request")
        if login.status in OPEN:
            raise AuthorizationPendingError()
        if not lifecycle.transition(
            login, "complete", by=None, caller=self.request.caller, audited=False, completed_at=now
        ):
            raise InvalidGrantError(f"the {self.NAME} was already used")
        self.request.client = client
        self.request.user = login.user
        self.request.login_request = login
        self.request.authorization_code = _Approval(login)
        self.request.family = login.secret_hash
        self.request.device_pk = login.device_pk

    @hooked
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        login = self.request.login_request
        client = self.request.client
        token = self.generate_token(
            user=self.request.user,
            scope=login.params.get("scope", ""),
            include_refresh_token=client.check_grant_type("refresh_token"),
        )
        self.save_token(token)
        audit.record(
            "login.completed",
            caller=self.request.caller,
            username=login.user.username if login.user else None,
            device_id=login.device.device_id if login.device else None,
            client_id=login.client_id,
            request=login.id[:8],
            kind=login.kind,
        )
        return 200, token, self.TOKEN_RESPONSE_HEADER

    def _pace(self, login: LoginRequest, now: datetime) -> None:
        """``slow_down`` for a poll sooner than the interval, which then grows by
        :data:`SLOW_DOWN_STEP`; else the next poll is allowed one interval from now. Either
        way written at once: the next poll must see it whatever this one answers."""
        interval = login.poll_interval or SLOW_DOWN_STEP
        on_time = or_(LoginRequest.next_poll_at.is_(None), LoginRequest.next_poll_at <= now)
        with db.stand_alone() as session:
            paced = session.execute(
                update(LoginRequest)
                .where(LoginRequest.id == login.id, on_time)
                .values(next_poll_at=now + timedelta(seconds=interval))
                .execution_options(synchronize_session=False)
            )
            if paced.rowcount == 1:  # type: ignore[attr-defined]
                return
            slower = interval + SLOW_DOWN_STEP
            session.execute(
                update(LoginRequest)
                .where(LoginRequest.id == login.id, LoginRequest.poll_interval == interval)
                .values(poll_interval=slower, next_poll_at=now + timedelta(seconds=slower))
                .execution_options(synchronize_session=False)
            )
        raise SlowDownError(f"poll at most every {slower} seconds")

    def _expire(self, login: LoginRequest) -> None:
        if login.status in OPEN:
            with db.stand_alone():
                lifecycle.transition_where(
                    "expire", [LoginRequest.id == login.id], by=None, caller=None, audited=False
                )

    def _replayed(self, login: LoginRequest) -> None:
        """Redeemed already: whoever presents it again may be a thief. What it gave is
        revoked (committed alone), and the poll refused."""
        revoke_family(
            login.secret_hash or "",
            client_id=login.client_id,
            reason=f"{self.NAME} replayed",
            caller=self.request.caller,
        )
        raise InvalidGrantError(f"the {self.NAME} was already used")


class DeviceCodeGrant(PolledGrant):
    """RFC 8628 §3.4: a device (public or confidential) polls with its ``device_code``."""

    GRANT_TYPE = DEVICE_CODE_GRANT_TYPE
    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS
    KIND = Kind.DEVICE
    PARAMETER = "device_code"
    NAME = "device code"


class CibaGrant(PolledGrant):
    """CIBA §10.1: a confidential client polls (or, pinged, fetches) with its
    ``auth_req_id``."""

    GRANT_TYPE = CIBA_GRANT_TYPE
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    KIND = Kind.BACKCHANNEL
    PARAMETER = "auth_req_id"
    NAME = "auth_req_id"

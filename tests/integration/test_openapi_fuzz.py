"""Schemathesis against docs/openapi.yaml and a live IdP: no 5xx, and every answer is one
the document gives (status, content type, body schema, required headers).

The phone API is fuzzed past its 401: each generated request is signed with an enrolled
device's key by the reference phone client's own proof code (``idp_phone.proof``),
over the exact bytes sent. The OAuth endpoints get a real confidential client's
credentials and, at ``/userinfo``, a real access token of a QR sign-in.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from joserfc.jwk import ECKey
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from idp_phone.api import PhoneClient
from idp_phone.proof import make_proof, public_jwk
from support import (
    Browser,
    RelyingParty,
    add_client,
    add_user,
    approve_and_exchange,
    dispose_app,
    enroll_phone,
    listening_socket,
    make_app,
    postgres_database,
    redis_url,
    serve_in_thread,
)

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
PHONE_API = "/api/mobile/v1/"

schema = schemathesis.openapi.from_path(DOCUMENT)

#: The abuse limits stay on, high enough that fuzzing one device does not use them up.
GENEROUS_LIMITS = {
    "IDP_LIMIT_BROWSER": "100000/minute",
    "IDP_LIMIT_ENROLL": "100000/minute",
    "IDP_LIMIT_PHONE_IP": "100000/minute",
    "IDP_LIMIT_DEVICE": "100000/minute",
    "IDP_LIMIT_DEVICE_AUTHORIZATION": "100000/minute",
    "IDP_LIMIT_BACKCHANNEL": "100000/minute",
}

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


class SignedLikeThePhone(requests.auth.AuthBase):
    """Sign phone-API requests as the reference app does; authenticate the others as a
    registered client (``/token``, ``/revoke``, ``/introspect``) or with a real access
    token (``/userinfo``)."""

    def __init__(self, phone: PhoneClient, client: tuple[str, str], access_token: str) -> None:
        self.phone = phone
        self.basic = "Basic " + base64.b64encode(":".join(client).encode()).decode()
        self.access_token = access_token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        path = urlsplit(request.url).path
        body = request.body or b""
        body = body.encode() if isinstance(body, str) else body
        if path.startswith(PHONE_API):
            if path.endswith("/devices") and request.method == "POST":
                key = ECKey.generate_key("P-256")  # a new phone: its own key, in the jwk
                proof = make_proof(key, request.method, request.url, body, jwk=public_jwk(key))
            else:
                profile = self.phone.profile
                proof = make_proof(
                    profile.key, request.method, request.url, body, kid=profile.device_id
                )
            request.headers["Device-Proof"] = proof
        elif path == "/userinfo":
            request.headers["Authorization"] = f"Bearer {self.access_token}"
        elif path in ("/token", "/device_authorization", "/revoke", "/introspect", "/bc-authorize"):
            request.headers["Authorization"] = self.basic
        return request


@dataclass
class FuzzTarget:
    url: str
    auth: SignedLikeThePhone


def _serve(tmp_path: Path, backend: dict[str, str]) -> Iterator[FuzzTarget]:
    listener = listening_socket()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        app = make_app(tmp_path, issuer=url, **backend, **GENEROUS_LIMITS)
    except BaseException:
        listener.close()
        raise
    server, thread = serve_in_thread(listener, app)
    try:
        add_user(app, "alice")
        client = add_client(app)
        phone = enroll_phone(url, tmp_path / "phone")
        rp = RelyingParty(url, *client)
        tokens = approve_and_exchange(rp, Browser(url), phone)
        yield FuzzTarget(url, SignedLikeThePhone(phone, client, tokens["access_token"]))
    finally:
        server.shutdown()
        thread.join(timeout=5)
        dispose_app(app)


@pytest.fixture(scope="module", params=["sqlite", "postgres+redis"])
def fuzz_target(request, tmp_path_factory) -> Iterator[FuzzTarget]:
    """One live IdP per backend for the whole module (one per operation would be slow)."""
    tmp_path = tmp_path_factory.mktemp("fuzz")
    if request.param == "sqlite":
        yield from _serve(tmp_path, {})
        return
    with postgres_database() as url:
        backend = {
            "IDP_DATABASE_URL": url,
            "IDP_BROKER_URL": redis_url(),
            "IDP_RATELIMIT_PREFIX": "test-" + url.rsplit("/", 1)[-1],
        }
        yield from _serve(tmp_path, backend)


@schema.parametrize()
@settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_is_documented_and_none_is_a_server_error(case, fuzz_target):
    case.call_and_validate(
        base_url=fuzz_target.url,
        auth=fuzz_target.auth,
        allow_redirects=False,
        timeout=10,
        checks=CHECKS,
    )

"""tests/data/phone_wire.json is the phone API's wire contract: the server and the
reference phone client (idp-phone) are both held to it, so a change on one side alone
fails here. A future phone client (the web app) is held to the same file."""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from joserfc import jws, jwt
from joserfc.jwk import ECKey

from idp.config import SETTINGS
from idp.errors import IdPError, TooManyAttempts, TooManyRequests
from idp.mobile import proof as server_proof
from idp.mobile.api import bp as phone_api
from idp_phone import api as client_api
from idp_phone import proof as client_proof
from idp_phone.api import PhoneClient, ServerUnreachableError

WIRE = json.loads((Path(__file__).parents[2] / "data" / "phone_wire.json").read_text())
PROOF = WIRE["proof"]
SERVER = "https://id.example.com"

#: Modules whose errors the phone API can answer (views, and what they call).
PHONE_API_MODULES = (
    "idp.mobile.views",
    "idp.mobile.inbox",
    "idp.mobile.inbox.views",
    "idp.mobile.proof",
    "idp.mobile.services",
    "idp.mobile.enrollment_requests",
    "idp.mobile.invitations",
    "idp.accounts.services",
    "idp.qrlogin.services",
    "idp.qrlogin.shortcodes",
    "idp.limits",
)
#: Errors those modules hold that the phone API never answers, and why.
NOT_PHONE_ERRORS = {
    "unknown_request": "the phone API answers it as 'expired' (views._gone_is_gone)",
    "binding_mismatch": "only the browser's completion of a sign-in",
    "not_approved": "only the browser's completion of a sign-in",
    "renewal_limit": "only the authorize page renewing its code",
}


class RecordingSession:
    """A requests session that records the one request it is asked for, and fails it."""

    def __init__(self) -> None:
        self.sent: dict[str, Any] = {}
        self.headers: dict[str, str] = {}

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        self.sent = {"method": method, "url": url, **kwargs}
        raise requests.ConnectionError("recorded, not sent")


def decode(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The protected header and the claims of a compact JWS, unverified."""
    compact = jws.extract_compact(token.encode())
    return dict(compact.protected), json.loads(compact.payload)


def expected_body_hash(body: bytes) -> str:
    """``bh`` as the contract defines it, computed here independently of both sides."""
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode().rstrip("=")


@pytest.fixture
def recorded_enrollment(tmp_path: Path) -> dict[str, Any]:
    """The request idp-phone's enrollment sends, captured before it leaves."""
    session = RecordingSession()
    phone = PhoneClient(tmp_path / "phone", session=session)  # type: ignore[arg-type]
    with pytest.raises(ServerUnreachableError):
        phone.enroll(SERVER, "alice", "secret", "Alice's phone")
    return session.sent


def test_both_sides_use_the_api_prefix() -> None:
    assert phone_api.url_prefix == WIRE["api_prefix"]
    assert WIRE["api_prefix"] == client_api.API_PREFIX


def test_the_server_checks_the_contract_s_proof_constants() -> None:
    assert PROOF["http_header"] == server_proof.HEADER
    assert PROOF["typ"] == server_proof.PROOF_TYPE
    assert PROOF["alg"] == server_proof.PROOF_ALG
    assert SETTINGS["IDP_PROOF_MAX_AGE"][1] == PROOF["iat_max_skew_seconds"]
    assert server_proof.body_hash(b'{"a":1}') == expected_body_hash(b'{"a":1}')


def test_the_client_uses_the_contract_s_proof_constants() -> None:
    assert PROOF["typ"] == client_proof.PROOF_TYPE
    assert PROOF["alg"] == client_proof.PROOF_ALG
    assert client_proof.body_hash(b"") == expected_body_hash(b"")


def test_the_client_s_enrollment_request_follows_the_contract(recorded_enrollment) -> None:
    sent = recorded_enrollment
    token = sent["headers"][PROOF["http_header"]]
    header, claims = decode(token)
    assert sorted(header) == PROOF["header_names"]["enrollment"]
    assert (header["typ"], header["alg"]) == (PROOF["typ"], PROOF["alg"])
    key = PROOF["key"]
    assert sorted(header["jwk"]) == sorted(key["public_members"])
    assert (header["jwk"]["kty"], header["jwk"]["crv"]) == (key["kty"], key["crv"])
    assert sorted(claims) == PROOF["claim_names"]
    assert sent["url"] == f"{SERVER}{WIRE['api_prefix']}/devices"
    assert (claims["htm"], claims["htu"]) == ("POST", sent["url"])
    assert claims["bh"] == expected_body_hash(sent["data"])
    jti = PROOF["jti"]
    assert jti["min_length"] <= len(claims["jti"]) <= jti["max_length"]


def test_the_server_accepts_the_client_s_enrollment_proof(recorded_enrollment) -> None:
    sent = recorded_enrollment
    accepted = server_proof.check_proof(
        sent["headers"][PROOF["http_header"]],
        method=sent["method"],
        url=sent["url"],
        body=sent["data"],
        max_age=PROOF["iat_max_skew_seconds"],
        enrollment=True,
    )
    assert accepted.device is None and accepted.jti


def test_the_client_s_device_proof_names_the_device_by_kid() -> None:
    key = ECKey.generate_key("P-256")
    url = f"{SERVER}{WIRE['api_prefix']}/devices/me"
    header, claims = decode(client_proof.make_proof(key, "GET", url + "?x=1", b"", kid="dev_1"))
    assert sorted(header) == PROOF["header_names"]["device"]
    assert header["kid"] == "dev_1"
    assert sorted(claims) == PROOF["claim_names"]
    assert (claims["htu"], claims["bh"]) == (url, expected_body_hash(b""))


def _enrollment_proof(key: ECKey, url: str, **claims: Any) -> str:
    header = {"typ": PROOF["typ"], "alg": PROOF["alg"], "jwk": client_proof.public_jwk(key)}
    token = client_proof.make_proof(key, "POST", url, b"{}", jwk=header["jwk"])
    return jwt.encode(header, {**decode(token)[1], **claims}, key, algorithms=[PROOF["alg"]])


@pytest.mark.parametrize(
    ("length", "accepted"),
    [
        (PROOF["jti"]["min_length"] - 1, False),
        (PROOF["jti"]["min_length"], True),
        (PROOF["jti"]["max_length"], True),
        (PROOF["jti"]["max_length"] + 1, False),
    ],
)
def test_the_server_holds_the_jti_length_bounds(length: int, accepted: bool) -> None:
    key = ECKey.generate_key("P-256")
    url = f"{SERVER}{WIRE['api_prefix']}/devices"
    token = _enrollment_proof(key, url, jti="j" * length)

    def check() -> server_proof.Proof:
        return server_proof.check_proof(
            token, method="POST", url=url, body=b"{}", max_age=60, enrollment=True
        )

    if accepted:
        assert check().jti == "j" * length
    else:
        with pytest.raises(server_proof.InvalidProof, match="jti"):
            check()


def _error_classes() -> dict[str, type[IdPError]]:
    found: dict[str, type[IdPError]] = {}
    pending = [IdPError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_contract_error_code_has_its_status_on_the_server() -> None:
    classes = _error_classes()
    assert {code: classes[code].status for code in WIRE["errors"]} == WIRE["errors"]


def test_every_error_the_phone_api_can_raise_is_in_the_contract() -> None:
    raised = {
        value.code
        for name in PHONE_API_MODULES
        for value in vars(importlib.import_module(name)).values()
        if isinstance(value, type) and issubclass(value, IdPError)
    }
    missing = raised - set(WIRE["errors"]) - set(NOT_PHONE_ERRORS)
    assert not missing, f"add these to tests/data/phone_wire.json, or explain why not: {missing}"


def test_the_waits_are_announced_with_retry_after() -> None:
    waits = {cls.code: cls for cls in (TooManyAttempts, TooManyRequests)}
    assert sorted(waits) == WIRE["errors_with_retry_after"]
    for cls in waits.values():
        assert cls(retry_after=7).headers == {"Retry-After": "7"}


def test_the_docs_list_exactly_the_contract_s_errors() -> None:
    docs = Path(__file__).parents[3] / "docs" / "phone-api.md"
    rows = [line.split("|") for line in docs.read_text().splitlines() if line.startswith("| 4")]
    rows += [line.split("|") for line in docs.read_text().splitlines() if line.startswith("| 5")]
    listed = {cells[2].strip().strip("`"): int(cells[1]) for cells in rows}
    assert listed == WIRE["errors"]


def test_the_inbox_socket_speaks_the_contract_s_subprotocol():
    from idp.mobile import inbox

    contract = WIRE["inbox_socket"]
    assert inbox.SUBPROTOCOL == client_api.INBOX_SUBPROTOCOL == contract["subprotocol"]
    assert contract["path"] == "/inbox/ws"

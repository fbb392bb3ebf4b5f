"""Property-based tests (Hypothesis): malformed and hostile input to /authorize, /token
and the phone API gets exactly the error code docs/openapi.yaml documents, never a 5xx.

Each property runs on SQLite and on PostgreSQL + Redis (the ``backend`` fixture), against
one app per test; the examples share it, as real attackers share a server.
"""

from __future__ import annotations

import base64
import json
import re
import string
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import select

from idp import db
from idp.admin.services import create_client
from idp.audit import AuditEvent
from idp_phone.proof import make_proof, public_jwk
from support import PASSWORD, REDIRECT_URI, add_client, add_user, dispose_app, make_app, running_app

ISSUER = "http://127.0.0.1:8000"
API = "/api/mobile/v1"
JSON = {"Accept": "application/json"}

FUZZ = settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

GENEROUS_LIMITS = {
    "IDP_LIMIT_BROWSER": "100000/minute",
    "IDP_LIMIT_ENROLL": "100000/minute",
    "IDP_LIMIT_PHONE_IP": "100000/minute",
    "IDP_LIMIT_DEVICE": "100000/minute",
    "IDP_LIMIT_PASSWORD": "100000/minute",
}

#: Hostile text: NUL and control characters, right-to-left marks, emoji, very long runs.
hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(
        alphabet=st.sampled_from("\x00\x01\x7f\u202e\ufeff\U0001f600%&=+ '\"<>;\\"), max_size=20
    ),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "\x00", "é", "%00"]), st.integers(1, 6000)),
)
#: Text without NUL (the cases whose answer does not depend on the NUL refusal).
safe_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_text,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@pytest.fixture
def idp(tmp_path, backend):
    """An app with user alice, a confidential client, a service account and a phone."""
    app = make_app(tmp_path, issuer=ISSUER, **backend, **GENEROUS_LIMITS)
    add_user(app, "alice")
    client_id, secret = add_client(app)
    with app.app_context(), db.unit_of_work():
        service, service_secret = create_client("Service", [REDIRECT_URI], service_account=True)
    http = app.test_client()
    key = ECKey.generate_key("P-256")
    enrolled = _enroll(http, key, {"username": "alice", "password": PASSWORD, "device_name": "P"})
    assert enrolled.status_code == 201, enrolled.get_data(as_text=True)
    yield {
        "app": app,
        "http": http,
        "client": (client_id, secret),
        "service": (service.client_id, service_secret),
        "key": key,
        "device_id": enrolled.get_json()["device_id"],
    }
    dispose_app(app)


def _enroll(http, key, body):
    raw = json.dumps(body).encode()
    proof = make_proof(key, "POST", ISSUER + API + "/devices", raw, jwk=public_jwk(key))
    return http.post(API + "/devices", data=raw, headers={"Device-Proof": proof})


def _signed(idp, method, path, raw: bytes):
    """A phone request signed by the enrolled device, as the reference app signs it."""
    proof = make_proof(idp["key"], method, ISSUER + path, raw, kid=idp["device_id"])
    headers = {"Device-Proof": proof, "Content-Type": "application/json"}
    return idp["http"].open(path, method=method, data=raw, headers=headers)


def _error(response) -> str:
    assert response.mimetype == "application/json", (response.status_code, response.mimetype)
    return response.get_json()["error"]


def _basic(user: bytes, password: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(user + b":" + password).decode()}


# --- /authorize ------------------------------------------------------------------------


@FUZZ
@given(client_id=hostile_text)
def test_authorize_with_an_unknown_client_is_never_redirected(idp, client_id):
    query = urlencode({"response_type": "code", "client_id": client_id, "scope": "openid"})
    response = idp["http"].get("/authorize?" + query, headers=JSON)
    assert response.status_code == 400 and "Location" not in response.headers
    expected = "invalid_request" if "\x00" in client_id else "invalid_client"
    assert _error(response) == expected


AUTHORIZE_FIELDS = [
    "state", "nonce", "login_hint", "max_age", "prompt", "scope", "ui_locales",
    "code_challenge", "code_challenge_method", "response_mode", "display", "acr_values",
]  # fmt: skip
REDIRECT_ERRORS = {
    "invalid_request", "unauthorized_client", "unsupported_response_type", "invalid_scope",
    "login_required", "request_not_supported", "request_uri_not_supported",
}  # fmt: skip


@FUZZ
@given(
    values=st.dictionaries(st.sampled_from(AUTHORIZE_FIELDS), hostile_text, max_size=4),
    duplicate=st.one_of(st.none(), st.sampled_from(AUTHORIZE_FIELDS)),
    by_post=st.booleans(),
)
def test_authorize_with_hostile_parameters_answers_as_documented(idp, values, duplicate, by_post):
    """A registered client with hostile values: the page, a documented error sent back
    to the client (with ``iss``), or 400 ``invalid_request`` for NUL. Never a 5xx."""
    pairs = [("response_type", "code"), ("client_id", idp["client"][0])]
    pairs += [("redirect_uri", REDIRECT_URI), *values.items()]
    if duplicate:
        pairs.append((duplicate, "second"))
    if by_post:
        response = idp["http"].post("/authorize", data=urlencode(pairs), headers=JSON,
                                    content_type="application/x-www-form-urlencoded")  # fmt: skip
    else:
        response = idp["http"].get("/authorize?" + urlencode(pairs), headers=JSON)
    sent_nul = any("\x00" in v for _, v in pairs[: len(pairs) - bool(duplicate)])
    if sent_nul:
        assert response.status_code == 400 and _error(response) == "invalid_request"
        return
    assert response.status_code in (200, 302), response.get_data(as_text=True)[:300]
    if response.status_code == 302:
        location = response.headers["Location"]
        assert location.startswith(REDIRECT_URI + "?")
        query = parse_qs(urlsplit(location).query)
        assert query["error"][0] in REDIRECT_ERRORS and query["iss"] == [ISSUER]
    else:
        assert response.mimetype == "text/html"


# --- /token ----------------------------------------------------------------------------

#: invalid_client with 400: a form client_id that names no client (Authlib's answer,
#: also after failed Basic credentials, where RFC 6749 §5.2 wants 401).
TOKEN_400 = {
    "invalid_client", "invalid_request", "invalid_grant", "unsupported_grant_type",
    "unauthorized_client", "invalid_scope",
}  # fmt: skip
TOKEN_FIELDS = ["grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope",
                "client_id", "client_secret"]  # fmt: skip


@FUZZ
@given(
    fields=st.dictionaries(st.sampled_from(TOKEN_FIELDS), hostile_text, max_size=5),
    grant=st.sampled_from(["authorization_code", "refresh_token", "client_credentials", None]),
    credentials=st.sampled_from(["basic", "wrong-basic", "none"]),
)
def test_token_requests_with_hostile_fields_get_documented_errors(idp, fields, grant, credentials):
    if grant:
        fields = {**fields, "grant_type": grant}
    headers = {}
    client_id, secret = idp["client"]
    if credentials == "basic":
        headers = _basic(client_id.encode(), secret.encode())
    elif credentials == "wrong-basic":
        headers = _basic(client_id.encode(), b"wrong")
    response = idp["http"].post("/token", data=fields, headers=headers)
    error = _error(response)
    if len(urlencode(fields)) > 64 * 1024:
        assert (response.status_code, error) == (413, "request_entity_too_large")
        return
    assert response.status_code in (400, 401), response.get_data(as_text=True)[:300]
    if any("\x00" in v for v in fields.values()):
        assert (response.status_code, error) == (400, "invalid_request")
    elif response.status_code == 401:
        assert error == "invalid_client"
    else:
        assert error in TOKEN_400


@FUZZ
@given(user=st.binary(max_size=80), password=st.binary(max_size=80))
def test_token_with_arbitrary_basic_credentials_is_invalid_client(idp, user, password):
    """Non-UTF-8, colons, control bytes: ``401 invalid_client``. (NUL in the client id is
    the PostgreSQL bug below; that case has its own test.)"""
    assume(b":" not in user and b"\x00" not in user)
    response = idp["http"].post(
        "/token",
        data={"grant_type": "authorization_code", "code": "x"},
        headers=_basic(user, password),
    )
    assert response.status_code == 401 and _error(response) == "invalid_client"


@pytest.mark.parametrize("path", ["/token", "/revoke", "/introspect"])
def test_a_nul_in_the_basic_client_id_is_invalid_client(idp, path):
    http = idp["http"]
    http.application.testing = False  # a 500 is an answer here, not a raised exception
    http.application.config["PROPAGATE_EXCEPTIONS"] = False
    data = {"grant_type": "authorization_code", "code": "x", "token": "x"}
    response = http.post(path, data=data, headers=_basic(b"abc\x00", b"secret"))
    assert response.status_code == 401 and _error(response) == "invalid_client"


def test_userinfo_with_a_service_account_token_is_refused(idp):
    http = idp["http"]
    http.application.config["PROPAGATE_EXCEPTIONS"] = False
    service_id, service_secret = idp["service"]
    token = http.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "openid"},
        headers=_basic(service_id.encode(), service_secret.encode()),
    )
    assert token.status_code == 200
    response = http.get(
        "/userinfo", headers={"Authorization": "Bearer " + token.get_json()["access_token"]}
    )
    # No user stands behind the token: it is not valid at UserInfo (RFC 6750 §3.1).
    assert (response.status_code, _error(response)) == (401, "invalid_token")


# --- the phone API ---------------------------------------------------------------------


@FUZZ
@given(body=json_values)
def test_scan_with_any_json_answers_exactly_as_documented(idp, body):
    raw = json.dumps(body).encode()
    response = _signed(idp, "POST", API + "/login-requests/scan", raw)
    assert response.status_code < 500
    error = _error(response)
    if not isinstance(body, dict) or ("qr" in body) == ("code" in body):
        assert (response.status_code, error) == (400, "invalid_request")
        return
    name = "qr" if "qr" in body else "code"
    value = body[name]
    if not isinstance(value, str) or not value or "\x00" in value or len(value) > 4096:
        assert (response.status_code, error) == (400, "invalid_request")
    elif name == "qr":
        on_us = value.strip().startswith(ISSUER + "/q/")
        # Unknown and expired ids get one answer (a guesser learns nothing).
        expected = (410, "expired") if on_us else (400, "not_a_login_code")
        assert (response.status_code, error) == expected
    else:
        letters = "".join(value.split()).replace("-", "").upper()
        well_formed = len(letters) == 8 and all(c in "ACDEFGHJKMNPQRTUVWXY" for c in letters)
        if not well_formed:
            assert (response.status_code, error) == (400, "invalid_request")
        else:
            assert (response.status_code, error) in {
                (404, "unknown_code"),
                (429, "too_many_attempts"),
            }
            if response.status_code == 429:
                assert int(response.headers["Retry-After"]) >= 1


@FUZZ
@given(qr_id=hostile_text)
def test_scanning_hostile_qr_ids_is_expired_or_unknown(idp, qr_id):
    assume(qr_id and "\x00" not in qr_id and len(qr_id) < 4000)
    raw = json.dumps({"qr": f"{ISSUER}/q/{qr_id}"}).encode()
    response = _signed(idp, "POST", API + "/login-requests/scan", raw)
    assert (response.status_code, _error(response)) == (410, "expired")


@FUZZ
@given(
    request_id=st.text(
        alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=80
    ),
    decision=st.sampled_from(["approve", "deny"]),
    body=json_values,
)
def test_deciding_an_unknown_request_with_any_body(idp, request_id, decision, body):
    raw = json.dumps(body).encode()
    response = _signed(idp, "POST", f"{API}/login-requests/{request_id}/{decision}", raw)
    expected = (410, "expired") if isinstance(body, dict) else (400, "invalid_request")
    assert (response.status_code, _error(response)) == expected


@FUZZ
@given(raw=st.binary(max_size=200))
def test_bodies_that_are_not_json_are_invalid_request(idp, raw):
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    assume(not isinstance(body, dict))
    response = _signed(idp, "POST", API + "/login-requests/scan", raw)
    assert (response.status_code, _error(response)) == (400, "invalid_request")


@FUZZ
@given(body=json_values)
def test_enrollment_with_any_json_answers_as_documented(idp, body):
    response = _enroll(idp["http"], ECKey.generate_key("P-256"), body)
    error = _error(response)
    fields = ("username", "password", "device_name")

    def good(value):
        return isinstance(value, str) and value and "\x00" not in value and len(value) <= 4096

    well_formed = isinstance(body, dict) and all(good(body.get(f)) for f in fields)
    if (
        not well_formed
        or not USERNAME.fullmatch(body["username"])
        or not 1 <= len(body["device_name"].strip()) <= 100
        or NAME_CONTROLS.search(body["device_name"])
    ):
        assert (response.status_code, error) == (400, "invalid_request")
    else:
        assert (response.status_code, error) == (401, "invalid_credentials")


USERNAME = re.compile(r"[A-Za-z0-9_.@-]{1,150}")  # docs/phone-api.md
#: What a device name must not hold: C0 and C1 controls, DEL, line and paragraph
#: separators, bidirectional controls.
NAME_CONTROLS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


@pytest.mark.parametrize(
    "username",
    [
        "mallory\n2026-11-25T09:00:00Z  login.approved         user=alice",
        "mallory\x1b[2J",
        "alice\n",
        "\u202ealice",
        "a" * 151,
        "al ice",
    ],
)
def test_a_malformed_enrollment_username_is_refused_before_any_audit(idp, username):
    """Unauthenticated, so the username is the attacker's: it is checked against the
    username rule first, and a refused one is neither audited nor counted."""
    body = {"username": username, "password": "wrong password", "device_name": "P"}
    response = _enroll(idp["http"], ECKey.generate_key("P-256"), body)
    assert (response.status_code, _error(response)) == (400, "invalid_request")
    assert response.get_json()["error_description"] == (
        "usernames are 1-150 letters, digits or _ . @ -"
    )
    with idp["app"].app_context():
        refused = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "device.enroll_refused")
        ).all()
    assert refused == []


def test_a_well_formed_unknown_username_is_still_audited(idp):
    body = {"username": "nobody", "password": "wrong password", "device_name": "P"}
    response = _enroll(idp["http"], ECKey.generate_key("P-256"), body)
    assert (response.status_code, _error(response)) == (401, "invalid_credentials")
    with idp["app"].app_context():
        [event] = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "device.enroll_refused")
        ).all()
    assert event.username == "nobody"


def test_control_characters_in_a_device_name_are_refused(idp):
    body = {"username": "alice", "password": PASSWORD, "device_name": "P\x1b[2J\u202e"}
    response = _enroll(idp["http"], ECKey.generate_key("P-256"), body)
    assert (response.status_code, _error(response)) == (400, "invalid_request")
    assert response.get_json()["error_description"] == (
        "device_name must not contain control characters"
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forged(idp, header: dict, claims: dict, key=None) -> str:
    """A proof with this header and claims, signed by ``key`` (the device's by default)."""
    signing_key = key or idp["key"]
    if header.get("alg") == "ES256" and isinstance(header.get("kid", ""), str):
        return jwt.encode(header, claims, signing_key, algorithms=["ES256"])
    # Unsigned or mislabeled: assemble the compact form by hand.
    head = _b64(json.dumps(header).encode())
    return f"{head}.{_b64(json.dumps(claims).encode())}.{_b64(b'sig')}"


PROOF_HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "typ": st.sampled_from(["device-proof+jwt", "dpop+jwt", "JWT", ""]),
        "alg": st.sampled_from(["ES256", "none", "HS256", "RS256"]),
        "kid": st.one_of(st.just("DEVICE"), hostile_text, st.integers()),
        "jwk": st.dictionaries(st.text(max_size=3), st.text(max_size=5), max_size=3),
    },
)
PROOF_CLAIMS = st.fixed_dictionaries(
    {},
    optional={
        "htm": st.sampled_from(["GET", "POST", "get"]),
        "htu": st.sampled_from(["URL", ISSUER + API + "/devices", "", "x"]),
        "iat": st.one_of(st.just("NOW"), st.integers(), st.floats(), st.text(max_size=4)),
        "jti": st.one_of(hostile_text, st.integers()),
        "bh": st.one_of(st.just("BH"), st.text(max_size=50)),
    },
)


@FUZZ
@given(header=PROOF_HEADERS, claims=PROOF_CLAIMS, mangle=st.sampled_from(["", "dot", "b64"]))
def test_forged_or_malformed_proofs_are_refused(idp, header, claims, mangle):
    """Wrong typ, alg, kid, claims, or a mangled token: a 401 with a proof error, and
    only a proof that is right in every part passes."""
    import time

    from idp_phone.proof import body_hash

    path = API + "/devices/me"
    header = {k: (idp["device_id"] if v == "DEVICE" else v) for k, v in header.items()}
    fill = {"URL": ISSUER + path, "NOW": int(time.time()), "BH": body_hash(b"")}
    claims = {k: fill.get(v, v) if isinstance(v, str) else v for k, v in claims.items()}
    token = _forged(idp, header, claims)
    if mangle == "dot":
        token = token.replace(".", "..", 1)
    elif mangle == "b64":
        token = "!" + token[1:]
    response = idp["http"].get(path, headers={"Device-Proof": token})
    if response.status_code == 200:  # a correct proof of the enrolled device
        assert mangle == "" and header.get("kid") == idp["device_id"]
        assert header.get("typ") == "device-proof+jwt" and header.get("alg") == "ES256"
        return
    assert response.status_code == 401
    assert _error(response) in {"invalid_proof", "unknown_device"}
    if _error(response) == "unknown_device":
        assert header.get("kid") != idp["device_id"] and mangle == ""


def _answer_500s(idp):
    """Let a server error come back as a 500 response instead of a raised exception."""
    http = idp["http"]
    http.application.testing = False
    http.application.config["PROPAGATE_EXCEPTIONS"] = False
    return http


@pytest.mark.parametrize(
    "query",
    [
        "response_type=%C2%A3",
        'response_type=code"',
        "response_type=code&client_id=CLIENT&redirect_uri=http://%C3%A9",
        "response_type=code&client_id=CLIENT&redirect_uri=http://a%5Cb",
    ],
)
def test_non_ascii_in_what_authlib_echoes_is_a_clean_400(idp, query):
    http = _answer_500s(idp)
    response = http.get("/authorize?" + query.replace("CLIENT", idp["client"][0]), headers=JSON)
    assert (response.status_code, _error(response)) == (400, "invalid_request")


def test_a_non_ascii_logout_token_is_invalid_request(idp):
    http = _answer_500s(idp)
    response = http.post("/logout", data={"logout_token": "é"}, headers=JSON)
    assert (response.status_code, _error(response)) == (400, "invalid_request")


# --- NUL in any form body, in a proof, and what the database refuses ---------------------


@pytest.mark.parametrize(
    ("path", "fields", "files"),
    [
        ("/authorize", {"response_type": "code", "client_id": "CLIENT\x00"}, {}),
        ("/authorize", {"response_type": "code", "client_id": "CLIENT", "state": "a\x00"}, {}),
        ("/logout", {"logout_token": "a\x00b"}, {}),
        ("/logout", {"client_id": "x\x00", "logout_token": "t"}, {}),
        ("/token", {"grant_type": "authorization_code", "code": "a\x00"}, {}),
        ("/revoke", {"token": "a\x00", "client_id": "CLIENT"}, {}),
        ("/authorize", {"response_type": "code", "client_id\x00": "CLIENT"}, {}),
        ("/authorize", {"response_type": "code", "client_id": "CLIENT"}, {"f": "a\x00.txt"}),
    ],
    ids=[
        "authorize",
        "authorize-state",
        "logout",
        "logout-client",
        "token",
        "revoke",
        "field-name",
        "file-name",
    ],
)
def test_nul_anywhere_in_a_multipart_body_is_invalid_request(idp, path, fields, files):
    """PostgreSQL refuses NUL in text (a 500 once); a multipart body is a form too."""
    import io

    http = _answer_500s(idp)
    data = {k: v.replace("CLIENT", idp["client"][0]) for k, v in fields.items()}
    data |= {name: (io.BytesIO(b"x"), filename) for name, filename in files.items()}
    response = http.post(path, data=data, headers=JSON, content_type="multipart/form-data")
    assert (response.status_code, _error(response)) == (400, "invalid_request")


def test_nul_in_a_proofs_jti_is_invalid_proof(idp):
    import time

    from idp_phone.proof import body_hash

    http = _answer_500s(idp)
    path = API + "/devices/me"
    claims = {"htm": "GET", "htu": ISSUER + path, "iat": int(time.time()), "bh": body_hash(b"")}
    header = {"typ": "device-proof+jwt", "alg": "ES256", "kid": idp["device_id"]}
    for jti in ["0123456789abcdef\x00", "0123456789abcdef\n", "0123456789 abcdef", "é" * 16]:
        token = _forged(idp, header, claims | {"jti": jti})
        response = http.get(path, headers={"Device-Proof": token})
        assert (response.status_code, _error(response)) == (401, "invalid_proof"), jti
        assert "printable ASCII" in response.get_json()["error_description"]
    token = _forged(idp, header, claims | {"jti": "0123456789abcdef"})
    assert http.get(path, headers={"Device-Proof": token}).status_code == 200


@pytest.mark.parametrize("backend", ["postgres+redis"], indirect=True)
def test_a_value_the_database_refuses_is_a_logged_400(tmp_path, backend, caplog):
    """The last defence behind the input checks: a ``DataError`` (here NUL in a text
    parameter, which PostgreSQL refuses) is 400 ``invalid_request``, logged, not a 500."""
    from sqlalchemy import text

    with running_app(tmp_path, issuer=ISSUER, **backend) as app:

        @app.get("/test-data-error")
        def data_error() -> str:
            return str(db.session.scalar(text("SELECT CAST(:x AS text)"), {"x": "a\x00b"}))

        app.testing = False
        app.config["PROPAGATE_EXCEPTIONS"] = False
        with caplog.at_level("WARNING", logger="idp"):
            response = app.test_client().get("/test-data-error", headers=JSON)
        assert (response.status_code, _error(response)) == (400, "invalid_request")
        assert response.headers["Cache-Control"] == "no-store"
        [record] = [r for r in caplog.records if r.name == "idp"]
        assert record.getMessage() == "the database refused a value: DataError"


@pytest.mark.parametrize("path", ["/token", "/revoke", "/introspect"])
@pytest.mark.parametrize("credentials", ["/w==", "gA==", base64.b64encode(b"\xffid:\xfe").decode()])
def test_basic_credentials_that_are_not_utf8_are_invalid_client(idp, path, credentials):
    """``Authorization: Basic /w==`` (one 0xff byte) made Authlib raise at /revoke and
    /introspect: a 500. Now what any failed Basic authentication gets (RFC 6749 §5.2)."""
    http = _answer_500s(idp)
    data = {"grant_type": "authorization_code", "code": "x", "token": "x"}
    response = http.post(path, data=data, headers={"Authorization": "Basic " + credentials})
    assert (response.status_code, _error(response)) == (401, "invalid_client")
    assert response.headers["WWW-Authenticate"].startswith("Basic ")

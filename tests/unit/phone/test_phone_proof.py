"""The Device-Proof JWS, decoded back with joserfc and checked field by field."""

import base64
import json
import time

import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import ECKey

from idp_phone.proof import body_hash, make_proof, public_jwk

SCAN_URL = "https://id.example.com/api/mobile/v1/login-requests/scan"
SCAN_BODY = b'{"qr":"https://id.example.com/q/abc"}'


@pytest.fixture(scope="module")
def key():
    return ECKey.generate_key("P-256", private=True)


def _segments(token):
    """The protected header and the claims as sent (raw JSON), and the signature bytes."""
    header, claims, signature = token.split(".")

    def raw(part):
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    return json.loads(raw(header)), json.loads(raw(claims)), raw(signature)


def _verify(token, key):
    public = ECKey.import_key(public_jwk(key))
    assert not public.is_private
    return jwt.decode(token, public, algorithms=["ES256"])


def test_proof_with_kid_has_exactly_the_documented_header_and_claims(key):
    before = int(time.time())
    token = make_proof(key, "post", SCAN_URL, SCAN_BODY, kid="dev_123")
    after = int(time.time())

    decoded = _verify(token, key)

    assert decoded.header == {"typ": "device-proof+jwt", "alg": "ES256", "kid": "dev_123"}
    assert set(decoded.claims) == {"htm", "htu", "iat", "jti", "bh"}
    assert decoded.claims["htm"] == "POST"
    assert decoded.claims["htu"] == SCAN_URL
    assert isinstance(decoded.claims["iat"], int)
    assert before <= decoded.claims["iat"] <= after
    assert 16 <= len(decoded.claims["jti"]) <= 64
    # SHA-256 of the body, base64url without padding (computed independently with openssl).
    assert decoded.claims["bh"] == "fLUK_TSwd6VhOpCg9yb6-y2T1Jd5w3hfkNxzedkYcrY"
    # The raw segments agree, and ES256 signatures are the 64-byte r||s form.
    header, claims, signature = _segments(token)
    assert header == decoded.header
    assert claims == decoded.claims
    assert len(signature) == 64


def test_body_hash_of_known_bodies():
    assert body_hash(b"") == "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
    assert body_hash(b"{}") == "RBNvo1WzZ4oRRq0W9-hknpT7T8If536DEMBg9hyq_4o"


def test_proof_for_a_request_without_body_hashes_the_empty_string(key):
    url = "https://id.example.com/api/mobile/v1/devices/me"
    claims = _verify(make_proof(key, "GET", url, b"", kid="dev_1"), key).claims
    assert claims["htm"] == "GET"
    assert claims["bh"] == "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"


def test_htu_drops_query_and_fragment(key):
    url = "https://id.example.com:8443/idp/api/mobile/v1/devices/me?x=1&y=2#frag"
    claims = _verify(make_proof(key, "GET", url, b"", kid="dev_1"), key).claims
    assert claims["htu"] == "https://id.example.com:8443/idp/api/mobile/v1/devices/me"


def test_each_proof_has_a_new_jti(key):
    first = _verify(make_proof(key, "POST", SCAN_URL, b"{}", kid="dev_1"), key).claims
    second = _verify(make_proof(key, "POST", SCAN_URL, b"{}", kid="dev_1"), key).claims
    assert first["jti"] != second["jti"]
    assert 16 <= len(second["jti"]) <= 64


def test_enrollment_proof_carries_the_public_jwk_instead_of_kid(key):
    url = "https://id.example.com/api/mobile/v1/devices"
    token = make_proof(key, "POST", url, b"{}", jwk=public_jwk(key))
    header, _claims, _signature = _segments(token)

    expected_jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": key.as_dict(private=False)["x"],
        "y": key.as_dict(private=False)["y"],
    }
    assert header == {"typ": "device-proof+jwt", "alg": "ES256", "jwk": expected_jwk}
    assert "d" not in header["jwk"]
    # The server verifies with the key found in the header itself.
    decoded = jwt.decode(token, ECKey.import_key(header["jwk"]), algorithms=["ES256"])
    assert decoded.claims["htu"] == url
    assert decoded.claims["bh"] == "RBNvo1WzZ4oRRq0W9-hknpT7T8If536DEMBg9hyq_4o"


def test_proof_does_not_verify_with_another_key(key):
    token = make_proof(key, "POST", SCAN_URL, SCAN_BODY, kid="dev_1")
    other = ECKey.generate_key("P-256", private=True)
    with pytest.raises(BadSignatureError):
        jwt.decode(token, ECKey.import_key(public_jwk(other)), algorithms=["ES256"])


def test_exactly_one_of_kid_or_jwk(key):
    with pytest.raises(ValueError, match="exactly one"):
        make_proof(key, "POST", SCAN_URL, b"{}")
    with pytest.raises(ValueError, match="exactly one"):
        make_proof(key, "POST", SCAN_URL, b"{}", kid="dev_1", jwk=public_jwk(key))


def test_private_jwk_is_refused_in_the_header(key):
    with pytest.raises(ValueError, match="private key"):
        make_proof(key, "POST", SCAN_URL, b"{}", jwk=key.as_dict(private=True))


def test_body_must_be_bytes_and_key_private_p256(key):
    with pytest.raises(TypeError):
        make_proof(key, "POST", SCAN_URL, "{}", kid="dev_1")
    with pytest.raises(ValueError, match="P-256"):
        make_proof(ECKey.import_key(public_jwk(key)), "POST", SCAN_URL, b"{}", kid="dev_1")
    with pytest.raises(ValueError, match="P-256"):
        make_proof(ECKey.generate_key("P-384", private=True), "GET", SCAN_URL, b"", kid="d")

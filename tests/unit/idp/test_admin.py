"""idp.admin.services: redirect URI rules and client registration."""

import hashlib
import re

import pytest
from sqlalchemy import func, select

from idp import db
from idp.admin.services import (
    check_redirect_uri,
    create_client,
    delete_client,
    list_clients,
    origin_of,
)
from idp.errors import InvalidRequest
from idp.oauth.models import Client, ClientOrigin
from idp.qrlogin.models import LoginRequest
from idp.qrlogin.services import create_login_request
from idp.web import Caller

SCHEME_REFUSED = (
    "redirect URI {uri!r} must be https, http on a loopback host, "
    "or a reverse-domain scheme of a native app"
)
FRAGMENT_REFUSED = "redirect URI {uri!r} must not have a fragment (RFC 6749 §3.1.2)"


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def stored_clients() -> list[Client]:
    """The clients as the database has them (not the session's cached objects)."""
    db.session.expire_all()
    return list(db.session.scalars(select(Client).order_by(Client.id)))


# check_redirect_uri ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "https://x/cb",
        "https://rp.example.com/callback?tenant=a",
        "https://rp.example.com:8443/oidc/cb",
        "http://127.0.0.1:5000/cb",
        "http://127.0.0.1/cb",
        "http://[::1]:5000/cb",
        "http://localhost/cb",
        "http://localhost:9999/callback",
        "com.example.app:/cb",
        "com.example.app:/oauth2redirect/example-provider",
        "org.example.native:cb",
    ],
)
def test_accepted_redirect_uris_are_returned_unchanged(uri):
    assert check_redirect_uri(uri) == uri


@pytest.mark.parametrize(
    "uri",
    [
        "http://example.com/cb",
        "http://rp.example.com:8080/cb",
        "http://localhost.example.com/cb",
        "http://localhost@evil.example/cb",
        "http://0.0.0.0/cb",
        "http://192.168.0.10/cb",
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "ftp://rp.example.com/cb",
        "myapp:/cb",  # a private-use scheme must be reverse-domain (RFC 8252 §7.1)
        "/cb",
        "cb",
        "../cb",
        "//rp.example.com/cb",
        "https:///cb",
        "https:/cb",
        "",
    ],
)
def test_refused_redirect_uris(uri):
    with pytest.raises(InvalidRequest) as caught:
        check_redirect_uri(uri)
    assert caught.value.code == "invalid_request"
    assert caught.value.status == 400
    assert caught.value.description == SCHEME_REFUSED.format(uri=uri)


@pytest.mark.parametrize(
    "uri",
    [
        "https://rp.example.com/cb#frag",
        "https://rp.example.com/cb#",
        "http://127.0.0.1:5000/cb#x",
        "http://localhost/cb#",
        "com.example.app:/cb#x",
    ],
)
def test_redirect_uris_with_a_fragment_are_refused(uri):
    with pytest.raises(InvalidRequest) as caught:
        check_redirect_uri(uri)
    assert caught.value.code == "invalid_request"
    assert caught.value.description == FRAGMENT_REFUSED.format(uri=uri)


# create_client ---------------------------------------------------------------------------


def test_confidential_client_gets_a_secret_stored_only_as_its_digest(ctx):
    client, secret = create_client(
        "  Example RP  ", ["https://rp.example/cb", "http://localhost/cb"]
    )
    assert isinstance(secret, str)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)  # 32 random bytes
    assert re.fullmatch(r"[A-Za-z0-9_-]{24}", client.client_id)

    [stored] = stored_clients()
    assert stored.client_id == client.client_id
    assert stored.name == "Example RP"
    assert stored.redirect_uris == ["https://rp.example/cb", "http://localhost/cb"]
    assert stored.grant_types == ["authorization_code", "refresh_token"]
    assert stored.token_endpoint_auth_method == "client_secret_basic"
    assert stored.scope == "openid profile email"
    assert stored.id_token_signed_response_alg == "RS256"
    assert not stored.is_public
    assert stored.client_secret_hash != secret
    assert stored.client_secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    # The secret itself is in no column of the row.
    row = db.session.execute(select(Client.__table__)).one()
    assert all(secret not in str(value) for value in row)

    assert stored.check_client_secret(secret)
    assert not stored.check_client_secret(secret + "x")
    assert not stored.check_client_secret(secret[:-1])
    assert not stored.check_client_secret("")
    assert not stored.check_client_secret(stored.client_secret_hash)
    assert stored.check_endpoint_auth_method("client_secret_basic", "token")
    assert stored.check_endpoint_auth_method("client_secret_post", "token")
    assert not stored.check_endpoint_auth_method("none", "token")


def test_public_client_has_no_secret(ctx):
    client, secret = create_client("Native app", ["com.example.app:/cb"], public=True)
    assert secret is None
    [stored] = stored_clients()
    assert stored.client_id == client.client_id
    assert stored.client_secret_hash is None
    assert stored.token_endpoint_auth_method == "none"
    assert stored.is_public
    assert not stored.check_client_secret("")
    assert not stored.check_client_secret("anything")
    assert stored.check_endpoint_auth_method("none", "token")
    assert not stored.check_endpoint_auth_method("client_secret_basic", "token")


def test_each_client_gets_its_own_id_and_secret(ctx):
    first, first_secret = create_client("A", ["https://a.example/cb"])
    second, second_secret = create_client("A", ["https://a.example/cb"])
    assert first.client_id != second.client_id
    assert first_secret != second_secret
    assert first.client_secret_hash != second.client_secret_hash


def test_duplicate_redirect_uris_are_kept_once_in_order(ctx):
    create_client(
        "Dup",
        ["https://b.example/cb", "https://a.example/cb", "https://b.example/cb"],
    )
    [stored] = stored_clients()
    assert stored.redirect_uris == ["https://b.example/cb", "https://a.example/cb"]


@pytest.mark.parametrize("public", [False, True])
def test_a_device_client_needs_no_redirect_uri(ctx, public):
    _, secret = create_client("Backup CLI", [], public=public, device_grant=True)
    assert (secret is None) == public
    [stored] = stored_clients()
    assert stored.redirect_uris == []
    # No redirect URI, nowhere to send a code: no authorization code grant either.
    assert stored.grant_types == ["refresh_token", "urn:ietf:params:oauth:grant-type:device_code"]
    assert stored.check_grant_type("urn:ietf:params:oauth:grant-type:device_code")
    assert stored.check_endpoint_auth_method("none", "device_authorization") == public


def test_a_name_of_200_characters_is_accepted(ctx):
    client, _ = create_client("n" * 200, ["https://rp.example/cb"])
    assert client.name == "n" * 200


@pytest.mark.parametrize(
    ("name", "uris", "description"),
    [
        ("", ["https://rp.example/cb"], "a client needs a name of 1-200 characters"),
        ("   ", ["https://rp.example/cb"], "a client needs a name of 1-200 characters"),
        ("n" * 201, ["https://rp.example/cb"], "a client needs a name of 1-200 characters"),
        (
            "RP",
            [],
            "a client needs at least one redirect URI, unless it is only for devices"
            " (the device grant) or for CIBA",
        ),
        (
            "RP",
            ["https://rp.example/cb", "http://rp.example/cb"],
            SCHEME_REFUSED.format(uri="http://rp.example/cb"),
        ),
        (
            "RP",
            ["https://rp.example/cb#x"],
            FRAGMENT_REFUSED.format(uri="https://rp.example/cb#x"),
        ),
    ],
)
@pytest.mark.parametrize("public", [False, True])
def test_bad_registrations_are_refused_and_nothing_is_stored(ctx, name, uris, description, public):
    with pytest.raises(InvalidRequest) as caught:
        create_client(name, uris, public=public)
    assert caught.value.code == "invalid_request"
    assert caught.value.description == description
    assert db.session.scalar(select(func.count()).select_from(Client)) == 0


# list_clients and delete_client ---------------------------------------------------------


def test_list_clients_oldest_first(ctx):
    assert list_clients() == []
    made = [create_client(name, ["https://rp.example/cb"])[0].client_id for name in "CAB"]
    listed = list_clients()
    assert [c.client_id for c in listed] == made
    assert [c.name for c in listed] == ["C", "A", "B"]


def test_delete_client(ctx):
    keep, _ = create_client("Keep", ["https://keep.example/cb"])
    gone, _ = create_client("Gone", ["https://gone.example/cb"])
    assert delete_client(gone.client_id) is True
    assert [c.client_id for c in stored_clients()] == [keep.client_id]
    assert delete_client(gone.client_id) is False
    assert delete_client("no-such-client") is False
    assert delete_client("") is False
    assert [c.client_id for c in stored_clients()] == [keep.client_id]


def test_deleting_a_client_deletes_its_login_requests(ctx):
    keep, _ = create_client("Keep", ["https://keep.example/cb"])
    gone, _ = create_client("Gone", ["https://gone.example/cb"])
    for client in (keep, gone):
        create_login_request(
            client_id=client.client_id,
            params={"client_id": client.client_id},
            binding_secret="s" * 43,
            browser=Caller("127.0.0.1"),
        )
    assert delete_client(gone.client_id) is True
    remaining = db.session.scalars(select(LoginRequest.client_id)).all()
    assert remaining == [keep.client_id]


# web origins (CORS) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "origin"),
    [
        ("https://rp.example/cb?x=1", "https://rp.example"),
        ("https://RP.Example:443/cb", "https://rp.example"),
        ("https://rp.example:8443/cb", "https://rp.example:8443"),
        ("http://localhost:80/cb", "http://localhost"),
        ("http://127.0.0.1:5173/", "http://127.0.0.1:5173"),
        ("http://[::1]:5000/cb", "http://[::1]:5000"),
        ("https://bücher.example/cb", "https://xn--bcher-kva.example"),
        ("com.example.app:/cb", None),
        ("https://rp.example:99999/cb", None),
    ],
)
def test_origin_of_is_what_a_browser_sends(uri, origin):
    assert origin_of(uri) == origin


def test_a_client_gets_its_redirect_uris_origins_and_its_web_origins(ctx):
    client, _ = create_client(
        "SPA",
        ["https://app.example/cb", "https://app.example/other", "com.example.app:/cb"],
        public=True,
        web_origins=["https://admin.example", "https://ADMIN.example:443"],
    )
    stored = db.session.scalars(
        select(ClientOrigin.origin).where(ClientOrigin.client_id == client.client_id)
    ).all()
    assert sorted(stored) == ["https://admin.example", "https://app.example"]


def test_a_bad_web_origin_registers_nothing(ctx):
    with pytest.raises(InvalidRequest) as refused:
        create_client("X", ["https://rp.example/cb"], web_origins=["https://rp.example/app"])
    assert refused.value.description == (
        "web origin 'https://rp.example/app' must be an origin: https://host[:port] "
        "(http only on a loopback host), with no path"
    )
    assert stored_clients() == []
    assert db.session.scalar(select(func.count()).select_from(ClientOrigin)) == 0


def test_an_unknown_id_token_alg_is_refused(ctx):
    with pytest.raises(InvalidRequest) as refused:
        create_client("X", ["https://rp.example/cb"], id_token_alg="HS256")
    assert refused.value.description == "the ID-token algorithm must be one of RS256, ES256"
    assert stored_clients() == []


@pytest.mark.parametrize("policy", ["warn", "require_same_network", "off", None])
def test_a_client_may_have_its_own_proximity_policy(ctx, policy):
    create_client("X", ["https://rp.example/cb"], proximity=policy)
    db.session.commit()
    assert [c.proximity for c in stored_clients()] == [policy]


@pytest.mark.parametrize("policy", ["same_network", "Warn", "", "require"])
def test_an_unknown_proximity_policy_is_refused(ctx, policy):
    with pytest.raises(InvalidRequest) as refused:
        create_client("X", ["https://rp.example/cb"], proximity=policy)
    assert refused.value.description == (
        "the proximity policy must be one of off, warn, require_same_network"
    )
    assert stored_clients() == []

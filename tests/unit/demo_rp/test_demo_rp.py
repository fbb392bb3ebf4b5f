"""Unit tests of the demo relying party (no network: every HTTP request fails the test)."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

import demo_rp
from demo_rp import ConfigError, create_app, load_config

ISSUER = "http://127.0.0.1:8000"
BASE_URL = "http://localhost:8001"
CLIENT_ID = "demo-rp"

# What the IdP's discovery document would say; only used when a test puts it
# in the client's metadata cache, so nothing is fetched.
METADATA = {
    "issuer": ISSUER,
    "authorization_endpoint": f"{ISSUER}/authorize",
    "token_endpoint": f"{ISSUER}/token",
    "userinfo_endpoint": f"{ISSUER}/userinfo",
    "jwks_uri": f"{ISSUER}/jwks.json",
    "id_token_signing_alg_values_supported": ["ES256"],
    "authorization_response_iss_parameter_supported": True,
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in demo_rp.SETTINGS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def network(monkeypatch):
    """Record every outgoing HTTP request and refuse it, as if the IdP were down."""
    calls = []

    def send(self, prepared, **kwargs):
        calls.append(prepared.url)
        raise requests.ConnectionError(f"no network in unit tests: {prepared.url}")

    monkeypatch.setattr(requests.Session, "send", send)
    return calls


def make_app(**overrides):
    config = {
        "RP_ISSUER": ISSUER,
        "RP_CLIENT_ID": CLIENT_ID,
        "RP_BASE_URL": BASE_URL,
        "RP_SECRET_KEY": "test-secret",
        "TESTING": True,
    }
    config.update(overrides)
    return create_app(config)


@pytest.fixture
def app():
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


def idp_client(app):
    return app.extensions["demo_rp.oauth"].idp


def preload_metadata(app, **changes):
    """Put a discovery document in the client's cache, as after a first fetch."""
    metadata = {**METADATA, **changes, "_loaded_at": time.time()}
    idp_client(app).server_metadata.update(metadata)


def start_sign_in(app, client):
    """POST /login with cached metadata; return the authorization request's parameters."""
    preload_metadata(app)
    response = client.post("/login")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    return location, {k: v[0] for k, v in parse_qs(location.query).items()}


def pending_states(client):
    with client.session_transaction() as sess:
        return [key for key in sess if key.startswith("_state_idp_")]


# --- Home page ----------------------------------------------------------------


def test_home_signed_out_shows_the_sign_in_button(client, network):
    response = client.get("/", base_url=BASE_URL)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Demo RP — a website that uses QR-IdP" in html
    assert "Sign in with your phone" in html
    assert 'action="/login"' in html
    assert "Signed in as" not in html
    assert "Open this site at" not in html
    assert network == []


def test_home_on_another_host_name_says_where_to_open_it(client):
    html = client.get("/", base_url="http://127.0.0.1:8001").get_data(as_text=True)
    assert "Open this site at" in html
    assert f'href="{BASE_URL}/"' in html


def test_home_signed_in_shows_claims_userinfo_and_sign_out(client):
    now = int(time.time())
    with client.session_transaction() as sess:
        sess["id_claims"] = {
            "iss": ISSUER,
            "sub": "u-123",
            "aud": CLIENT_ID,
            "exp": now + 3600,
            "iat": now,
            "auth_time": now,
            "nonce": "n-0S6_WzA2Mj",
            "amr": ["qr", "hwk"],
            "name": "Alice <Example>",
            "email_verified": True,
        }
        sess["userinfo"] = {"sub": "u-123", "email": "alice@example.com"}
    response = client.get("/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Signed in as Alice &lt;Example&gt;" in html
    assert "<Example>" not in html  # escaped
    for claim in ("iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr"):
        assert f'<th scope="row">{claim}</th>' in html
    assert "qr, hwk" in html
    assert "UTC)" in html  # timestamps are also shown as dates
    assert "alice@example.com" in html
    assert "<td>true</td>" in html
    assert 'action="/logout"' in html
    assert "Sign out" in html
    assert "Sign in with your phone" not in html


def test_logout_clears_the_session(client):
    with client.session_transaction() as sess:
        sess["id_claims"] = {"sub": "u-123", "name": "Alice"}
        sess["userinfo"] = {"sub": "u-123"}
    response = client.post("/logout")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    with client.session_transaction() as sess:
        assert dict(sess) == {}
    assert "Sign in with your phone" in client.get("/").get_data(as_text=True)


def test_logout_is_post_only(client):
    assert client.get("/logout").status_code == 405


def test_session_cookie_is_named_rp_session(client):
    client.post("/logout")  # any request that sets the session
    with client.session_transaction() as sess:
        sess["x"] = 1
    cookie = client.get_cookie("rp_session")
    assert cookie is not None
    assert cookie.http_only
    assert cookie.same_site == "Lax"


# --- Starting the sign-in -----------------------------------------------------


def test_login_redirects_with_pkce_nonce_and_state(app, client, network):
    location, params = start_sign_in(app, client)
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{ISSUER}/authorize"
    assert params["response_type"] == "code"
    assert params["client_id"] == CLIENT_ID
    assert params["redirect_uri"] == f"{BASE_URL}/callback"
    assert params["scope"] == "openid profile email"
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43
    assert params["nonce"]
    assert params["state"]
    assert pending_states(client) == [f"_state_idp_{params['state']}"]
    assert network == []


def test_login_when_the_idp_is_down_shows_an_error_page(client, network):
    response = client.post("/login")
    assert response.status_code == 502
    html = response.get_data(as_text=True)
    assert "The identity provider could not be reached" in html
    assert network == [f"{ISSUER}/.well-known/openid-configuration"]


def test_login_refuses_a_discovery_document_of_another_issuer(app, client):
    preload_metadata(app, issuer="https://evil.example")
    response = client.post("/login")
    assert response.status_code == 502
    assert "not the expected one" in response.get_data(as_text=True)
    # The wrong document is forgotten, so a corrected IdP is fetched next time.
    assert "_loaded_at" not in idp_client(app).server_metadata


def test_login_refuses_an_incomplete_discovery_document(app, client):
    preload_metadata(app, userinfo_endpoint=None)
    response = client.post("/login")
    assert response.status_code == 502
    assert "userinfo_endpoint" in response.get_data(as_text=True)
    assert "_loaded_at" not in idp_client(app).server_metadata


# --- The callback -------------------------------------------------------------


def test_callback_access_denied_shows_the_denied_page_without_calling_the_idp(client, network):
    response = client.get("/callback?error=access_denied&state=abc123")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Sign-in was denied on the phone" in html
    assert 'href="/"' in html
    assert network == []


def test_callback_access_denied_forgets_the_pending_sign_in(app, client, network):
    _, params = start_sign_in(app, client)
    response = client.get(
        f"/callback?error=access_denied&error_description=The+user+said+no"
        f"&state={params['state']}&iss={ISSUER}"
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Sign-in was denied on the phone" in html
    assert "The user said no" in html
    assert pending_states(client) == []
    assert network == []


def test_callback_other_error_shows_the_error_and_escaped_description(client, network):
    response = client.get(
        "/callback?error=temporarily_unavailable"
        "&error_description=%3Cscript%3Ealert(1)%3C/script%3E&state=abc"
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "temporarily_unavailable" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html
    assert network == []


@pytest.mark.parametrize(
    "query",
    [
        "code=abc&state=xyz&iss=https%3A%2F%2Fevil.example",
        "error=access_denied&state=xyz&iss=https%3A%2F%2Fevil.example",
        f"code=abc&state=xyz&iss={ISSUER}/",
        f"code=abc&state=xyz&iss={ISSUER}&iss=https%3A%2F%2Fevil.example",
    ],
)
def test_callback_with_another_iss_is_refused(client, network, query):
    response = client.get(f"/callback?{query}")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "wrong identity provider" in html
    assert "denied on the phone" not in html
    assert network == []


def test_callback_with_another_iss_forgets_the_pending_sign_in(app, client, network):
    _, params = start_sign_in(app, client)
    response = client.get(f"/callback?code=abc&state={params['state']}&iss=https://evil.example")
    assert response.status_code == 400
    assert pending_states(client) == []
    assert network == []


def test_callback_without_iss_is_refused_when_the_idp_promises_it(app, client, network):
    _, params = start_sign_in(app, client)
    response = client.get(f"/callback?code=abc&state={params['state']}")
    assert response.status_code == 400
    assert "does not name its issuer" in response.get_data(as_text=True)
    assert network == []


@pytest.mark.parametrize("query", ["code=abc&state=unknown", "code=abc", f"code=abc&iss={ISSUER}"])
def test_callback_with_unknown_state_is_refused_without_calling_the_idp(client, network, query):
    response = client.get(f"/callback?{query}")
    assert response.status_code == 400
    assert "does not match a sign-in started here" in response.get_data(as_text=True)
    assert network == []


def test_callback_when_the_token_endpoint_is_down_shows_an_error_page(app, client, network):
    _, params = start_sign_in(app, client)
    response = client.get(f"/callback?code=abc&state={params['state']}&iss={ISSUER}")
    assert response.status_code == 502
    assert "could not be reached" in response.get_data(as_text=True)
    assert network == [f"{ISSUER}/token"]


# --- Configuration ------------------------------------------------------------


def test_config_from_environment(monkeypatch):
    monkeypatch.setenv("RP_ISSUER", "https://id.example.com/")
    monkeypatch.setenv("RP_CLIENT_ID", "env-client")
    monkeypatch.setenv("RP_CLIENT_SECRET", "env-secret")
    monkeypatch.setenv("RP_SECRET_KEY", "env-key")
    monkeypatch.setenv("RP_BASE_URL", "https://rp.example.com/")
    app = create_app()
    assert app.config["RP_ISSUER"] == "https://id.example.com"
    assert app.config["RP_BASE_URL"] == "https://rp.example.com"
    assert app.config["SECRET_KEY"] == "env-key"
    assert app.config["SESSION_COOKIE_NAME"] == "rp_session"
    assert app.config["SESSION_COOKIE_SECURE"] is True
    idp = idp_client(app)
    assert idp.client_id == "env-client"
    assert idp.client_secret == "env-secret"
    assert idp._server_metadata_url == ("https://id.example.com/.well-known/openid-configuration")
    assert idp.client_kwargs["token_endpoint_auth_method"] == "client_secret_basic"
    assert idp.client_kwargs["code_challenge_method"] == "S256"
    assert idp.client_kwargs["scope"] == "openid profile email"


def test_config_dict_overrides_environment(monkeypatch):
    monkeypatch.setenv("RP_ISSUER", "https://id.example.com")
    monkeypatch.setenv("RP_CLIENT_ID", "env-client")
    monkeypatch.setenv("RP_CLIENT_SECRET", "env-secret")
    monkeypatch.setenv("RP_BASE_URL", "https://rp.example.com")
    app = create_app(
        {
            "RP_ISSUER": ISSUER,
            "RP_CLIENT_ID": "dict-client",
            "RP_CLIENT_SECRET": "",
            "RP_BASE_URL": BASE_URL,
        }
    )
    assert app.config["RP_ISSUER"] == ISSUER
    assert app.config["SESSION_COOKIE_SECURE"] is False
    idp = idp_client(app)
    assert idp.client_id == "dict-client"
    # An empty secret in the dict wins over the environment: a public client.
    assert idp.client_secret is None
    assert idp.client_kwargs["token_endpoint_auth_method"] == "none"


def test_public_client_when_no_secret(monkeypatch):
    monkeypatch.setenv("RP_CLIENT_ID", "public")
    monkeypatch.setenv("RP_CLIENT_SECRET", "")
    config = load_config()
    assert config["RP_CLIENT_SECRET"] is None
    assert config["RP_TOKEN_ENDPOINT_AUTH_METHOD"] == "none"
    assert config["RP_ISSUER"] == "http://127.0.0.1:8000"
    assert config["RP_BASE_URL"] == "http://localhost:8001"


def test_secret_key_is_random_when_absent():
    first = load_config({"RP_CLIENT_ID": "c"})["RP_SECRET_KEY"]
    second = load_config({"RP_CLIENT_ID": "c"})["RP_SECRET_KEY"]
    assert len(first) >= 32
    assert first != second


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({}, "RP_CLIENT_ID is required"),
        ({"RP_CLIENT_ID": "c", "RP_ISSUER": "127.0.0.1:8000"}, "RP_ISSUER"),
        ({"RP_CLIENT_ID": "c", "RP_BASE_URL": "http://localhost:8001/?x=1"}, "RP_BASE_URL"),
        ({"RP_CLIENT_ID": "c", "RP_TOKEN_ENDPOINT_AUTH_METHOD": "private_key_jwt"}, "one of"),
        ({"RP_CLIENT_ID": "c", "RP_TOKEN_ENDPOINT_AUTH_METHOD": "client_secret_post"}, "no"),
        (
            {"RP_CLIENT_ID": "c", "RP_CLIENT_SECRET": "s", "RP_TOKEN_ENDPOINT_AUTH_METHOD": "none"},
            "does not fit",
        ),
    ],
)
def test_bad_config_is_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides)


def test_create_app_does_not_contact_the_idp(network):
    app = make_app()
    assert network == []
    assert "_loaded_at" not in idp_client(app).server_metadata

"""The phone web app's server side: its pages change nothing, carry the strict policy,
and the service worker keeps only the app's own files (the browser tests drive it)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from idp import db, web
from idp.admin.services import create_client
from idp.qrlogin.models import LoginRequest, Status
from idp.webapp.views import APP_FILES
from support import RelyingParty

STATIC = Path(__file__).resolve().parents[2] / "idp" / "static"
HTML = {"Accept": "text/html"}
REDIRECT_URI = "http://localhost:9999/callback"
ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Mobile Safari/537.36"
)


def page_state(response: Any) -> dict[str, Any]:
    found = re.search(r'data-state="([^"]*)"', response.get_data(as_text=True))
    assert found, "the app page has no data-state"
    return json.loads(html.unescape(found.group(1)))


def start_login(app: Flask, client: FlaskClient, **options: Any) -> str:
    with app.app_context(), db.unit_of_work():
        registered, secret = create_client("Photo Club", [REDIRECT_URI], **options)
    rp = RelyingParty("http://127.0.0.1:8000", registered.client_id, secret)
    response = client.get(rp.authorize_url().removeprefix(rp.idp_url), headers=HTML)
    assert response.status_code == 200
    return str(page_state(response)["id"])


def test_app_lives_under_its_scope(client: FlaskClient) -> None:
    response = client.get("/app")
    assert response.status_code == 308 and response.headers["Location"] == "/app/"


def test_the_app_page_tells_the_script_the_issuer_and_the_phone(client: FlaskClient) -> None:
    response = client.get("/app/", headers=HTML | {"User-Agent": ANDROID})
    assert response.status_code == 200
    state = page_state(response)
    assert state["screen"] == "home"
    assert state["issuer"] == "http://127.0.0.1:8000"
    assert state["api"] == "http://127.0.0.1:8000/api/mobile/v1"
    assert state["device_name"] == "Chrome on Android"  # editable on the form
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    assert '<link rel="manifest" href="/app/manifest.webmanifest">' in page
    assert '<script type="module" src="/static/app/app.js">' in page
    assert "<script>" not in page  # nothing inline: the policy would refuse it anyway


def test_every_message_code_of_the_wire_contract_has_a_sentence(client: FlaskClient) -> None:
    wire = json.loads((Path(__file__).parents[1] / "data" / "phone_wire.json").read_text())
    api_js = (STATIC / "app" / "api.js").read_text()
    messages = page_state(client.get("/app/", headers=HTML))["messages"]
    kinds = dict(re.findall(r"^\s+(\w+): \"(\w+)\",$", api_js, re.MULTILINE))
    assert set(wire["errors"]) <= set(kinds), set(wire["errors"]) - set(kinds)
    assert {kind for kind in kinds.values()} <= set(messages)


def test_the_app_speaks_the_phones_language(client: FlaskClient) -> None:
    response = client.get("/app/", headers=HTML | {"Accept-Language": "zh-CN,zh;q=0.9"})
    assert '<html lang="zh-CN">' in response.get_data(as_text=True)
    assert page_state(response)["messages"]["approved_title"] != "Done: return to your computer"


def test_the_manifest_installs_the_app(client: FlaskClient) -> None:
    response = client.get("/app/manifest.webmanifest")
    assert response.mimetype == "application/manifest+json"
    manifest = response.get_json(force=True)
    assert manifest["start_url"] == manifest["scope"] == "/app/"
    assert manifest["display"] == "standalone"
    for icon in manifest["icons"]:
        assert client.get(icon["src"]).status_code == 200


def test_the_service_worker_is_served_in_its_scope_and_keeps_only_app_files(
    client: FlaskClient,
) -> None:
    response = client.get("/app/sw.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    source = response.get_data(as_text=True)
    listed = re.search(r"const APP_FILES = \[(.*?)\];", source, re.DOTALL)
    assert listed
    cached = re.findall(r'"([^"]+)"', listed.group(1))
    assert cached == [f"/static/{name}" for name in APP_FILES]
    for path in cached:
        assert client.get(path).status_code == 200, path
        assert not path.startswith(("/api/", "/authorize", "/q/", "/token", "/app/"))


def test_opening_the_qr_url_changes_nothing(app: Flask, client: FlaskClient) -> None:
    request_id = start_login(app, client)
    for _ in range(2):  # a link preview, then the phone's camera app
        response = client.get(f"/q/{request_id}", headers=HTML)
        assert response.status_code == 200
        assert page_state(response) | {"messages": None} == page_state(response) | {
            "messages": None,
            "screen": "request",
            "request_id": request_id,
        }
    with app.app_context():
        login = db.session.get(LoginRequest, request_id)
        assert login is not None and login.status == Status.PENDING and login.device_pk is None


def test_the_qr_page_shows_the_sites_logo_and_loosens_nothing_else(
    app: Flask, client: FlaskClient
) -> None:
    request_id = start_login(app, client, logo_uri="https://rp.example.com/logo.png")
    response = client.get(f"/q/{request_id}", headers=HTML)
    expected = web.content_security_policy(img_src=["https://rp.example.com"])
    assert response.headers.getlist("Content-Security-Policy") == [expected]
    other = client.get("/q/" + "x" * 43, headers=HTML)  # unknown: the plain policy
    assert other.headers.getlist("Content-Security-Policy") == [web.content_security_policy()]


def test_the_policy_lets_the_app_load_its_manifest_and_nothing_more(client: FlaskClient) -> None:
    policy = client.get("/app/", headers=HTML).headers["Content-Security-Policy"]
    assert "manifest-src 'self'" in policy
    assert "script-src 'self';" in policy and "unsafe" not in policy

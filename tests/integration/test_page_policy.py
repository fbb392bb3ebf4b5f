"""No page loosens the Content-Security-Policy: every GET route of the app is requested
(the url_map is walked, so a new route is covered at once), and every HTML answer, error
pages included, carries exactly the pages' policy. The one exception is the authorize
page of a client with a registered logo, which adds that logo's origin to ``img-src``."""

from __future__ import annotations

import html
import json
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from idp import db, web
from idp.admin.services import create_client
from support import RelyingParty

LOGO = "https://rp.example.com/static/logo.png"
LOGO_ORIGIN = "https://rp.example.com"
REDIRECT_URI = "http://localhost:9999/callback"
HTML_HEADERS = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}

#: GET routes (by endpoint) this test does not request, each with the reason. A route
#: the test cannot fill in must be listed here, so that adding one is a decision.
NOT_REQUESTED: dict[str, str] = {}

#: Pages that must answer HTML whatever else changes (so the walk is never vacuous).
HTML_PAGES = {
    "home",
    "qrlogin.authorize",
    "webapp.approve_page",
    "qrlogin.complete",
    "sso.logout",
    "device.verification_page",
    "static",  # a missing file's 404 page
}


def directives(policy: str) -> dict[str, list[str]]:
    """A policy as ``{directive: [sources]}``."""
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        assert name not in parsed, f"{name} appears twice in {policy!r}"
        parsed[name] = sources
    return parsed


def assert_strict(policy: str) -> None:
    """Nothing that would let an injected script run, and no framing."""
    parsed = directives(policy)
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy, policy
    assert "*" not in parsed["script-src"], policy
    assert parsed["script-src"] == ["'self'"], policy
    assert parsed["default-src"] == ["'none'"], policy
    assert parsed["frame-ancestors"] == ["'none'"], policy


def page_policy(response: Any) -> str:
    """The one policy an HTML answer carries."""
    policies = response.headers.getlist("Content-Security-Policy")
    assert len(policies) == 1, (response.request.path, policies)
    return policies[0]


def start_login(app: Flask, client: FlaskClient, **client_options: Any) -> tuple[str, Any]:
    """Open the authorize page of a new client: (the login's id, the page's answer)."""
    with app.app_context(), db.unit_of_work():
        registered, secret = create_client("Photo Club", [REDIRECT_URI], **client_options)
    rp = RelyingParty("http://127.0.0.1:8000", registered.client_id, secret)
    response = client.get(rp.authorize_url().removeprefix(rp.idp_url), headers=HTML_HEADERS)
    assert response.status_code == 200
    state = re.search(r'data-state="([^"]*)"', response.get_data(as_text=True))
    assert state, "the authorize page has no data-state"
    return json.loads(html.unescape(state.group(1)))["id"], response


def path_values(login_id: str) -> dict[str, str]:
    """A real value for each path argument; a new argument fails until it is added."""
    return {
        "request_id": login_id,
        "filename": "no-such-file.css",
        "token": "no-such-invitation",
        "enrollment_id": "no-such-enrollment",
    }


def test_every_html_page_carries_the_page_policy(app: Flask, client: FlaskClient) -> None:
    login_id, _ = start_login(app, client)
    values = path_values(login_id)
    expected = web.content_security_policy()
    assert_strict(expected)
    answered_html = set()
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or rule.endpoint in NOT_REQUESTED:
            continue
        unknown = rule.arguments - values.keys()
        assert not unknown, f"{rule.rule}: give a value for {unknown} or list it in NOT_REQUESTED"
        with app.test_request_context():
            path = app.url_for(rule.endpoint, **{name: values[name] for name in rule.arguments})
        response = client.get(path, headers=HTML_HEADERS)
        if response.mimetype == "text/html":
            answered_html.add(rule.endpoint)
            assert page_policy(response) == expected, (rule.rule, response.status_code)
    assert answered_html >= HTML_PAGES


def test_not_requested_routes_exist(app: Flask) -> None:
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert set(NOT_REQUESTED) <= endpoints


def test_error_pages_carry_the_page_policy(client: FlaskClient) -> None:
    for path in ("/no-such-page", "/authorize?client_id=nobody", "/q/%00"):
        response = client.get(path, headers=HTML_HEADERS)
        assert response.status_code >= 400 and response.mimetype == "text/html", path
        assert page_policy(response) == web.content_security_policy(), path


def test_the_authorize_page_of_a_client_without_logo_keeps_the_policy(
    app: Flask, client: FlaskClient
) -> None:
    _, response = start_login(app, client)
    assert page_policy(response) == web.content_security_policy()


def test_a_registered_logo_adds_its_origin_to_img_src_and_nothing_else(
    app: Flask, client: FlaskClient
) -> None:
    _, response = start_login(app, client, logo_uri=LOGO)
    policy = page_policy(response)
    assert_strict(policy)
    assert policy == web.content_security_policy(img_src=[LOGO_ORIGIN])
    base, loosened = directives(web.content_security_policy()), directives(policy)
    assert loosened.pop("img-src") == [*base.pop("img-src"), LOGO_ORIGIN]
    assert loosened == base

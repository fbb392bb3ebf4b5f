"""idp.web: the pages' Content-Security-Policy built from its directives, no_store, and
the caller made at the view edge."""

from __future__ import annotations

import dataclasses

import pytest
from flask import Flask, Response

from idp import web

PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; manifest-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)


def test_the_page_policy_is_built_from_its_directives():
    assert web.content_security_policy() == PAGE_POLICY


def test_a_logo_origin_joins_the_image_sources_and_nothing_else():
    policy = web.content_security_policy(img_src=["https://cdn.example.com"])
    assert policy == PAGE_POLICY.replace(
        "img-src 'self' data:", "img-src 'self' data: https://cdn.example.com"
    )
    assert web.content_security_policy() == PAGE_POLICY  # the base policy is not changed


def test_an_unknown_directive_is_refused():
    with pytest.raises(KeyError):
        web.content_security_policy(media_src=["https://cdn.example.com"])


def test_no_store_forbids_caching():
    response = web.no_store(Response())
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"


def test_the_caller_is_the_request_sender():
    app = Flask(__name__)
    environ = {"REMOTE_ADDR": "192.0.2.9", "HTTP_USER_AGENT": "Phone/1.0"}
    with app.test_request_context("/", environ_base=environ):
        caller = web.Caller.from_request()
    assert caller == web.Caller("192.0.2.9", "Phone/1.0")
    with pytest.raises(dataclasses.FrozenInstanceError):
        caller.ip = "203.0.113.1"  # type: ignore[misc]

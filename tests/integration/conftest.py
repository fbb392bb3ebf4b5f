"""Integration fixtures: a live IdP with a user, a registered RP, a browser and a phone."""

from __future__ import annotations

import pytest

from support import Browser, RelyingParty, add_client, add_user, enroll_phone


@pytest.fixture
def world(live_server, tmp_path):
    """(live server, relying party, browser, enrolled phone of user "alice")."""
    add_user(live_server.app, "alice")
    client_id, secret = add_client(live_server.app)
    rp = RelyingParty(live_server.url, client_id, secret)
    phone = enroll_phone(live_server.url, tmp_path / "phone")
    return live_server, rp, Browser(live_server.url), phone

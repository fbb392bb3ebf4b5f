"""The proximity policy (IDP_PROXIMITY, and a client's own ``--proximity``): the relay end
to end, the attacker's browser and the victim's phone on two networks (distinct
``X-Forwarded-For`` addresses behind one trusted proxy). ``warn`` lets the person decide;
``require_same_network`` denies an approval from elsewhere, with its reason, to the phone,
the page and the site; ``off`` measures nothing."""

from __future__ import annotations

import io
import sys
from typing import Any

import pytest
import requests

from idp import audit, db
from idp.admin.services import create_client
from idp_phone.api import PhoneApiError
from idp_phone.cli import main
from support import (
    REDIRECT_URI,
    Browser,
    RelyingParty,
    close_socket,
    next_message,
    redirect_params,
)

ATTACKER = "203.0.113.7"  # the browser that opened the sign-in page
VICTIM = "198.51.100.9"  # the phone that scanned its relayed QR code
BESIDE = "203.0.113.50"  # a phone on the browser's own network (one /24)

REFUSAL = (
    "This site accepts sign-ins only from a phone on the same network as the computer,"
    " and this phone is not on it: this sign-in can only be denied. If you are at that"
    " computer, connect this phone to its network (its Wi-Fi), then scan the code again."
)


class Whereabouts:
    """Where this process's phone requests come "from" (``X-Forwarded-For``); it may move.
    A browser's session that names its own address keeps it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.address = VICTIM
        original = requests.Session.request
        whereabouts = self

        def request(self: requests.Session, method: str, url: str, **kwargs: Any) -> Any:
            if "X-Forwarded-For" not in self.headers:  # a browser's session says its own
                headers = {"X-Forwarded-For": whereabouts.address, **(kwargs.get("headers") or {})}
                kwargs["headers"] = headers
            return original(self, method, url, **kwargs)

        monkeypatch.setattr(requests.Session, "request", request)


@pytest.fixture
def phone_at(monkeypatch: pytest.MonkeyPatch) -> Whereabouts:
    return Whereabouts(monkeypatch)


def open_page(live: Any, rp: RelyingParty) -> tuple[Browser, Any]:
    """The attacker's browser opens the site's sign-in page (from ATTACKER)."""
    browser = Browser(live.url)
    browser.session.headers["X-Forwarded-For"] = ATTACKER
    return browser, browser.open(rp.authorize_url())


def client_with(live: Any, proximity: str | None) -> RelyingParty:
    with live.app.app_context(), db.unit_of_work():
        client, secret = create_client("Bank", [REDIRECT_URI], proximity=proximity)
    return RelyingParty(live.url, client.client_id, secret)


def denials(live: Any) -> list[audit.Line]:
    with live.app.app_context():
        return [line for line in audit.query() if line.event == "login.denied"]


def assert_refused(live: Any, rp: RelyingParty, phone: Any) -> None:
    """The relay, refused: told in advance, 403 at approval, denied with its reason,
    audited, and the browser gets nothing but access_denied."""
    browser, page = open_page(live, rp)
    ws = browser.socket(page)
    try:
        assert next_message(ws) == {"status": "pending"}
        view = phone.scan(page.qr_url)["login_request"]
        proximity = view["proximity"]
        assert (proximity["verdict"], proximity["policy"]) == (
            "different_network",
            "require_same_network",
        )
        assert proximity["allowed"] is False
        assert proximity["message"] == REFUSAL
        assert next_message(ws) == {"status": "scanned"}
        with pytest.raises(PhoneApiError) as refused:
            phone.approve(view["id"])
        assert (refused.value.status, refused.value.error) == (403, "different_network")
        assert refused.value.description == (
            "This phone is not on the network of the computer that started the sign-in, and"
            " this site requires it: the sign-in is denied"
        )
        assert next_message(ws) == {"status": "denied", "reason": "different_network"}
    finally:
        close_socket(ws)
    # A page that reconnects learns the reason too; the denial stands (it was committed).
    again = browser.socket(page)
    try:
        assert next_message(again) == {"status": "denied", "reason": "different_network"}
    finally:
        close_socket(again)
    [denied] = denials(live)
    assert (denied.device_id, denied.client_id, denied.ip) == (
        phone.profile.device_id,
        rp.client_id,
        VICTIM,
    )
    assert denied.detail == {
        "request": view["id"][:8],
        "browser_ip": ATTACKER,
        "reason": "different_network",
        "verdict": "different_network",
        "browser_network": "203.0.113.0/24",
        "phone_network": "198.51.100.0/24",
    }
    response = browser.complete(page)
    params = redirect_params(response)
    assert (params["error"], params["state"]) == ("access_denied", rp.state)
    assert "code" not in params
    assert "require_same_network" in params["error_description"]
    assert "idp_sso" not in response.headers.get("Set-Cookie", "")
    with pytest.raises(PhoneApiError) as used:  # denied is final
        phone.approve(view["id"])
    assert (used.value.status, used.value.error) == (409, "already_used")


def assert_approved(live: Any, rp: RelyingParty, phone: Any, *, verdict: str) -> dict:
    """The sign-in goes through: approved, and the browser's completion gets a code."""
    browser, page = open_page(live, rp)
    view = phone.scan(page.qr_url)["login_request"]
    assert view["proximity"]["verdict"] == verdict and view["proximity"]["allowed"] is True
    assert phone.approve(view["id"])["login_request"]["status"] == "approved"
    code = redirect_params(browser.complete(page))["code"]
    assert rp.exchange(code).status_code == 200
    return view


@pytest.mark.idp_config(IDP_TRUSTED_PROXIES=1)
def test_warn_shows_the_relay_and_lets_the_person_decide(world, phone_at):
    live, rp, _, phone = world
    view = assert_approved(live, rp, phone, verdict="different_network")
    assert view["proximity"]["policy"] == "warn"
    assert view["proximity"]["message"].startswith("This sign-in was started on a different")


@pytest.mark.idp_config(IDP_TRUSTED_PROXIES=1, IDP_PROXIMITY="require_same_network")
def test_require_same_network_refuses_the_relay(world, phone_at):
    live, rp, _, phone = world
    assert_refused(live, rp, phone)


@pytest.mark.idp_config(IDP_TRUSTED_PROXIES=1, IDP_PROXIMITY="require_same_network")
def test_require_same_network_lets_a_phone_on_the_browsers_network_approve(world, phone_at):
    live, rp, _, phone = world
    phone_at.address = BESIDE
    view = assert_approved(live, rp, phone, verdict="same_network")
    assert view["proximity"]["policy"] == "require_same_network"
    assert denials(live) == []


@pytest.mark.idp_config(IDP_TRUSTED_PROXIES=1, IDP_PROXIMITY="require_same_network")
def test_the_approval_is_judged_where_the_phone_is_when_it_approves(world, phone_at):
    """The scan's ``allowed`` is a forecast: the approve request's own address decides."""
    live, rp, _, phone = world
    browser, page = open_page(live, rp)
    phone_at.address = BESIDE
    view = phone.scan(page.qr_url)["login_request"]
    assert view["proximity"]["allowed"] is True
    phone_at.address = VICTIM  # it moved (or its approval is sent from elsewhere)
    with pytest.raises(PhoneApiError) as refused:
        phone.approve(view["id"])
    assert refused.value.error == "different_network"
    assert denials(live)[-1].detail["phone_network"] == "198.51.100.0/24"
    assert redirect_params(browser.complete(page))["error"] == "access_denied"


@pytest.mark.idp_config(IDP_TRUSTED_PROXIES=1, IDP_PROXIMITY="require_same_network")
def test_scanning_again_from_the_browsers_network_allows_it(world, phone_at):
    live, rp, _, phone = world
    browser, page = open_page(live, rp)
    assert phone.scan(page.qr_url)["login_request"]["proximity"]["allowed"] is False
    phone_at.address = BESIDE  # on the computer's Wi-Fi now
    view = phone.scan(page.qr_url)["login_request"]
    assert view["proximity"]["allowed"] is True
    phone.approve(view["id"])
    assert "code" in redirect_params(browser.complete(page))


@pytest.mark.idp_config(IDP_TRUSTED_PROXIES=1)
def test_a_client_may_require_the_same_network_when_the_server_warns(world, phone_at):
    live, rp, _, phone = world
    assert_refused(live, client_with(live, "require_same_network"), phone)
    # The server's other clients still only warn.
    assert_approved(live, rp, phone, verdict="different_network")


@pytest.mark.idp_config(IDP_TRUSTED_PROXIES=1, IDP_PROXIMITY="require_same_network")
def test_a_client_cannot_lower_the_servers_requirement(world, phone_at):
    live, _, _, phone = world
    assert_refused(live, client_with(live, "off"), phone)


@pytest.mark.idp_config(IDP_TRUSTED_PROXIES=1, IDP_PROXIMITY="off")
def test_off_measures_and_shows_nothing(world, phone_at):
    live, rp, _, phone = world
    browser, page = open_page(live, rp)
    view = phone.scan(page.qr_url)["login_request"]
    assert "proximity" in view and view["proximity"] is None
    # idp-phone's guard against far approvals has nothing to go on: --approve approves.
    profile = ["--profile", str(phone.profile_dir)]
    assert main([*profile, "scan", page.qr_url, "--approve"]) == 0
    assert "code" in redirect_params(browser.complete(page))


@pytest.mark.idp_config(IDP_TRUSTED_PROXIES=1, IDP_PROXIMITY="require_same_network")
def test_idp_phone_says_so_and_offers_only_deny(world, phone_at, capsys):
    live, rp, _, phone = world
    profile = ["--profile", str(phone.profile_dir)]
    browser, page = open_page(live, rp)
    ws = browser.socket(page)
    try:
        assert next_message(ws) == {"status": "pending"}
        # Not even --accept-different-network approves: the policy is the server's.
        command = [*profile, "scan", page.qr_url, "--approve", "--accept-different-network"]
        assert main(command) == 2
        out, err = capsys.readouterr()
        assert out.splitlines()[1] == f"  !! {REFUSAL}"
        assert "not approved" in err and "same network" in err
        assert next_message(ws) == {"status": "scanned"}  # nothing was sent but the scan
        assert main([*profile, "scan", page.qr_url, "--deny"]) == 0
        assert next_message(ws) == {"status": "denied", "reason": "denied"}
    finally:
        close_socket(ws)
    params = redirect_params(browser.complete(page))
    assert params["error"] == "access_denied"
    assert params["error_description"] == "the user denied the sign-in on the phone"


class Terminal(io.StringIO):
    """A terminal's stdin, typed in advance."""

    def isatty(self) -> bool:
        return True


@pytest.mark.idp_config(IDP_TRUSTED_PROXIES=1, IDP_PROXIMITY="require_same_network")
def test_idp_phone_asks_only_whether_to_deny(world, phone_at, monkeypatch, capsys):
    live, rp, _, phone = world
    profile = ["--profile", str(phone.profile_dir)]
    browser, page = open_page(live, rp)
    monkeypatch.setattr(sys, "stdin", Terminal("\n"))  # Enter: no answer, nothing decided
    assert main([*profile, "scan", page.qr_url]) == 0
    out = capsys.readouterr().out
    assert "This phone cannot approve it from here. Deny this sign-in? [y/N]" in out
    assert "Approve this sign-in?" not in out
    assert out.endswith("Not decided: the sign-in waits until it expires.\n")
    ws = browser.socket(page)
    try:
        assert next_message(ws) == {"status": "scanned"}
        monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
        assert main([*profile, "scan", page.qr_url]) == 0
        assert capsys.readouterr().out.endswith("Denied: the browser will not be signed in.\n")
        assert next_message(ws) == {"status": "denied", "reason": "denied"}
    finally:
        close_socket(ws)

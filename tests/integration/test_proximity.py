"""The relay's tell: the phone's scan answer compares the phone's network with the
browser's, each address as the IdP saw it (here behind one trusted proxy, whose
``X-Forwarded-For`` gives the attacker's browser and the victim's phone distinct
addresses). ``idp-phone`` shows it first and will not ``--approve`` a far one alone."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from idp_phone.cli import main
from support import Browser, next_status

ATTACKER = "203.0.113.7"  # the browser that opened the sign-in page
VICTIM = "198.51.100.9"  # the phone that scanned its relayed QR code


def phone_at(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    """Every request this process sends from now on comes "from" ``address``."""
    original = requests.Session.request

    def request(self: requests.Session, method: str, url: str, **kwargs: Any) -> Any:
        kwargs["headers"] = {"X-Forwarded-For": address, **(kwargs.get("headers") or {})}
        return original(self, method, url, **kwargs)

    monkeypatch.setattr(requests.Session, "request", request)


def open_page(world: Any, address: str) -> Any:
    live, rp, _, _ = world
    browser = Browser(live.url)
    browser.session.headers["X-Forwarded-For"] = address
    return browser, browser.open(rp.authorize_url())


@pytest.mark.idp_config(IDP_TRUSTED_PROXIES=1)
def test_a_relayed_code_is_flagged_as_another_network(world, monkeypatch):
    _, _, _, phone = world
    browser, page = open_page(world, ATTACKER)
    phone_at(monkeypatch, VICTIM)
    view = phone.scan(page.qr_url)["login_request"]
    assert view["proximity"] == {
        "verdict": "different_network",
        "message": "This sign-in was started on a different network than your phone. "
        "Approve only if you are at that computer.",
        "same_address": False,
        "browser_network": "203.0.113.0/24",
        "phone_network": "198.51.100.0/24",
        "browser_country": None,
        "phone_country": None,
        "policy": "warn",
        "allowed": True,
    }
    assert view["browser"]["ip"] == ATTACKER
    # The default policy warns: the person may still approve (they may be at that computer).
    phone.approve(view["id"])
    ws = browser.socket(page)
    assert next_status(ws) == "approved"


@pytest.mark.idp_config(IDP_TRUSTED_PROXIES=1)
def test_the_same_network_says_so(world, monkeypatch):
    _, _, _, phone = world
    _, page = open_page(world, "203.0.113.7")
    phone_at(monkeypatch, "203.0.113.50")
    proximity = phone.scan(page.qr_url)["login_request"]["proximity"]
    assert proximity["verdict"] == "same_network" and proximity["same_address"] is False


@pytest.mark.idp_config(IDP_TRUSTED_PROXIES=1)
def test_the_phone_cli_shows_it_first_and_will_not_approve_it_alone(world, monkeypatch, capsys):
    _, _, _, phone = world
    profile = ["--profile", str(phone.profile_dir)]
    browser, page = open_page(world, ATTACKER)
    phone_at(monkeypatch, VICTIM)
    assert main([*profile, "scan", page.qr_url, "--approve"]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines()[1] == (
        "  !! This sign-in was started on a different network than your phone. "
        "Approve only if you are at that computer."
    )  # first, under the title
    assert "not approved" in err and "--accept-different-network" in err
    ws = browser.socket(page)
    assert next_status(ws) == "scanned"  # scanned, not approved
    assert main([*profile, "scan", page.qr_url, "--approve", "--accept-different-network"]) == 0
    assert next_status(ws) == "approved"

"""Proximity: the phone's address against the browser's (idp/qrlogin/proximity.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from idp.oauth.models import Client
from idp.qrlogin.proximity import assess, network, policy_for
from support import make_app

GEOIP = str(Path(__file__).parents[2] / "data" / "geoip" / "GeoLite2-City-Test.mmdb")


@pytest.fixture
def plain(tmp_path: Path) -> Flask:
    return make_app(tmp_path)


@pytest.fixture
def with_geoip(tmp_path: Path) -> Flask:
    return make_app(tmp_path, IDP_GEOIP_DATABASE=GEOIP)


@pytest.mark.parametrize(
    ("browser", "phone", "verdict"),
    [
        ("203.0.113.7", "203.0.113.7", "same_network"),
        ("203.0.113.7", "203.0.113.200", "same_network"),  # one /24
        ("203.0.113.7", "203.0.114.7", "different_network"),
        ("2001:db8:1:2::1", "2001:db8:1:ffff::9", "same_network"),  # one /48
        ("2001:db8:1::1", "2001:db8:2::1", "different_network"),
        ("::ffff:203.0.113.7", "203.0.113.9", "same_network"),  # IPv4 written as IPv6
        ("127.0.0.1", "127.0.0.1", "same_network"),
        (None, "203.0.113.7", "unknown"),
        ("203.0.113.7", "not an address", "unknown"),
    ],
)
def test_verdicts_without_a_database(plain, browser, phone, verdict):
    with plain.test_request_context():
        assert assess(browser, phone).verdict == verdict


def test_countries_decide_with_a_database(with_geoip):
    with with_geoip.test_request_context():
        # London and Chinese test addresses from MaxMind's test database.
        far = assess("81.2.69.142", "175.16.199.1")
        assert far.verdict == "different_country"
        assert (far.facts["browser_country"], far.facts["phone_country"]) == ("GB", "CN")
        assert assess("81.2.69.142", "81.2.69.160").verdict == "same_network"
        # Two addresses the database does not know: no country, so only "different".
        assert assess("203.0.113.7", "198.51.100.7").verdict == "different_network"


def test_the_view_says_it_in_plain_words(plain):
    with plain.test_request_context():
        view = assess("203.0.113.7", "198.51.100.7").view()
    assert view["verdict"] == "different_network"
    assert view["message"] == (
        "This sign-in was started on a different network than your phone. Approve only if"
        " you are at that computer."
    )
    assert view["browser_network"] == "203.0.113.0/24"
    assert view["phone_network"] == "198.51.100.0/24"


def test_a_devices_sign_in_speaks_of_the_device(plain):
    with plain.test_request_context():
        view = assess("203.0.113.7", "198.51.100.7").view(device=True)
        refused = assess("203.0.113.7", "198.51.100.7").view("require_same_network", device=True)
        same = assess("203.0.113.7", "203.0.113.8").view(device=True)
    assert view["message"] == (
        "This device is on a different network than your phone. Approve only if the device"
        " is in front of you."
    )
    assert refused["message"].startswith(
        "This site accepts sign-ins only from a phone on the same network as the device,"
    )
    assert same["message"] == "This sign-in was started on the same network as your phone."
    with plain.test_request_context(headers={"Accept-Language": "zh-CN"}):
        chinese = assess("203.0.113.7", "198.51.100.7").view(device=True)["message"]
    assert chinese.startswith("这个设备与你的手机不在同一个网络上")


def test_the_words_are_in_the_phones_language(plain):
    with plain.test_request_context(headers={"Accept-Language": "zh-CN"}):
        assert "不同" in assess("203.0.113.7", "198.51.100.7").view()["message"]


def test_network_of_an_address():
    import ipaddress

    assert network(ipaddress.ip_address("192.0.2.77")) == "192.0.2.0/24"
    assert network(ipaddress.ip_address("2001:db8:abcd:12::1")) == "2001:db8:abcd::/48"


@pytest.mark.parametrize(
    ("server", "client", "effective"),
    [
        ("warn", None, "warn"),  # NULL follows the server
        ("off", None, "off"),
        ("require_same_network", None, "require_same_network"),
        ("warn", "require_same_network", "require_same_network"),  # a client raises the bar
        ("off", "warn", "warn"),
        ("require_same_network", "off", "require_same_network"),  # ... never lowers it
        ("require_same_network", "warn", "require_same_network"),
        ("warn", "off", "warn"),
        ("off", "off", "off"),
        ("warn", "something new", "require_same_network"),  # unknown: the strictest
    ],
)
def test_the_stricter_of_the_server_and_the_client_applies(tmp_path, server, client, effective):
    app = make_app(tmp_path, IDP_PROXIMITY=server)
    with app.app_context():
        assert policy_for(Client(proximity=client)) == effective


@pytest.mark.parametrize(
    ("policy", "phone", "allowed"),
    [
        ("warn", "198.51.100.7", True),
        ("warn", None, True),
        ("require_same_network", "203.0.113.50", True),  # same /24
        ("require_same_network", "198.51.100.7", False),
        ("require_same_network", None, False),  # unknown: when in doubt, refuse
    ],
)
def test_only_the_same_network_may_approve_when_required(plain, policy, phone, allowed):
    with plain.test_request_context():
        view = assess("203.0.113.7", phone).view(policy)
    assert (view["policy"], view["allowed"]) == (policy, allowed)
    if not allowed:
        assert view["message"].startswith(
            "This site accepts sign-ins only from a phone on the same network as the computer"
        )


def test_the_refusal_is_in_the_phones_language(plain):
    with plain.test_request_context(headers={"Accept-Language": "zh-CN"}):
        view = assess("203.0.113.7", "198.51.100.7").view("require_same_network")
    assert view["message"].startswith("这个网站只接受与电脑在同一网络上的手机登录")

"""The browser's approximate location on the phone (optional, IDP_GEOIP_DATABASE)."""

from __future__ import annotations

from pathlib import Path

import pytest

from idp.config import ConfigError
from idp_phone.api import PhoneClient
from idp_phone.cli import describe_login_request
from support import Browser, make_app

DATABASE = str(Path(__file__).parents[1] / "data" / "geoip" / "GeoLite2-City-Test.mmdb")


def scan_from(world, address: str | None, language: str | None = None) -> dict:
    live, rp, _, phone = world
    browser = Browser(live.url)
    if address:
        browser.session.headers["X-Forwarded-For"] = address
    page = browser.open(rp.authorize_url())
    if language:
        phone = PhoneClient(phone.profile_dir, language=language)
    return phone.scan(page.qr_url)["login_request"]


@pytest.mark.idp_config(IDP_GEOIP_DATABASE=DATABASE, IDP_TRUSTED_PROXIES=1)
def test_the_phone_sees_where_the_browser_is(world):
    view = scan_from(world, "81.2.69.142")
    assert view["browser"]["ip"] == "81.2.69.142"
    assert view["browser"]["location"] == "London, United Kingdom"
    text = describe_login_request(view, account="alice")
    assert "Location:      London, United Kingdom (approximate)" in text


@pytest.mark.idp_config(IDP_GEOIP_DATABASE=DATABASE, IDP_TRUSTED_PROXIES=1)
def test_the_location_is_in_the_phones_language(world):
    view = scan_from(world, "175.16.199.0", language="zh-CN")
    assert view["browser"]["location"] == "长春, 中国"


@pytest.mark.idp_config(IDP_GEOIP_DATABASE=DATABASE)
def test_an_unknown_address_has_no_location(world):
    view = scan_from(world, None)  # 127.0.0.1: in no database
    assert view["browser"]["location"] is None
    assert "Location:" not in describe_login_request(view, account="alice")


@pytest.mark.idp_config(IDP_TRUSTED_PROXIES=1)
def test_no_database_no_location(world):
    assert scan_from(world, "81.2.69.142")["browser"]["location"] is None


def test_a_missing_or_broken_database_stops_the_start(tmp_path):
    with pytest.raises(ConfigError, match=r"not a readable \.mmdb"):
        make_app(tmp_path, IDP_GEOIP_DATABASE=str(tmp_path / "nowhere.mmdb"))
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"not a database")
    with pytest.raises(ConfigError, match=r"not a readable \.mmdb"):
        make_app(tmp_path, IDP_GEOIP_DATABASE=str(junk))

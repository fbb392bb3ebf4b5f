"""English and Simplified Chinese: ``ui_locales`` first, then ``Accept-Language``, then
English; every page, the page script's messages, errors, and the phone's scope texts."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from idp import db
from idp.i18n import match
from support import add_client

TRANSLATIONS = Path(__file__).parents[2] / "idp" / "translations"


@pytest.mark.parametrize(
    ("tag", "catalog"),
    [
        ("en", "en"),
        ("en-GB", "en"),
        ("zh", "zh_Hans_CN"),
        ("zh-CN", "zh_Hans_CN"),
        ("zh-Hans", "zh_Hans_CN"),
        ("zh-Hans-SG", "zh_Hans_CN"),
        ("zh_CN", "zh_Hans_CN"),
        ("ZH-cn", "zh_Hans_CN"),
        ("zh-TW", None),  # Traditional: not offered
        ("zh-Hant", None),
        ("zh-HK", None),
        ("fr", None),
        ("*", None),
        ("", None),
    ],
)
def test_language_tags(tag, catalog):
    assert match(tag) == catalog


def authorize_path(rp_client_id: str, **extra: str) -> str:
    from urllib.parse import urlencode

    params = {
        "response_type": "code",
        "client_id": rp_client_id,
        "redirect_uri": "http://localhost:9999/callback",
        "scope": "openid",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
        "state": "s",
    } | extra
    return "/authorize?" + urlencode(params)


def state_of(page: str) -> dict:
    return json.loads(html.unescape(re.search(r'data-state="([^"]*)"', page).group(1)))


@pytest.mark.parametrize(
    ("query", "accept", "lang"),
    [
        ({}, None, "en"),
        ({}, "zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        ({}, "fr, zh;q=0.5", "zh-CN"),
        ({}, "zh-TW", "en"),
        ({"ui_locales": "zh-CN"}, "en", "zh-CN"),
        ({"ui_locales": "en"}, "zh-CN", "en"),
        ({"ui_locales": "fr zh-Hans en"}, None, "zh-CN"),  # the first supported one
        ({"ui_locales": "fr de"}, "zh", "zh-CN"),  # none supported: Accept-Language
    ],
)
def test_the_authorize_page_language(app, client, query, accept, lang):
    client_id, _ = add_client(app, public=True)
    headers = {"Accept-Language": accept} if accept else {}
    page = client.get(authorize_path(client_id, **query), headers=headers).get_data(as_text=True)
    assert f'<html lang="{lang}">' in page
    state = state_of(page)
    if lang == "zh-CN":
        assert "用手机登录" in page
        assert "无法扫码？" in page
        assert state["messages"]["scanned"] == "已扫码——请在手机上确认"
        assert state["messages"]["countdown"] == "二维码将在 {time} 后更换"
        assert 'aria-label="请用手机上的 QR-IdP App 扫描的二维码"' in page
    else:
        assert "with your phone" in page
        assert state["messages"]["scanned"] == "Scanned — confirm on your phone"
    if "ui_locales" in query:  # follow-up requests keep the page's language
        assert f"ui_locales={query['ui_locales'].replace(' ', '+')}" in state["renew_url"]
        assert "ui_locales=" in state["complete_url"]
        assert "ui_locales=" in state["short_code_url"]


def test_an_error_page_in_chinese(client):
    page = client.get("/authorize/complete/nope", headers={"Accept-Language": "zh-CN"})
    text = page.get_data(as_text=True)
    assert page.status_code == 403
    assert '<html lang="zh-CN">' in text
    assert "登录出现问题" in text
    assert "请从网站重新开始" in text
    assert "binding_mismatch" in text


def test_the_client_name_is_escaped_inside_the_translated_heading(app, client):
    with app.app_context(), db.unit_of_work():
        from idp.admin.services import create_client

        c, _ = create_client("<b>Evil</b> & Co", ["http://localhost:9999/callback"], public=True)
    for accept in ("en", "zh-CN"):
        page = client.get(authorize_path(c.client_id), headers={"Accept-Language": accept})
        text = page.get_data(as_text=True)
        assert "&lt;b&gt;Evil&lt;/b&gt; &amp; Co" in text
        assert "<b>Evil</b>" not in text


def test_the_phone_sees_scopes_in_its_language(world):
    _live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    phone_zh = type(phone)(phone.profile_dir, language="zh-CN")
    view = phone_zh.scan(page.qr_url)["login_request"]
    assert [s["description"] for s in view["scopes"]] == [
        "用你的账号标识为你登录",
        "你的姓名和用户名",
        "你的电子邮件地址",
    ]
    assert view["client"]["name"] == "Test RP"  # as registered
    english = phone.scan(page.qr_url)["login_request"]  # a retry, in English
    assert english["scopes"][1]["description"] == "Your name and username"


def test_json_errors_follow_the_language_too(client):
    response = client.post(
        "/api/mobile/v1/login-requests/scan", headers={"Accept-Language": "zh-CN"}, data="{}"
    )
    assert response.status_code == 401
    assert response.json["error"] == "invalid_proof"  # the code never changes


def test_every_message_is_translated_and_compiled():
    pot = read_po((TRANSLATIONS / "messages.pot").open("rb"))
    po = read_po(
        (TRANSLATIONS / "zh_Hans_CN/LC_MESSAGES/messages.po").open("rb"), locale="zh_Hans_CN"
    )
    mo = read_mo((TRANSLATIONS / "zh_Hans_CN/LC_MESSAGES/messages.mo").open("rb"))
    wanted = {m.id for m in pot if m.id}
    translated = {m.id: m.string for m in po if m.id and m.string and not m.fuzzy}
    assert wanted <= set(translated), sorted(wanted - set(translated))
    assert {m.id: m.string for m in mo if m.id} == translated  # `make translations` was run


def test_the_template_lists_every_message_in_the_code():
    """A new message without `make translations` would show in English to everyone."""
    from babel.messages.extract import extract_from_dir

    root = Path(__file__).parents[2]
    method_map = [("idp/**.py", "python"), ("idp/templates/**.html", "jinja2")]
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "_l": None, "lazy_gettext": None}
    found = {
        message if isinstance(message, str) else message[0]
        for _file, _line, message, _comments, _context in extract_from_dir(
            root, method_map, keywords=keywords
        )
    }
    pot = {m.id for m in read_po((TRANSLATIONS / "messages.pot").open("rb")) if m.id}
    assert found == pot

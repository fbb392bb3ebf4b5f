"""Languages: English and Simplified Chinese, chosen per request.

The authorize request's ``ui_locales`` (OIDC Core §3.1.2.1) wins; then the
browser's (or phone's) ``Accept-Language``; then English. Messages are gettext
catalogs in ``idp/translations`` (Flask-Babel); ``make translations`` extracts
and compiles them.
"""

from __future__ import annotations

from flask import Flask, has_request_context, request
from flask_babel import Babel, get_locale

#: Catalog name -> the BCP 47 tag pages announce in ``<html lang>``.
SUPPORTED = {"en": "en", "zh_Hans_CN": "zh-CN"}
DEFAULT = "en"


def match(tag: str) -> str | None:
    """The supported catalog for one language tag, or ``None``.

    Any Chinese tag that is not Traditional (``zh-Hant``, ``zh-TW``, ``zh-HK``,
    ``zh-MO``) gets Simplified Chinese.
    """
    parts = tag.strip().lower().replace("_", "-").split("-")
    if parts[0] == "en":
        return "en"
    if parts[0] == "zh" and not {"hant", "tw", "hk", "mo"} & set(parts[1:]):
        return "zh_Hans_CN"
    return None


def select_locale() -> str:
    """``ui_locales`` first, then ``Accept-Language``, then English (and English
    outside a request: the command line, tests of the services)."""
    if not has_request_context():
        return DEFAULT
    for tag in (request.values.get("ui_locales") or "").split()[:10]:
        if found := match(tag):
            return found
    for tag, _quality in request.accept_languages:
        if found := match(tag):
            return found
    return DEFAULT


def html_lang() -> str:
    """The current language as a BCP 47 tag, for ``<html lang>``."""
    return SUPPORTED.get(str(get_locale()), "en")


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=select_locale, default_domain="messages")
    app.jinja_env.globals["html_lang"] = html_lang

"""Log lines never hold a secret and never span lines, whoever writes them."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest

from idp.server import logging_config

TOKEN = "b7PPcbk5pEPFZB8JS4haNJt-UCGV_OKqqnDyEPQ8PWA"


@pytest.fixture(params=["json", "text"])
def emit(request, monkeypatch):
    """Log one record through the handler ``idp serve`` configures; return what it wrote."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    saved = logging.getLogger().handlers[:], logging.getLogger().level
    logging.config.dictConfig(logging_config(request.param, "DEBUG"))

    def emit(logger: str, message: str, *args: object, exc: BaseException | None = None) -> str:
        log = logging.getLogger(logger)
        if exc is None:
            log.debug(message, *args)
        else:
            try:
                raise exc
            except type(exc):
                log.exception(message, *args)
        return stream.getvalue()

    yield emit
    logging.getLogger().handlers[:], level = saved
    logging.getLogger().setLevel(level)


@pytest.mark.parametrize(
    ("message", "args", "shown"),
    [
        ("Issue token %s", ({"access_token": TOKEN, "refresh_token": "short"},),
         "Issue token {'access_token': '[redacted]', 'refresh_token': '[redacted]'}"),
        ("%s %s", ("POST", f"/api/mobile/v1/login-requests/{TOKEN}/approve"),
         "POST /api/mobile/v1/login-requests/[redacted]/approve"),
        ("GET /cb?code=%s&state=abc", ("x1",), "GET /cb?code=[redacted]&state=[redacted]"),
        ("header Authorization: Bearer %s", ("abc",), "header Authorization: Bearer [redacted]"),
        ("Device-Proof: %s", ("eyJ.eyJ.sig",), "Device-Proof: [redacted]"),
        ("user %s", ("mallory\nforged line\x1b[2J",), "user mallory\\nforged line\\x1b[2J"),
    ],
)  # fmt: skip
def test_secrets_are_redacted_and_lines_escaped(emit, message, args, shown):
    written = emit("authlib.oauth2.rfc6749.grants", message, *args)
    assert written.count("\n") == 1
    assert shown in (json.loads(written)["message"] if written.startswith("{") else written)
    assert TOKEN not in written


def test_an_exception_is_redacted_too(emit):
    written = emit("idp", "failed", exc=ValueError(f"bad token {TOKEN}"))
    assert TOKEN not in written and "bad token [redacted]" in written

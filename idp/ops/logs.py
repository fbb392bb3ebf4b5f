"""Structured logs: one JSON object per line, each with the request id.

The request id comes from a trusted ``X-Request-Id`` (a proxy's, when it is a
plain token) or is made here; it goes back in the response's ``X-Request-Id``
and into every log line written while the request runs. Request lines name the
route pattern (``/q/<request_id>``), never the path or query: those carry login
ids, codes and state values.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, has_request_context, request

from idp.ops import metrics
from idp.terminal import printable

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

#: A value after a name that always holds a secret (``'access_token': '...'``,
#: ``code=...``, ``Authorization: Bearer ...``), whoever logs it (Authlib does at DEBUG).
_NAMED_SECRET = re.compile(
    r"""(?ix)
    \b(access_token|refresh_token|id_token|token|code|client_secret|code_verifier|password
       |logout_token|state|nonce|jti|device[-_]proof|authorization|cookie|set-cookie)\b
    (['"]?\s*[:=]\s*['"]?)
    ((?:bearer|basic|dpop)\s+)?
    [^\s'",&;)}]+
    """
)
#: An opaque run of 32 or more base64url or hex characters: every token, code, client
#: secret, login request id (in the phone's and the page's paths, which gunicorn logs at
#: DEBUG), binding cookie and JWT segment the IdP makes is one (request ids are 32 hex
#: digits, but are logged as a field of their own, not in messages).
_OPAQUE = re.compile(r"[A-Za-z0-9_-]{32,}")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with secrets and secret-shaped values replaced by ``[redacted]``."""
    text = _NAMED_SECRET.sub(lambda m: f"{m[1]}{m[2]}{m[3] or ''}{REDACTED}", text)
    return _OPAQUE.sub(REDACTED, text)


class RedactSecrets(logging.Filter):
    """On the log handler, so it sees every line whoever writes it (Authlib, gunicorn,
    SQLAlchemy, ours), at every level: tokens, codes, client secrets, proofs and login
    request ids are never written out; control characters are escaped (one record is
    one line, and a name cannot forge another)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = printable(redact(record.getMessage())), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


#: Attributes every LogRecord has; anything else was passed in ``extra=``.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "request_id", ...extra}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key != "request_id":
                entry[key] = value
        if record.exc_text:
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def current_request_id() -> str | None:
    """The id of the request being handled, if any."""
    if has_request_context():
        return g.get("request_id")
    return None


def init_app(app: Flask) -> None:
    """Give each request an id, log one line per request and count it."""
    requests_log = logging.getLogger("idp.request")

    @app.before_request
    def _start() -> None:
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if REQUEST_ID.match(incoming) else secrets.token_hex(16)
        g.request_started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id:
            response.headers["X-Request-Id"] = request_id
        route = request.url_rule.rule if request.url_rule else "unmatched"
        elapsed = time.perf_counter() - g.get("request_started", time.perf_counter())
        metrics.HTTP_REQUESTS.labels(route, str(response.status_code)).inc()
        metrics.HTTP_DURATION.labels(route).observe(elapsed)
        requests_log.info(
            "%s %s %s",
            request.method,
            route,
            response.status_code,
            extra={
                "request_id": request_id,
                "method": request.method,
                "route": route,
                "status": response.status_code,
                "duration_ms": round(elapsed * 1000, 2),
                "remote_addr": request.remote_addr,
            },
        )
        return response

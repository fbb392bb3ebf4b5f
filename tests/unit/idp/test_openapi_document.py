"""docs/openapi.yaml is valid OpenAPI 3.1 and documents every phone-API and OAuth route."""

from __future__ import annotations

import re
from pathlib import Path

import schemathesis
import yaml

from idp import create_app
from idp.errors import IdPError

DOCUMENT = Path(__file__).resolve().parents[3] / "docs" / "openapi.yaml"

#: Routes that belong to neither the phone API nor OAuth: the browser side of the QR
#: page (its own script calls them), the WebSocket, operations, static files, home.
#: A new route must be documented or named here.
NOT_DOCUMENTED = {
    "/",
    "/static/{filename}",
    "/authorize/renew/{request_id}",
    "/authorize/restart/{request_id}",
    "/authorize/short-code/{request_id}",
    "/authorize/complete/{request_id}",
    "/q/{request_id}",
    "/app",  # the phone web app: pages and their files, not an API
    "/app/",
    "/app/invite/{token}",
    "/app/q/{request_id}",
    "/app/manifest.webmanifest",
    "/app/sw.js",
    "/ws/login/{request_id}",
    "/api/mobile/v1/inbox/ws",  # a WebSocket: docs/phone-api.md describes it
    "/healthz",
    "/readyz",
    "/metrics",
}


def load_document() -> dict:
    return yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))


def app_routes(tmp_path) -> set[tuple[str, str]]:
    """Every (METHOD, /path/{param}) the app serves (HEAD and OPTIONS are Flask's own)."""
    app = create_app(
        {"IDP_DATABASE_URL": f"sqlite:///{tmp_path / 'idp.sqlite3'}", "IDP_SECRET_KEY": "x"},
        instance_path=str(tmp_path / "instance"),
    )
    try:
        return {
            (method, re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule))
            for rule in app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"}
        }
    finally:
        app.extensions["idp.broker"].close()
        app.extensions["idp.db"].engine.dispose()


def test_the_document_is_valid_openapi_3_1():
    schema = schemathesis.openapi.from_path(DOCUMENT)
    schema.validate()  # against the OpenAPI 3.1 meta-schema
    assert load_document()["openapi"].startswith("3.1.")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(
        1 for item in load_document()["paths"].values() for m in item if m != "parameters"
    )


def test_every_phone_api_and_oauth_route_is_documented_and_nothing_else(tmp_path):
    served = app_routes(tmp_path)
    documented = {
        (method.upper(), path)
        for path, item in load_document()["paths"].items()
        for method in item
        if method != "parameters"
    }
    undocumented = {r for r in served if r[1] not in NOT_DOCUMENTED} - documented
    assert not undocumented, f"routes missing from docs/openapi.yaml: {sorted(undocumented)}"
    assert not documented - served, f"documented but not served: {sorted(documented - served)}"
    stale = NOT_DOCUMENTED - {path for _, path in served}
    assert not stale, f"NOT_DOCUMENTED names routes that no longer exist: {sorted(stale)}"


def test_every_phone_api_error_code_is_in_the_document():
    """Each error class the phone API can raise is named in some response of the document."""
    text = DOCUMENT.read_text(encoding="utf-8")
    browser_only = {"binding_mismatch", "foreign_origin", "not_approved", "renewal_limit"}
    # Never answered: an unknown id is answered as expired (phone) or binding_mismatch (page).
    browser_only.add("unknown_request")
    # /metrics' refusals: the operations endpoints are not in the document.
    operations_only = {"unauthorized", "forbidden"}
    pending: list[type[IdPError]] = [IdPError]
    codes = set()
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    # 503 temporarily_unavailable (database down) can answer anything; it is not per operation.
    missing = {
        code
        for code in codes - browser_only - operations_only - {"temporarily_unavailable"}
        if not re.search(rf"\b{re.escape(code)}\b", text)
    }
    assert not missing, f"error codes not documented: {sorted(missing)}"


def test_the_phone_api_guide_links_the_document():
    guide = (DOCUMENT.parent / "phone-api.md").read_text(encoding="utf-8")
    assert "(openapi.yaml)" in guide

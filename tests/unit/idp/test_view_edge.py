"""The view edge, read from the source. Services do not read the request: a view makes
an ``idp.web.Caller`` (the sender's IP address and user agent) and reads the cookies,
and hands the services what those hold, so a service is the same called from a view, a
WebSocket step or the command line. And views share browser plumbing through
``idp.web``, not through each other."""

from __future__ import annotations

import ast
from pathlib import Path

import idp

PACKAGE = Path(idp.__file__).parent
#: What a module reading the request (or asking whether there is one) imports from Flask.
REQUEST_NAMES = {"request", "has_request_context"}


def reads_the_request(tree: ast.AST) -> list[str]:
    """How a module's source reaches the request, if it does."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("flask"):
            found += [
                f"from {node.module} import {a.name}" for a in node.names if a.name in REQUEST_NAMES
            ]
        elif isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] == "flask"]
    return found


def rule_modules() -> list[Path]:
    return sorted([*PACKAGE.rglob("services.py"), PACKAGE / "audit.py"])


def test_services_and_the_audit_log_do_not_read_the_request():
    modules = rule_modules()
    named = {path.relative_to(PACKAGE).as_posix() for path in modules}
    assert {"audit.py", "qrlogin/services.py", "sso/services.py"} <= named
    offenders = {
        path.relative_to(PACKAGE).as_posix(): reads
        for path in modules
        if (reads := reads_the_request(ast.parse(path.read_text())))
    }
    assert not offenders, (
        f"{offenders}: a service takes an idp.web.Caller and the cookies' secrets from its "
        "view instead of reading the request"
    )


def test_the_rule_sees_a_request_import():
    """The check itself finds what it looks for."""
    assert reads_the_request(ast.parse("from flask import current_app, request")) == [
        "from flask import request"
    ]
    assert reads_the_request(ast.parse("import flask")) == ["import flask"]
    assert reads_the_request(ast.parse("from flask import current_app")) == []


def test_no_view_module_imports_another():
    for path in sorted(PACKAGE.rglob("views.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            else:
                continue
            assert not any(m.endswith(".views") for m in modules), (relative, modules)

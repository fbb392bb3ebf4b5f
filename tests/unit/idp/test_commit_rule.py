"""The unit of work's rule (idp/db.py), read from the source: a request's transaction is
committed at the view edge (a ``views.py`` module) or by ``db.unit_of_work()`` for a CLI
command or a WebSocket step; services never commit; the few writes that must stand alone
are the named ones below, each with its reason."""

from __future__ import annotations

import ast
from pathlib import Path

import idp

PACKAGE = Path(idp.__file__).parent

#: The ``.commit()`` calls outside a view module, by (file, function), and why each is one.
COMMITS = {
    ("db.py", "unit_of_work"): "the helper that commits a CLI command's or a WebSocket step's work",
    ("db.py", "release_before_yield"): (
        "ends a SQLite transaction that has only read, before a yield (it asserts no writes)"
    ),
    ("mobile/proof.py", "record_proof"): (
        "on SQLite a proof's jti is committed at once, before the request's own work (only "
        "the proof was read so far): a refused proof's jti stands without settling"
    ),
    ("mobile/proof.py", "settle_proof"): (
        "the phone API's after_request, i.e. its view edge: a request that succeeded without "
        "writing (a read) commits its proof's jti there"
    ),
}

#: Who may open a transaction of their own, and why.
OWN_TRANSACTIONS = {
    ("accounts/commands.py", "users_create"): "a command: its own unit of work",
    ("accounts/commands.py", "users_invite"): "a command: its own unit of work",
    ("cli.py", "clients_create"): "a command: its own unit of work",
    ("cli.py", "clients_delete"): "a command: its own unit of work",
    ("cli.py", "keys_rotate"): "a command: its own unit of work",
    ("cli.py", "devices_revoke"): "a command: its own unit of work",
    ("demo.py", "_ensure_user"): "`idp demo` setting itself up: a command's unit of work",
    ("demo.py", "_invite_demo_user"): "`idp demo`: its invitation, printed once committed",
    ("demo.py", "_ensure_client"): "`idp demo`: committed before the client's secret is saved",
    ("demo.py", "_ensure_device_client"): "`idp demo`: committed before its id is saved",
    ("oauth/polling.py", "_pace"): (
        "a poll's interval and next allowed time stand, though the poll fails (slow_down, "
        "authorization_pending)"
    ),
    ("oauth/polling.py", "_expire"): "an expiry seen by a poll stands, though the poll fails",
    ("realtime/views.py", "_current_state"): "a WebSocket step that saw the request expire",
    ("mobile/proof.py", "settle_proof"): "a refused proof's jti stands alone",
    ("qrlogin/services.py", "_check_open"): "an expiry seen on read stands alone",
    ("mobile/invitations.py", "_refuse"): (
        "a refused invitation's audit line stands, though the enrollment that sent it fails"
    ),
    ("oauth/family.py", "revoke_family"): (
        "a replayed code's or refresh token's family revocation stands, though the token "
        "request that found it fails"
    ),
    ("oauth/keys.py", "_load_rows"): "the first signing keys, made by whichever request needs one",
    ("oauth/ciba/__init__.py", "_refuse_muted"): (
        "a muted client's refused backchannel request is audited, and that stands"
    ),
    ("oauth/ciba/__init__.py", "_ping_on_decision"): (
        "a listener after the deciding commit (between the request's transactions) reads the"
        " decided request for its ping, in a short read of its own"
    ),
    ("housekeeping.py", "purge"): "`idp purge`: each batch a short transaction of its own",
    ("housekeeping.py", "_delete_in_batches"): "`idp purge`: each batch its own transaction",
}
TRANSACTION_HELPERS = {"unit_of_work", "stand_alone", "independent_transaction"}


def calls(names: set[str], *, attribute_only: bool) -> set[tuple[str, str]]:
    """(file, enclosing function) of every call to one of ``names`` under idp/, outside
    db.py's own definitions and the view modules (for commits)."""
    found = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        tree = ast.parse(path.read_text(), filename=relative)
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if not isinstance(node, ast.Call):
                    continue
                target = node.func
                if isinstance(target, ast.Attribute):
                    name = target.attr
                elif isinstance(target, ast.Name) and not attribute_only:
                    name = target.id
                else:
                    continue
                if name in names:
                    found.add((relative, function.name))
    return found


def is_view_module(relative: str) -> bool:
    return relative.endswith("/views.py")


def test_only_views_and_the_named_stand_alone_writes_commit():
    commits = {c for c in calls({"commit"}, attribute_only=True) if not is_view_module(c[0])}
    unexpected = commits - set(COMMITS)
    assert not unexpected, (
        f"{sorted(unexpected)} commit: a service leaves the commit to its caller's view "
        "(or unit_of_work); a write that must stand alone uses db.stand_alone(), named in "
        "idp/db.py's docstring and in this test"
    )
    assert commits == set(COMMITS), f"stale entries: {sorted(set(COMMITS) - commits)}"


def test_only_commands_sockets_and_the_named_writes_open_their_own_transaction():
    opened = {
        c
        for c in calls(TRANSACTION_HELPERS, attribute_only=False)
        if c[0] != "db.py"  # the helpers themselves
    }
    unexpected = opened - set(OWN_TRANSACTIONS)
    assert not unexpected, (
        f"{sorted(unexpected)} open a transaction of their own: only a command, a WebSocket "
        "step or a write named in idp/db.py's docstring may"
    )
    assert opened == set(OWN_TRANSACTIONS), (
        f"stale entries: {sorted(set(OWN_TRANSACTIONS) - opened)}"
    )


def test_no_service_reaches_into_a_view_module():
    """The commits allowed in ``views.py`` modules are at the view edge only if nothing
    but the app factory and other views imports those modules: a service calling into
    one could commit through it."""
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if is_view_module(relative) or relative == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            modules = []
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            assert not any(m.endswith(".views") for m in modules), (relative, modules)

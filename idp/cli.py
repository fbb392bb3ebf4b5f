"""The ``idp`` command: database, users, clients, serving and the demo."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import click
from flask import Flask, current_app

from idp.accounts.commands import users
from idp.errors import IdPError
from idp.terminal import printable


def _app() -> Flask:
    from idp import create_app
    from idp.config import ConfigError

    try:
        return create_app()
    except ConfigError as error:
        _fail(str(error))
        raise  # unreachable: _fail exits


def _config() -> dict[str, Any]:
    """The settings, checked as ``create_app`` checks them, without building the app."""
    from idp import instance_folder
    from idp.config import ConfigError, load

    try:
        return load(instance_folder())
    except ConfigError as error:
        _fail(str(error))
        raise  # unreachable: _fail exits


def _fail(message: str) -> None:
    _echo(f"error: {message}", err=True)
    sys.exit(1)


def _echo(line: str, *, err: bool = False) -> None:
    """Print one line. Every line goes through here: names, ids and audit details come
    from users, phones and clients, and their control characters are shown escaped
    (JSON output is unchanged: ``json.dumps`` already escapes them)."""
    click.echo(printable(line), err=err)


@click.group()
def main() -> None:
    """QR-IdP: an OpenID Connect provider whose sign-in is a QR code scanned by your phone.

    Configuration comes from IDP_* environment variables (docs/configuration.md).
    """


@main.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the Alembic migrations to IDP_DATABASE_URL."""
    from idp.migrate import upgrade

    url = _app().config["IDP_DATABASE_URL"]
    upgrade(url)
    _echo("database is up to date")


@main.group()
def clients() -> None:
    """OAuth clients (relying parties)."""


@clients.command("create")
@click.option("--name", required=True, help="Shown to users on the page and the phone.")
@click.option("--redirect-uri", "redirect_uris", multiple=True,
              help="An exact redirect URI; repeat for several (at least one, unless "
                   "--device-grant).")  # fmt: skip
@click.option("--public", is_flag=True, help="No secret (browser or native app): PKCE only.")
@click.option("--logo-uri", default=None, help="An https image shown beside the name.")
@click.option("--post-logout-redirect-uri", "logout_uris", multiple=True,
              help="Where logout may return the browser (exact; repeatable).")  # fmt: skip
@click.option("--service-account", is_flag=True,
              help="May also get tokens for itself (client_credentials grant).")  # fmt: skip
@click.option("--device-grant", is_flag=True,
              help="May also sign in a device without a browser (a TV, a command line): "
                   "RFC 8628's device authorization grant; no redirect URI needed.")  # fmt: skip
@click.option("--number-matching", is_flag=True,
              help="After the scan the phone must pick the number the page shows.")  # fmt: skip
@click.option("--web-origin", "web_origins", multiple=True,
              help="An origin (https://host[:port]) whose pages may call the token, UserInfo "
                   "and revocation endpoints (CORS), besides the redirect URIs' origins; "
                   "repeatable.")  # fmt: skip
@click.option("--id-token-alg", type=click.Choice(["RS256", "ES256"]), default="RS256",
              show_default=True, help="How this client's ID tokens are signed.")  # fmt: skip
@click.option("--proximity", type=click.Choice(["warn", "require_same_network", "off"]),
              default=None,
              help="How near the phone must be to the browser for this client: "
                   "require_same_network refuses an approval from another network. The "
                   "stricter of this and IDP_PROXIMITY applies (default: IDP_PROXIMITY).",
              )  # fmt: skip
@click.option("--ciba", is_flag=True,
              help="May ask for a user's approval on the phone from its server "
                   "(OpenID CIBA, POST /bc-authorize); confidential clients only.")  # fmt: skip
@click.option("--ciba-mode", type=click.Choice(["poll", "ping"]), default=None,
              help="With --ciba: poll the token endpoint (default), or be pinged at "
                   "--ciba-notification-endpoint when the user decided.")  # fmt: skip
@click.option("--ciba-notification-endpoint", default=None,
              help="With --ciba-mode ping: where the IdP POSTs {\"auth_req_id\": ...} "
                   "(https, or http on a loopback host).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def clients_create(
    name: str,
    redirect_uris: tuple[str, ...],
    public: bool,
    logo_uri: str | None,
    logout_uris: tuple[str, ...],
    service_account: bool,
    device_grant: bool,
    number_matching: bool,
    web_origins: tuple[str, ...],
    id_token_alg: str,
    proximity: str | None,
    ciba: bool,
    ciba_mode: str | None,
    ciba_notification_endpoint: str | None,
    as_json: bool,
) -> None:
    """Register a client. A confidential client's secret is printed once, here."""
    if not redirect_uris and not device_grant and not ciba:
        raise click.UsageError(
            "Missing option '--redirect-uri' (a client needs one, unless it is only for "
            "devices, --device-grant, or for CIBA, --ciba)."
        )
    from idp import db as database
    from idp.admin.services import create_client

    if (ciba_mode or ciba_notification_endpoint) and not ciba:
        _fail("--ciba-mode and --ciba-notification-endpoint need --ciba")
    with _app().app_context():
        try:
            with database.unit_of_work():
                client, secret = create_client(
                    name,
                    list(redirect_uris),
                    public=public,
                    logo_uri=logo_uri,
                    service_account=service_account,
                    post_logout_redirect_uris=list(logout_uris),
                    number_matching=number_matching,
                    web_origins=list(web_origins),
                    id_token_alg=id_token_alg,
                    proximity=proximity,
                    device_grant=device_grant,
                    ciba_mode=(ciba_mode or "poll") if ciba else None,
                    ciba_notification_endpoint=ciba_notification_endpoint,
                )
        except IdPError as error:
            _fail(error.description)
        if as_json:
            _echo(json.dumps({"client_id": client.client_id, "client_secret": secret}))
            return
        _echo(f"client_id: {client.client_id}")
        if secret:
            _echo(f"client_secret: {secret}")
            _echo("(the secret is shown only now; the IdP keeps only its hash)")


@clients.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def clients_list(as_json: bool) -> None:
    """List the registered clients."""
    from idp.admin.services import DEVICE_CODE_GRANT, list_clients

    with _app().app_context():
        rows: list[dict[str, Any]] = [
            {
                "client_id": c.client_id,
                "name": c.name,
                "type": "public" if c.is_public else "confidential",
                "redirect_uris": c.redirect_uris,
                "grant_types": c.grant_types,
                # The client's own policy; the stricter of it and IDP_PROXIMITY applies.
                "proximity": c.proximity,
                # OpenID CIBA: "poll" or "ping" (null: not a CIBA client), and where a
                # ping goes.
                "ciba_mode": c.backchannel_token_delivery_mode,
                "ciba_notification_endpoint": c.backchannel_client_notification_endpoint,
            }
            for c in list_clients()
        ]
    if as_json:
        _echo(json.dumps(rows))
        return
    for row in rows:
        uris = " ".join(row["redirect_uris"])
        policy = f"  proximity={row['proximity']}" if row["proximity"] else ""
        device = "  device-grant" if DEVICE_CODE_GRANT in row["grant_types"] else ""
        if row["ciba_mode"]:
            policy += f"  ciba={row['ciba_mode']}"
            if row["ciba_notification_endpoint"]:
                policy += f" -> {row['ciba_notification_endpoint']}"
        _echo(f"{row['client_id']}  {row['type']:<12}  {row['name']}  {uris}{policy}{device}")


@clients.command("delete")
@click.argument("client_id")
def clients_delete(client_id: str) -> None:
    """Delete a client, with its codes and tokens."""
    from idp import db as database
    from idp.admin.services import delete_client

    with _app().app_context():
        with database.unit_of_work():
            deleted = delete_client(client_id)
        if not deleted:
            _fail(f"no client {client_id!r}")
    _echo(f"deleted client {client_id}")


@main.group()
def keys() -> None:
    """The ID-token signing keys."""


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_list(as_json: bool) -> None:
    """Every key: signing, next (published, signs soon), published (retired, its tokens
    still valid) or expired (no longer published)."""
    from idp.oauth.keys import list_keys

    with _app().app_context():
        rows = [
            row | {"created_at": _iso(row["created_at"]), "retired_at": _iso(row["retired_at"])}
            for row in list_keys()
        ]
    if as_json:
        _echo(json.dumps(rows))
        return
    for row in rows:
        retired = f"retired {row['retired_at']}" if row["retired_at"] else ""
        _echo(f"{row['kid']}  {row['alg']}  {row['state']:<9}  {row['created_at']}  {retired}")


@keys.command("rotate")
@click.option("--alg", "algorithms", multiple=True, type=click.Choice(["RS256", "ES256"]),
              help="Only this algorithm (repeatable; default: all).")  # fmt: skip
def keys_rotate(algorithms: tuple[str, ...]) -> None:
    """Add new signing keys. Each is published at once and signs after
    IDP_KEY_PUBLISH_AHEAD seconds; the key it replaces stays published until the
    tokens it signed have expired."""
    from idp import db as database
    from idp.oauth.keys import ALGORITHMS, rotate_keys

    with _app().app_context(), database.unit_of_work():
        rotated = rotate_keys(algorithms or ALGORITHMS)
    for alg, kid, takes_over in rotated:
        _echo(f"{alg}: new key {kid}, signing from {_iso(takes_over)}")


@main.group()
def devices() -> None:
    """Enrolled phones."""


@devices.command("list")
@click.argument("username")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def devices_list(username: str, as_json: bool) -> None:
    """List a user's phones, revoked ones included."""
    from idp.mobile.services import list_devices

    with _app().app_context():
        try:
            rows = [
                {
                    "device_id": d.device_id,
                    "name": d.name,
                    "created_at": _iso(d.created_at),
                    "last_used_at": _iso(d.last_used_at),
                    "revoked_at": _iso(d.revoked_at),
                    # "password", "invitation", "device:<approver>"; None: before 0010.
                    "enrolled_via": d.enrolled_via,
                }
                for d in list_devices(username)
            ]
        except IdPError as error:
            _fail(error.description)
    if as_json:
        _echo(json.dumps(rows))
        return
    if not rows:
        _echo(f"{username} has no enrolled phone")
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        used = row["last_used_at"] or "never"
        via = row["enrolled_via"] or "unrecorded"
        _echo(
            f"{row['device_id']}  {state:<28}  last used {used:<20}  via {via:<26}  {row['name']}"
        )


@devices.command("revoke")
@click.argument("device_id")
def devices_revoke(device_id: str) -> None:
    """Revoke a phone: its next request is refused, for good; its tokens, unredeemed
    codes and IdP sessions are revoked, and the sign-ins it approved but no browser
    completed are denied."""
    from idp import db as database
    from idp.mobile.services import revoke_device

    with _app().app_context():
        # A command's broker has only just connected: let it subscribe (bounded), or what
        # it publishes waits in a backlog that dies with this process.
        broker = current_app.extensions["idp.broker"]
        if hasattr(broker, "wait_ready"):
            broker.wait_ready(current_app.config["IDP_REDIS_TIMEOUT"])
        try:
            # The phone and everything it gave, in one transaction; the sign-ins it denied
            # are published once that has committed.
            with database.unit_of_work():
                revocation = revoke_device(device_id)
        except IdPError as error:
            _fail(error.description)
        name = revocation.device.name
    if revocation.changed:
        _echo(f"revoked {device_id} ({name})")
    else:
        _echo(f"{device_id} ({name}) was already revoked")


@main.command()
@click.option("--user", "username", help="Only this user's events.")
@click.option(
    "--since", help="Only events since then: 2026-11-25, 2026-11-25T09:00, or 30m, 12h, 7d ago."
)
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(min=1),
              help="At most this many events (the most recent).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
def audit(username: str | None, since: str | None, limit: int, as_json: bool) -> None:
    """Show the audit log, oldest first: enrollments, scans, approvals, denials, sign-ins,
    tokens issued and revoked, devices revoked, clients and keys changed (times in UTC)."""
    from idp import audit as log

    start = _parse_since(since) if since else None
    with _app().app_context():
        lines = log.query(username=username, since=start, limit=limit)
    for line in lines:
        _echo(json.dumps(line.as_json()) if as_json else line.as_text())
    if not lines and not as_json:
        _echo("no events", err=True)


def _parse_since(text: str) -> datetime:
    """An ISO date or time (UTC), or an age such as ``30m``, ``12h``, ``7d``."""
    from datetime import timedelta

    from idp.db import utcnow

    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    text = text.strip()
    if text[:-1].isdigit() and text[-1:] in units:
        return utcnow() - timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        moment = datetime.fromisoformat(text.removesuffix("Z"))
    except ValueError:
        _fail(
            "--since takes a date (2026-11-25), a time (2026-11-25T09:00) "
            f"or an age (12h), not {text!r}"
        )
        raise  # unreachable: _fail exits
    if moment.tzinfo is not None:
        from datetime import UTC

        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


@main.command()
@click.option("--keep", default=3600, show_default=True, type=click.IntRange(min=0),
              help="Seconds to keep rows after they expire (for investigating).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def purge(keep: int, as_json: bool) -> None:
    """Delete expired login requests, codes, tokens, invitations and used proofs.

    Safe to run on a schedule (cron, a systemd timer, a Kubernetes CronJob)
    while the IdP serves, and from several hosts at once.
    """
    from datetime import timedelta

    from idp.housekeeping import purge as run_purge

    with _app().app_context():
        report = run_purge(timedelta(seconds=keep))
    if as_json:
        _echo(json.dumps(report.deleted))
        return
    for table, count in report.deleted.items():
        _echo(f"{table}: {count} deleted")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int)
@click.option("--worker-connections", default=10000, show_default=True, type=int,
              help="Open connections (pages' WebSockets included) one worker holds.")  # fmt: skip
def serve(host: str, port: int, workers: int, worker_connections: int) -> None:
    """Serve the IdP (HTTP and WebSocket) with gunicorn and gevent workers."""
    from idp.server import run, shared_metrics

    with shared_metrics(workers):
        # Fail fast on bad configuration, before forking workers, but without building the
        # app here: that would import the database driver before the workers' gevent
        # patching (idp.db.cooperate_with_gevent), and open nothing the workers could share.
        config = _config()
        if workers > 1 and config["IDP_BROKER_URL"] == "memory://":
            _fail("several workers need a shared broker: set IDP_BROKER_URL=redis://...")
        run(
            host=host,
            port=port,
            workers=workers,
            worker_connections=worker_connections,
            log_format=config["IDP_LOG_FORMAT"],
            log_level=config["IDP_LOG_LEVEL"],
        )


@main.command()
@click.option("--port", default=8000, show_default=True, type=int, help="The IdP's port.")
@click.option("--rp-port", default=8001, show_default=True, type=int, help="The demo RP's port.")
def demo(port: int, rp_port: int) -> None:
    """Set up and run the embedded demo: IdP, demo relying party and a phone profile."""
    from idp_phone.extra import require_phone_extra

    require_phone_extra("idp demo")  # it runs the phone app and the demo RP
    from idp.demo import run_demo

    run_demo(port=port, rp_port=rp_port)


main.add_command(users)

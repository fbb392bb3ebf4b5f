"""``idp demo``: the embedded demo, set up and running in one command.

It migrates the SQLite database in the instance folder, creates a demo user, the
demo RP's client and the demo device's (``clients/demo_device``), starts the IdP
(``idp serve`` with a hook that prints the phone command for each new code: ``python -m
idp.demo``), enrolls a demo phone profile,
starts the demo relying party, and prints what to open, the phone command to run, the
phone web app's address and a one-time invitation link (with its QR code) that sets up
a phone browser as the demo user. Running it again reuses what the last run made.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select

from idp import create_app, db, instance_folder
from idp.accounts.models import User
from idp.accounts.services import create_user
from idp.admin.services import create_client
from idp.config import load
from idp.migrate import upgrade
from idp.mobile.invitations import create_invitation, invitation_url
from idp.oauth.models import Client
from idp.qrlogin.models import LoginRequest
from idp.qrlogin.qr import qr_for_terminal
from idp.terminal import printable

DEMO_USER = "demo"
DEMO_PASSWORD = "demo-password"  # noqa: S105 (printed for the person trying the demo)
INVITATION_TTL = timedelta(hours=1)


def run_demo(*, port: int, rp_port: int) -> None:
    """Set everything up, run the IdP and the demo RP, and wait for Ctrl-C (or a SIGTERM,
    which stops them the same way)."""
    signal.signal(signal.SIGTERM, _interrupt)
    for p in (port, rp_port):
        _check_port_free(p)
    issuer = f"http://127.0.0.1:{port}"
    rp_url = f"http://localhost:{rp_port}"
    app = create_app({"IDP_ISSUER": issuer})
    instance = Path(app.instance_path)
    upgrade(app.config["IDP_DATABASE_URL"])
    with app.app_context():
        _ensure_user()
        rp_settings = _ensure_client(app, instance / "demo-rp.json", rp_url)
        device_client = _ensure_device_client(instance / "demo-device.json")
        invitation = _invite_demo_user(issuer)

    bin_dir = Path(sys.executable).parent
    profile = instance / "demo-phone"
    phone = f"{_shown(bin_dir / 'idp-phone')} --profile {_shown(profile)}"
    env = os.environ | {
        "IDP_ISSUER": issuer,
        "IDP_DATABASE_URL": app.config["IDP_DATABASE_URL"],
        # A person reads this terminal: plain lines, and only warnings besides the
        # phone commands.
        "IDP_LOG_FORMAT": os.environ.get("IDP_LOG_FORMAT") or "text",
        "IDP_LOG_LEVEL": os.environ.get("IDP_LOG_LEVEL") or "WARNING",
    }
    processes: list[subprocess.Popen[bytes]] = []
    try:
        serve = [sys.executable, "-m", "idp.demo", "--port", str(port)]
        processes.append(subprocess.Popen([*serve, "--phone-command", f"{phone} scan"], env=env))
        _wait_until_up(f"{issuer}/.well-known/openid-configuration", processes[-1])
        _ensure_phone(profile, issuer)
        rp_env = os.environ | rp_settings | {"RP_ISSUER": issuer, "RP_BASE_URL": rp_url}
        processes.append(
            subprocess.Popen([sys.executable, "-m", "demo_rp", "--port", str(rp_port)], env=rp_env)
        )
        _wait_until_up(f"{rp_url}/", processes[-1])
        python = _shown(Path(sys.executable))
        device = f"{python} -m demo_device --issuer {issuer} --client-id {device_client}"
        _print_banner(rp_url, issuer, phone, invitation, device)
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        print("a demo process stopped; shutting down", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nstopping the demo", file=sys.stderr)
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _ensure_user() -> None:
    if db.session.scalar(select(User.id).where(User.username == DEMO_USER)) is None:
        with db.unit_of_work():
            create_user(DEMO_USER, DEMO_PASSWORD, email="demo@example.com", name="Demo User")


def _invite_demo_user(issuer: str) -> str:
    """A fresh one-time link (an hour) that enrolls a phone browser as the demo user."""
    with db.unit_of_work():
        token, _ = create_invitation(DEMO_USER, INVITATION_TTL, created_by="demo")
    return invitation_url(issuer, token)


def _ensure_client(app: Flask, path: Path, rp_url: str) -> dict[str, str]:
    """The demo RP's client (kept in the instance folder, since its secret is shown once)."""
    redirect_uri = f"{rp_url}/callback"
    if path.exists():
        saved: dict[str, Any] = json.loads(path.read_text())
        client = db.session.scalar(select(Client).where(Client.client_id == saved["RP_CLIENT_ID"]))
        if client is not None and client.redirect_uris == [redirect_uri]:
            return saved
    with db.unit_of_work():
        client, secret = create_client("Demo RP", [redirect_uri])
    settings = {
        "RP_CLIENT_ID": client.client_id,
        "RP_CLIENT_SECRET": secret or "",
        "RP_SECRET_KEY": secrets.token_urlsafe(32),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(settings, f)
    return settings


def _ensure_device_client(path: Path) -> str:
    """The demo device's client (public, the device grant only), kept in the instance
    folder like the demo RP's: its id."""
    if path.exists():
        saved = json.loads(path.read_text())
        if db.session.scalar(select(Client.id).where(Client.client_id == saved["client_id"])):
            return str(saved["client_id"])
    with db.unit_of_work():
        client, _ = create_client("Demo TV", [], public=True, device_grant=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"client_id": client.client_id}))
    return client.client_id


def _ensure_phone(profile: Path, issuer: str) -> None:
    """Enroll the demo phone unless its profile still works with this IdP."""
    from idp_phone.api import PhoneApiError, PhoneClient
    from idp_phone.profile import is_enrolled

    if is_enrolled(profile):
        try:
            PhoneClient(profile).me()
            return
        except PhoneApiError:
            shutil.rmtree(profile)  # e.g. the database was reset: enroll again
    PhoneClient(profile).enroll(issuer, DEMO_USER, DEMO_PASSWORD, "Demo phone")


def _check_port_free(port: int) -> None:
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            raise SystemExit(
                f"port {port} is in use: stop what runs there, or pick others with "
                "`idp demo --port P --rp-port Q`"
            )


def _wait_until_up(url: str, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    # Imported here: the demo's IdP process (serve_idp) must not import ssl before its
    # worker's gevent patching, and requests does.
    import requests

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} did not start (exit code {process.returncode})")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or still starting (a first answer can be slow)
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {seconds:.0f} s")


def _shown(path: Path) -> str:
    """A path as short as it can be written from here."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _print_banner(rp_url: str, issuer: str, phone: str, invitation: str, device: str) -> None:
    print(
        f"""
================================================================================
 QR-IdP demo is running.

 1. Open the demo website:   {rp_url}/
    and click "Sign in with your phone". The IdP ({issuer}) shows a QR code.

 2. Approve with the phone web app, {issuer}/app/ : open this one-time link
    (1 hour) in another browser window (or in a phone browser that reaches this
    address over https) to set it up as user "{DEMO_USER}", no password needed:
    {invitation}
{qr_for_terminal(invitation, sys.stdout)}
    Then, on the sign-in page, open "Can't scan?": type its code in the app, or
    open its link in that window (a phone's camera opens the same link).

    Or approve with the terminal phone (already enrolled as "{DEMO_USER}"): the
    exact command for each new code is printed below as it appears, e.g.
        {phone} scan {issuer}/q/<id> --approve

 3. The page goes back to the website, signed in, with the ID token's claims.

 4. A TV or a command line signs in too (the device grant, RFC 8628): run
        {device}
    It prints a QR code and a code: scan it with the web app (or type the code in
    its "Can't scan?" field), or approve with the terminal phone:
        {phone} scan --user-code CODE --approve
    and it prints the ID token's claims.

 Another terminal phone profile:  idp-phone enroll --server {issuer} \\
        --username {DEMO_USER} --password-stdin    (password: {DEMO_PASSWORD})
    "{DEMO_USER}" has a phone already, so a password enrolls a next phone only once
    that phone approves it: the new one shows a code, which this approves:
        {phone} approve-phone CODE

 Press Ctrl-C to stop.
================================================================================
""",
        flush=True,
    )


def serve_idp(argv: list[str] | None = None) -> None:
    """The demo's IdP process: ``idp serve`` (one worker), whose app prints the phone
    command that approves each new code."""
    parser = argparse.ArgumentParser(prog="python -m idp.demo")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--phone-command", required=True, help="printed before each QR URL")
    args = parser.parse_args(argv)
    from idp.server import run

    config = load(instance_folder())
    run(
        host="127.0.0.1",
        port=args.port,
        workers=1,
        worker_connections=10000,
        log_format=config["IDP_LOG_FORMAT"],
        log_level=config["IDP_LOG_LEVEL"],
        app_factory=functools.partial(demo_app, args.phone_command),
    )


def demo_app(phone_command: str) -> Flask:
    """The IdP, with the demo's "login started" hook."""
    app = create_app()
    app.extensions["idp.login_started"].append(functools.partial(print_approval, phone_command))
    return app


def print_approval(phone_command: str, login: LoginRequest, qr_url: str) -> None:
    """Print the command that approves this sign-in with the demo phone."""
    print(
        f"\n[demo] sign-in request from {printable(login.client.name)}; approve it with:\n"
        f"    {phone_command} {qr_url} --approve\n",
        flush=True,
    )


if __name__ == "__main__":
    serve_idp()

"""``idp users``: create people who sign in, and invite them to enroll a phone.

Registered on the ``idp`` group by idp.cli, whose helpers (the app, one-line output,
failing with a message) it uses; they are imported when a command runs, since idp.cli
imports this module.
"""

from __future__ import annotations

import re
import sys
from datetime import timedelta

import click

from idp.errors import IdPError

DURATION_RE = re.compile(r"([1-9][0-9]{0,5})([smh])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours"}


class Duration(click.ParamType):
    """A lifetime written ``90s``, ``15m`` or ``2h``."""

    name = "duration"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        match = DURATION_RE.fullmatch(str(value).strip())
        if match is None:
            self.fail(f"{value!r} is not a duration such as 90s, 15m or 2h", param, ctx)
        return timedelta(**{_UNITS[match[2]]: int(match[1])})


@click.group()
def users() -> None:
    """People who sign in."""


@users.command("create")
@click.argument("username")
@click.option("--email", default=None, help="The user's email address.")
@click.option("--name", default=None, help="The user's full name.")
@click.option("--password-stdin", is_flag=True, required=True, help="Read the password from stdin.")
def users_create(username: str, email: str | None, name: str | None, password_stdin: bool) -> None:
    """Create a user whose password is read from standard input."""
    from idp import db
    from idp.accounts.services import create_user
    from idp.cli import _app, _echo, _fail

    password = sys.stdin.readline().rstrip("\r\n")
    with _app().app_context():
        try:
            with db.unit_of_work():
                user = create_user(username, password, email=email, name=name)
        except IdPError as error:
            _fail(error.description)
        _echo(f"created user {user.username} (sub {user.subject})")


@users.command("invite")
@click.argument("username")
@click.option("--ttl", type=Duration(), default="15m", show_default=True,
              help="How long the link works: 90s, 15m, 2h (1 minute to 24 hours).")  # fmt: skip
@click.option("--no-qr", is_flag=True, help="Print the link only, without its QR code.")
def users_invite(username: str, ttl: timedelta, no_qr: bool) -> None:
    """Print a one-time link that enrolls a phone for USERNAME without a password (open
    it on the phone, or scan its QR code), and when it expires. Only a digest of the
    link is stored: it cannot be shown again."""
    from flask import current_app

    from idp import db
    from idp.cli import _app, _echo, _fail
    from idp.mobile.invitations import create_invitation, invitation_url
    from idp.qrlogin.qr import qr_for_terminal

    with _app().app_context():
        try:
            with db.unit_of_work():
                token, invitation = create_invitation(username, ttl, created_by="cli")
        except IdPError as error:
            _fail(error.description)
        url = invitation_url(current_app.config["IDP_ISSUER"], token)
        expires = invitation.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    _echo(url)
    if not no_qr:
        # Block characters only: nothing to escape.
        click.echo(qr_for_terminal(url, sys.stdout), nl=False)
    _echo(f"expires {expires} (in {_spoken(ttl)}); it enrolls one phone for {username}, once")


def _spoken(ttl: timedelta) -> str:
    seconds = int(ttl.total_seconds())
    for unit, size in (("hour", 3600), ("minute", 60)):
        if seconds % size == 0 and seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"

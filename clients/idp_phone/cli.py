"""``idp-phone``: the reference phone app, as a command line.

Commands::

    idp-phone [--profile DIR] enroll --server URL --username U --password-stdin [--device-name N]
    idp-phone [--profile DIR] scan SOURCE [--approve | --deny] [--json]
    idp-phone [--profile DIR] scan --code KXRT-WMPQ [--approve | --deny] [--json]
    idp-phone [--profile DIR] scan --user-code KXRT-WMPQ [--approve | --deny] [--json]
    idp-phone [--profile DIR] approve-phone CODE [--approve | --deny]
    idp-phone [--profile DIR] requests [--watch] [--json]
    idp-phone [--profile DIR] approve ID [--yes]
    idp-phone [--profile DIR] deny ID [--yes]
    idp-phone [--profile DIR] whoami
    idp-phone [--profile DIR] devices
    idp-phone [--profile DIR] revoke DEVICE_ID

``scan`` also takes a device's sign-in (RFC 8628: a TV or a command line shows a code and
its QR code, ``{server}/device?user_code=...``): as SOURCE, or its code typed with
``--user-code`` (the same as ``--code``). The description then says that a device wants to
sign in as you, the code to compare with the device's screen, and a warning against codes
someone sent you.
``requests`` lists what sites asked for from their servers (OpenID CIBA: no QR code, no
browser), waiting in this user's inbox; ``--watch`` keeps the inbox socket open and prints
the list again each time it changes (reconnecting when it drops). ``approve ID`` and
``deny ID`` take one up, show the site, its message, what it asks for and when, and ask
y/N (``--yes``: without asking).

A user's next phone needs an old phone: ``enroll`` then prints a code and waits (asking
every 2 s) until one of the user's phones approves it with ``approve-phone CODE`` (or
denies it, or it expires); Ctrl-C stops waiting, and nothing is saved. (There is no
``--no-wait``: nothing is written to the profile before the approval, so the waiting
process is what holds the new key.)

Exit codes: 0 success, 1 the server refused (``error: CODE: DESCRIPTION``) or cannot be
reached, or the new phone was denied or its request expired, 2 a usage or local error
(no profile, unreadable image, not our QR code, ...), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import socket
import sys
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar
from urllib.parse import urlsplit

from idp_phone.api import (
    ApprovalNeeded,
    EnrollmentNotApproved,
    NotASignInCodeError,
    PendingEnrollment,
    PhoneApiError,
    PhoneClient,
    ServerUnreachableError,
    check_login_qr,
    normalize_server,
    normalize_short_code,
)
from idp_phone.profile import DEFAULT_PROFILE_DIR, ProfileError, is_enrolled
from idp_phone.qr import QrDecodeError, decode_qr

EXIT_OK = 0
EXIT_API = 1
EXIT_USAGE = 2

_Json = TypeVar("_Json", dict[str, Any], list[Any])
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


#: What to do about a refusal, printed after the server's own words.
ADVICE = {
    "wrong_account": "This sign-in was started for another account than this phone's: "
    "nothing was shown or approved. If it is yours, sign in on the site as your own account.",
}


class UsageError(Exception):
    """A local problem with what the user asked for; exit code 2."""


def clean(value: object, limit: int = 300) -> str:
    """Make a server-supplied value safe to print on a terminal.

    Control and format characters (escape sequences, bidirectional overrides, ...) are shown
    escaped, so a client name cannot rewrite what the user sees; long values are cut.
    """
    if value is None:
        return "(unknown)"
    text = str(value)
    safe = "".join(
        char.encode("unicode_escape").decode("ascii")
        if unicodedata.category(char).startswith("C")
        else char
        for char in text
    )
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"


def read_source(source: str) -> str:
    """Return the QR text of SOURCE: the text itself if it is an http(s) URL, else the QR
    code decoded from the image file at that path."""
    if source.strip().lower().startswith(("http://", "https://")):
        return source.strip()
    path = Path(source)
    if not path.exists():
        raise UsageError(
            f"{source!r} is neither the QR code's URL (http:// or https://) "
            "nor an existing image file"
        )
    return decode_qr(path)


def _duration(seconds: float) -> str:
    seconds = round(abs(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _when(value: object, now: datetime, *, expiry: bool = False) -> str:
    """Show an RFC 3339 timestamp in local time, with how long ago or how soon."""
    if not isinstance(value, str):
        return clean(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return clean(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = (moment - now).total_seconds()
    if delta >= 0:
        relative = f"in {_duration(delta)}"
    else:
        relative = f"{'expired ' if expiry else ''}{_duration(delta)} ago"
    return f"{moment.astimezone():%Y-%m-%d %H:%M:%S %Z} ({relative})"


def _member(data: dict[str, Any], name: str, kind: type[_Json]) -> _Json:
    """``data[name]`` if it is a ``kind``, else an empty one (the server's JSON is not trusted)."""
    value = data.get(name)
    return value if isinstance(value, kind) else kind()


#: Said before every device sign-in: device-code phishing sends a victim a real code
#: (by e-mail, chat, a phone call) and asks them to enter it (reported by Microsoft as
#: Storm-2372, 2025).
DEVICE_WARNING = (
    "Approve only if you started this sign-in yourself, on a device in front of you that "
    "shows this code. If someone sent you this code or link (by e-mail, chat or phone) and "
    "asked you to enter it, deny: they are trying to get into your account."
)


def describe_device_request(
    view: dict[str, Any], *, account: str, now: datetime | None = None
) -> str:
    """What the user must read before letting a device sign in: the warning, the code to
    compare with the device's screen, who asks, for what, from where, when."""
    now = now if now is not None else datetime.now(UTC)
    client = _member(view, "client", dict)
    device = _member(view, "browser", dict)
    scopes = _member(view, "scopes", list)
    lines = [
        f"A device wants to sign in as you to {clean(client.get('name'))}",
        f"  !! {DEVICE_WARNING}",
    ]
    proximity = view.get("proximity")
    if isinstance(proximity, dict) and proximity.get("message"):
        far = far_from_browser(view) or refused_here(view)
        lines.append(f"  {'!! ' if far else ''}{clean(proximity['message'])}")
    code = view.get("user_code")
    lines += [
        f"  Account:       {account}",
        f"  Application:   {clean(client.get('name'))}",
        (
            f"  Code:          {clean(code)} (the device must show this same code)"
            if isinstance(code, str) and code
            else "  Code:          (not known here: compare on the device)"
        ),
        "  It asks for:",
    ]
    lines += _scope_lines(scopes)
    lines += [
        f"  Device:        {clean(device.get('summary'))}",
        f"  IP address:    {clean(device.get('ip'))}",
        *(
            [f"  Location:      {clean(device['location'])} (approximate)"]
            if device.get("location")
            else []
        ),
        f"  User agent:    {clean(device.get('user_agent'))}",
        f"  Requested:     {_when(view.get('created_at'), now)}",
        f"  Expires:       {_when(view.get('expires_at'), now, expiry=True)}",
    ]
    return "\n".join(lines)


def _scope_lines(scopes: list[Any]) -> list[str]:
    lines = []
    for scope in scopes:
        if isinstance(scope, dict):
            name, description = scope.get("name"), scope.get("description")
            lines.append(f"    - {clean(name)}: {clean(description)}")
        else:
            lines.append(f"    - {clean(scope)}")
    return lines or ["    (nothing listed)"]


def describe_login_request(
    view: dict[str, Any], *, account: str, now: datetime | None = None
) -> str:
    """The text the user must read before deciding: who asks, for what, from where, when
    (for a device's sign-in, :func:`describe_device_request`)."""
    if view.get("kind") == "device":
        return describe_device_request(view, account=account, now=now)
    now = now if now is not None else datetime.now(UTC)
    client = _member(view, "client", dict)
    browser = _member(view, "browser", dict)
    scopes = _member(view, "scopes", list)
    lines = [f"Sign-in request to {clean(client.get('name'))}"]
    proximity = view.get("proximity")
    if isinstance(proximity, dict) and proximity.get("message"):  # first: the relay's tell
        lines.append(
            f"  !! {clean(proximity['message'])}"
            if far_from_browser(view) or refused_here(view)
            else (f"  {clean(proximity['message'])}")
        )
    lines += [
        f"  Account:       {account}",
        f"  Application:   {clean(client.get('name'))}",
        f"  Returns to:    {clean(client.get('redirect_host'))}",
        "  It asks for:",
    ]
    lines += _scope_lines(scopes)
    lines += [
        f"  Browser:       {clean(browser.get('summary'))}",
        f"  IP address:    {clean(browser.get('ip'))}",
        *(
            [f"  Location:      {clean(browser['location'])} (approximate)"]
            if browser.get("location")
            else []
        ),
        f"  User agent:    {clean(browser.get('user_agent'))}",
        f"  Requested:     {_when(view.get('created_at'), now)}",
        f"  Expires:       {_when(view.get('expires_at'), now, expiry=True)}",
    ]
    matching = view.get("number_matching")
    if isinstance(matching, dict) and isinstance(matching.get("choices"), list):
        shown = " ".join(clean(str(c)) for c in matching["choices"])
        lines.append(f"  Number:        pick the one the screen shows: {shown}")
    return "\n".join(lines)


def _matching_number(view: dict, given: str | None, interactive: bool) -> str | None:
    """The number to approve with, when the sign-in asks for number matching."""
    matching = view.get("number_matching")
    choices = matching.get("choices") if isinstance(matching, dict) else None
    if not isinstance(choices, list) or not choices:
        return None
    shown = " ".join(clean(str(c)) for c in choices)
    if given:
        return given
    if not interactive:
        raise UsageError(
            f"this sign-in asks for number matching: give --number with the number the "
            f"screen shows (one of {shown})"
        )
    sys.stdout.write(f"Which number does the screen show? [{shown}] ")
    sys.stdout.flush()
    return sys.stdin.readline().strip() or None


#: Proximity verdicts (docs/phone-api.md) under which --approve alone is refused.
FAR_VERDICTS = ("different_network", "different_country")


def far_from_browser(view: dict[str, Any]) -> bool:
    """Whether the scan says the sign-in was started on another network or in another
    country than this phone's: what a relayed QR code looks like."""
    proximity = view.get("proximity")
    return isinstance(proximity, dict) and proximity.get("verdict") in FAR_VERDICTS


def refused_here(view: dict[str, Any]) -> bool:
    """Whether the IdP's proximity policy (``require_same_network``) will not let this phone
    approve from where it is (``proximity.allowed`` false): only Deny is offered."""
    proximity = view.get("proximity")
    return isinstance(proximity, dict) and proximity.get("allowed") is False


def _ask_denial(stdin: TextIO, stdout: TextIO) -> bool:
    """Only Deny is offered: "y" or "yes" denies; anything else leaves the sign-in as it is."""
    return _ask_yes(stdin, stdout, "This phone cannot approve it from here. Deny this sign-in?")


def _ask_approval(stdin: TextIO, stdout: TextIO, *, far: bool = False) -> bool:
    """Ask on the terminal; only "y" or "yes" approve, anything else (or EOF, ^C) denies."""
    far_words = "It was started on another network than this phone's. " if far else ""
    return _ask_yes(stdin, stdout, far_words + "Approve this sign-in?")


def _ask_yes(stdin: TextIO, stdout: TextIO, question: str) -> bool:
    """``question [y/N]`` on the terminal: True only for "y" or "yes" (EOF and ^C are no)."""
    stdout.write(f"{question} [y/N] ")
    stdout.flush()
    try:
        answer = stdin.readline()
    except KeyboardInterrupt:
        answer = ""
    if not answer.endswith("\n"):
        stdout.write("\n")
    return answer.strip().lower() in ("y", "yes")


def _read_password(stdin: TextIO) -> str:
    if stdin.isatty():
        password = getpass.getpass("Password: ")
    else:
        line = stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        raise UsageError("no password given on stdin (--password-stdin reads one line)")
    return password


def _cmd_enroll(args: argparse.Namespace, client: PhoneClient) -> int:
    try:
        server = normalize_server(args.server)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if not args.username:
        raise UsageError("--username must not be empty")
    if is_enrolled(client.profile_dir):
        raise UsageError(
            f"{client.profile_dir} already holds an enrolled device; "
            "use another --profile directory to enroll again"
        )
    device_name = args.device_name or socket.gethostname() or "idp-phone"
    parts = urlsplit(server)
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        print(
            f"warning: {server} is not HTTPS: your password and approvals travel unencrypted",
            file=sys.stderr,
        )
    password = _read_password(sys.stdin)
    try:
        data = client.enroll(server, args.username, password, device_name)
    except ApprovalNeeded as needed:
        data = _wait_for_approval(client, needed)
    user = _member(data, "user", dict)
    profile = client.profile
    print(f"Enrolled {clean(profile.device_name)} ({clean(profile.device_id)}) with {server}")
    print(f"  User:    {clean(user.get('name'))} <{clean(user.get('email'))}>")
    print(f"  Profile: {profile.directory}")
    return EXIT_OK


#: What ``idp-phone enroll`` says when another phone must approve this one.
APPROVAL_NEEDED = (
    "Another phone of yours must approve this one. On it, choose 'Set up another phone' "
    "and enter this code: {code}"
)


def _wait_for_approval(client: PhoneClient, needed: ApprovalNeeded) -> dict[str, Any]:
    """Show the code, then wait until the other phone decides (or the request expires)."""
    pending = needed.pending
    print(APPROVAL_NEEDED.format(code=clean(pending.code)))
    print(f"  (idp-phone: approve-phone {clean(pending.code)})")
    try:  # from the sentence on: a Ctrl-C right after it still withdraws
        print(
            f"Waiting for the approval; it expires {_when(pending.expires_at, datetime.now(UTC))}."
            " Ctrl-C stops waiting and withdraws the request.",
            flush=True,
        )
        return client.wait_for_approval(pending)
    except KeyboardInterrupt:
        # Ctrl-C: the key is about to be forgotten, so withdraw the request first; otherwise
        # the other phone could still approve a phone whose key nobody holds.
        _withdraw(client, pending)
        raise
    except EnrollmentNotApproved as ended:
        reason = {"denied": "was denied", "withdrawn": "was withdrawn"}.get(ended.status, "expired")
        raise PhoneApiError(
            200, f"enrollment_{ended.status}", f"the other phone's approval {reason}"
        ) from None


def _withdraw(client: PhoneClient, pending: PendingEnrollment) -> None:
    """Withdraw ``pending``, saying how that went (best effort: the program exits anyway)."""
    try:
        client.withdraw_enrollment(pending)
    except (PhoneApiError, ServerUnreachableError, KeyboardInterrupt) as exc:
        why = exc.description if isinstance(exc, PhoneApiError) else str(exc) or "interrupted"
        print(f"\nerror: could not withdraw the request: {clean(why)}", file=sys.stderr)
        return
    print("\nThe request is withdrawn: no phone can approve it now.", file=sys.stderr)


def _cmd_approve_phone(args: argparse.Namespace, client: PhoneClient) -> int:
    profile = client.profile
    if normalize_short_code(args.code) is None:
        raise UsageError("the new phone's code is 8 letters like KXRT-WMPQ")
    decision: str | None = "approve" if args.approve else "deny" if args.deny else None
    if decision is None and not sys.stdin.isatty():
        raise UsageError("stdin is not a terminal, so I cannot ask you: give --approve or --deny")
    view = client.lookup_enrollment(args.code)["pending_enrollment"]
    print(
        describe_pending_enrollment(view, account=f"{clean(profile.username)} at {profile.server}")
    )
    far = far_from_browser(view)
    if decision == "approve" and far and not args.accept_different_network:
        raise UsageError(
            "not approved: the new phone is on a different network than this phone. If it is"
            " yours, in your hand, approve again with --accept-different-network"
        )
    if decision is None:
        far_words = "It is on another network than this phone's. " if far else ""
        question = far_words + "Is this your new phone, and do you approve it?"
        decision = "approve" if _ask_yes(sys.stdin, sys.stdout, question) else "deny"
    if decision == "approve":
        device = _member(client.approve_enrollment(view["id"]), "device", dict)
        print(
            f"Approved: {clean(device.get('device_name'))} ({clean(device.get('device_id'))})"
            " is now one of your phones."
        )
    else:
        client.deny_enrollment(view["id"])
        print("Denied: that phone was not set up.")
    return EXIT_OK


def describe_pending_enrollment(
    view: dict[str, Any], *, account: str, now: datetime | None = None
) -> str:
    """What the user must read before approving a new phone: its name, where it is."""
    now = now if now is not None else datetime.now(UTC)
    where = _member(view, "from", dict)
    lines = [f"A new phone wants to be set up as yours: {clean(view.get('device_name'))}"]
    proximity = view.get("proximity")
    if isinstance(proximity, dict):
        mark = "!! " if far_from_browser(view) else ""
        said = NEW_PHONE_PROXIMITY.get(str(proximity.get("verdict")), proximity.get("message"))
        lines.append(f"  {mark}{clean(said)}")
    lines += [
        f"  Account:       {account}",
        f"  Its name:      {clean(view.get('device_name'))}",
        f"  IP address:    {clean(where.get('ip'))}",
        *(
            [f"  Location:      {clean(where['location'])} (approximate)"]
            if where.get("location")
            else []
        ),
        f"  App:           {clean(where.get('summary'))}",
        f"  Asked:         {_when(view.get('created_at'), now)}",
        f"  Expires:       {_when(view.get('expires_at'), now, expiry=True)}",
        "  Approve only if this is your phone, in your hand: approving gives it your account.",
    ]
    return "\n".join(lines)


#: The proximity verdicts (docs/phone-api.md), said of a new phone instead of a sign-in.
NEW_PHONE_PROXIMITY = {
    "same_network": "The new phone is on the same network as this phone.",
    "nearby": "The new phone is on another network, in this phone's country.",
    "different_network": "The new phone is on a different network than this phone.",
    "different_country": "The new phone is in another country than this phone.",
    "unknown": "Where the new phone is cannot be compared with this phone.",
}


def _cmd_whoami(args: argparse.Namespace, client: PhoneClient) -> int:
    profile = client.profile
    data = client.me()
    user = _member(data, "user", dict)
    print(f"Server:   {clean(profile.server)}")
    print(f"Device:   {clean(data.get('device_name'))} ({clean(data.get('device_id'))})")
    print(f"User:     {clean(user.get('username'))}")
    print(f"Name:     {clean(user.get('name'))}")
    print(f"Email:    {clean(user.get('email'))}")
    print(f"Profile:  {profile.directory}")
    return EXIT_OK


def _cmd_devices(args: argparse.Namespace, client: PhoneClient) -> int:
    for device in client.devices():
        state = f"revoked {device.get('revoked_at')}" if device.get("revoked_at") else "active"
        mark = "  (this phone)" if device.get("this_device") else ""
        print(
            f"{clean(device.get('device_id'))}  {clean(state):<28}  "
            f"{clean(enrolled_via(device.get('enrolled_via'))):<34}  "
            f"{clean(device.get('device_name'))}{mark}"
        )
    return EXIT_OK


def enrolled_via(value: object) -> str:
    """How a phone was enrolled, in words (``enrolled_via`` of the devices list)."""
    if value == "password":
        return "enrolled with the password"
    if value == "invitation":
        return "enrolled with an invitation"
    if isinstance(value, str) and value.startswith("device:"):
        return f"approved by {value.removeprefix('device:')}"
    return "enrolled (how: not recorded)"


def _cmd_revoke(args: argparse.Namespace, client: PhoneClient) -> int:
    data = client.revoke(args.device_id)
    print(f"Revoked {clean(data.get('device_id'))}: its next request will be refused.")
    return EXIT_OK


def asker(view: dict[str, Any]) -> str:
    """What waits for the decision: "device" (RFC 8628) or "browser"."""
    return "device" if view.get("kind") == "device" else "browser"


def _cmd_scan(args: argparse.Namespace, client: PhoneClient) -> int:
    profile = client.profile
    if (args.source is None) == (args.code is None):
        raise UsageError(
            "give the QR code (SOURCE) or the typed code (--code, --user-code), not both"
        )
    if args.source is not None:
        qr_text = read_source(args.source)
        check_login_qr(profile.server, qr_text)  # before anything is sent anywhere
    elif normalize_short_code(args.code) is None:
        raise UsageError(
            "a sign-in code is 8 letters like KXRT-WMPQ (no digits, no B, I, L, O, S, Z)"
        )

    decision: str | None = "approve" if args.approve else "deny" if args.deny else None
    interactive = decision is None and not args.json
    if interactive and not sys.stdin.isatty():
        raise UsageError(
            "stdin is not a terminal, so I cannot ask you: "
            "give --approve or --deny (or --json to only scan)"
        )

    if args.source is not None:
        view = client.scan(qr_text)["login_request"]
    else:
        view = client.scan_code(args.code)["login_request"]
    if not args.json:
        print(
            describe_login_request(view, account=f"{clean(profile.username)} at {profile.server}")
        )
    far = far_from_browser(view)
    if decision == "approve" and refused_here(view):
        # The server's policy, which no option overrides; the scan stands, nothing is approved.
        raise UsageError(
            "not approved: this site accepts sign-ins only from a phone on the same network "
            "as the computer, and this phone is not on it. If you are at that computer, "
            "connect this phone to its network and scan again; or --deny"
        )
    if decision == "approve" and far and not args.accept_different_network:
        # The scan stands (the page says "scanned"); nothing is approved.
        raise UsageError(
            "not approved: this sign-in was started on a different network than this phone. "
            "If you are at that computer, approve again with --accept-different-network"
        )
    if interactive and refused_here(view):
        if not _ask_denial(sys.stdin, sys.stdout):
            print("Not decided: the sign-in waits until it expires.")
            return EXIT_OK
        decision = "deny"
    elif interactive:
        approved = _ask_approval(sys.stdin, sys.stdout, far=far)
        decision = "approve" if approved else "deny"

    outcome: str | None = None
    if decision == "approve":
        number = _matching_number(view, args.number, interactive)
        view = {**view, **client.approve(view["id"], number)["login_request"]}
        outcome = "approved"
    elif decision == "deny":
        view = {**view, **client.deny(view["id"])["login_request"]}
        outcome = "denied"

    if args.json:
        print(json.dumps({"login_request": view, "decision": outcome}))
    elif outcome == "approved":
        print(f"Approved: the {asker(view)} is signing you in.")
    else:
        print(f"Denied: the {asker(view)} will not be signed in.")
    return EXIT_OK


def describe_inbox_item(item: dict[str, Any], *, now: datetime | None = None) -> str:
    """One line of ``requests``: id, site, message, scopes, when asked, whose."""
    now = now if now is not None else datetime.now(UTC)
    client = _member(item, "client", dict)
    scopes = " ".join(
        clean(s.get("name")) for s in _member(item, "scopes", list) if isinstance(s, dict)
    )
    message = item.get("binding_message")
    said = f'  "{clean(message, 40)}"' if message else ""
    taken = {"this_phone": "  (opened here)", "another_phone": "  (opened on another phone)"}
    return (
        f"{clean(item.get('id'), 64)}  {clean(client.get('name'))}{said}  [{scopes}]  "
        f"asked {_when(item.get('created_at'), now)}{taken.get(item.get('scanned_by'), '')}"  # type: ignore[arg-type]
    )


def describe_backchannel_request(
    view: dict[str, Any], *, account: str, now: datetime | None = None
) -> str:
    """What the user reads before deciding a site's request: the site, its message (to
    compare with what the site shows or says), what it asks for, when it asked."""
    now = now if now is not None else datetime.now(UTC)
    client = _member(view, "client", dict)
    lines = [f"Request from {clean(client.get('name'))} (from its server, no browser)"]
    if view.get("binding_message"):
        lines.append(f"  Message:       {clean(view['binding_message'], 40)}")
        lines.append("                 (check that the site shows or says the same)")
    lines += [f"  Account:       {account}", "  It asks for:"]
    scopes = _member(view, "scopes", list)
    for scope in scopes:
        if isinstance(scope, dict):
            lines.append(f"    - {clean(scope.get('name'))}: {clean(scope.get('description'))}")
    if not scopes:
        lines.append("    (nothing listed)")
    lines += [
        f"  Requested:     {_when(view.get('created_at'), now)}",
        f"  Expires:       {_when(view.get('expires_at'), now, expiry=True)}",
    ]
    return "\n".join(lines)


def _cmd_requests(args: argparse.Namespace, client: PhoneClient) -> int:
    if not args.watch:
        items = client.inbox()
        if args.json:
            print(json.dumps({"inbox": items}))
        elif not items:
            print("No request is waiting.")
        for item in items if not args.json else []:
            print(describe_inbox_item(item))
        if items and not args.json:
            print("Decide one with: idp-phone approve ID  (or deny ID)")
        return EXIT_OK
    return _watch(args, client)


def _watch(args: argparse.Namespace, client: PhoneClient, *, sleep: Any = None) -> int:
    """Print the list each time the inbox socket sends one; reconnect (1 s, 2 s, ... up
    to 30 s) when it drops. Ends with Ctrl-C."""
    import time

    from simple_websocket import ConnectionClosed

    pause = sleep or time.sleep
    backoff = 1.0
    shown: Any = None
    while True:
        try:
            ws = client.inbox_socket()
        except ServerUnreachableError as exc:
            print(f"error: {clean(exc)}; trying again in {backoff:.0f} s", file=sys.stderr)
        except Exception as exc:  # a refused handshake: the phone's proof was not accepted
            print(f"error: the inbox socket was refused: {clean(exc)}", file=sys.stderr)
            return EXIT_API
        else:
            backoff = 1.0
            try:
                while True:
                    text = ws.receive()
                    message = json.loads(text) if text else {}
                    items = message.get("inbox") if isinstance(message, dict) else None
                    if not isinstance(items, list) or items == shown:
                        continue
                    shown = items
                    if args.json:
                        print(json.dumps({"inbox": items}), flush=True)
                        continue
                    print(f"-- {datetime.now().astimezone():%H:%M:%S}: {len(items)} waiting")
                    for item in items:
                        print(describe_inbox_item(item))
                    sys.stdout.flush()
            except ConnectionClosed:
                print("(the inbox socket closed; reconnecting)", file=sys.stderr)
            except ValueError:
                print("(the server sent something that is not JSON)", file=sys.stderr)
            finally:
                with contextlib.suppress(Exception):
                    ws.close()
        pause(backoff)
        backoff = min(30.0, backoff * 2)


def _cmd_decide(args: argparse.Namespace, client: PhoneClient) -> int:
    decision = args.command  # "approve" or "deny"
    if not args.yes and not sys.stdin.isatty():
        raise UsageError("stdin is not a terminal, so I cannot ask you: give --yes")
    profile = client.profile
    view = client.open_request(args.id)["login_request"]
    print(
        describe_backchannel_request(view, account=f"{clean(profile.username)} at {profile.server}")
    )
    if not args.yes:
        verb = "Approve" if decision == "approve" else "Deny"
        if not _ask_yes(sys.stdin, sys.stdout, f"{verb} this request?"):
            print("Not decided: it stays in the inbox until it expires.")
            return EXIT_OK
    if decision == "approve":
        client.approve(view["id"])
        print("Approved: the site is told, and signs you in.")
    else:
        client.deny(view["id"])
        print("Denied: the site is told no.")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``idp-phone``."""
    parser = argparse.ArgumentParser(
        prog="idp-phone",
        description="The QR-IdP phone app: enroll this device, then approve sign-ins by "
        "scanning their QR code.",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help=f"the profile directory holding the device key (default {DEFAULT_PROFILE_DIR})",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enroll = commands.add_parser("enroll", help="enroll this device with an IdP")
    enroll.add_argument("--server", required=True, metavar="URL", help="the IdP's issuer URL")
    enroll.add_argument("--username", required=True, metavar="U")
    enroll.add_argument(
        "--password-stdin",
        action="store_true",
        required=True,
        help="read the password from stdin (one line)",
    )
    enroll.add_argument(
        "--device-name", metavar="N", help="how the IdP will list this device (default hostname)"
    )
    enroll.set_defaults(handler=_cmd_enroll)

    scan = commands.add_parser(
        "scan", help="scan a sign-in QR code (or type its short code), then approve or deny it"
    )
    scan.add_argument(
        "source",
        metavar="SOURCE",
        nargs="?",
        help="the QR code's URL text, or a photo/screenshot of it",
    )
    scan.add_argument(
        "--code",
        metavar="CODE",
        help='instead of a QR code: the short code the page shows under "Can\'t scan?"',
    )
    scan.add_argument(
        "--user-code",
        dest="code",
        metavar="CODE",
        help="instead of a QR code: the code a device (a TV, a command line) shows to sign "
        "in (the same as --code); never one someone sent you",
    )
    choice = scan.add_mutually_exclusive_group()
    choice.add_argument("--approve", action="store_true", help="approve without asking")
    scan.add_argument(
        "--number",
        metavar="NN",
        help="with number matching: the two digits the screen shows (asked if not given)",
    )
    choice.add_argument("--deny", action="store_true", help="deny without asking")
    scan.add_argument(
        "--accept-different-network",
        action="store_true",
        help="with --approve: approve even when the sign-in was started on another network "
        "or in another country than this phone (what a relayed QR code looks like); "
        "an IdP that requires the same network refuses it all the same",
    )
    scan.add_argument(
        "--json",
        action="store_true",
        help='print {"login_request": ..., "decision": ...}; without --approve/--deny it '
        "only scans (decision null)",
    )
    scan.set_defaults(handler=_cmd_scan)

    approve_phone = commands.add_parser(
        "approve-phone",
        help="approve (or deny) a new phone of yours: type the code it shows",
    )
    approve_phone.add_argument("code", metavar="CODE", help="the code the new phone shows")
    phone_choice = approve_phone.add_mutually_exclusive_group()
    phone_choice.add_argument("--approve", action="store_true", help="approve without asking")
    phone_choice.add_argument("--deny", action="store_true", help="deny without asking")
    approve_phone.add_argument(
        "--accept-different-network",
        action="store_true",
        help="with --approve: approve even when the new phone is on another network or in "
        "another country than this phone (where a stolen password is used from)",
    )
    approve_phone.set_defaults(handler=_cmd_approve_phone)

    inbox = commands.add_parser(
        "requests", help="list what sites asked of you from their servers (CIBA), waiting"
    )
    inbox.add_argument(
        "--watch", action="store_true", help="keep listening, and print the list when it changes"
    )
    inbox.add_argument("--json", action="store_true", help='print {"inbox": [...]}')
    inbox.set_defaults(handler=_cmd_requests)
    for verb, words in (("approve", "approve"), ("deny", "deny")):
        decide = commands.add_parser(
            verb, help=f"{words} one request of the inbox (its ID from 'requests')"
        )
        decide.add_argument(
            "id",
            metavar="ID",
            help="the request's ID, as 'requests' lists it",
        )
        decide.add_argument("--yes", action="store_true", help=f"{words} without asking")
        decide.set_defaults(handler=_cmd_decide)

    whoami = commands.add_parser("whoami", help="ask the IdP who this device is")
    whoami.set_defaults(handler=_cmd_whoami)
    devices = commands.add_parser("devices", help="list this user's phones")
    devices.set_defaults(handler=_cmd_devices)
    revoke = commands.add_parser("revoke", help="revoke one of this user's phones (lost, sold)")
    revoke.add_argument("device_id", metavar="DEVICE_ID")
    revoke.set_defaults(handler=_cmd_revoke)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``idp-phone`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    args = build_parser().parse_args(argv)
    client = PhoneClient(args.profile)
    try:
        return args.handler(args, client)
    except PhoneApiError as exc:
        wait = f" (try again in {exc.retry_after} s)" if exc.retry_after else ""
        print(f"error: {clean(exc.error)}: {clean(exc.description)}{wait}", file=sys.stderr)
        if exc.error in ADVICE:
            print(ADVICE[exc.error], file=sys.stderr)
        return EXIT_API
    except ServerUnreachableError as exc:
        print(f"error: {clean(exc)}", file=sys.stderr)
        return EXIT_API
    except NotASignInCodeError as exc:
        print(f"error: {exc} (it holds: {clean(exc.text, 120)})", file=sys.stderr)
        return EXIT_USAGE
    except (UsageError, ProfileError, QrDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

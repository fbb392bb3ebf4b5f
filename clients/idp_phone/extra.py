"""The ``phone`` extra: what the phone app (and ``idp demo``, which runs it) needs beyond a
server install. ``pip install qr-idp`` installs the server only; ``qr-idp[phone]`` adds
these. This module imports none of them, so that it can say which are missing."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

#: The import names of the ``phone`` extra's libraries (pyproject.toml).
PHONE_MODULES = ("requests", "zxingcpp", "PIL")
#: ``idp-phone``'s exit code for a local problem (``idp_phone.cli.EXIT_USAGE``).
EXIT_USAGE = 2


def missing_phone_modules() -> list[str]:
    """The libraries of the ``phone`` extra that cannot be imported here."""
    return [name for name in PHONE_MODULES if not _importable(name)]


def require_phone_extra(command: str) -> None:
    """Exit with an install hint, not a traceback, if ``command`` lacks the ``phone`` extra."""
    missing = missing_phone_modules()
    if missing:
        print(
            f"{command} needs the phone extra ({', '.join(missing)} missing): "
            "install qr-idp[phone], e.g. pip install 'qr-idp[phone]'",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_USAGE)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``idp-phone`` entry point: check the extra, then run the command line."""
    require_phone_extra("idp-phone")
    from idp_phone.cli import main as cli_main

    return cli_main(argv)


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package that is missing, or half-imported
        return False

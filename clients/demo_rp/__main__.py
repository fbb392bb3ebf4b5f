"""Run the demo RP: ``python -m demo_rp --host 127.0.0.1 --port 8001``.

Settings come from ``RP_*`` environment variables (see :func:`demo_rp.load_config`).
Without ``RP_BASE_URL`` the site assumes it is browsed at ``http://localhost:PORT``.
"""

from __future__ import annotations

import argparse
import os
import sys

from werkzeug.serving import run_simple

from demo_rp import ConfigError, create_app


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve the demo RP until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m demo_rp",
        description="Demo relying party: a website that signs you in with QR-IdP.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8001, help="port to listen on")
    args = parser.parse_args(argv)

    overrides = {}
    if not os.environ.get("RP_BASE_URL"):
        overrides["RP_BASE_URL"] = f"http://localhost:{args.port}"
    try:
        app = create_app(overrides)
    except ConfigError as exc:
        print(f"demo_rp: {exc}", file=sys.stderr)
        return 2

    print(
        f"Demo RP for {app.config['RP_ISSUER']} (client {app.config['RP_CLIENT_ID']}): "
        f"open {app.config['RP_BASE_URL']}/",
        file=sys.stderr,
    )
    run_simple(args.host, args.port, app, threaded=True, use_debugger=False, use_reloader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the demo device: ``python -m demo_device --issuer URL --client-id ID``.

``DEVICE_ISSUER`` and ``DEVICE_CLIENT_ID`` (and ``DEVICE_CLIENT_SECRET`` for a confidential
client) stand in for the options; ``idp demo`` prints the command with its values.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import requests

from demo_device import DeviceFlowError, DeviceSignIn


def main(argv: list[str] | None = None) -> int:
    """Sign in once and print the ID token's claims; 1 if it did not succeed."""
    parser = argparse.ArgumentParser(
        prog="python -m demo_device",
        description="A demo TV / command line that signs in with QR-IdP (RFC 8628).",
    )
    parser.add_argument("--issuer", default=os.environ.get("DEVICE_ISSUER"), help="the IdP")
    parser.add_argument("--client-id", default=os.environ.get("DEVICE_CLIENT_ID"))
    parser.add_argument("--scope", default="openid profile email")
    args = parser.parse_args(argv)
    if not args.issuer or not args.client_id:
        parser.error("give --issuer and --client-id (or DEVICE_ISSUER and DEVICE_CLIENT_ID)")
    flow = DeviceSignIn(
        issuer=args.issuer.rstrip("/"),
        client_id=args.client_id,
        scope=args.scope,
        client_secret=os.environ.get("DEVICE_CLIENT_SECRET") or None,
    )
    try:
        claims = flow.run()
    except DeviceFlowError as exc:
        print(f"demo_device: {exc}", file=sys.stderr)
        return 1
    except requests.RequestException as exc:
        print(f"demo_device: cannot reach {args.issuer}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo_device: stopped", file=sys.stderr)
        return 130
    print("Signed in. The ID token's claims:")
    print(json.dumps(claims, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Browser tests: Debian's Chromium driven by Playwright, against a real `idp serve`
(gunicorn + gevent) and the demo relying party, with the QR code read back from the
pixels on the screen.

Chromium comes from Debian (`apt-get install chromium`; `.ci/run` installs it);
Playwright only drives it, so `playwright install` is never needed. Without Chromium
these tests skip, saying so; in CI (`CI=true`) they fail instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cluster import IdPProcess, seeded_idp
from support import IN_CI, listening_socket, serve_in_thread

CHROMIUM = os.environ.get("IDP_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing(reason: str) -> None:
    message = f"browser tests need {reason}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the session; each test gets fresh contexts."""
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _missing(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _missing("the playwright package (make install)")
    # expect() waits for a state; its default (5 s) is too short on a loaded machine.
    expect.set_options(timeout=30_000)
    manager = sync_playwright().start()
    browser = manager.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
    try:
        yield browser
    finally:
        browser.close()
        manager.stop()


@pytest.fixture
def fake_camera(chromium: Any) -> Iterator[Callable[..., Any]]:
    """A factory: ``fake_camera(video)`` starts a SEPARATE Chromium (the same executable
    and flags as ``chromium``; camera flags are per browser process) whose one camera films
    ``video``, a .y4m file (tests/browser/camera.py), and whose camera prompts are
    accepted. ``video=None``: a browser with no camera at all; ``accept=False``: prompts
    are left to the context's permissions (Playwright's default: refused)."""
    launched: list[Any] = []

    def launch(video: Path | None, *, accept: bool = True) -> Any:
        if video is None:
            camera = ["--use-fake-device-for-media-stream=device-count=0"]
        elif video.is_file():
            camera = [
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={video}",
            ]
        else:
            raise FileNotFoundError(f"no video to feed the fake camera at {video}")
        if accept:
            camera.append("--use-fake-ui-for-media-stream")
        browser = chromium.browser_type.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_FLAGS, *camera]
        )
        launched.append(browser)
        return browser

    try:
        yield launch
    finally:
        for browser in launched:
            browser.close()


@dataclass
class Site:
    """The IdP (a real `idp serve`) and the demo RP, as a new user meets them."""

    idp: IdPProcess
    rp_url: str
    tmp: Path

    @property
    def issuer(self) -> str:
        return self.idp.url


@pytest.fixture
def site(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Site]:
    """`@pytest.mark.idp_config(IDP_...=value)` sets the IdP's environment."""
    from demo_rp import create_app as create_rp

    marker = request.node.get_closest_marker("idp_config")
    extra = {k: str(v) for k, v in (marker.kwargs if marker else {}).items()}
    # The RP's socket is bound now: a port merely picked here and bound after the IdP has
    # started, seconds later, may be someone else's by then on a busy machine.
    rp_socket = listening_socket()
    rp_url = f"http://localhost:{rp_socket.getsockname()[1]}"
    idp, client_id, secret = seeded_idp(tmp_path, rp_url, "Demo RP", extra)
    issuer = idp.url
    rp = create_rp(
        {
            "RP_ISSUER": issuer,
            "RP_CLIENT_ID": client_id,
            "RP_CLIENT_SECRET": secret or "",
            "RP_SECRET_KEY": "rp-secret",
            "RP_BASE_URL": rp_url,
        }
    )
    server, thread = serve_in_thread(rp_socket, rp)
    try:
        yield Site(idp=idp, rp_url=rp_url, tmp=tmp_path)
    finally:
        server.shutdown()
        thread.join(timeout=5)
        idp.stop()

"""The phone app's in-app scanner (idp/static/app/scanner.js), alone, on a page the IdP
really serves, under its real Content-Security-Policy (never bypassed): a fake camera
filming a QR code of a known text, and the vendored decoder on a still picture.

Headless Chromium on Linux has no BarcodeDetector, so these exercise the vendored ZXing; a
stand-in BarcodeDetector checks which of the two the scanner picks. Also: stop(), and each
camera failure's kind (denied, no camera, not a secure context, a broken decoder)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import qrcode
from PIL import Image
from playwright.sync_api import Page

from camera import write_y4m

WAIT_MS = 30_000

# DevTools exempts the synchronous part of page.evaluate from the policy's eval rule; code
# that runs later (as the scanner does, after its import) is held to it, and this shows it.
EVAL_AFTER_A_TICK = """async () => {
  await new Promise((resolve) => setTimeout(resolve, 0));
  try { eval("1"); return "ran"; } catch (error) { return error.name; }
}"""

# Runs in the page: import the scanner as the app does, film, and report what it read.
SCAN = """async (waitMs) => {
  const { startScanner } = await import("/static/app/scanner.js");
  const video = document.createElement("video");
  document.body.append(video);
  const outcome = await new Promise((resolve) => {
    setTimeout(() => resolve({ timeout: true }), waitMs);
    startScanner(video, (text) => resolve({ text }), (error) => resolve({ error }));
  });
  outcome.cameraOff = video.srcObject === null;
  return outcome;
}"""

# Runs in the page: a stand-in BarcodeDetector (Chromium on Linux has none) that reads
# `formats` and answers every frame with `answer` (or throws when it is null).
FAKE_DETECTOR = """([formats, answer]) => {
  window.BarcodeDetector = class {
    static async getSupportedFormats() { return formats; }
    async detect(video) {
      if (answer === null) throw new DOMException("the detector broke", "OperationError");
      return video.videoWidth > 0 ? [{ rawValue: answer, format: "qr_code" }] : [];
    }
  };
}"""

# Runs in the page: start the scanner, stop it at once, and watch for a second.
START_AND_STOP = """async () => {
  const { startScanner } = await import("/static/app/scanner.js");
  const video = document.createElement("video");
  document.body.append(video);
  const calls = [];
  const stop = await startScanner(video, (text) => calls.push(text), (e) => calls.push(e));
  const tracks = video.srcObject.getTracks();
  const before = tracks.map((track) => track.readyState);
  stop();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const after = tracks.map((track) => track.readyState);
  return { before, after, calls, cameraOff: video.srcObject === null };
}"""

# Runs in the page: draw a data: PNG on a canvas and read it with the vendored decoder.
DECODE_STILL = """async (url) => {
  const { decodeWithZXing } = await import("/static/app/scanner.js");
  const image = new Image();
  image.src = url;
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = image.width;
  canvas.height = image.height;
  const context = canvas.getContext("2d");
  context.fillStyle = "white";
  context.fillRect(0, 0, canvas.width, canvas.height);
  const blank = await decodeWithZXing(context.getImageData(0, 0, canvas.width, canvas.height));
  context.drawImage(image, 0, 0);
  const text = await decodeWithZXing(context.getImageData(0, 0, canvas.width, canvas.height));
  return { blank, text, zxing: typeof globalThis.ZXing };
}"""


def qr_png(text: str, path: Path) -> Path:
    qrcode.make(text).save(path)
    return path


def blank_png(path: Path) -> Path:
    Image.new("RGB", (640, 480), "white").save(path)
    return path


def open_strict_page(browser: Any, url: str) -> Page:
    """An IdP page, checked to carry the strict policy and to be held to it."""
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    response = page.goto(url)
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy
    assert "unsafe" not in policy
    assert page.evaluate(EVAL_AFTER_A_TICK) == "EvalError"
    return page


def test_the_scanner_reads_a_qr_code_from_the_camera(fake_camera, site, tmp_path):
    text = f"{site.issuer}/q/scanner-test-0123456789"
    video = write_y4m(qr_png(text, tmp_path / "qr.png"), tmp_path / "qr.y4m")
    page = open_strict_page(fake_camera(video), site.issuer + "/")
    outcome = page.evaluate(SCAN, WAIT_MS - 5_000)
    assert outcome == {"text": text, "cameraOff": True}


@pytest.mark.parametrize(
    ("formats", "answer", "expected", "zxing_loaded"),
    [
        (["qr_code", "ean_13"], "read by the detector", {"text": "read by the detector"}, False),
        (["ean_13"], "never asked", {"text": "filmed"}, True),  # no QR support: ZXing reads
        (["qr_code"], None, {"error": "failed"}, False),
    ],
    ids=["detector", "detector-without-qr", "detector-breaks"],
)
def test_the_browser_detector_is_used_when_it_reads_qr_codes(
    fake_camera, site, tmp_path, formats, answer, expected, zxing_loaded
):
    video = write_y4m(qr_png("filmed", tmp_path / "qr.png"), tmp_path / "qr.y4m")
    page = open_strict_page(fake_camera(video), site.issuer + "/")
    page.evaluate(FAKE_DETECTOR, [formats, answer])
    assert page.evaluate(SCAN, WAIT_MS - 5_000) == expected | {"cameraOff": True}
    # A browser whose detector reads QR codes never downloads the vendored decoder.
    assert page.evaluate("() => 'ZXing' in globalThis") is zxing_loaded


def test_stopping_the_scanner_stops_the_camera_and_the_reading(fake_camera, site, tmp_path):
    video = write_y4m(qr_png("never read", tmp_path / "qr.png"), tmp_path / "qr.y4m")
    page = open_strict_page(fake_camera(video), site.issuer + "/")
    outcome = page.evaluate(START_AND_STOP)
    assert outcome == {"before": ["live"], "after": ["ended"], "calls": [], "cameraOff": True}


def test_a_camera_showing_no_code_reads_nothing(fake_camera, site, tmp_path):
    """A blank picture: the scanner keeps looking, and calls neither callback."""
    video = write_y4m(blank_png(tmp_path / "blank.png"), tmp_path / "blank.y4m")
    page = open_strict_page(fake_camera(video), site.issuer + "/")
    outcome = page.evaluate(SCAN, 3_000)
    assert outcome == {"timeout": True, "cameraOff": False}


def test_a_refused_camera_is_denied(fake_camera, site, tmp_path):
    video = write_y4m(blank_png(tmp_path / "blank.png"), tmp_path / "blank.y4m")
    browser = fake_camera(video, accept=False)
    page = open_strict_page(browser, site.issuer + "/")
    assert page.evaluate(SCAN, WAIT_MS - 5_000) == {"error": "denied", "cameraOff": True}


def test_a_phone_without_a_camera_says_so(fake_camera, site):
    page = open_strict_page(fake_camera(None), site.issuer + "/")
    assert page.evaluate(SCAN, WAIT_MS - 5_000) == {"error": "no_camera", "cameraOff": True}


def test_an_insecure_page_gets_no_camera(chromium, site):
    """Over plain http on a name that is not loopback the browser offers no
    navigator.mediaDevices: the IdP's real answers, routed to http://idp.example."""
    context = chromium.new_context()
    context.set_default_timeout(WAIT_MS)

    def forward(route: Any) -> None:
        real = route.request.url.replace("http://idp.example", site.issuer, 1)
        route.fulfill(response=route.fetch(url=real))

    context.route("http://idp.example/**", forward)
    page = context.new_page()
    page.goto("http://idp.example/")
    assert page.evaluate("() => window.isSecureContext") is False
    assert page.evaluate(SCAN, WAIT_MS - 5_000) == {"error": "insecure", "cameraOff": True}
    context.close()


def test_the_vendored_decoder_reads_a_still_picture(chromium, site, tmp_path):
    text = "QR-IdP still picture: 你好"
    png = qr_png(text, tmp_path / "still.png").read_bytes()
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    page = open_strict_page(chromium, site.issuer + "/")
    outcome = page.evaluate(DECODE_STILL, url)
    assert outcome == {"blank": None, "text": text, "zxing": "object"}
    page.context.close()

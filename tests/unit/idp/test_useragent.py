"""idp.qrlogin.useragent: what the phone's approval screen says about the browser."""

import pytest

from idp.qrlogin.useragent import summarize_user_agent

CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
EDGE_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.2592.68"
)
FIREFOX_MACOS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:127.0) Gecko/20100101 Firefox/127.0"
)
SAFARI_IOS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Mobile Safari/537.36"
)
SAFARI_MACOS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Safari/605.1.15"
)
SAFARI_IPAD_MOBILE = (
    "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0"
FIREFOX_LINUX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"
FIREFOX_ANDROID = "Mozilla/5.0 (Android 14; Mobile; rv:127.0) Gecko/127.0 Firefox/127.0"
OPERA_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/125.0.0.0 Safari/537.36 OPR/111.0.0.0"
)
CHROMIUM_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chromium/126.0.6478.126 Chrome/126.0.6478.126 Safari/537.36"
)
CHROME_CHROMEOS = (
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
EDGE_MACOS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.2592.68"
)


@pytest.mark.parametrize(
    ("user_agent", "summary"),
    [
        pytest.param(CHROME_LINUX, "Chrome on Linux", id="chrome-linux"),
        pytest.param(EDGE_WINDOWS, "Edge on Windows", id="edge-windows"),
        pytest.param(FIREFOX_MACOS, "Firefox on macOS", id="firefox-macos"),
        pytest.param(SAFARI_IOS, "Safari on iOS", id="safari-ios"),
        pytest.param(CHROME_ANDROID, "Chrome on Android", id="chrome-android"),
        pytest.param(SAFARI_MACOS, "Safari on macOS", id="safari-macos"),
        pytest.param(SAFARI_IPAD_MOBILE, "Safari on iPadOS", id="safari-ipad"),
        pytest.param(FIREFOX_WINDOWS, "Firefox on Windows", id="firefox-windows"),
        pytest.param(FIREFOX_LINUX, "Firefox on Linux", id="firefox-linux"),
        pytest.param(FIREFOX_ANDROID, "Firefox on Android", id="firefox-android"),
        pytest.param(OPERA_WINDOWS, "Opera on Windows", id="opera-windows"),
        pytest.param(CHROMIUM_LINUX, "Chromium on Linux", id="chromium-linux"),
        pytest.param(CHROME_CHROMEOS, "Chrome on ChromeOS", id="chrome-chromeos"),
        pytest.param(EDGE_MACOS, "Edge on macOS", id="edge-macos"),
    ],
)
def test_real_browsers(user_agent, summary):
    assert summarize_user_agent(user_agent) == summary


@pytest.mark.parametrize(
    ("user_agent", "summary"),
    [
        pytest.param(None, "Unknown browser", id="none"),
        pytest.param("", "Unknown browser", id="empty"),
        pytest.param("curl/8.5.0", "Unknown browser", id="curl"),
        pytest.param("python-requests/2.32.3", "Unknown browser", id="requests"),
        pytest.param("\x00\xff<script>alert(1)</script>", "Unknown browser", id="garbage"),
        pytest.param("x" * 10_000, "Unknown browser", id="very-long"),
        pytest.param("Mozilla/5.0", "Unknown browser", id="bare-mozilla"),
        # Only one of the two halves recognized.
        pytest.param("Firefox/127.0", "Firefox", id="browser-only"),
        pytest.param("SomeBot (Windows NT 10.0)", "A browser on Windows", id="system-only"),
        pytest.param("Mozilla/5.0 (X11; Linux x86_64)", "A browser on Linux", id="linux-only"),
    ],
)
def test_missing_or_unrecognized(user_agent, summary):
    assert summarize_user_agent(user_agent) == summary


@pytest.mark.parametrize(
    ("user_agent", "summary"),
    [
        pytest.param(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) CriOS/126.0.6478.54 Mobile/15E148 Safari/604.1",
            "Chrome on iOS",
            id="chrome-ios",
        ),
        pytest.param(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) FxiOS/127.0 Mobile/15E148 Safari/605.1.15",
            "Firefox on iOS",
            id="firefox-ios",
        ),
        pytest.param(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.0 EdgiOS/126.2592.56 Mobile/15E148 Safari/605.1.15",
            "Edge on iOS",
            id="edge-ios",
        ),
        pytest.param(
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0.0.0 Mobile Safari/537.36 EdgA/126.0.2592.80",
            "Edge on Android",
            id="edge-android",
        ),
    ],
)
def test_mobile_vendor_tokens(user_agent, summary):
    assert summarize_user_agent(user_agent) == summary

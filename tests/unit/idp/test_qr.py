"""idp.qrlogin.qr: the inline SVG is a QR code a scanner reads back, with its quiet zone.

The SVG is parsed and drawn here, module by module, with no SVG renderer: what is checked is
exactly the geometry the browser is given.
"""

import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import pytest
import zxingcpp
from markupsafe import Markup
from PIL import Image, ImageDraw

from idp.qrlogin.qr import QUIET_ZONE, qr_for_terminal, qr_svg
from support import terminal_qr_text

SVG_NS = "{http://www.w3.org/2000/svg}"
RUN = re.compile(r"M(\d+),(\d+)h(\d+)v1h-(\d+)z")
PX = 8  # pixels per module when rasterizing

LOGIN_URL = "https://id.example.com/q/" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0_-x"


@dataclass
class ParsedQr:
    size: int
    dark: list[list[bool]]  # [y][x]
    runs: list[tuple[int, int, int]]  # (x, y, width)
    root: ET.Element


def parse(svg: str) -> ParsedQr:
    root = ET.fromstring(svg)  # noqa: S314 (our own output, not untrusted input)
    assert root.tag == f"{SVG_NS}svg"
    match = re.fullmatch(r"0 0 (\d+) (\d+)", root.attrib["viewBox"])
    assert match, root.attrib["viewBox"]
    size = int(match.group(1))
    assert int(match.group(2)) == size
    children = list(root)
    assert [child.tag for child in children] == [f"{SVG_NS}rect", f"{SVG_NS}path"]
    rect, path = children
    assert rect.attrib == {"width": str(size), "height": str(size), "fill": "#fff"}
    assert path.attrib["fill"] == "#000"
    d = path.attrib["d"]
    # The whole of d is runs, one row high each, and nothing else.
    assert RUN.sub("", d) == ""
    dark = [[False] * size for _ in range(size)]
    runs = []
    for x, y, width, back in (tuple(map(int, m)) for m in RUN.findall(d)):
        assert back == width, "a run must close back to where it started"
        assert width >= 1
        assert x >= 0 and x + width <= size and 0 <= y < size
        for column in range(x, x + width):
            assert not dark[y][column], "runs must not overlap"
            dark[y][column] = True
        runs.append((x, y, width))
    return ParsedQr(size=size, dark=dark, runs=runs, root=root)


def rasterize(qr: ParsedQr, px: int = PX) -> Image.Image:
    """Draw the runs, black on white, ``px`` pixels per module."""
    image = Image.new("L", (qr.size * px, qr.size * px), 255)
    draw = ImageDraw.Draw(image)
    for x, y, width in qr.runs:
        draw.rectangle([x * px, y * px, (x + width) * px - 1, (y + 1) * px - 1], fill=0)
    return image


def decode(image: Image.Image) -> list[str]:
    return [
        barcode.text
        for barcode in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
        if barcode.valid
    ]


PAYLOADS = [
    pytest.param("http://127.0.0.1:8000/q/abc", id="short-url"),
    pytest.param(LOGIN_URL, id="login-url"),
    pytest.param("0123456789012345", id="numeric"),
    pytest.param("HELLO WORLD $%*+-./:", id="alphanumeric"),
    pytest.param("https://id.example.com/q/ünïcødé ✓", id="utf8"),
    pytest.param("https://id.example.com/q/" + "x" * 600, id="long"),
]


@pytest.mark.parametrize("data", PAYLOADS)
def test_the_svg_decodes_to_its_data(data):
    qr = parse(str(qr_svg(data, "Sign-in code")))
    assert decode(rasterize(qr)) == [data]


def test_real_login_codes_decode_with_the_fixed_mask():
    """The mask is fixed (for speed), not chosen per code: every real login URL must still
    read back, at a small scale too."""
    import secrets

    for _ in range(200):
        data = "https://id.example.com/q/" + secrets.token_urlsafe(32)
        qr = parse(str(qr_svg(data, "Sign-in code")))
        assert decode(rasterize(qr, px=3)) == [data]


@pytest.mark.parametrize("data", PAYLOADS)
def test_quiet_zone_of_four_white_modules_on_each_side(data):
    qr = parse(str(qr_svg(data, "Sign-in code")))
    size = qr.size
    # A QR symbol of version v has 17 + 4v modules a side; the border adds 2 * 4.
    symbol = size - 2 * QUIET_ZONE
    assert QUIET_ZONE == 4
    assert symbol >= 21 and (symbol - 17) % 4 == 0
    border = set(range(QUIET_ZONE)) | set(range(size - QUIET_ZONE, size))
    for y in range(size):
        for x in range(size):
            if x in border or y in border:
                assert not qr.dark[y][x], f"dark module in the quiet zone at ({x}, {y})"
    # ...and exactly four: the finder patterns start right after it, in three corners.
    first, last = QUIET_ZONE, size - QUIET_ZONE - 1
    for x, y in [(first, first), (last, first), (first, last)]:
        assert qr.dark[y][x], f"no finder pattern corner at ({x}, {y})"
    assert min(x for x, _, _ in qr.runs) == first
    assert max(x + w for x, _, w in qr.runs) == size - QUIET_ZONE
    assert min(y for _, y, _ in qr.runs) == first
    assert max(y for _, y, _ in qr.runs) == last


def test_runs_are_maximal_one_per_horizontal_stretch():
    qr = parse(str(qr_svg(LOGIN_URL, "Sign-in code")))
    ends = {(x + w, y) for x, y, w in qr.runs}
    starts = {(x, y) for x, y, _ in qr.runs}
    assert not ends & starts, "two runs touch: they should have been one"


def test_the_data_is_in_the_modules_only():
    # The data is not in the SVG as text: only as modules.
    svg = str(qr_svg(LOGIN_URL, "Sign-in code"))
    assert LOGIN_URL not in svg
    assert "id.example.com" not in svg


def test_the_result_is_markup_with_the_documented_attributes():
    svg = qr_svg(LOGIN_URL, "Scan with the app")
    assert isinstance(svg, Markup)
    root = parse(str(svg)).root
    assert root.attrib["class"] == "qr"
    assert root.attrib["role"] == "img"
    assert root.attrib["aria-label"] == "Scan with the app"
    assert root.attrib["shape-rendering"] == "crispEdges"


@pytest.mark.parametrize(
    ("label", "escaped"),
    [
        (
            '<script>alert("x")</script>',
            "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;",
        ),
        ("\" onload='alert(1)' x=\"", "&#34; onload=&#39;alert(1)&#39; x=&#34;"),
        ("Tom & Jerry's <b>", "Tom &amp; Jerry&#39;s &lt;b&gt;"),
    ],
)
def test_the_label_is_escaped(label, escaped):
    svg = str(qr_svg("https://id.example.com/q/abc", label))
    assert f'aria-label="{escaped}"' in svg
    assert "<script" not in svg
    assert "onload='" not in svg
    root = parse(svg).root
    assert root.attrib["aria-label"] == label  # the parser gets the label back, as text
    assert set(root.attrib) == {
        "viewBox",
        "class",
        "role",
        "aria-label",
        "shape-rendering",
    }  # no attribute was injected


def test_a_label_that_is_already_markup_is_not_escaped_twice():
    svg = str(qr_svg("https://id.example.com/q/abc", Markup("A &amp; B")))
    assert 'aria-label="A &amp; B"' in svg


def test_the_terminal_code_decodes_and_an_ascii_terminal_gets_a_sentence():
    link = "https://idp.example.com/app/invite/" + "Ab_-" * 10 + "xyz"
    utf8 = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    assert terminal_qr_text(qr_for_terminal(link, utf8)) == link
    ascii_only = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    assert qr_for_terminal(link, ascii_only) == (
        "(this terminal cannot draw the QR code: open the link instead)\n"
    )

"""QR codes as compact inline SVG, and as text for a terminal."""

from __future__ import annotations

import io
from typing import TextIO

from markupsafe import Markup, escape
from qrcode import QRCode
from qrcode.constants import ERROR_CORRECT_M

QUIET_ZONE = 4  # modules of white border that scanners need (ISO/IEC 18004)
#: Any of the 8 masks is valid; choosing one instead of scoring all eight (qrcode's
#: default) makes a code in 0.6 ms instead of 3.5 ms, a fifth of a whole login's CPU
#: (bench/). The unit tests decode hundreds of codes made with it.
MASK_PATTERN = 3


def qr_svg(data: str, label: str) -> Markup:
    """``data`` as an SVG QR code with its quiet zone; ``label`` is the text alternative."""
    qr = QRCode(error_correction=ERROR_CORRECT_M, border=QUIET_ZONE, mask_pattern=MASK_PATTERN)
    qr.add_data(data)
    qr.make(fit=True)
    matrix = qr.get_matrix()
    size = len(matrix)
    runs = []
    for y, row in enumerate(matrix):
        x = 0
        while x < size:
            if not row[x]:
                x += 1
                continue
            start = x
            while x < size and row[x]:
                x += 1
            runs.append(f"M{start},{y}h{x - start}v1h-{x - start}z")
    # Safe: built only from integers and the escaped label.
    return Markup(  # noqa: S704
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" class="qr" '
        f'role="img" aria-label="{escape(label)}" shape-rendering="crispEdges">'
        f'<rect width="{size}" height="{size}" fill="#fff"/>'
        f'<path fill="#000" d="{"".join(runs)}"/></svg>'
    )


def qr_text(data: str) -> str:
    """``data`` as a QR code drawn in block characters, two modules a line, for a terminal.
    Light modules are drawn, dark ones left blank: on the usual dark terminal background
    that is the code as printed on paper (and phones read the inverse too)."""
    qr = QRCode(error_correction=ERROR_CORRECT_M, border=2, mask_pattern=MASK_PATTERN)
    qr.add_data(data)
    out = io.StringIO()
    qr.print_ascii(out=out, invert=True)
    return out.getvalue()


def qr_for_terminal(data: str, stream: TextIO) -> str:
    """:func:`qr_text` if ``stream`` can show its block characters (a UTF-8 terminal),
    else a line that says to use the link: printing them would fail otherwise."""
    art = qr_text(data)
    try:
        art.encode(stream.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "(this terminal cannot draw the QR code: open the link instead)\n"
    return art

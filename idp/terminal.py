"""Text that reaches a terminal or a log line: names and ids come from users, phones
and relying parties, so control characters in them are shown escaped, never obeyed.

An escape sequence could recolour or rewrite what an admin reads, a newline could
forge a second audit line, and a bidirectional override could reverse part of one.
"""

from __future__ import annotations

import unicodedata

#: Characters that change how the rest of a line reads without being letters: the
#: bidirectional embeddings, overrides and isolates, and the directional marks.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def _is_control(char: str) -> bool:
    # Cc: C0, DEL and C1; Cf: format characters (bidi, zero-width); Cs, Co, Cn: surrogates,
    # private use, unassigned; Zl, Zp: the Unicode line and paragraph separators.
    return unicodedata.category(char) in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def printable(text: object) -> str:
    """``text`` with every control or format character written as a Python escape
    (``\\x1b``, ``\\n``, ``\\u202e``): one line that says what it holds."""
    return "".join(
        char.encode("unicode_escape", "backslashreplace").decode("ascii")
        if _is_control(char)
        else char
        for char in str(text)
    )


def has_control_characters(text: str) -> bool:
    """Whether ``text`` holds a C0 or C1 control, DEL, a line or paragraph separator or a
    bidirectional control: what a name shown to people must not contain. (Other format
    characters, such as the zero-width joiner of emoji sequences, are allowed.)"""
    return any(unicodedata.category(c) in {"Cc", "Zl", "Zp"} or c in BIDI_CONTROLS for c in text)

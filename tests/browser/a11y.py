"""Accessibility checks for the browser tests: axe-core (vendored in tests/browser/vendor)
run in the page as it is, under its own Content-Security-Policy.

``page.add_script_tag`` would be refused by that policy (``script-src 'self'``), and the
tests never bypass it, so the source goes in through ``page.evaluate``, which DevTools
runs outside the page's policy; axe itself then runs as any page script does.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

AXE_SOURCE = Path(__file__).with_name("vendor") / "axe.min.js"
#: WCAG 2.0 and 2.1, levels A and AA, and axe's best practices.
RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]

RUN = """async (tags) => {
  const results = await axe.run(document, { runOnly: tags });
  return results.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    targets: v.nodes.map((node) => node.target),
  }));
}"""


@cache
def _source() -> str:
    return AXE_SOURCE.read_text(encoding="utf-8")


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """What axe finds wrong with the page as it is now (an empty list: nothing): each
    violation's rule id, impact, help text and the CSS targets of the elements at fault."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(_source())
    violations: list[dict[str, Any]] = page.evaluate(RUN, RULES)
    return violations

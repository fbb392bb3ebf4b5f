"""Accessibility: axe-core finds nothing wrong with the IdP's pages, on a laptop and at
phone size (tests/browser/a11y.py runs it under the pages' own policy)."""

from __future__ import annotations

import pytest

from a11y import axe_violations
from desktop import LAPTOP, PHONE, new_context, start_sign_in


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_the_authorize_page_has_no_violations(chromium, site, viewport):
    context = new_context(chromium, viewport=viewport)
    page = start_sign_in(context, site)
    assert axe_violations(page) == []
    context.close()


def test_axe_reports_what_it_finds(chromium, site):
    """The check can fail: an image without a text alternative, added to the page, is
    reported by its rule and its element."""
    context = new_context(chromium)
    page = start_sign_in(context, site)
    page.evaluate(
        """() => {
          const image = document.createElement("img");
          image.id = "no-alt";
          image.src = "data:image/gif;base64,R0lGODlhAQABAAAAACw=";
          document.querySelector("main, body").append(image);
        }"""
    )
    found = {violation["id"]: violation for violation in axe_violations(page)}
    assert found["image-alt"]["targets"] == [["#no-alt"]]
    assert found["image-alt"]["impact"] == "critical"
    context.close()

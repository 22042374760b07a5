"""A real browser for the page's tests: the distribution's Chromium, driven by Playwright's Python API.

Nothing is downloaded from a browser vendor: ``executable_path`` points at Debian's ``chromium``
(``make test`` installs it with apt when it is missing). Where it cannot be found the tests fail
and say how to get it; they never skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Headless, as root in CI (no sandbox), and quiet: no GPU, no QUIC, no first-run, update or sync
# traffic. Playwright gives every launch a fresh temporary --user-data-dir of its own.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 780}


def launch(playwright: Playwright) -> Browser:
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"No Chromium at {CHROMIUM}: the page's tests need the distribution's browser. "
            "Install it with `apt-get install -y chromium` (what `make test` does as root), "
            "or point CHROMIUM at one."
        )
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)


def open_page(browser: Browser, url: str, **context: object) -> Page:
    """A fresh context (empty localStorage) with the page loaded and its models listed (or the key asked)."""
    page = browser.new_context(**context).new_page()  # type: ignore[arg-type]
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: errors.append(f"a {dialog.type} dialog opened: {dialog.message}"))
    page.errors = errors  # type: ignore[attr-defined]
    page.goto(url + "/")
    page.locator("body[data-ready]").wait_for()
    return page


def answers(page: Page) -> list[str]:
    return page.locator("#log .message.assistant .body").all_inner_texts()

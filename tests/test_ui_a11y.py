"""Accessibility of the browser UI (issue 15), in real Chromium against a real gunicorn + gevent server.

* axe-core (bundled by ``axe-playwright-python``) with the WCAG 2.1 A and AA rule sets
  (tags ``wcag2a``, ``wcag2aa``, ``wcag21a``, ``wcag21aa``) on every view: the sign-in
  page, live, history, analytics and the call detail; light and dark; 1280 px and 390 px
  wide; with a live call streaming transcript lines while axe runs. One test per view.
* A URL per call (``#call/<percent-encoded id>``), history filters in the URL.
* Keyboard: focus trap and focus return of the detail dialog, the shortcuts, and a
  keyboard-only journey from the sign-in page to a chart's data table.
* Screen readers: the polite, rate-limited announcer; chart captions and data tables.
* Reduced motion and 400 % zoom (320 CSS px): no animation, no page-level horizontal scroll.

The fixtures (``browser``, ``open_page``) and event builders are those of test_ui_browser.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import pytest

pytest.importorskip("playwright.sync_api")
axe_sync = pytest.importorskip("axe_playwright_python.sync_playwright")
from playwright.sync_api import Page, expect  # noqa: E402

from tests.test_ui_browser import (  # noqa: E402,F401  (browser and open_page are fixtures)
    CHROMIUM,
    browser,
    call_start,
    finished_call,
    history_rows,
    line,
    live_card,
    open_dashboard,
    open_page,
    seed_history,
)

pytestmark = [pytest.mark.timeout(300)]

WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
AXE = axe_sync.Axe()
THEMES = ("light", "dark")
WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}
MODES = [pytest.param(theme, width, id=f"{theme}-{width}") for theme in THEMES for width in WIDTHS]


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A/AA violations on the page as it is now, each with its failing nodes."""
    results = AXE.run(page, options={"runOnly": {"type": "tag", "values": WCAG_TAGS}, "resultTypes": ["violations"]})
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"],
         "nodes": [{"target": n["target"], "summary": n.get("failureSummary", "")[:300]} for n in v["nodes"][:5]]}
        for v in results.response["violations"]
    ]


def assert_no_axe_violations(page: Page, where: str) -> None:
    found = axe_violations(page)
    assert not found, f"axe (WCAG 2.1 A/AA) on {where}:\n" + "\n".join(
        f"- {v['id']} ({v['impact']}): {v['help']}\n    " + "\n    ".join(f"{n['target']}: {n['summary']}" for n in v["nodes"])
        for v in found)


@contextmanager
def streaming(server: Any, call_id: str = "CA-a11y-live", caller: str = "+15557770101") -> Iterator[None]:
    """A live call whose transcript keeps growing (a line every 150 ms) while the block runs."""
    server.post_events([call_start(call_id, caller, "+15550001234")])
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.is_set():
            role = "user" if i % 2 else "assistant"
            try:
                server.post_events([line(call_id, role, f"Streaming line {i} while the audit runs.")])
            except Exception:  # the server is going away at teardown
                return
            i += 1
            stop.wait(0.15)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def settle(page: Page) -> None:
    """Let the frame's batched DOM work land (the scheduler draws once per animation frame)."""
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")


def open_mode(open_page: Any, theme: str, width: str) -> tuple[Page, Any]:
    return open_page(color_scheme=theme, viewport=WIDTHS[width])


# --------------------------------------------------------------------------- axe, one test per view


@pytest.mark.parametrize("theme,width", MODES)
def test_axe_sign_in_page(live_server: Any, open_page: Any, theme: str, width: str) -> None:
    server = live_server(PATTER_DASH_TOKEN="tok-a11y-0001")
    page, guard = open_mode(open_page, theme, width)
    page.goto(f"{server.url}/dashboard")
    expect(page.locator("input[name=token]")).to_be_visible()
    assert_no_axe_violations(page, f"sign-in page ({theme}, {width})")
    # the refused-token state, with its alert
    page.locator("input[name=token]").fill("wrong")
    page.keyboard.press("Enter")
    expect(page.locator(".pd-alert")).to_be_visible()
    assert_no_axe_violations(page, f"sign-in page with an error ({theme}, {width})")
    guard.check(allow=r"status of 401")


@pytest.mark.parametrize("theme,width", MODES)
def test_axe_live_view(live_server: Any, open_page: Any, theme: str, width: str) -> None:
    server = live_server()
    page, guard = open_mode(open_page, theme, width)
    open_dashboard(page, server.url, "live")
    assert_no_axe_violations(page, f"live view, empty ({theme}, {width})")
    with streaming(server):
        card = live_card(page, "+15557770101")
        expect(card.locator(".pd-line").nth(3)).to_be_visible()
        assert_no_axe_violations(page, f"live view, streaming ({theme}, {width})")
    guard.check()


@pytest.mark.parametrize("theme,width", MODES)
def test_axe_history_view(live_server: Any, open_page: Any, theme: str, width: str) -> None:
    server = live_server()
    seed_history(server)
    page, guard = open_mode(open_page, theme, width)
    open_dashboard(page, server.url, "history")
    expect(history_rows(page)).to_have_count(4)
    with streaming(server):
        expect(page.locator("#pd-live-count")).to_have_text("1")
        if width == "phone":
            page.click("#pd-filters-toggle")  # the folded filters, opened
        page.select_option("select[name=status]", "failed")
        expect(history_rows(page)).to_have_count(1)
        assert_no_axe_violations(page, f"history view, filtered ({theme}, {width})")
        page.select_option("select[name=status]", "")
        expect(history_rows(page)).to_have_count(4)
        settle(page)
        assert_no_axe_violations(page, f"history view ({theme}, {width})")
    guard.check()


@pytest.mark.parametrize("theme,width", MODES)
def test_axe_analytics_view(live_server: Any, open_page: Any, theme: str, width: str) -> None:
    server = live_server()
    seed_history(server)
    page, guard = open_mode(open_page, theme, width)
    open_dashboard(page, server.url, "analytics")
    expect(page.locator("#pd-chart-cost canvas")).to_have_count(1)
    with streaming(server):
        expect(page.locator("#pd-tiles [data-tile=active] .pd-tile-value")).to_have_text("1")
        assert_no_axe_violations(page, f"analytics view ({theme}, {width})")
        for toggle in page.locator(".pd-chart-table-toggle").all():
            toggle.click()
        expect(page.locator(".pd-chart-table table").first).to_be_visible()
        assert_no_axe_violations(page, f"analytics view with the data tables open ({theme}, {width})")
    guard.check()


@pytest.mark.parametrize("theme,width", MODES)
def test_axe_call_detail(live_server: Any, open_page: Any, theme: str, width: str) -> None:
    server = live_server()
    seed_history(server)
    page, guard = open_mode(open_page, theme, width)
    open_dashboard(page, server.url, "history")
    expect(history_rows(page)).to_have_count(4)
    with streaming(server):
        history_rows(page).first.click()
        dialog = page.locator("#pd-detail")
        expect(dialog.locator(".pd-conversation .pd-line")).to_have_count(3)
        assert_no_axe_violations(page, f"call detail, finished call ({theme}, {width})")
        page.keyboard.press("Escape")
        page.goto(f"{server.url}/dashboard#call/CA-a11y-live")
        expect(dialog.locator(".pd-conversation .pd-line").nth(2)).to_be_visible()
        assert_no_axe_violations(page, f"call detail, live call ({theme}, {width})")
    guard.check()

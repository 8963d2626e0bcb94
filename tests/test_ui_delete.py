"""Deleting calls and where history is kept, in the browser (issue 12): real gunicorn + gevent, real Chromium.

* The call detail's "Delete call" asks first (a native modal <dialog>, role alertdialog; Cancel has
  focus, Esc and Cancel change nothing and give focus back), then the call leaves every view of this
  page at once, focus lands on the neighbouring row and a polite status says so.
* A deletion elsewhere (another window, the API, retention) reaches every open page through the
  stream's ``call_deleted``: live cards, history rows, analytics, and an open detail, which says so.
* Errors are said in the dialog's alert region; a call deleted meanwhile (404) just goes.
* The header says where history is kept (memory, or the SQLite file with its size and path; "not
  saved" with the reason when the file cannot be written), as text only, whatever the path holds.
* axe (WCAG 2.1 A/AA) on the confirmation and on a detail whose call was deleted.

The fixtures (``browser``, ``open_page``) and event builders are those of test_ui_browser.py.
"""

# ruff: noqa: F811  (the fixtures browser/open_page are imported, then named as test parameters)
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Page, Route, expect  # noqa: E402

from tests.test_ui_a11y import assert_no_axe_violations, settle, wait_until  # noqa: E402
from tests.test_ui_browser import (  # noqa: E402,F401  (browser and open_page are fixtures)
    browser,
    call_start,
    history_rows,
    live_card,
    open_dashboard,
    open_page,
    seed_history,
)

pytestmark = [pytest.mark.timeout(240)]


def focused(page: Page) -> dict[str, Any]:
    return page.evaluate("""() => { const a = document.activeElement;
      return {tag: a.tagName, id: a.id, cls: String(a.className), call: a.dataset ? a.dataset.callId || null : null,
              inDetail: !!a.closest('#pd-detail'), inConfirm: !!a.closest('#pd-delete-dialog')}; }""")


def api_ids(server: Any) -> list[str]:
    return [c["call_id"] for c in server.get("/api/v1/calls?limit=1000").json()["data"]]


def delete_via_api(server: Any, path: str) -> dict[str, Any]:
    response = requests.delete(server.url + path, headers=server.headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def open_call_from_history(page: Page, index: int) -> str:
    row = history_rows(page).nth(index)
    call_id = row.get_attribute("data-call-id")
    row.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("#pd-detail")
    expect(dialog.locator(".pd-detail-id code")).to_have_text(call_id)
    expect(dialog.locator(".pd-conversation .pd-line").first).to_be_visible()
    expect(dialog.locator(".pd-detail-delete")).to_be_enabled()
    return call_id


# --------------------------------------------------------------------------- this page deletes


def test_delete_asks_first_and_the_call_leaves_every_view(live_server: Any, open_page: Any) -> None:
    server = live_server()
    seed_history(server)  # CA-h-4 (newest) .. CA-h-1
    page, guard = open_page()
    open_dashboard(page, server.url, "history")
    rows = history_rows(page)
    expect(rows).to_have_count(4)
    call_id = open_call_from_history(page, 1)
    assert call_id == "CA-h-3"
    detail = page.locator("#pd-detail")
    confirm = page.locator("#pd-delete-dialog")

    # Keyboard only: from the call's body back to "Delete call" (head: title, Delete call, ✕).
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    expect(detail.locator(".pd-detail-delete")).to_be_focused()
    page.keyboard.press("Enter")
    expect(confirm).to_be_visible()
    assert confirm.evaluate("d => d.open && d.matches(':modal')")
    expect(confirm).to_have_attribute("role", "alertdialog")
    expect(confirm).to_have_accessible_name("Delete this call?")
    expect(confirm.locator("#pd-delete-desc")).to_contain_text("+15554440003 to +15550001234")
    expect(confirm.locator("#pd-delete-desc")).to_contain_text("cannot be undone")
    expect(page.locator("#pd-delete-cancel")).to_be_focused()  # the safe choice first
    for key in ["Tab"] * 3 + ["Shift+Tab"] * 3:  # Tab stays inside the confirmation
        page.keyboard.press(key)
        assert focused(page)["inConfirm"], (key, focused(page))

    # Esc cancels: nothing deleted, the detail still open, focus back on its button.
    page.keyboard.press("Escape")
    expect(confirm).to_be_hidden()
    expect(detail).to_be_visible()
    expect(detail.locator(".pd-detail-delete")).to_be_focused()
    # Cancel too.
    page.keyboard.press("Enter")
    expect(page.locator("#pd-delete-cancel")).to_be_focused()
    page.keyboard.press("Enter")
    expect(confirm).to_be_hidden()
    expect(detail.locator(".pd-detail-delete")).to_be_focused()
    assert "CA-h-3" in api_ids(server)

    # Confirm: the call goes from the server and from this page, without waiting for a refetch.
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.locator("#pd-delete-confirm")).to_be_focused()
    page.keyboard.press("Enter")
    expect(confirm).to_be_hidden()
    expect(detail).to_be_hidden()
    expect(rows).to_have_count(3)
    expect(page.locator("#pd-history-body tr[data-call-id='CA-h-3']")).to_have_count(0)
    expect(page.locator("#pd-history-summary")).to_have_text("1–3 of 3 calls")
    # Focus lands on the row that now holds its place, and a polite status says what happened.
    wait_until(page, "document.activeElement && document.activeElement.dataset.callId === 'CA-h-2'")
    expect(page.locator("#pd-notice")).to_have_text("Call deleted.")
    wait_until(page, "location.hash === '#history'")
    assert api_ids(server) == ["CA-h-4", "CA-h-2", "CA-h-1"]
    assert server.get("/api/v1/calls/CA-h-3").status_code == 404

    # Analytics count what is left.
    page.locator(".pd-tab[data-view=analytics]").click()
    expect(page.locator(".pd-tile[data-tile=calls] .pd-tile-value")).to_have_text("3")
    # A #call address of a deleted call says so.
    page.goto(f"{server.url}/dashboard#call/CA-h-3")
    expect(detail.locator(".pd-detail-body")).to_contain_text("This call was not found.")
    expect(detail.locator(".pd-detail-delete")).to_be_disabled()
    guard.check(allow=r"status of 404")


def test_a_live_call_can_be_deleted_from_its_card(live_server: Any, open_page: Any) -> None:
    server = live_server()
    page, guard = open_page()
    open_dashboard(page, server.url, "live")
    server.post_events([call_start("CA-stuck", "+15556660001", "+15550001234"),
                        call_start("CA-other", "+15556660002", "+15550001234")])
    card = live_card(page, "+15556660001")
    expect(card).to_be_visible()
    expect(page.locator("#pd-live-count")).to_have_text("2")
    card.locator(".pd-live-open").click()
    page.locator("#pd-detail .pd-detail-delete").click()
    expect(page.locator("#pd-delete-desc")).to_contain_text("still in progress")
    page.locator("#pd-delete-confirm").click()
    expect(page.locator("#pd-detail")).to_be_hidden()
    expect(card).to_have_count(0)
    expect(page.locator("#pd-live-count")).to_have_text("1")
    wait_until(page, "document.activeElement && document.activeElement.closest('[data-call-id=\"CA-other\"]')")
    assert [c["call_id"] for c in server.get("/api/v1/calls/active").json()["data"]] == ["CA-other"]
    guard.check()


# --------------------------------------------------------------------------- elsewhere


def test_deletions_elsewhere_reach_every_open_page(live_server: Any, open_page: Any) -> None:
    server = live_server()
    seed_history(server)
    server.post_events([call_start("CA-live-x", "+15558880001", "+15550001234")])
    reader, guard_reader = open_page()
    watcher, guard_watcher = open_page(viewport=(390, 844))
    open_dashboard(reader, server.url, "history")
    open_dashboard(watcher, server.url, "live")
    expect(history_rows(reader)).to_have_count(4)
    expect(live_card(watcher, "+15558880001")).to_be_visible()
    open_call_from_history(reader, 0)  # CA-h-4 open in the reader

    # Another window deletes the call the reader is looking at: the drawer stays and says so.
    delete_via_api(server, "/api/v1/calls/CA-h-4")
    detail = reader.locator("#pd-detail")
    notice = detail.locator(".pd-detail-notice")
    expect(notice).to_contain_text("This call was deleted")
    expect(notice).to_have_attribute("role", "status")
    expect(detail.locator(".pd-detail-title")).to_have_text("Call deleted")
    expect(detail.locator(".pd-detail-delete")).to_be_disabled()
    expect(history_rows(reader)).to_have_count(3)
    assert_no_axe_violations(reader, "detail of a call deleted elsewhere")
    reader.keyboard.press("Escape")
    expect(detail).to_be_hidden()

    # A live call deleted elsewhere leaves the other page's live view.
    delete_via_api(server, "/api/v1/calls/CA-live-x")
    expect(live_card(watcher, "+15558880001")).to_have_count(0)
    expect(watcher.locator("#pd-live-count")).to_have_text("0")
    expect(watcher.locator("#pd-live-empty")).to_be_visible()

    # A bulk deletion (or the retention purge) empties the history of every page.
    delete_via_api(server, f"/api/v1/calls?before={time.time()}")
    expect(history_rows(reader)).to_have_count(0)
    expect(reader.locator("#pd-history-summary")).to_have_text("0 of 0 calls")
    watcher.goto(f"{server.url}/dashboard#analytics")
    expect(watcher.locator(".pd-tile[data-tile=calls] .pd-tile-value")).to_have_text("0")
    guard_reader.check()
    guard_watcher.check()


def test_a_call_deleted_while_asking_just_goes(live_server: Any, open_page: Any) -> None:
    server = live_server()
    seed_history(server)
    page, guard = open_page()
    open_dashboard(page, server.url, "history")
    open_call_from_history(page, 2)  # CA-h-2
    page.locator("#pd-detail .pd-detail-delete").click()
    expect(page.locator("#pd-delete-dialog")).to_be_visible()
    delete_via_api(server, "/api/v1/calls/CA-h-2")  # someone else was quicker
    expect(history_rows(page)).to_have_count(3)
    page.locator("#pd-delete-confirm").click()  # the server says 404: it is gone either way
    expect(page.locator("#pd-delete-dialog")).to_be_hidden()
    expect(page.locator("#pd-detail")).to_be_hidden()
    expect(page.locator("#pd-notice")).to_have_text("The call was already deleted.")
    guard.check(allow=r"status of 404")


# --------------------------------------------------------------------------- errors


def test_a_refused_deletion_is_said_in_the_dialog_and_can_be_retried(live_server: Any, open_page: Any) -> None:
    """The server's 503 (history cannot be written) is tested for real in test_history_delete.py;
    here the browser gets one (with hostile text in it) to show how the page says it."""
    server = live_server()
    seed_history(server)
    page, guard = open_page()
    refusals = {"left": 1}

    def full_disk(route: Route) -> None:
        if route.request.method == "DELETE" and refusals["left"]:
            refusals["left"] -= 1
            route.fulfill(status=503, content_type="application/json", headers={"Retry-After": "1"},
                          body=json.dumps({"error": "history cannot be written: <img src=x onerror=alert(1)> disk full; retry shortly"}))
        else:
            route.continue_()

    page.route("**/api/v1/call?id=*", full_disk)  # the dashboard names a call in the query string
    open_dashboard(page, server.url, "history")
    open_call_from_history(page, 0)
    page.locator("#pd-detail .pd-detail-delete").click()
    page.locator("#pd-delete-confirm").click()
    error = page.locator("#pd-delete-error")
    expect(error).to_have_text("Could not delete the call: history cannot be written: <img src=x onerror=alert(1)> disk full; retry shortly. Try again.")
    expect(error).to_have_attribute("role", "alert")
    assert page.locator("#pd-delete-dialog img").count() == 0
    expect(page.locator("#pd-delete-dialog")).to_be_visible()
    assert focused(page)["inConfirm"]
    expect(history_rows(page)).to_have_count(4)
    settle(page)
    assert_no_axe_violations(page, "delete confirmation with an error")
    page.locator("#pd-delete-confirm").click()  # the second try goes through
    expect(page.locator("#pd-delete-dialog")).to_be_hidden()
    expect(history_rows(page)).to_have_count(3)
    guard.check(allow=r"status of 503")


# --------------------------------------------------------------------------- where history is kept


def store_badge(page: Page) -> Any:
    badge = page.locator("#pd-store")
    expect(badge).to_be_visible()
    return badge


def test_the_header_says_history_is_saved_to_the_file(live_server: Any, open_page: Any, tmp_path: Path) -> None:
    hostile = tmp_path / "<img src=x onerror=alert(1)> & \"quotes\"" / "history.db"
    hostile.parent.mkdir()
    server = live_server(PATTER_DASH_DB=str(hostile))
    seed_history(server)
    page, guard = open_page()
    open_dashboard(page, server.url, "live")
    badge = store_badge(page)
    expect(badge).to_have_attribute("data-state", "ok")
    expect(badge.locator(".pd-store-state")).to_have_text("saved")
    detail = badge.locator(".pd-store-detail")
    expect(detail).to_contain_text(f": {hostile}")
    assert detail.inner_text().startswith("SQLite, ") and " KB: " in detail.inner_text()
    assert badge.get_attribute("title").startswith("History saved: SQLite, ")
    assert page.locator("header img").count() == 1  # the logo only: the path stayed text
    # Full words for screen readers, whatever the width shows.
    expect(badge).to_contain_text("History saved")
    phone, guard_phone = open_page(viewport=(390, 844))
    open_dashboard(phone, server.url, "live")
    expect(store_badge(phone).locator(".pd-store-state")).to_be_visible()
    assert phone.locator("#pd-store .pd-store-detail").evaluate("e => e.getBoundingClientRect().width") <= 1
    guard.check()
    guard_phone.check()


def test_the_header_says_history_is_in_postgresql_and_whether_this_process_is_up_to_date(
    live_server: Any, open_page: Any, pg_database: Any,
) -> None:
    url = pg_database()
    server = live_server(PATTER_DASH_DB=url)
    seed_history(server)
    page, guard = open_page()
    open_dashboard(page, server.url, "live")
    badge = store_badge(page)
    expect(badge).to_have_attribute("data-state", "ok")
    detail = badge.locator(".pd-store-detail")
    expect(detail).to_contain_text("up to date")
    text = detail.inner_text()
    assert text.startswith("PostgreSQL, ") and f": {url}" in text, text
    guard.check()


def test_the_header_says_history_is_in_memory(live_server: Any, open_page: Any) -> None:
    server = live_server(PATTER_DASH_DB=":memory:")
    page, guard = open_page()
    open_dashboard(page, server.url, "live")
    badge = store_badge(page)
    expect(badge).to_have_attribute("data-state", "memory")
    expect(badge).to_contain_text("History in memory")
    expect(badge).to_contain_text("lost when the server restarts")
    guard.check()


def test_the_header_says_when_history_cannot_be_saved(live_server: Any, open_page: Any) -> None:
    """A real disk-full journal is the fault tests' subject; here health answers degraded, then recovers.

    The badge asks health every 30 s, and at once whenever the stream reconnects: a server restart
    makes it ask.
    """
    server = live_server()
    page, guard = open_page()
    state = {"degraded": False}

    def health(route: Route) -> None:
        try:
            response = route.fetch()
        except Exception:  # the server is restarting
            route.abort()
            return
        body = response.json()
        if state["degraded"]:
            body["status"] = "degraded"
            body["history"].update(status="degraded", error="<script>alert(1)</script> database or disk is full")
        route.fulfill(response=response, body=json.dumps(body))

    page.route("**/api/v1/health", health)
    open_dashboard(page, server.url, "live")
    badge = store_badge(page)
    expect(badge).to_have_attribute("data-state", "ok")

    state["degraded"] = True
    server.stop()
    server.start()
    expect(badge).to_have_attribute("data-state", "degraded", timeout=15_000)
    expect(badge.locator(".pd-store-state")).to_have_text("not saved")
    expect(badge.locator(".pd-store-detail")).to_contain_text("<script>alert(1)</script> database or disk is full")
    expect(page.locator("#pd-notice")).to_contain_text("History cannot be saved: <script>alert(1)</script> database or disk is full")
    settle(page)
    assert_no_axe_violations(page, "header with history not saved")

    state["degraded"] = False
    server.stop()
    server.start()
    expect(badge).to_have_attribute("data-state", "ok", timeout=15_000)
    expect(page.locator("#pd-notice")).to_have_text("History saved.")
    guard.check(allow_network_errors=True)


# --------------------------------------------------------------------------- accessibility


@pytest.mark.parametrize(("theme", "viewport"), [("light", (1280, 800)), ("dark", (390, 844))], ids=["light-desktop", "dark-phone"])
def test_axe_delete_confirmation(live_server: Any, open_page: Any, theme: str, viewport: tuple[int, int]) -> None:
    server = live_server()
    seed_history(server)
    page, guard = open_page(color_scheme=theme, viewport=viewport)
    open_dashboard(page, server.url, "history")
    open_call_from_history(page, 0)
    settle(page)
    assert_no_axe_violations(page, f"detail with its delete button ({theme})")
    page.locator("#pd-detail .pd-detail-delete").click()
    expect(page.locator("#pd-delete-cancel")).to_be_focused()
    settle(page)
    assert_no_axe_violations(page, f"delete confirmation ({theme})")
    # Everything of the confirmation fits a phone screen (no horizontal scroll inside or out).
    box = page.locator("#pd-delete-dialog").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= viewport[0]
    page.keyboard.press("Escape")
    guard.check()

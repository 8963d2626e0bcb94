"""Tags, notes and a rating in the browser (issue 13): real gunicorn + gevent, real Chromium.

Keyboard only, in the call detail: Enter in the tag field adds a chip (it does not submit), a chip's
remove button takes it away and focus goes back to the field, the rating is a radio group, Save
PATCHes the call and a polite status says "Saved."; a refusal is said in an alert. Another window
sees the change through ``call_updated``; the history shows tags in its rows and filters by tag from
a shareable address. axe (WCAG 2.1 A/AA) on the open form.
"""

# ruff: noqa: F811  (the fixtures browser/open_page are imported, then named as test parameters)
from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from tests.test_ui_a11y import assert_no_axe_violations  # noqa: E402
from tests.test_ui_browser import browser, history_rows, open_dashboard, open_page, seed_history  # noqa: E402,F401
from tests.test_ui_delete import open_call_from_history  # noqa: E402

pytestmark = [pytest.mark.timeout(240)]


def test_tags_notes_and_rating_are_edited_by_keyboard_and_reach_every_view(live_server: Any, open_page: Any) -> None:
    server = live_server()
    seed_history(server)  # CA-h-4 (newest) .. CA-h-1
    page, guard = open_page()
    other, other_guard = open_page()
    open_dashboard(page, server.url, "history")
    open_dashboard(other, server.url, "history")
    expect(history_rows(page)).to_have_count(4)
    assert open_call_from_history(page, 1) == "CA-h-3"
    form = page.locator("#pd-detail form.pd-annotate")
    tag_input = form.get_by_label("Add a tag")

    tag_input.focus()
    page.keyboard.type("vip")
    page.keyboard.press("Enter")
    page.keyboard.type("<b>billing</b>")  # text, never markup
    page.keyboard.press("Enter")
    expect(form.locator(".pd-tag-list li > span:first-child")).to_have_text(["vip", "<b>billing</b>"])
    expect(tag_input).to_have_value("")
    expect(tag_input).to_be_focused()
    form.get_by_role("button", name="Remove tag <b>billing</b>").focus()
    page.keyboard.press("Enter")
    expect(form.locator(".pd-tag-list li > span:first-child")).to_have_text(["vip"])
    expect(tag_input).to_be_focused()
    page.keyboard.press("Tab")
    expect(form.get_by_label("Notes")).to_be_focused()
    page.keyboard.type("Asked for a refund twice.")
    form.get_by_role("radio", name="4").focus()
    page.keyboard.press("Space")
    expect(form.get_by_role("radio", name="4")).to_be_checked()
    assert_no_axe_violations(page, "#pd-detail")

    form.get_by_role("button", name="Save").focus()
    page.keyboard.press("Enter")
    expect(form.get_by_role("status")).to_have_text("Saved.")
    detail = server.get("/api/v1/calls/CA-h-3").json()["data"]
    assert (detail["tags"], detail["notes"], detail["rating"]) == (["vip"], "Asked for a refund twice.", 4)
    # Both windows' history rows show the tag (the other one through call_updated).
    for p in (page, other):
        expect(p.locator('#pd-history-body tr[data-call-id="CA-h-3"] .pd-chip-tag')).to_have_text(["vip"])

    # A refusal is said, and nothing is lost from the form.
    this_call = lambda url: "/api/v1/call" in url and "CA-h-3" in url  # noqa: E731 (the dashboard's /call?id= form)
    page.route(this_call, lambda route: route.fulfill(
        status=400, content_type="application/json",
        body='{"error": "invalid annotation", "details": [{"field": "notes", "error": "too long"}]}',
    ) if route.request.method == "PATCH" else route.continue_())
    form.get_by_label("Notes").fill("changed")
    form.get_by_role("button", name="Save").click()
    expect(form.get_by_role("alert")).to_contain_text("invalid annotation: notes too long")
    expect(form.get_by_label("Notes")).to_have_value("changed")
    page.unroute(this_call)
    page.keyboard.press("Escape")

    # The tag filter, from a shareable address.
    other.goto(f"{server.url}/dashboard#history?tag=vip")
    expect(history_rows(other)).to_have_count(1)
    expect(history_rows(other).first).to_have_attribute("data-call-id", "CA-h-3")
    expect(other.locator("#pd-filters input[name=tag]")).to_have_value("vip")
    assert "tag=vip" in other.locator("#pd-export-csv").get_attribute("href")
    guard.check(allow="400")
    other_guard.check()

"""Unbounded reads and calls (issue 10, item 5): paged live calls, per-call text, live-call count.

Store bounds are checked on :class:`CallStore` directly; HTTP behaviour (paging,
body size, the settings) through a real gunicorn + gevent server.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from sse import SSEClient

from patter_dash.config import ConfigError, load_settings
from patter_dash.core.store import MAX_LINES, CallStore
from patter_dash.model import records
from tests.core.test_store import apply

try:  # the browser test borrows test_ui_browser's Chromium fixtures
    from tests.test_ui_browser import (  # noqa: F401
        CHROMIUM,
        browser,
        open_dashboard,
        open_page,
    )
except pytest.skip.Exception:
    CHROMIUM = ""

LONG = 20_000  # the longest line ingest keeps (events.MAX_TEXT_LENGTH)

def say(store: CallStore, call_id: str, text: str, now: float | None = None) -> records.Call:
    return apply(store, "transcript", {"call_id": call_id, "role": "user", "text": text}, now)


def envelope(event_type: str, **data: Any) -> dict[str, Any]:
    return {"type": event_type, "data": data}


# ------------------------------------------------------------ text per call


def test_a_call_stops_growing_at_its_text_budget_and_counts_what_it_dropped() -> None:
    store = CallStore(max_call_text=50_000)
    apply(store, "call_start", {"call_id": "big"})
    for i in range(5):
        say(store, "big", f"{i}" + "x" * (LONG - 1))
    call = store.get("big")
    assert len(call.transcript) == 2 and call.text_chars == 40_000
    assert call.dropped_lines == 3 and "transcript_truncated" in call.flags
    say(store, "big", "short line still fits")  # the budget is characters, not a line count
    assert call.transcript[-1][1] == "short line still fits" and call.dropped_lines == 3
    detail = records.detail(call, time.time())
    assert detail["dropped_lines"] == 3 and "transcript_truncated" in detail["flags"]


def test_the_default_budget_holds_the_issue_s_10_000_long_lines_to_2_m_characters() -> None:
    store = CallStore()
    apply(store, "call_start", {"call_id": "huge"})
    for i in range(150):
        say(store, "huge", f"{i:04d}" + "y" * (LONG - 4))
    call = store.get("huge")
    assert call.text_chars == 2_000_000 and len(call.transcript) == 100 and call.dropped_lines == 50


def test_the_line_cap_is_counted_too() -> None:
    store = CallStore()
    apply(store, "call_start", {"call_id": "many"})
    for i in range(MAX_LINES + 3):
        say(store, "many", f"line {i}")
    call = store.get("many")
    assert len(call.transcript) == MAX_LINES and call.dropped_lines == 3 and "transcript_truncated" in call.flags


def test_call_end_s_whole_transcript_is_bounded_the_same_way() -> None:
    store = CallStore(max_call_text=50_000)
    history = [{"role": "user", "text": f"{i}" + "z" * (LONG - 1)} for i in range(10)]
    call = apply(store, "call_end", {"call_id": "end-big", "ended_at": time.time(), "conversation_history": history})
    assert not call.active and len(call.transcript) == 2 and call.dropped_lines == 8
    assert call.text_chars == 40_000 and "transcript_truncated" in call.flags
    assert [line[1][0] for line in call.transcript] == ["0", "1"]  # the start of the conversation is kept


def test_a_complete_final_transcript_clears_the_live_truncation() -> None:
    store = CallStore(max_call_text=30_000)
    apply(store, "call_start", {"call_id": "c"})
    for i in range(3):
        say(store, "c", f"{i}" + "a" * (LONG - 1))
    assert store.get("c").dropped_lines == 2
    call = apply(store, "call_end", {"call_id": "c", "ended_at": time.time(), "transcript": [{"role": "user", "text": "short"}]})
    assert call.dropped_lines == 0 and call.text_chars == 5 and "transcript_truncated" not in call.flags


# ------------------------------------------------------------ live-call count


def test_the_longest_idle_live_call_is_closed_as_timeout_to_make_room() -> None:
    store = CallStore(max_active=3)
    t = 1_780_000_000.0
    for i, cid in enumerate("ABC"):
        apply(store, "call_start", {"call_id": cid}, now=t + i)
    say(store, "A", "still here", now=t + 3)  # A is now the most recently active
    apply(store, "call_start", {"call_id": "D"}, now=t + 4)  # nothing new is refused
    assert set(store.active) == {"A", "C", "D"}
    b = store.get("B")
    assert not b.active and b.status == "timeout" and "evicted_idle" in b.flags
    assert b.ended_at == t + 1, "it ends at its last event, not when it was evicted"
    assert "B" in store.completed and store.sizes()["evicted_idle"] == 1
    overview = store.overview(None, None)
    assert overview["total_calls"] == 1 and overview["calls_by_status"] == {"timeout": 1} and overview["active_calls"] == 3
    # a late event for the closed call updates it in history; no other live call is closed for it
    say(store, "B", "hello?", now=t + 5)
    assert set(store.active) == {"A", "C", "D"} and store.evicted_idle == 1
    assert [c.call_id for c in store.active_calls()] == ["D", "C", "A"]  # newest first, by arrival


def test_idle_eviction_stays_cheap_at_scale() -> None:
    store = CallStore(max_active=1_000, max_completed=100)
    start = time.perf_counter()
    for i in range(30_000):
        apply(store, "call_start", {"call_id": f"c{i}"}, now=1_780_000_000.0 + i)
    elapsed = time.perf_counter() - start
    assert len(store.active) == 1_000 and store.evicted_idle == 29_000
    assert [c.call_id for c in store.active_calls(3)] == ["c29999", "c29998", "c29997"]
    assert [c.call_id for c in store.active_calls(2, 998)] == ["c29001", "c29000"]
    assert elapsed < 15, f"{elapsed:.1f} s for 30,000 starts: eviction must be O(1) per call"


def test_bounds_are_settings_with_checked_values() -> None:
    s = load_settings({}, environ={"PATTER_DASH_MAX_CALL_TEXT": "5000", "PATTER_DASH_MAX_ACTIVE_CALLS": "7"})
    assert (s.MAX_CALL_TEXT, s.MAX_ACTIVE_CALLS) == (5000, 7)
    assert (load_settings({}, environ={}).MAX_CALL_TEXT, load_settings({}, environ={}).MAX_ACTIVE_CALLS) == (2_000_000, 10_000)
    for key, value in (("MAX_CALL_TEXT", "0"), ("MAX_ACTIVE_CALLS", "-1"), ("MAX_ACTIVE_CALLS", "lots")):
        with pytest.raises(ConfigError, match=f"PATTER_DASH_{key}"):
            load_settings({}, environ={f"PATTER_DASH_{key}": value})


# ------------------------------------------------------------ through gunicorn


def test_active_calls_are_paged_like_history(live_server: Any) -> None:
    server = live_server()
    server.post_events([envelope("call_start", call_id=f"L{i:03d}", caller=f"+1555{i:07d}") for i in range(120)])
    server.post_events([envelope("transcript", call_id="L119", role="user", text="newest says hi")])
    body = server.get("/api/v1/calls/active").json()
    assert body["pagination"] == {"limit": 50, "offset": 0, "count": 50, "total": 120}
    assert body["count"] == 50 and len(body["data"]) == 50  # Patter clients read data and count
    assert body["data"][0]["call_id"] == "L119" and body["data"][0]["transcript"][0]["text"] == "newest says hi"
    assert body["data"][0]["transcript_lines"] == 1 and body["data"][0]["transcript_partial"] is False
    last = server.get("/api/v1/calls/active?limit=1000&offset=100").json()
    assert [c["call_id"] for c in last["data"]] == [f"L{i:03d}" for i in range(19, -1, -1)]
    assert last["pagination"] == {"limit": 1000, "offset": 100, "count": 20, "total": 120}
    for query in ("limit=0", "limit=1001", "offset=-1", "limit=abc"):
        response = server.get(f"/api/v1/calls/active?{query}")
        assert response.status_code == 400 and "error" in response.json(), query


def test_the_page_size_bounds_the_active_body(live_server: Any) -> None:
    server = live_server()
    lines_each = 8
    for i in range(12):
        cid = f"talker-{i:02d}"
        events = [envelope("call_start", call_id=cid)]
        events += [envelope("transcript", call_id=cid, role="user", text=f"{cid} line {n} " + "w" * (LONG - 40)) for n in range(lines_each)]
        server.post_events(events)
    small = server.get("/api/v1/calls/active?limit=10")
    assert len(small.content) < 1_100_000, "10 calls share one 1,000,000-character transcript budget"
    for item in small.json()["data"]:
        assert item["transcript_partial"] is True and item["transcript_lines"] == lines_each
        assert len(item["transcript"]) == 5  # 100,000 characters of 20,000-character lines
        assert item["transcript"][-1]["text"].startswith(f"{item['call_id']} line {lines_each - 1} ")  # the newest lines
    wide = server.get("/api/v1/calls/active?limit=1000")
    assert len(wide.content) < 1_100_000 and wide.json()["count"] == 12
    assert all(len(item["transcript"]) == 1 and len(item["transcript"][0]["text"]) == 1000 for item in wide.json()["data"])
    detail = server.get("/api/v1/calls/talker-00").json()["data"]
    assert len(detail["transcript"]) == lines_each and detail["dropped_lines"] == 0  # the whole call is in its detail


def test_max_call_text_setting_bounds_a_call_over_http(live_server: Any) -> None:
    server = live_server(PATTER_DASH_MAX_CALL_TEXT=50_000)
    events = [envelope("call_start", call_id="chatty")]
    events += [envelope("transcript", call_id="chatty", role="user", text=f"{n} " + "q" * (LONG - 3)) for n in range(6)]
    server.post_events(events)
    detail = server.get("/api/v1/calls/chatty").json()["data"]
    assert len(detail["transcript"]) == 2 and detail["dropped_lines"] == 4 and "transcript_truncated" in detail["flags"]
    server.post_events([envelope("call_end", call_id="chatty", ended_at=time.time())])
    (row,) = server.get("/api/v1/calls").json()["data"]
    assert row["call_id"] == "chatty" and "transcript_truncated" in row["flags"]


def test_max_active_calls_setting_closes_the_idle_over_http(live_server: Any) -> None:
    server = live_server(PATTER_DASH_MAX_ACTIVE_CALLS=5)
    stream = SSEClient(f"{server.url}/api/v1/events?types=call_status", timeout=10)
    assert stream.next_block(time.monotonic() + 5).startswith("retry:")
    for i in range(8):
        server.post_events([envelope("call_start", call_id=f"A{i}")])
    active = server.get("/api/v1/calls/active").json()
    assert active["pagination"]["total"] == 5 and [c["call_id"] for c in active["data"]] == ["A7", "A6", "A5", "A4", "A3"]
    history = server.get("/api/v1/calls").json()
    assert history["pagination"]["total"] == 3
    assert all(c["status"] == "timeout" and "evicted_idle" in c["flags"] for c in history["data"])
    overview = server.get("/api/v1/analytics/overview").json()["data"]
    assert overview["active_calls"] == 5 and overview["calls_by_status"] == {"timeout": 3}
    store = server.get("/api/v1/health").json()["store"]
    assert store["evicted_idle"] == 3 and store["max_active"] == 5
    # Every open page hears that the closed calls ended.
    closed = []
    while len(closed) < 3:
        block = stream.next_block(time.monotonic() + 5)
        data = [line[6:] for line in block.split("\n") if line.startswith("data: ")]
        closed += [json.loads(d)["call"] for d in data]  # none in a heartbeat
    stream.response.close()
    assert [(c["call_id"], c["status"]) for c in closed] == [("A0", "timeout"), ("A1", "timeout"), ("A2", "timeout")]


# ------------------------------------------------------------ the browser's live view


@pytest.mark.skipif(not CHROMIUM or not Path(CHROMIUM).exists(), reason="Playwright and Chromium needed")
@pytest.mark.timeout(180)
def test_live_view_shows_one_page_and_keeps_updating_its_cards(live_server: Any, open_page: Any) -> None:
    from playwright.sync_api import expect

    server = live_server()
    server.post_events([envelope("call_start", call_id=f"P{i:03d}", caller=f"+1555000{i:04d}") for i in range(130)])
    page, guard = open_page()
    active_urls: list[str] = []
    page.on("request", lambda r: active_urls.append(r.url) if "/calls/active" in r.url else None)
    open_dashboard(page, server.url)
    cards = page.locator("article.pd-live-card")
    expect(cards).to_have_count(50)
    expect(cards.first).to_contain_text("+15550000129")  # newest first
    expect(page.locator("#pd-live-sub")).to_have_text("Showing 1–50 of 130 live calls")
    expect(page.locator("#pd-live-count")).to_have_text("130")
    assert all("limit=50" in url for url in active_urls), active_urls

    # a shown call's line lands on its card; an unshown call's line is not drawn
    server.post_events([envelope("transcript", call_id="P120", role="user", text="shown card speaks"),
                        envelope("transcript", call_id="P005", role="user", text="unshown card speaks")])
    expect(cards.filter(has_text="+15550000120")).to_contain_text("shown card speaks")
    page.wait_for_timeout(300)
    expect(page.locator("text=unshown card speaks")).to_have_count(0)

    page.click("#pd-live-next")
    expect(page.locator("#pd-live-sub")).to_have_text("Showing 51–100 of 130 live calls")
    page.click("#pd-live-next")
    expect(cards).to_have_count(30)
    expect(page.locator("#pd-live-next")).to_be_disabled()
    expect(cards.last).to_contain_text("+15550000000")
    expect(cards.filter(has_text="+15550000005")).to_contain_text("unshown card speaks")  # from the page's snapshot

    # a call ending on this page leaves it; the count follows
    server.post_events([envelope("call_end", call_id="P000", ended_at=time.time())])
    expect(cards).to_have_count(29)
    expect(page.locator("#pd-live-count")).to_have_text("129")
    page.click("#pd-live-prev")
    page.click("#pd-live-prev")
    expect(page.locator("#pd-live-sub")).to_have_text("Showing 1–50 of 129 live calls")
    # a new call on a full first page: the page is refetched and it tops the list
    server.post_events([envelope("call_start", call_id="P999", caller="+15559999999")])
    expect(cards.first).to_contain_text("+15559999999", timeout=5000)
    expect(page.locator("#pd-live-count")).to_have_text("130")
    expect(cards).to_have_count(50)
    guard.check()

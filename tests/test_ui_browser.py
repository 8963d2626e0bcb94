"""The browser UI, end to end: real gunicorn + gevent, real Chromium (Playwright).

Every test feeds events through the HTTP ingest API of a live server and
watches the dashboard the way an operator would. A guard fails the test on
any JavaScript dialog, console error, uncaught page error or CSP violation
(the page runs under a strict CSP with Trusted Types required, so an
innerHTML anywhere would show up here). Tests that break the connection on
purpose read what the page went through from ``conn_states`` (the indicator's
states) and ``stream_log`` (the EventSource's events, including the server's
``reset`` / ``shutdown`` notices).

Each test that covers a release-checklist item (/work/shared/release-checklist.md)
carries ``@pytest.mark.checklist(n, ...)``: run ``-m checklist`` for just those.

Screenshots: ``test_screenshots`` renders every view in light and dark, at
desktop (1440x900) and phone (390x844) size. It writes them to
``docs/screenshots/`` when ``PATTER_DASH_SCREENSHOTS=1``, else to a temporary
directory (the run still checks every view in every mode for errors).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

playwright_api = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

from tests.conftest import payload, wait_for  # noqa: E402
from tests.sse import SSEClient  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TZ = "Europe/Berlin"
ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "docs" / "screenshots"

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed"),
    pytest.mark.timeout(180),
]

GUARD_SCRIPT = """
window.__pdViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__pdViolations.push({directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample});
});
"""

# What the page's connection went through, for tests that break it on purpose:
# __pdConn lists the indicator's states in order (#pd-conn data-state), and
# __pdStream the EventSource's own events ("new" per EventSource, "open",
# "error", and the server's "reset" / "overflow" / "shutdown" notices).
WATCH_SCRIPT = """
window.__pdConn = [];
window.__pdStream = [];
const NativeEventSource = window.EventSource;
window.EventSource = class extends NativeEventSource {
  constructor(url, options) {
    super(url, options);
    window.__pdStream.push("new");
    for (const type of ["open", "error", "reset", "overflow", "shutdown"]) {
      this.addEventListener(type, () => window.__pdStream.push(type));
    }
  }
};
document.addEventListener("DOMContentLoaded", () => {
  const conn = document.getElementById("pd-conn");
  if (!conn) return;
  window.__pdConn.push(conn.dataset.state);
  new MutationObserver(() => window.__pdConn.push(conn.dataset.state))
    .observe(conn, {attributes: true, attributeFilter: ["data-state"]});
});
"""


# --------------------------------------------------------------------------- events


def ev(event_type: str, **data: Any) -> dict[str, Any]:
    return {"type": event_type, "data": data}


def call_start(call_id: str, caller: str, callee: str, direction: str = "inbound") -> dict[str, Any]:
    return ev("call_start", call_id=call_id, caller=caller, callee=callee, direction=direction,
              telephony_provider="twilio")


def line(call_id: str, role: str, text: str, ts: float | None = None) -> dict[str, Any]:
    return ev("transcript", call_id=call_id, role=role, text=text, timestamp=ts or time.time())


def latency(stt: float, llm: float, tts: float, response: float, speech: float = 1500.0) -> dict[str, Any]:
    return {
        "stt_ms": stt, "llm_ms": llm, "tts_ms": tts, "total_ms": response + speech,
        "user_speech_duration_ms": speech, "llm_ttft_ms": llm, "llm_total_ms": llm * 4,
        "endpoint_ms": stt, "bargein_ms": None, "tts_total_ms": tts * 10, "agent_response_ms": response,
    }


GREETING_LATENCY = {"stt_ms": 0.0, "llm_ms": 0.0, "tts_ms": 0.0, "total_ms": 215.9}  # Patter's turn 0


def turn_data(index: int, user: str, agent: str, lat: dict[str, Any], ts: float | None = None) -> dict[str, Any]:
    return {"turn_index": index, "user_text": user, "agent_text": agent, "latency": lat,
            "stt_audio_seconds": 0.0, "tts_characters": len(agent), "timestamp": ts or time.time()}


def turn(call_id: str, t: dict[str, Any], cost: dict[str, float] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"call_id": call_id, "turn": t}
    if cost:
        data["cost_so_far"] = {**cost, "llm_cached_savings": 0.0}
    return {"type": "turn", "data": data}


def cost_of(stt: float, tts: float, llm: float, telephony: float) -> dict[str, float]:
    return {"stt": stt, "tts": tts, "llm": llm, "telephony": telephony,
            "total": round(stt + tts + llm + telephony, 6), "llm_cached_savings": 0.0}


def call_end(call_id: str, *, ended_at: float, duration: float, cost: dict[str, float],
             turns: list[dict[str, Any]], avg: dict[str, Any] | None = None, p95: dict[str, Any] | None = None,
             history: list[dict[str, Any]] | None = None, status: str | None = None,
             mode: str = "pipeline", caller: str = "", callee: str = "", direction: str = "",
             providers: dict[str, Any] | None = None) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "call_id": call_id, "duration_seconds": duration, "turns": turns, "cost": cost,
        "latency_avg": avg, "latency_p95": p95,
        "provider_mode": mode, "stt_provider": "deepgram", "tts_provider": "elevenlabs",
        "llm_provider": "openai", "telephony_provider": "twilio",
        "stt_model": "nova-3", "tts_model": "eleven_flash_v2_5", "llm_model": "gpt-4o-mini",
        **(providers or {}),  # e.g. {"stt_provider": "whisper", "stt_model": None}
    }
    data: dict[str, Any] = {"call_id": call_id, "ended_at": ended_at, "metrics": metrics}
    if history is not None:
        data["conversation_history"] = history
    if status:
        data["status"] = status
    for key, value in (("caller", caller), ("callee", callee), ("direction", direction)):
        if value:
            data[key] = value
    return {"type": "call_end", "data": data}


def finished_call(call_id: str, caller: str, *, callee: str = "+15550001234", direction: str = "inbound",
                  ago: float = 60.0, duration: float = 42.0, cost: dict[str, float] | None = None,
                  response: float = 600.0, status: str | None = None, mode: str = "pipeline",
                  words: str = "I'd like to book a cleaning.", providers: dict[str, Any] | None = None,
                  stages: tuple[float, float, float] = (55.0, 150.0, 75.0)) -> list[dict[str, Any]]:
    """A whole finished call (start, one exchange, end) ending `ago` seconds before now."""
    end = time.time() - ago
    start = end - duration
    cost = cost or cost_of(0.001, 0.012, 0.0004, 0.0085)
    lat = latency(110.0, 300.0, 150.0, response)
    turns = [turn_data(0, "", "Hello, how can I help?", GREETING_LATENCY, start + 1),
             turn_data(1, words, "Sure, let me check.", lat, start + 8)]
    hist = [{"role": "assistant", "text": "Hello, how can I help?", "timestamp": start + 1},
            {"role": "user", "text": words, "timestamp": start + 6},
            {"role": "assistant", "text": "Sure, let me check.", "timestamp": start + 8}]
    return [
        call_start(call_id, caller, callee, direction),
        call_end(call_id, ended_at=end, duration=duration, cost=cost, turns=turns,
                 avg=latency(*stages, response / 2), p95=latency(110.0, 300.0, 150.0, response),
                 history=hist, status=status, mode=mode, providers=providers),
    ]


# --------------------------------------------------------------------------- formatting (mirrors format.js)


def money(v: float) -> str:
    if v != 0 and abs(v) < 1:
        return f"${v:.4f}"
    return f"${v:,.2f}"


def ms(v: float) -> str:
    return f"{int(math.floor(v + 0.5)):,} ms"


def norm(text: str) -> str:
    return re.sub(r"[\s\u202f\u00a0]+", " ", text).strip()


def local_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(TZ)).strftime("%b %-d, %Y, %I:%M:%S %p")


# --------------------------------------------------------------------------- browser plumbing


class Guard:
    """Collects everything that must never happen on the page."""

    NETWORK = re.compile(r"Failed to load resource|net::ERR_|ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE")

    def __init__(self, page: Page) -> None:
        self.page = page
        self.console: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("dialog", self._dialog)

    def _console(self, msg: Any) -> None:
        if msg.type in ("error", "assert") or "Content Security Policy" in msg.text or "TrustedHTML" in msg.text:
            self.console.append(msg.text)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def violations(self) -> list[Any]:
        try:
            return self.page.evaluate("window.__pdViolations || []")
        except Exception:  # page closed or navigating
            return []

    def check(self, allow_network_errors: bool = False, allow: str | None = None) -> None:
        console = [m for m in self.console
                   if not (allow_network_errors and self.NETWORK.search(m)) and not (allow and re.search(allow, m))]
        problems = {
            "dialogs": self.dialogs,
            "console errors": console,
            "page errors": self.errors,
            "CSP violations": self.violations(),
        }
        assert not any(problems.values()), json.dumps(problems, indent=2)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Any]:
    """open_page(color_scheme=..., viewport=...) → (page, guard); contexts close after the test."""
    contexts = []

    def make(color_scheme: str = "light", viewport: tuple[int, int] = (1440, 900), scale: float = 1) -> tuple[Page, Guard]:
        ctx = browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=scale,
            color_scheme=color_scheme, locale="en-US", timezone_id=TZ, accept_downloads=True,
        )
        ctx.add_init_script(GUARD_SCRIPT)
        ctx.add_init_script(WATCH_SCRIPT)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(10_000)
        return page, Guard(page)

    yield make
    for ctx in contexts:
        ctx.close()


def open_dashboard(page: Page, base: str, view: str = "live", query: str = "") -> None:
    page.goto(f"{base}/dashboard{query}#{view}")
    expect(page.locator("#pd-conn")).to_have_attribute("data-state", "live")


def live_card(page: Page, text: str) -> Any:
    return page.locator("article.pd-live-card").filter(has_text=text)


def history_rows(page: Page) -> Any:
    return page.locator("#pd-history-body tr.pd-row")


def conn_states(page: Page) -> list[str]:
    """Every state the connection indicator has shown since the page loaded, in order."""
    return page.evaluate("window.__pdConn")


def stream_log(page: Page) -> list[str]:
    """The page's EventSource events since load ("new", "open", "error", "reset", ...)."""
    return page.evaluate("window.__pdStream")


def navigation_entries(page: Page) -> list[dict[str, Any]]:
    """The tab's back/forward list as Chromium keeps it (CDP Page.getNavigationHistory)."""
    cdp = page.context.new_cdp_session(page)
    try:
        return cdp.send("Page.getNavigationHistory")["entries"]
    finally:
        cdp.detach()


# --------------------------------------------------------------------------- tests


@pytest.mark.checklist(8)
def test_live_call_lifecycle_and_detail(live_server: Any, open_page: Any) -> None:
    server = live_server()
    page, guard = open_page()
    open_dashboard(page, server.url)
    expect(page.locator("#pd-tz")).to_have_text(f"Times in {TZ}")
    page.evaluate("window.__sameDocument = true")

    cid = "CA-live-1"
    t0 = time.monotonic()
    server.post_events([call_start(cid, "+15551110001", "+15550001234")])
    card = live_card(page, "+15551110001")
    expect(card).to_be_visible(timeout=1000)
    assert time.monotonic() - t0 < 1.5
    expect(card).to_contain_text("+15550001234")
    expect(card).to_contain_text("Inbound")
    expect(card).to_contain_text("In progress")
    expect(page.locator("#pd-live-count")).to_have_text("1")

    timer = card.locator(".pd-live-timer")
    first = timer.inner_text()
    page.wait_for_timeout(2200)
    assert timer.inner_text() != first, "duration should tick every second"

    now = time.time()
    lines = [("assistant", "Thanks for calling, this is Ava."), ("user", "Hi, I need to move my appointment."),
             ("assistant", "Sure, which day works for you?")]
    for i, (role, text) in enumerate(lines):
        server.post_events([line(cid, role, text, now + i)])
        expect(card.locator(".pd-line").nth(i)).to_contain_text(text, timeout=1000)
    expect(card.locator(".pd-line")).to_have_count(3)
    expect(card.locator(".pd-line").nth(1)).to_contain_text("Caller")
    expect(card.locator(".pd-line").nth(0)).to_contain_text("Agent")

    lat1 = latency(120.0, 340.0, 180.0, 700.0)
    t1 = turn_data(1, "Hi, I need to move my appointment.", "Sure, which day works for you?", lat1, now + 2)
    server.post_events([turn(cid, t1, cost_of(0.0, 0.004, 0.0002, 0.0085))])
    expect(card).to_contain_text("1 turn")
    expect(card.locator(".pd-line")).to_have_count(3)  # the turn repeats lines already shown

    # the call ends: it leaves Live and tops History, without a reload
    cost = cost_of(0.0012, 0.0158, 0.0004, 0.0085)
    turns = [turn_data(0, "", "Thanks for calling, this is Ava.", GREETING_LATENCY, now), t1]
    avg, p95 = latency(60.0, 170.0, 90.0, 350.0), latency(114.0, 323.0, 171.0, 665.0)
    ended_at = time.time()
    server.post_events([call_end(cid, ended_at=ended_at, duration=37.2, cost=cost, turns=turns, avg=avg, p95=p95,
                                 history=[{"role": r, "text": t, "timestamp": now + i} for i, (r, t) in enumerate(lines)])])
    expect(card).to_have_count(0, timeout=2000)
    expect(page.locator("#pd-live-empty")).to_be_visible()
    page.click("a.pd-tab[data-view=history]")
    row = history_rows(page).first
    expect(row).to_contain_text("+15551110001", timeout=2000)
    expect(row).to_contain_text(money(cost["total"]))
    expect(row).to_contain_text("37s")
    expect(row).to_contain_text(ms(350.0))
    expect(row).to_contain_text(ms(665.0))
    expect(row).to_contain_text("deepgram · openai · elevenlabs · twilio")
    expect(row).to_contain_text("Pipeline")
    assert page.evaluate("window.__sameDocument") is True

    # detail
    row.click()
    dialog = page.locator("#pd-detail")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".pd-detail-title")).to_have_text("+15551110001 → +15550001234")
    expect(dialog.locator(".pd-conversation .pd-line")).to_have_count(3)
    for i, (_, text) in enumerate(lines):
        expect(dialog.locator(".pd-conversation .pd-line").nth(i)).to_contain_text(text)
    expect(dialog.locator(".pd-conversation .pd-line-agent")).to_have_count(2)
    facts = norm(dialog.locator(".pd-facts").first.inner_text())
    started = api_detail(server, cid)["started_at"]
    assert f"Started {local_time(started)}" in facts.replace("\n", " ") or local_time(started) in facts
    assert local_time(ended_at) in facts
    assert "Avg latency 350 ms" in facts and "P95 latency 665 ms" in facts
    assert f"Total cost {money(cost['total'])}" in facts
    costs = dialog.locator(".pd-cost-row")
    for i, key in enumerate(("stt", "llm", "tts", "telephony")):
        expect(costs.nth(i)).to_contain_text(money(cost[key]))
    turn_rows = dialog.locator(".pd-turn")
    expect(turn_rows).to_have_count(2)
    split = norm(turn_rows.nth(1).inner_text())
    assert "STT 120 ms · LLM 340 ms · TTS 180 ms" in split and "700 ms" in split, split
    expect(turn_rows.nth(1).locator(".pd-stack-seg")).to_have_count(4)  # stt, llm, tts, other (60 ms)
    widths = turn_rows.nth(1).locator(".pd-stack-seg").evaluate_all("els => els.map(e => e.getBoundingClientRect().width)")
    assert widths[1] > widths[2] > widths[0] > widths[3] > 0
    providers = norm(dialog.locator(".pd-detail-section").nth(1).inner_text())
    for word in ("Pipeline", "deepgram", "nova-3", "openai", "gpt-4o-mini", "elevenlabs", "twilio"):
        assert word in providers
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    guard.check()


def api_detail(server: Any, call_id: str) -> dict[str, Any]:
    from urllib.parse import quote

    return server.get(f"/api/v1/calls/{quote(call_id, safe='')}").json()["data"]


def test_transcript_burst_is_batched(live_server: Any, open_page: Any) -> None:
    server = live_server()
    page, guard = open_page()
    open_dashboard(page, server.url)
    server.post_events([call_start("CA-burst", "+15552220002", "+15550001234")])
    card = live_card(page, "+15552220002")
    expect(card).to_be_visible()
    now = time.time()
    server.post_events([line("CA-burst", "user" if i % 2 else "assistant", f"line number {i}", now + i * 0.001)
                        for i in range(150)])
    expect(card.locator(".pd-line")).to_have_count(150, timeout=3000)
    expect(card.locator(".pd-line").last).to_contain_text("line number 149")
    guard.check()


def test_live_card_shows_the_lines_the_server_stored(live_server: Any, open_page: Any) -> None:
    """The card shows each line the store kept, as sent: no de-duplication rule of its own.

    A caller who says "Yes." three times said it three times (Patter's lines
    carry no timestamp; the server stamps each on arrival). Words that come as
    a line and then again in the turn are one line on the server, so one here.
    """
    server = live_server()
    page, guard = open_page()
    open_dashboard(page, server.url)
    server.post_events([call_start("CA-yes", "+15553330003", "+15550001234")])
    card = live_card(page, "+15553330003")
    expect(card).to_be_visible()
    for _ in range(3):
        server.post_events([ev("transcript", call_id="CA-yes", role="user", text="Yes.")])
    expect(card.locator(".pd-line").filter(has_text="Yes.")).to_have_count(3)
    said = time.time()
    server.post_events([line("CA-yes", "user", "Friday at noon, please.", said)])
    server.post_events([turn("CA-yes", turn_data(1, "Friday at noon, please.", "Booked for Friday at noon.",
                                                 latency(200, 400, 150, 800), said + 1))])
    expect(card.locator(".pd-line").filter(has_text="Booked for Friday at noon.")).to_have_count(1)
    expect(card.locator(".pd-line").filter(has_text="Friday at noon, please.")).to_have_count(1)
    expect(card.locator(".pd-line")).to_have_count(5)
    expect(card).to_contain_text("1 turn")
    # The same words again are a new line, from the turn's lines as from a transcript line.
    server.post_events([turn("CA-yes", turn_data(2, "Friday at noon, please.", "", latency(200, 400, 150, 800)))])
    expect(card.locator(".pd-line").filter(has_text="Friday at noon, please.")).to_have_count(2)
    expect(card).to_contain_text("2 turns")
    guard.check()


def test_live_card_reads_realtime_lines_in_turn_order(live_server: Any, open_page: Any) -> None:
    """A Realtime call from Patter's own handler: turn 1's user line (Whisper is slow) arrives after the agent's
    answer to it, and carries the turn's turnIndex; the card shows it above that answer, live as on reload."""
    server = live_server()
    page, guard = open_page()
    active_urls: list[str] = []
    page.on("request", lambda r: active_urls.append(r.url) if "/calls/active" in r.url else None)
    open_dashboard(page, server.url)
    *events, _end = payload("realtime_call.json")
    reading = ["Hi, can I move my appointment to Friday?", "Sure, I can move it to Friday. Morning or afternoon?",
               "Morning, please.", "Friday at nine it is.", 'check_availability({"day": "Friday"})',
               'check_availability({"day": "Friday"}) → {"slots": ["09:00", "14:00"]}']
    for event in events:  # one by one, as Patter fires its callbacks
        server.post_events([event])
    card = live_card(page, "+15551230001")
    lines = card.locator(".pd-line")
    expect(lines).to_have_count(6)
    assert [norm(t) for t in lines.locator(".pd-text").all_inner_texts()] == reading
    expect(card).to_contain_text("2 turns")
    page.reload()
    expect(page.locator("#pd-conn")).to_have_attribute("data-state", "live")
    expect(lines).to_have_count(6)
    assert [norm(t) for t in lines.locator(".pd-text").all_inner_texts()] == reading
    # The cards show no per-turn figures: the page asks the live route for none.
    assert active_urls and all("turns=0" in url for url in active_urls), active_urls
    guard.check()


def test_analytics_tiles_and_charts(live_server: Any, open_page: Any) -> None:
    server = live_server()
    costs = [cost_of(0.001, 0.012, 0.0004, 0.0085), cost_of(0.002, 0.02, 0.0008, 0.017), cost_of(0.0005, 0.006, 0.0002, 0.0085)]
    events: list[dict[str, Any]] = []
    for i, c in enumerate(costs):
        events += finished_call(f"CA-an-{i}", f"+1555333000{i}", ago=600 + i * 3600, duration=30 + i * 20, cost=c,
                                response=500 + i * 100)
    server.post_events(events)
    page, guard = open_page()
    open_dashboard(page, server.url, "analytics")
    overview = server.get("/api/v1/analytics/overview", params={"from": int(time.time()) - 86400}).json()["data"]
    assert overview["total_calls"] == 3
    tiles = page.locator("#pd-tiles")
    expect(tiles.locator("[data-tile=calls] .pd-tile-value")).to_have_text("3")
    expect(tiles.locator("[data-tile=cost] .pd-tile-value")).to_have_text(money(overview["total_cost"]))
    expect(tiles.locator("[data-tile=latency] .pd-tile-value")).to_have_text(ms(overview["avg_latency_ms"]))
    expect(tiles.locator("[data-tile=p95] .pd-tile-value")).to_have_text(ms(overview["p95_latency_ms"]))
    expect(tiles.locator("[data-tile=minutes] .pd-tile-value")).to_have_text(f"{overview['total_minutes']:.1f}".rstrip("0").rstrip("."))
    expect(tiles.locator("[data-tile=active] .pd-tile-value")).to_have_text("0")
    assert abs(overview["total_cost"] - sum(c["total"] for c in costs)) < 1e-6

    # charts: uPlot canvases for cost and latency over time, SVG donut for components
    expect(page.locator("#pd-chart-cost canvas")).to_have_count(1)
    expect(page.locator("#pd-chart-latency canvas")).to_have_count(1)
    legend = page.locator(".pd-donut-legend li")
    for key in ("stt", "tts", "llm", "telephony"):
        expect(legend.filter(has=page.locator(f".pd-swatch[data-comp={key}]"))).to_contain_text(
            money(overview["cost_breakdown"][key]))
    expect(page.locator(".pd-donut-seg")).to_have_count(4)
    # hovering a bar shows that bucket's figures per component in the legend: sweep the pointer across the
    # plot and collect what the legend says for each bucket. The three calls end 3,600 s apart, so each is
    # alone in its hour and every bucket with money must show exactly one call's breakdown, component by
    # component; empty hours show "—" for every component. (Where the current hour holds no call depends on
    # the clock, so no fixed x is known to hold data.)
    readings = sweep_cost_legend(page)
    labels = {"STT": "stt", "TTS": "tts", "LLM": "llm", "Telephony": "telephony"}
    shown = [r for r in readings if any(v != "—" for k, v in r.items() if k in labels)]
    expected = [{name: money(c[key]) for name, key in labels.items()} for c in costs]
    assert sorted(expected, key=str) == sorted(({n: r[n] for n in labels} for r in shown), key=str), readings
    assert all(r["x"] != "—" for r in shown)
    assert all(all(r[n] == "—" for n in labels) for r in readings if r not in shown)
    expect(page.locator(".pd-donut-total")).to_have_text(money(overview["total_cost"]))

    # hour/day toggle refetches the series with the other bucket
    with page.expect_response(lambda r: "analytics/costs" in r.url and "bucket=day" in r.url):
        page.click("button[data-bucket=day]")
    expect(page.locator("#pd-chart-cost canvas")).to_have_count(1)

    # a call ending updates the analytics (debounced refetch), no reload
    server.post_events(finished_call("CA-an-new", "+15553330009", ago=5, cost=cost_of(0.001, 0.01, 0.001, 0.0085)))
    expect(tiles.locator("[data-tile=calls] .pd-tile-value")).to_have_text("4", timeout=8000)

    # a live call shows in the active tile at once
    server.post_events([call_start("CA-an-live", "+15553330010", "+15550001234")])
    expect(tiles.locator("[data-tile=active] .pd-tile-value")).to_have_text("1", timeout=2000)
    guard.check()


DEEPGRAM = {"stt_provider": "deepgram", "stt_model": "nova-3", "tts_provider": "elevenlabs", "tts_model": "eleven_flash_v2_5"}
WHISPER = {"stt_provider": "whisper", "stt_model": "whisper-1", "tts_provider": "cartesia", "tts_model": "sonic-2"}


def seed_providers(server: Any) -> None:
    """Deepgram nova-3 + ElevenLabs flash against Whisper + Cartesia, each call with its own stage latencies."""
    events: list[dict[str, Any]] = []
    for i in range(6):
        events += finished_call(f"CA-pv-d{i}", f"+1555666000{i}", ago=600 + i * 60, providers=DEEPGRAM,
                                stages=(80.0 + i * 10, 200.0, 90.0), response=500.0 + i * 20)
    for i in range(3):
        events += finished_call(f"CA-pv-w{i}", f"+1555666100{i}", ago=900 + i * 60, providers=WHISPER,
                                stages=(300.0 + i * 50, 220.0, 140.0), response=900.0 + i * 50,
                                status="failed" if i == 0 else None)
    server.post_events(events)


def leaderboard(page: Page) -> list[list[str]]:
    """The leaderboard as shown: one list of cell texts per row, the provider (with its model) first."""
    return page.evaluate("""() => [...document.querySelectorAll('#pd-providers-table tbody tr')].map((tr) =>
        [...tr.children].map((c) => c.innerText.replace(/\\s+/g, ' ').trim()))""")


def test_providers_leaderboard_sorts_and_charts(live_server: Any, open_page: Any) -> None:
    server = live_server()
    seed_providers(server)
    page, guard = open_page()
    open_dashboard(page, server.url, "providers")
    api = server.get("/api/v1/analytics/providers", params={"from": int(time.time()) - 7 * 86400}).json()["data"]
    stt = {r["provider"]: r for r in api["providers"] if r["kind"] == "stt"}
    table = page.locator("#pd-providers-table")
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(page.locator("#pd-providers-sub")).to_contain_text("9 finished calls in the last 7 days")
    heads = table.locator("thead th")
    names = [norm(t.strip("▲▼ ")) for t in heads.all_inner_texts()]  # the sort mark is hidden from screen readers
    assert names == ["Provider", "Calls", "Minutes", "Stage P50", "Stage P95", "Stage P99", "Response P50", "Response P95",
                     "Response P99", "Cost / min", "Cost / call", "Failure rate"], names
    # Most calls first: Deepgram, and every figure is the API's.
    rows = leaderboard(page)
    d = stt["deepgram"]
    assert rows[0] == ["deepgram nova-3", "6", f"{d['minutes']:.1f}", ms(d["latency"]["p50_ms"]), ms(d["latency"]["p95_ms"]),
                       ms(d["latency"]["p99_ms"]), ms(d["response_latency"]["p50_ms"]), ms(d["response_latency"]["p95_ms"]),
                       ms(d["response_latency"]["p99_ms"]), money(d["cost_per_minute"]), money(d["cost_per_call"]), "0%"], rows
    assert rows[1][0] == "whisper whisper-1" and rows[1][-1] == "33%"
    expect(table.locator("th[aria-sort]")).to_have_attribute("aria-sort", "descending")
    expect(table.locator("th[aria-sort]")).to_contain_text("Calls")

    # A column's button sorts by it, lowest first; again, highest first. Focus stays on the button.
    p95 = table.locator("button[data-sort=stage_p95_ms]")
    p95.click()
    expect(table.locator("th[aria-sort=ascending]")).to_contain_text("Stage P95")
    assert [r[0] for r in leaderboard(page)] == ["deepgram nova-3", "whisper whisper-1"]
    expect(table.locator("button[data-sort=stage_p95_ms]")).to_be_focused()
    page.keyboard.press("Enter")
    expect(table.locator("th[aria-sort=descending]")).to_contain_text("Stage P95")
    assert [r[0] for r in leaderboard(page)] == ["whisper whisper-1", "deepgram nova-3"]
    assert table.locator("th[aria-sort]").count() == 1

    # The chart: per provider, its stage and the response, each naming its percentiles.
    chart = page.locator("#pd-chart-distribution")
    expect(chart.locator(".pd-dist-row")).to_have_count(2)
    expect(chart.locator(".pd-dist-bar")).to_have_count(4)
    stage = chart.locator(".pd-dist-row").filter(has_text="deepgram").locator("[data-metric=latency] .pd-dist-track")
    expect(stage).to_have_attribute("aria-label", f"STT stage: P50 {ms(d['latency']['p50_ms'])}, P95 "
                                    f"{ms(d['latency']['p95_ms'])}, P99 {ms(d['latency']['p99_ms'])}")
    expect(page.locator("#pd-chart-distribution-summary")).to_contain_text(
        f"Lowest response P95: deepgram nova-3, {ms(d['response_latency']['p95_ms'])}")
    page.click("#pd-chart-distribution-toggle")
    expect(page.locator("#pd-chart-distribution-table table tbody tr")).to_have_count(2)

    # TTS: ElevenLabs flash against Cartesia, still by stage P95, highest first; telephony has no stage columns.
    page.click("#pd-providers-kinds button[data-kind=tts]")
    expect(table.locator("tbody th")).to_have_text(["cartesia sonic-2", "elevenlabs eleven_flash_v2_5"], use_inner_text=True)
    page.click("#pd-providers-kinds button[data-kind=telephony]")
    expect(table.locator("thead th")).to_have_count(9)
    expect(table.locator("tbody th")).to_have_text(["twilio"])
    expect(table.locator("th[aria-sort=descending]")).to_contain_text("Calls")  # its sort column is gone: by calls
    expect(chart.locator(".pd-dist-bar")).to_have_count(1)

    # A call ending updates the comparison, no reload.
    page.click("#pd-providers-kinds button[data-kind=stt]")
    server.post_events(finished_call("CA-pv-new", "+15556662000", ago=5, providers=WHISPER))
    expect(table.locator("tbody tr").filter(has_text="whisper").locator("td").first).to_have_text("4", timeout=8000)
    guard.check()


def sweep_cost_legend(page: Page) -> list[dict[str, str]]:
    """Moves the pointer across the cost chart's plot, left to right, and returns the legend's distinct
    readings, one per hovered bucket: {"x": bucket label, series label: value shown}."""
    over = page.locator("#pd-chart-cost .u-over")
    box = over.bounding_box()
    assert box is not None
    readings: list[dict[str, str]] = []
    x = box["x"] + 1
    while x < box["x"] + box["width"]:
        page.mouse.move(x, box["y"] + box["height"] / 2)
        # uPlot repaints the legend for the hovered index; read it after the next frame
        rows = page.evaluate("""() => new Promise((done) => requestAnimationFrame(() => done(
            [...document.querySelectorAll('#pd-chart-cost .u-legend .u-series')].map((tr) => [
                tr.querySelector('.u-label')?.textContent ?? '', tr.querySelector('.u-value')?.textContent ?? '']))))""")
        reading = {("x" if i == 0 else label): value for i, (label, value) in enumerate(rows)}
        if not readings or readings[-1] != reading:
            readings.append(reading)
        x += 4
    return readings


def seed_history(server: Any) -> None:
    events: list[dict[str, Any]] = []
    events += finished_call("CA-h-1", "+15554440001", ago=3000, words="reschedule my cleaning")
    events += finished_call("CA-h-2", "+15554440002", direction="outbound", callee="+15557770002", ago=2000,
                            status="no-answer", words="")
    events += finished_call("CA-h-3", "+15554440003", ago=1000, status="failed", words="billing question")
    events += finished_call("CA-h-4", "+15554440004", direction="outbound", callee="+15557770004", ago=500,
                            mode="realtime", words="confirm the delivery window")
    server.post_events(events)


def test_filters_and_search_narrow_history(live_server: Any, open_page: Any) -> None:
    server = live_server()
    seed_history(server)
    page, guard = open_page()
    open_dashboard(page, server.url, "history")
    rows = history_rows(page)
    expect(rows).to_have_count(4)
    expect(rows.first).to_contain_text("+15554440004")  # newest first
    expect(page.locator("#pd-history-summary")).to_have_text("1–4 of 4 calls")

    page.select_option("select[name=status]", "no-answer")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("+15554440002")
    expect(rows.first).to_contain_text("No answer")
    page.select_option("select[name=status]", "")
    expect(rows).to_have_count(4)

    page.select_option("select[name=direction]", "outbound")
    expect(rows).to_have_count(2)
    page.select_option("select[name=provider_mode]", "realtime")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("+15554440004")
    page.click("#pd-filters button[type=reset]")
    expect(rows).to_have_count(4)

    page.fill("input[name=q]", "4440003")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("+15554440003")
    page.fill("input[name=q]", "delivery window")  # transcript text
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("+15554440004")
    page.fill("input[name=q]", "")
    expect(rows).to_have_count(4)

    # date range, in the browser's zone: a window that holds no call, then one that holds them all
    page.fill("input[name=from]", "2099-01-01T00:00")
    expect(page.locator("#pd-history-body")).to_contain_text("No calls match these filters.")
    page.fill("input[name=from]", "2000-01-01T00:00")
    page.fill("input[name=to]", "2099-01-01T00:00")
    expect(rows).to_have_count(4)

    # paging is server-side
    page.click("#pd-filters button[type=reset]")
    page.select_option("#pd-page-size", "25")
    expect(rows).to_have_count(4)
    guard.check()


def test_search_shows_and_marks_where_it_matched(live_server: Any, open_page: Any) -> None:
    """Under each searched row, the line q was found in, its terms in <mark>; the call opened from it marks them too."""
    server = live_server()
    events = finished_call("CA-s-1", "+15554440001", ago=600, words="Can you <b>confirm</b> the DELIVERY window?")
    events += finished_call("CA-s-2", "+15554440002", ago=300, words="billing question")
    server.post_events(events)
    page, guard = open_page()
    open_dashboard(page, server.url, "history")
    rows = history_rows(page)
    expect(rows).to_have_count(2)
    expect(page.locator("#pd-history-body tr.pd-match-row")).to_have_count(0)  # no q: no match lines
    page.fill("input[name=q]", 'confirm "delivery win"')
    expect(rows).to_have_count(1)
    match = page.locator("#pd-history-body tr.pd-match-row")
    expect(match).to_have_count(1)
    expect(match).to_contain_text("Can you <b>confirm</b> the DELIVERY window?")  # the caller's text, as text
    expect(match.locator("b")).to_have_count(0)
    expect(match.locator("mark")).to_have_text(["confirm", "DELIVERY win"])
    rows.first.click()
    dialog = page.locator("#pd-detail")
    expect(dialog.locator(".pd-line-hit")).to_have_count(1)
    expect(dialog.locator(".pd-line-hit mark")).to_have_text(["confirm", "DELIVERY win"])
    expect(dialog.locator(".pd-line-hit b")).to_have_count(0)
    page.keyboard.press("Escape")
    page.fill("input[name=q]", "+1555444000")  # a number's prefix: rows, no line to show
    expect(rows).to_have_count(2)
    expect(page.locator("#pd-history-body tr.pd-match-row")).to_have_count(0)
    guard.check()


def test_a_search_matching_more_calls_than_are_counted_says_at_least_and_pages_on(live_server: Any, open_page: Any) -> None:
    """10,060 stored calls say "refund" (50 in memory, 10,010 on disk only): the disk's are counted up to 10,000,
    so the summary says "at least" 10,050, and Next stays enabled (the total is no end)."""
    server = live_server(PATTER_DASH_MAX_CALLS="50")
    now = time.time()
    for first in range(0, 10_060, 2_000):
        server.post_events([
            envelope for n in range(first, min(first + 2_000, 10_060)) for envelope in (
                {"type": "call_start", "data": {"call_id": f"CA-r-{n:05d}", "caller": "+15550001111"}},
                {"type": "call_end", "data": {"call_id": f"CA-r-{n:05d}", "ended_at": now - 20_000 + n,
                                              "metrics": {"duration_seconds": 30},
                                              "transcript": [{"role": "user", "text": f"a refund for order {n}"}]}},
            )
        ])
    wait_for(lambda: server.get("/api/v1/health").json()["history"].get("calls") == 10_060, timeout=60, interval=0.5)
    page, guard = open_page()
    open_dashboard(page, server.url, "history")
    page.fill("input[name=q]", "refund")
    expect(page.locator("#pd-history-summary")).to_have_text("1–25 of at least 10,050 calls", timeout=15_000)
    expect(history_rows(page).first).to_contain_text("+15550001111")
    with page.expect_response(lambda r: "offset=25" in r.url):
        page.click("#pd-next")
    expect(page.locator("#pd-history-summary")).to_have_text("26–50 of at least 10,050 calls")
    expect(page.locator("#pd-next")).to_be_enabled()
    page.fill("input[name=q]", "order 10059")  # one call: counted exactly
    expect(page.locator("#pd-history-summary")).to_have_text("1–1 of 1 calls")
    guard.check()


def test_pagination(live_server: Any, open_page: Any) -> None:
    server = live_server()
    events: list[dict[str, Any]] = []
    for i in range(30):
        events += finished_call(f"CA-p-{i:02d}", f"+1555600{i:04d}", ago=5000 - i * 100)
    server.post_events(events)
    page, guard = open_page()
    open_dashboard(page, server.url, "history")
    rows = history_rows(page)
    expect(rows).to_have_count(25)
    expect(page.locator("#pd-history-summary")).to_have_text("1–25 of 30 calls")
    expect(page.locator("#pd-prev")).to_be_disabled()
    with page.expect_response(lambda r: "offset=25" in r.url):
        page.click("#pd-next")
    expect(rows).to_have_count(5)
    expect(page.locator("#pd-history-summary")).to_have_text("26–30 of 30 calls")
    expect(page.locator("#pd-next")).to_be_disabled()
    expect(rows.last).to_contain_text("+15556000000")
    guard.check()


def test_export_buttons_follow_filters(live_server: Any, open_page: Any) -> None:
    server = live_server()
    seed_history(server)
    page, guard = open_page()
    open_dashboard(page, server.url, "history")
    expect(history_rows(page)).to_have_count(4)

    def download(selector: str) -> tuple[bytes, str]:
        with page.expect_download() as info:
            page.click(selector)
        href = page.locator(selector).get_attribute("href")
        return Path(info.value.path()).read_bytes(), href

    body, href = download("#pd-export-json")
    api = requests.get(server.origin + href, timeout=10)
    assert json.loads(body) == api.json()
    body, href = download("#pd-export-csv")
    assert body == requests.get(server.origin + href, timeout=10).content
    assert body.count(b"\n") >= 5  # header + 4 calls

    page.select_option("select[name=direction]", "outbound")
    expect(history_rows(page)).to_have_count(2)
    body, href = download("#pd-export-csv")
    assert "direction=outbound" in href
    assert body == requests.get(server.origin + href, timeout=10).content
    text = body.decode()
    assert "+15554440004" in text and "+15554440002" in text and "+15554440001" not in text
    body, href = download("#pd-export-json")
    exported = json.loads(body)
    assert exported == requests.get(server.origin + href, timeout=10).json()
    guard.check()


@pytest.mark.checklist(39)
def test_nested_url_prefix(live_server: Any, open_page: Any) -> None:
    server = live_server(PATTER_DASH_URL_PREFIX="/ops/voice")
    assert server.url.endswith("/ops/voice")
    seed_history(server)
    page, guard = open_page()
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    bad: list[str] = []
    page.on("response", lambda r: bad.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    open_dashboard(page, server.url)
    server.post_events([call_start("CA-prefix", "+15558880001", "+15550001234")])
    expect(live_card(page, "+15558880001")).to_be_visible(timeout=1000)
    page.click("a.pd-tab[data-view=history]")
    expect(history_rows(page)).to_have_count(4)
    history_rows(page).first.click()
    expect(page.locator("#pd-detail .pd-conversation .pd-line").first).to_be_visible()
    page.keyboard.press("Escape")
    page.click("a.pd-tab[data-view=analytics]")
    expect(page.locator("#pd-tiles [data-tile=calls] .pd-tile-value")).to_have_text("4")
    assert urls and all(u.startswith(server.url + "/") for u in urls), urls
    assert not bad, bad
    guard.check()


@pytest.mark.checklist(35, 40)
def test_token_in_url_is_swapped_for_cookie(live_server: Any, open_page: Any) -> None:
    """A ?token= link signs the browser in and then disappears: the server answers 303 to the same
    page without it plus an HttpOnly, SameSite=Lax session cookie scoped to the prefix; the dashboard
    then shows calls, costs and the live stream (Patter's token regression), and neither the address
    bar, the tab's history, any later request nor the access log carries the token."""
    token = "tok-3f9a7c21e0b4"
    server = live_server(PATTER_DASH_TOKEN=token, PATTER_DASH_URL_PREFIX="/ops/voice")
    seed_history(server)
    seeded_cost = cost_of(0.001, 0.012, 0.0004, 0.0085)["total"]  # finished_call's default, per call

    swap = requests.get(f"{server.url}/dashboard?token={token}", allow_redirects=False, timeout=10)
    assert swap.status_code == 303
    assert requests.compat.urljoin(swap.url, swap.headers["Location"]) == f"{server.url}/dashboard"
    set_cookie = swap.headers["Set-Cookie"]
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in set_cookie.split(";")[1:]}
    assert "httponly" in attributes, set_cookie
    assert attributes.get("samesite", "").lower() == "samesite=lax", set_cookie
    assert attributes.get("path") == "Path=/ops/voice", set_cookie
    assert token not in set_cookie  # the cookie holds a derived value, not the token

    page, guard = open_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    response = page.goto(f"{server.url}/dashboard?token={token}#history")
    assert response is not None and response.status == 200
    redirected = response.request.redirected_from
    assert redirected is not None and redirected.response() is not None and redirected.response().status == 303
    expect(page.locator("#pd-conn")).to_have_attribute("data-state", "live")
    assert page.url == f"{server.url}/dashboard#history"
    cookies = page.context.cookies(server.url + "/dashboard")
    assert len(cookies) == 1 and cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Lax", cookies
    assert cookies[0]["path"] == "/ops/voice" and token not in cookies[0]["value"], cookies

    # calls and their costs, in the table and in analytics
    rows = history_rows(page)
    expect(rows).to_have_count(4)
    expect(rows.first).to_contain_text("+15554440004")
    expect(rows.first).to_contain_text(money(seeded_cost))
    page.click("a.pd-tab[data-view=analytics]")
    expect(page.locator("#pd-tiles [data-tile=calls] .pd-tile-value")).to_have_text("4")
    expect(page.locator("#pd-tiles [data-tile=cost] .pd-tile-value")).to_have_text(money(4 * seeded_cost))
    expect(page.locator("#pd-chart-cost canvas")).to_have_count(1)
    # the live stream, on the cookie alone
    page.click("a.pd-tab[data-view=live]")
    server.post_events([call_start("CA-tok", "+15559990001", "+15550001234"),
                        line("CA-tok", "user", "Is my order on its way?")])
    card = live_card(page, "+15559990001")
    expect(card).to_be_visible(timeout=1000)
    expect(card.locator(".pd-line")).to_contain_text("Is my order on its way?")
    # a reload (the cookie, no token) works as well
    page.reload()
    expect(page.locator("#pd-conn")).to_have_attribute("data-state", "live")
    expect(live_card(page, "+15559990001")).to_be_visible()

    # no token anywhere the browser shows or keeps: the address bar, location, the back/forward list
    assert token not in page.url and token not in page.evaluate("location.href")
    entries = navigation_entries(page)
    dashboard_entries = [e for e in entries if e["url"].startswith(server.url)]
    assert dashboard_entries and all(token not in e["url"] for e in entries), entries
    # (CDP also reports a `userTypedURL`: what was typed into the address bar, i.e. the link itself.
    # That is the browser's record of the user's input; no response can change it.)
    assert page.evaluate("history.length") == len(entries)
    page.go_back()
    page.go_back()
    assert token not in page.url
    expect(page.locator("#pd-conn")).to_have_attribute("data-state", "live")
    # only the very first request carried it: no fetch, stream, export link or reload does
    assert token in requested[0] and not [u for u in requested[1:] if token in u], requested
    for export in ("#pd-export-csv", "#pd-export-json"):
        assert token not in (page.locator(export).get_attribute("href") or "")
    # the access log saw the sign-in request, without its query string
    logs = server.logs()
    assert '"GET /ops/voice/dashboard HTTP/1.1" 303' in logs, logs[-2000:]
    assert token not in logs
    guard.check()


@pytest.mark.checklist(33, 34)
def test_sign_in_page(live_server: Any, open_page: Any) -> None:
    """No token: the sign-in page (401), styled; a wrong token is refused, the right one lets you in."""
    token = "tok-5d1e2b77aa09"
    server = live_server(PATTER_DASH_TOKEN=token)
    page, guard = open_page()
    response = page.goto(f"{server.url}/dashboard")
    assert response is not None and response.status == 401
    field = page.locator("form input[type=password][name=token]")
    expect(field).to_be_visible()
    # the stylesheet and the logo load without a session
    assert page.locator(".pd-login-card").evaluate("el => getComputedStyle(el).borderTopLeftRadius") == "12px"
    assert page.locator("img.pd-logo").evaluate("img => img.complete && img.naturalWidth > 0")
    field.fill("wrong-token")
    page.click("form button[type=submit]")
    expect(page.locator(".pd-alert")).to_contain_text("not accepted")
    assert "wrong-token" not in page.url  # a mistyped token leaves the address bar too
    page.locator("form input[name=token]").fill(token)
    page.click("form button[type=submit]")
    expect(page.locator("#pd-conn")).to_have_attribute("data-state", "live")
    assert "token" not in page.url
    # Chromium logs the 401 of the sign-in document itself; nothing else may fail
    guard.check(allow=r"^Failed to load resource: the server responded with a status of 401")
    assert len(guard.console) == 2, guard.console  # the first visit and the wrong token: documents only


@pytest.mark.checklist(5, 13)
def test_reconnects_after_server_restart(live_server: Any, open_page: Any) -> None:
    """A crash of the whole server (kill -9 of master and worker) and a graceful stop (SIGTERM: each
    stream gets `event: shutdown`): the page shows Reconnecting…, comes back Live on the new server,
    which answers its old Last-Event-ID with `reset`, and drops the cards the old process held (history
    in memory only: nothing survives the process)."""
    server = live_server(PATTER_DASH_DB=":memory:")
    page, guard = open_page()
    open_dashboard(page, server.url)
    conn = page.locator("#pd-conn")
    server.post_events([call_start("CA-before", "+15551230001", "+15550001234")])
    expect(live_card(page, "+15551230001")).to_be_visible()

    server.kill()
    expect(conn).to_have_attribute("data-state", "reconnecting", timeout=5000)
    expect(conn).to_have_text("Reconnecting…")
    server.start()
    expect(conn).to_have_attribute("data-state", "live", timeout=15000)
    expect(conn).to_have_text("Live")
    # the new server has no calls: the stale card goes, and new events flow again
    expect(live_card(page, "+15551230001")).to_have_count(0, timeout=5000)
    # the browser resumed with the old process's Last-Event-ID, and was told to reset
    assert stream_log(page)[-2:] == ["open", "reset"], stream_log(page)
    server.post_events([call_start("CA-after", "+15551230002", "+15550001234")])
    expect(live_card(page, "+15551230002")).to_be_visible(timeout=2000)

    # a graceful stop (SIGTERM: the server says "shutdown" to every stream) behaves the same
    server.stop()
    expect(conn).to_have_attribute("data-state", "reconnecting", timeout=5000)
    server.start()
    expect(conn).to_have_attribute("data-state", "live", timeout=15000)
    expect(live_card(page, "+15551230002")).to_have_count(0, timeout=5000)
    guard.check(allow_network_errors=True)


def healthy_new_worker(server: Any, old_pid: int) -> dict[str, Any] | None:
    try:
        response = requests.get(f"{server.url}/api/v1/health", timeout=1)
    except requests.RequestException:
        return None
    if response.status_code != 200 or response.json()["pid"] == old_pid:
        return None
    return response.json()


@pytest.mark.checklist(4, 13)
def test_worker_kill_9_page_reconnects_to_the_respawned_worker(live_server: Any, open_page: Any) -> None:
    """kill -9 of the worker (not the master) while the page and 4 other SSE clients are connected: the
    master respawns it and /health answers within 5 s; the page shows Reconnecting…, then Live, then the
    new worker's state (read back from the history file: the live call is still live) and new calls; the
    other clients, resuming with their Last-Event-ID, are told to reset and then get new events."""
    server = live_server()
    page, guard = open_page()
    open_dashboard(page, server.url)
    conn = page.locator("#pd-conn")
    others = [SSEClient(f"{server.url}/api/v1/events") for _ in range(4)]
    for client in others:
        assert client.status == 200 and client.next_block() is not None
    assert server.get("/api/v1/health").json()["subscribers"]["count"] == 5

    server.post_events([call_start("CA-pre-crash", "+15551240001", "+15550001234")])
    expect(live_card(page, "+15551240001")).to_be_visible(timeout=1000)
    last_ids = []
    for client in others:
        event = client.next_event()
        assert event is not None and event["data"]["call_id"] == "CA-pre-crash"
        last_ids.append(event["id"])

    old_pid = server.worker_pid()
    seen_before = len(conn_states(page))
    os.kill(old_pid, signal.SIGKILL)
    killed = time.monotonic()
    health = wait_for(lambda: healthy_new_worker(server, old_pid), timeout=5, interval=0.05)
    assert time.monotonic() - killed < 5 and health["status"] == "ok"
    assert server.proc is not None and server.proc.poll() is None, "the master must survive and respawn"
    for client in others:
        assert client.next_block(time.monotonic() + 5) is None  # their streams ended with the worker

    expect(conn).to_have_attribute("data-state", "live", timeout=10_000)
    expect(conn).to_have_text("Live")
    states = conn_states(page)[seen_before:]
    assert "reconnecting" in states and states[-1] == "live", states
    assert states.index("reconnecting") < len(states) - 1, states
    assert "reset" in stream_log(page), stream_log(page)  # its resume point died with the old worker
    # the new worker read the call back from the history file: after the reset the card is still there
    expect(live_card(page, "+15551240001")).to_have_count(1, timeout=5000)
    assert [c["call_id"] for c in server.get("/api/v1/calls/active").json()["data"]] == ["CA-pre-crash"]

    again = [SSEClient(f"{server.url}/api/v1/events", headers={"Last-Event-ID": str(i)}) for i in last_ids]
    for client in again:
        event = client.next_event()
        assert event is not None and event["event"] == "reset", event
    server.post_events([call_start("CA-post-crash", "+15551240002", "+15550001234")])
    expect(live_card(page, "+15551240002")).to_be_visible(timeout=2000)
    for client in again:
        event = client.next_event()
        assert event is not None and event["data"]["call_id"] == "CA-post-crash", event
        client.close()
    # the stream broke mid-response: Chromium logs that as a failed load, and nothing else may appear
    guard.check(allow_network_errors=True)


@pytest.mark.checklist(13)
def test_stream_reset_reloads_the_snapshot(live_server: Any, open_page: Any) -> None:
    """`event: reset` (the page's place in the stream is older than the replay buffer) makes the page
    reload active calls, history and analytics, so it shows the current state and no stale live card.

    With a 10-event replay buffer, one ingest batch of ~35 events outruns the connected page: the server
    cannot send them and says `reset` instead, with no reconnect involved."""
    server = live_server(PATTER_DASH_REPLAY_SIZE=10)
    server.post_events(finished_call("CA-rs-old", "+15556660001", ago=900))
    page, guard = open_page()
    open_dashboard(page, server.url, "analytics")
    calls_tile = page.locator("#pd-tiles [data-tile=calls] .pd-tile-value")
    expect(calls_tile).to_have_text("1")
    page.click("a.pd-tab[data-view=live]")
    server.post_events([call_start("CA-rs-ending", "+15556660002", "+15550001234")])
    ending = live_card(page, "+15556660002")
    expect(ending).to_be_visible(timeout=1000)

    now = time.time()
    burst = [call_end("CA-rs-ending", ended_at=now, duration=20.0, cost=cost_of(0.001, 0.01, 0.0004, 0.0085),
                      turns=[turn_data(0, "", "Hello, how can I help?", GREETING_LATENCY, now - 18)])]
    burst += finished_call("CA-rs-quick", "+15556660003", ago=1)
    burst += [call_start("CA-rs-new", "+15556660004", "+15550001234")]
    burst += [line("CA-rs-new", "user" if i % 2 else "assistant", f"said while the page was behind {i}", now + i * 0.01)
              for i in range(30)]
    server.post_events(burst)

    wait_for(lambda: "reset" in stream_log(page), timeout=5)
    expect(ending).to_have_count(0, timeout=3000)  # its call_end never reached the page: the snapshot removed it
    fresh = live_card(page, "+15556660004")
    expect(fresh).to_be_visible()
    expect(fresh.locator(".pd-line")).to_have_count(30)
    expect(fresh.locator(".pd-line").last).to_contain_text("said while the page was behind 29")
    expect(page.locator("article.pd-live-card")).to_have_count(1)
    expect(page.locator("#pd-live-count")).to_have_text("1")
    page.click("a.pd-tab[data-view=history]")
    expect(history_rows(page)).to_have_count(3)
    expect(history_rows(page).filter(has_text="+15556660002")).to_have_count(1)
    expect(history_rows(page).filter(has_text="+15556660003")).to_have_count(1)
    page.click("a.pd-tab[data-view=analytics]")
    expect(calls_tile).to_have_text("3")
    expect(page.locator("#pd-tiles [data-tile=active] .pd-tile-value")).to_have_text("1")
    # the reset alone did it: one EventSource, opened once, never dropped (a page that fell behind again
    # while the burst was still being applied, on a loaded machine, is told to reset again: same stream)
    log = stream_log(page)
    assert log[:3] == ["new", "open", "reset"] and set(log[3:]) <= {"reset"}, log
    assert conn_states(page)[-1] == "live"
    # and the stream goes on from there
    page.click("a.pd-tab[data-view=live]")
    server.post_events([line("CA-rs-new", "user", "still there?", time.time() + 1)])
    expect(fresh.locator(".pd-line").last).to_contain_text("still there?", timeout=1000)
    guard.check()


@pytest.mark.checklist(13)
def test_network_blip_ends_live_with_every_call(live_server: Any, open_page: Any) -> None:
    """The browser drops offline for a moment while more calls start than the replay buffer holds. Back
    online, the indicator returns to Live (even though the stream itself survived the blip) and the page
    shows every call, retrying its snapshot if the first attempt hit the still-down network."""
    server = live_server(PATTER_DASH_REPLAY_SIZE=10)
    page, guard = open_page()
    open_dashboard(page, server.url)
    conn = page.locator("#pd-conn")
    page.context.set_offline(True)
    expect(conn).to_have_attribute("data-state", "offline")
    expect(conn).to_have_text("Offline")
    server.post_events([call_start(f"CA-blip-{i}", f"+1555777{i:04d}", "+15550001234") for i in range(12)])
    page.wait_for_timeout(500)
    page.context.set_offline(False)
    expect(conn).to_have_attribute("data-state", "live", timeout=5000)
    expect(conn).to_have_text("Live")
    expect(page.locator("article.pd-live-card")).to_have_count(12, timeout=10_000)
    expect(page.locator("#pd-live-count")).to_have_text("12")
    # the refetches that failed during the blip were retried: no error left on screen
    page.click("a.pd-tab[data-view=history]")
    expect(page.locator("#pd-history-error")).to_be_hidden()
    page.click("a.pd-tab[data-view=analytics]")
    expect(page.locator("#pd-analytics-error")).to_be_hidden()
    expect(page.locator("#pd-tiles [data-tile=active] .pd-tile-value")).to_have_text("12")
    guard.check(allow_network_errors=True)


HOSTILE_TEXT = "<img src=x onerror=alert(1)>"
HOSTILE_CALLER = '"><svg onload=alert(1)>'
HOSTILE_ID = "x');alert(1);//"


@pytest.mark.checklist(38, 39)
def test_hostile_input_renders_literally(live_server: Any, open_page: Any) -> None:
    server = live_server()
    long_line = "A" * 5000
    for viewport in ((1440, 900), (390, 844)):
        page, guard = open_page(viewport=viewport)
        open_dashboard(page, server.url)
        cid = f"{HOSTILE_ID}{viewport[0]}"
        now = time.time()
        server.post_events([
            call_start(cid, HOSTILE_CALLER, "+15550001234"),
            line(cid, "user", HOSTILE_TEXT, now),
            line(cid, "assistant", long_line, now + 1),
        ])
        card = page.locator("article.pd-live-card")
        expect(card).to_have_count(1)
        expect(card.locator(".pd-party-num").first).to_have_text(HOSTILE_CALLER)
        expect(card.locator(".pd-line").first.locator(".pd-text")).to_have_text(HOSTILE_TEXT)
        expect(card.locator(".pd-line").nth(1).locator(".pd-text")).to_have_text(long_line)
        assert card.evaluate("el => el.dataset.callId") == cid
        assert page.locator("#patter-dash img:not(.pd-logo), #patter-dash svg:not(.pd-donut-svg)").count() == 0
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "long line must wrap"

        server.post_events([call_end(cid, ended_at=time.time(), duration=12.0, cost=cost_of(0.001, 0.002, 0.0003, 0.0085),
                                     turns=[turn_data(0, HOSTILE_TEXT, long_line, latency(100, 200, 100, 450))])])
        expect(card).to_have_count(0, timeout=2000)
        page.click("a.pd-tab[data-view=history]")
        row = history_rows(page).first
        expect(row).to_contain_text(HOSTILE_CALLER)
        row.click()
        dialog = page.locator("#pd-detail")
        expect(dialog.locator(".pd-detail-id code")).to_have_text(cid)
        expect(dialog.locator(".pd-detail-title")).to_contain_text(HOSTILE_CALLER)
        expect(dialog.locator(".pd-conversation .pd-text").first).to_have_text(HOSTILE_TEXT)
        expect(dialog.locator(".pd-conversation .pd-text").nth(1)).to_have_text(long_line)
        expect(dialog.locator(".pd-turn-text").first).to_have_text(HOSTILE_TEXT)
        width = dialog.evaluate("d => [d.scrollWidth, d.clientWidth]")
        assert width[0] <= width[1] + 1, width
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.keyboard.press("Escape")
        page.fill("input[name=q]", cid)  # search with the hostile id itself
        expect(history_rows(page)).to_have_count(1)
        expect(history_rows(page).first).to_have_attribute("data-call-id", cid)
        guard.check()

        # Trusted Types really is enforced: an innerHTML assignment throws and is reported.
        result = page.evaluate("() => { try { document.body.innerHTML = '<b>x</b>'; return 'assigned'; } catch (e) { return e.name; } }")
        assert result == "TypeError"
        assert any(v["directive"] == "require-trusted-types-for" for v in guard.violations())


@pytest.mark.checklist(14)
def test_stream_field_injection_stays_text(live_server: Any, open_page: Any) -> None:
    """A caller name or transcript line carrying SSE field syntax (CR/LF + `event:`, a bare CR + `id:`)
    or a NUL reaches the page as text in one event: the call is not ended by an injected call_end, and
    the text shows as written (NUL removed)."""
    server = live_server()
    page, guard = open_page()
    open_dashboard(page, server.url)
    cid = "CA-inject"
    caller = "x\r\nevent: call_end\r\ndata: {}"
    server.post_events([call_start(cid, caller, "+15550001234"),
                        line(cid, "user", "\rid: 9", time.time()),
                        line(cid, "assistant", "before\x00after", time.time() + 1)])
    card = page.locator("article.pd-live-card")
    expect(card).to_have_count(1)
    expect(card.locator(".pd-line")).to_have_count(2)
    page.wait_for_timeout(500)  # an injected call_end would have removed the card by now
    expect(card).to_have_count(1)
    assert card.evaluate("el => el.dataset.callId") == cid
    assert card.locator(".pd-party-num").first.text_content() == caller
    assert card.locator(".pd-line .pd-text").nth(0).text_content() == "\rid: 9"
    assert card.locator(".pd-line .pd-text").nth(1).text_content() == "beforeafter"
    assert stream_log(page) == ["new", "open"], stream_log(page)  # no reset, no reconnect
    guard.check()


@pytest.mark.checklist(39)
def test_page_works_offline_with_only_its_server(live_server: Any, open_page: Any) -> None:
    """With every host but the dashboard's own unreachable, each view renders in full (styles, logo,
    live stream, history, detail, charts), and every request the page makes goes to the server's
    origin: no CDN, web font, analytics or other third party."""
    server = live_server()
    seed_history(server)
    page, guard = open_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(f"{r.url} {r.failure}"))
    blocked: list[str] = []

    def only_the_server(route: Any) -> None:
        if route.request.url.startswith(server.origin + "/"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    page.context.route("**/*", only_the_server)
    open_dashboard(page, server.url)
    assert page.locator("img.pd-logo").evaluate("img => img.complete && img.naturalWidth > 0")
    assert page.locator(".pd-tab").first.evaluate("el => getComputedStyle(el).display") != "inline"  # styled
    server.post_events([call_start("CA-offline", "+15553210001", "+15550001234"),
                        line("CA-offline", "user", "Hello from an air-gapped site")])
    expect(live_card(page, "+15553210001").locator(".pd-line")).to_contain_text("Hello from an air-gapped site")

    page.click("a.pd-tab[data-view=history]")
    expect(history_rows(page)).to_have_count(4)
    history_rows(page).first.click()
    expect(page.locator("#pd-detail .pd-conversation .pd-line")).to_have_count(3)
    expect(page.locator("#pd-detail .pd-turn")).to_have_count(2)
    page.keyboard.press("Escape")

    page.click("a.pd-tab[data-view=analytics]")
    expect(page.locator("#pd-tiles [data-tile=calls] .pd-tile-value")).to_have_text("4")
    expect(page.locator("#pd-chart-cost canvas")).to_have_count(1)
    expect(page.locator("#pd-chart-latency canvas")).to_have_count(1)
    expect(page.locator(".pd-donut-seg")).to_have_count(4)

    assert requested and not blocked and not failed, {"blocked": blocked, "failed": failed}
    elsewhere = [u for u in requested if not u.startswith(server.origin + "/")]
    assert not elsewhere, elsewhere
    guard.check()


# --------------------------------------------------------------------------- screenshots


def featured_call(call_id: str) -> list[dict[str, Any]]:
    """A finished four-turn dental booking, shaped like Patter's own call_end payload."""
    end = time.time() - 20
    duration = 96.4
    start = end - duration
    script = [
        ("", "Thanks for calling Bright Smile Dental, this is Ava. How can I help you today?"),
        ("Hi, I'd like to book a teeth cleaning next week.",
         "Of course. I have Tuesday at ten or Thursday at two. Which works better for you?"),
        ("Thursday at two works for me.", "Great, you're booked for Thursday at two. Can I have your full name, please?"),
        ("It's Jordan Lee.", "Thanks Jordan. You'll get a text confirmation shortly. Anything else I can help with?"),
        ("No, that's everything. Thanks!", "You're welcome. Have a great day!"),
    ]
    splits = [(0, 0, 0), (112.0, 222.0, 159.0), (111.0, 384.0, 182.0), (98.0, 251.0, 163.0), (121.0, 196.0, 148.0)]
    turns, history = [], []
    for i, ((user, agent), (stt, llm, tts)) in enumerate(zip(script, splits)):
        ts = start + 2 + i * 18
        lat = GREETING_LATENCY if i == 0 else latency(stt, llm, tts, stt + llm + tts + 9.0 + 40 * (i == 2))
        turns.append(turn_data(i, user, agent, lat, ts))
        if user:
            history.append({"role": "user", "text": user, "timestamp": ts - 4})
        history.append({"role": "assistant", "text": agent, "timestamp": ts})
    cost = cost_of(0.006908, 0.02395, 0.000402, 0.017)
    return [
        call_start(call_id, "+15553891776", "+15550001234", "inbound"),
        call_end(call_id, ended_at=end, duration=duration, cost=cost, turns=turns, history=history,
                 avg=latency(88.0, 210.0, 130.0, 437.0), p95=latency(120.0, 370.0, 180.0, 655.0)),
    ]


#: Three stacks the showcase's calls take in turn (by index, so the random draws stay those of the other shots).
SHOWCASE_STACKS = [
    ({**DEEPGRAM, "llm_provider": "openai", "llm_model": "gpt-4o-mini"}, lambda i: (85.0 + i * 7 % 40, 190.0 + i * 13 % 120, 80.0 + i * 5 % 30)),
    ({**WHISPER, "llm_provider": "openai", "llm_model": "gpt-4o-mini"}, lambda i: (260.0 + i * 11 % 150, 200.0 + i * 17 % 140, 120.0 + i * 7 % 50)),
    ({**DEEPGRAM, "stt_model": "nova-2", "llm_provider": "anthropic", "llm_model": "claude-3-5-haiku"},
     lambda i: (110.0 + i * 9 % 60, 260.0 + i * 19 % 160, 85.0 + i * 3 % 40)),
]


def seed_showcase(server: Any) -> list[str]:
    """A believable day: finished calls over the last 24 h and three live calls mid-conversation."""
    import random

    rng = random.Random(7)
    calls: list[tuple[float, list[dict[str, Any]]]] = []
    words = ["I'd like to book a cleaning next week.", "Can I change my delivery address?",
             "What are your opening hours on Saturday?", "I was charged twice this month.",
             "Is the technician still coming today?"]
    statuses = [None] * 8 + ["no-answer", "busy", "failed"]
    for i in range(26):
        ago = 900 + i * 3200 + rng.uniform(0, 900)
        dur = rng.uniform(25, 260)
        tel = 0.0085 * math.ceil(dur / 60)
        c = cost_of(round(dur / 60 * 0.0043, 6), round(rng.uniform(0.006, 0.04), 6), round(rng.uniform(0.0003, 0.004), 6), round(tel, 6))
        direction = "outbound" if i % 3 == 0 else "inbound"
        caller = "+15550002020" if direction == "outbound" else f"+1555{rng.randint(2000000, 9999999)}"
        callee = f"+1555{rng.randint(2000000, 9999999)}" if direction == "outbound" else "+15550001234"
        status = statuses[i % len(statuses)]
        calls.append((ago, finished_call(
            f"CA{rng.getrandbits(128):032x}", caller, callee=callee, direction=direction,
            ago=ago, duration=dur if not status else rng.uniform(5, 25), cost=c,
            response=rng.uniform(450, 1400), status=status,
            mode="realtime" if i % 5 == 0 else "pipeline", words=rng.choice(words),
            providers=SHOWCASE_STACKS[i % 3][0], stages=SHOWCASE_STACKS[i % 3][1](i))))
    events: list[dict[str, Any]] = []
    for _, call in sorted(calls, key=lambda c: -c[0]):  # oldest first, as they would have ended
        events += call
    events += featured_call(f"CA{rng.getrandbits(128):032x}")
    server.post_events(events)

    now = time.time()
    live = [
        ("CAlive01", "+15557601941", "+15550001234", "inbound", [
            ("assistant", "Thanks for calling Bright Smile Dental, this is Ava. How can I help you today?"),
            ("user", "Hi, I'd like to book a teeth cleaning next week."),
            ("tool", 'check_availability(service="cleaning", week="next") -> Tue 10:00, Thu 14:00'),
            ("assistant", "Of course. I have Tuesday at ten or Thursday at two. Which works better for you?"),
            ("user", "Thursday at two works for me.")]),
        ("CAlive02", "+15550006060", "+15559051623", "outbound", [
            ("assistant", "Hello, this is Leo from Greenleaf Home Services following up on yesterday's furnace repair. Do you have a minute?"),
            ("user", "Sure, go ahead."),
            ("assistant", "Thanks. Is the furnace running properly now?")]),
        ("CAlive03", "+15554733613", "+15550001234", "inbound", [
            ("assistant", "Thanks for calling Bright Smile Dental, this is Ava. How can I help you today?")]),
    ]
    for n, (cid, caller, callee, direction, convo) in enumerate(live):
        batch = [call_start(cid, caller, callee, direction)]
        batch += [line(cid, role, text, now - 60 + n * 7 + i * 4) for i, (role, text) in enumerate(convo)]
        if len(convo) > 2:
            agent = [text for role, text in convo if role == "assistant"]
            batch.append(turn(cid, turn_data(1, convo[1][1], agent[1], latency(130.0, 380.0, 170.0, 689.0)),
                              cost_of(0.0, 0.009, 0.0003, 0.0085)))
        server.post_events(batch)
        time.sleep(0.3)
    return [c[0] for c in live]


def test_screenshots(live_server: Any, open_page: Any, tmp_path: Path) -> None:
    server = live_server()
    seed_showcase(server)
    out = SHOTS if os.environ.get("PATTER_DASH_SCREENSHOTS") == "1" else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    for scheme in ("light", "dark"):
        for device, viewport, scale in (("desktop", (1440, 900), 1), ("phone", (390, 844), 2)):
            page, guard = open_page(color_scheme=scheme, viewport=viewport, scale=scale)
            name = f"{scheme}-{device}"
            open_dashboard(page, server.url)
            expect(page.locator("article.pd-live-card")).to_have_count(3)
            page.wait_for_timeout(300)
            page.screenshot(path=str(out / f"live-{name}.png"))

            page.click("a.pd-tab[data-view=history]")
            expect(history_rows(page)).to_have_count(25)
            page.wait_for_timeout(200)
            page.screenshot(path=str(out / f"history-{name}.png"))

            history_rows(page).first.click()
            expect(page.locator("#pd-detail .pd-turn").first).to_be_visible()
            page.wait_for_timeout(300)
            page.screenshot(path=str(out / f"detail-{name}.png"))
            page.keyboard.press("Escape")

            page.click("a.pd-tab[data-view=analytics]")
            expect(page.locator("#pd-chart-cost canvas")).to_have_count(1)
            expect(page.locator("#pd-chart-latency canvas")).to_have_count(1)
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(300)
            page.screenshot(path=str(out / f"analytics-{name}.png"), full_page=device == "desktop")

            page.click("a.pd-tab[data-view=providers]")
            page.click("#pd-providers-controls button[data-range='24h']")
            expect(page.locator("#pd-providers-table tbody tr")).to_have_count(3)
            expect(page.locator("#pd-chart-distribution .pd-dist-row")).to_have_count(3)
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(300)
            page.screenshot(path=str(out / f"providers-{name}.png"), full_page=device == "desktop")
            guard.check()
    assert len(list(out.glob("*.png"))) >= 20

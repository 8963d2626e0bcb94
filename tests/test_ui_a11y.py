"""Accessibility of the browser UI (issue 15), in real Chromium against a real gunicorn + gevent server.

* axe-core (bundled by ``axe-playwright-python``) with the WCAG 2.1 A and AA rule sets
  (tags ``wcag2a``, ``wcag2aa``, ``wcag21a``, ``wcag21aa``) on every view: the sign-in
  page, live, history, analytics, providers and the call detail; light and dark; 1280 px and 390 px
  wide; with a live call streaming transcript lines while axe runs. One test per view.
* A URL per call (``#call/<percent-encoded id>``), history filters in the URL.
* Keyboard: focus trap and focus return of the detail dialog, the shortcuts, and a
  keyboard-only journey from the sign-in page to a chart's data table.
* Screen readers: the polite, rate-limited announcer; chart captions and data tables.
* Reduced motion and 400 % zoom (320 CSS px): no animation, no page-level horizontal scroll.

The fixtures (``browser``, ``open_page``) and event builders are those of test_ui_browser.py.
"""

# ruff: noqa: F811  (the fixtures browser/open_page are imported, then named as test parameters)
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
    seed_providers,
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
    """Let the frame's batched DOM work land and finite animations (a dialog sliding in) finish."""
    page.evaluate("""() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))""")
    page.evaluate("""() => Promise.all(document.getAnimations()
      .filter((a) => a.effect && a.effect.getTiming().iterations !== Infinity).map((a) => a.finished.catch(() => null)))""")


def wait_until(page: Page, js: str, timeout: float = 10.0) -> Any:
    """Poll a JS expression until truthy (wait_for_function's string form needs eval, which the CSP forbids)."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(f"() => ({js})")
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {js} (location.hash is {page.evaluate('() => location.hash')!r})"
        time.sleep(0.05)


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
def test_axe_providers_view(live_server: Any, open_page: Any, theme: str, width: str) -> None:
    server = live_server()
    seed_providers(server)
    page, guard = open_mode(open_page, theme, width)
    open_dashboard(page, server.url, "providers")
    table = page.locator("#pd-providers-table")
    expect(table.locator("tbody tr")).to_have_count(2)
    with streaming(server):
        expect(page.locator("#pd-live-count")).to_have_text("1")
        assert_no_axe_violations(page, f"providers view ({theme}, {width})")
        table.locator("button[data-sort=response_p95_ms]").click()  # a sorted column, marked with aria-sort
        expect(table.locator("th[aria-sort=ascending]")).to_contain_text("Response P95")
        page.click("#pd-chart-distribution-toggle")
        expect(page.locator("#pd-chart-distribution-table table")).to_be_visible()
        page.click("#pd-providers-kinds button[data-kind=mode]")
        expect(table.locator("tbody tr")).to_have_count(1)
        settle(page)
        assert_no_axe_violations(page, f"providers view, sorted, by voice mode, data table open ({theme}, {width})")
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
        settle(page)
        assert_no_axe_violations(page, f"call detail, finished call ({theme}, {width})")
        page.keyboard.press("Escape")
        wait_until(page, "location.hash === '#history'")  # the close's own Back has landed
        page.goto(f"{server.url}/dashboard#call/CA-a11y-live")
        expect(dialog.locator(".pd-conversation .pd-line").nth(2)).to_be_visible()
        settle(page)
        assert_no_axe_violations(page, f"call detail, live call ({theme}, {width})")
    guard.check()


# --------------------------------------------------------------------------- a URL per call, filters in the URL


# Chromium queues a dialog's "close" event as a task; under load it can run after Back then Forward
# have already reopened the dialog. Holding every close event back 300 ms makes that order certain.
LATE_CLOSE_EVENTS = """
window.addEventListener("close", (ev) => {
  if (ev.late) return;
  ev.stopImmediatePropagation();
  setTimeout(() => {
    const late = new Event("close");
    late.late = true;
    ev.target.dispatchEvent(late);
  }, 300);
}, true);
"""


@pytest.mark.parametrize("late_close", [False, True], ids=["close-on-time", "close-late"])
def test_every_call_has_an_address_and_back_closes_it(live_server: Any, open_page: Any, late_close: bool) -> None:
    server = live_server()
    seed_history(server)
    odd = "CA/odd id?#%&é"  # every character that could end or split a route
    server.post_events(finished_call(odd, "+15554449999", ago=100))
    page, guard = open_page()
    if late_close:
        page.add_init_script(LATE_CLOSE_EVENTS)
    open_dashboard(page, server.url, "history")
    rows = history_rows(page)
    expect(rows).to_have_count(5)
    dialog = page.locator("#pd-detail")
    start = page.evaluate("history.length")

    # a row opens its call and the address says which; Back closes it
    rows.first.click()
    expect(dialog.locator(".pd-detail-id code")).to_have_text(odd)
    assert page.evaluate("location.hash") == "#call/" + quote(odd, safe="")
    assert page.evaluate("history.length") == start + 1
    page.go_back()
    expect(dialog).to_be_hidden()
    assert page.evaluate("location.hash") == "#history"
    expect(history_rows(page).first).to_be_focused()  # focus went back to the row

    # Forward opens it again; Esc closes it and takes the address back with it
    page.go_forward()
    expect(dialog.locator(".pd-detail-id code")).to_have_text(odd)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    wait_until(page, "location.hash === '#history'")

    # the address, pasted into a fresh tab, opens that call; closing leaves the live view behind it
    fresh, guard2 = open_page()
    if late_close:
        fresh.add_init_script(LATE_CLOSE_EVENTS)
    fresh.goto(f"{server.url}/dashboard#call/{quote(odd, safe='')}")
    expect(fresh.locator("#pd-detail .pd-detail-id code")).to_have_text(odd)
    expect(fresh.locator("#pd-detail .pd-conversation .pd-line")).to_have_count(3)
    length = fresh.evaluate("history.length")
    fresh.locator("#pd-detail .pd-detail-close").click()
    expect(fresh.locator("#pd-detail")).to_be_hidden()
    wait_until(fresh, "location.hash === '#live'")  # set by the close event, a task after the dialog hides
    assert fresh.evaluate("history.length") == length  # replaced, not a new step
    # an unknown call says so, in the dialog
    fresh.goto(f"{server.url}/dashboard#call/CA-nope")
    expect(fresh.locator("#pd-detail")).to_contain_text("This call was not found.")
    guard.check()
    guard2.check(allow=r"status of 404")


def test_back_then_forward_at_once_shows_the_call(live_server: Any, open_page: Any) -> None:
    server = live_server()
    server.post_events(finished_call("CA-quick", "+15554440001", ago=60))
    page, guard = open_page()
    page.add_init_script(LATE_CLOSE_EVENTS)
    open_dashboard(page, server.url, "history")
    dialog = page.locator("#pd-detail")
    history_rows(page).first.click()
    expect(dialog.locator(".pd-detail-id code")).to_have_text("CA-quick")

    page.go_back()
    page.go_forward()  # before the close event of the Back has run
    page.wait_for_timeout(600)  # it has run now
    expect(dialog.locator(".pd-detail-id code")).to_have_text("CA-quick")
    assert page.evaluate("location.hash") == "#call/CA-quick"
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    wait_until(page, "location.hash === '#history'")
    guard.check()


def test_history_filters_live_in_the_address(live_server: Any, open_page: Any) -> None:
    server = live_server()
    seed_history(server)
    page, guard = open_page()
    open_dashboard(page, server.url, "history")
    expect(history_rows(page)).to_have_count(4)
    page.select_option("select[name=direction]", "outbound")
    page.fill("input[name=q]", "delivery")
    expect(history_rows(page)).to_have_count(1)
    wait_until(page, "location.hash.includes('q=delivery')")
    hash_ = page.evaluate("location.hash")
    assert hash_.startswith("#history?") and "direction=outbound" in hash_, hash_
    assert page.locator("a.pd-tab[data-view=history]").get_attribute("href") == hash_

    # the link, shared: the same filters, the same rows, the export carrying them
    other, guard2 = open_page()
    other.goto(f"{server.url}/dashboard{hash_}")
    expect(history_rows(other)).to_have_count(1)
    expect(history_rows(other).first).to_contain_text("+15554440004")
    expect(other.locator("select[name=direction]")).to_have_value("outbound")
    expect(other.locator("input[name=q]")).to_have_value("delivery")
    assert "direction=outbound" in (other.locator("#pd-export-csv").get_attribute("href") or "")

    # a date range travels as epoch seconds and comes back as the same local time
    other.fill("input[name=from]", "2000-01-02T03:04")
    wait_until(other, "location.hash.includes('from=')")
    third, guard3 = open_page()
    third.goto(f"{server.url}/dashboard{other.evaluate('location.hash')}")
    expect(third.locator("input[name=from]")).to_have_value("2000-01-02T03:04")
    expect(history_rows(third)).to_have_count(1)
    for g in (guard, guard2, guard3):
        g.check()


# --------------------------------------------------------------------------- keyboard


def focused(page: Page) -> dict[str, Any]:
    return page.evaluate("""() => { const a = document.activeElement;
      return {tag: a.tagName, id: a.id, cls: a.className, call: a.dataset ? a.dataset.callId || null : null,
              inDetail: !!a.closest('#pd-detail'), inShortcuts: !!a.closest('#pd-shortcuts')}; }""")


def test_detail_dialog_takes_keeps_and_returns_focus(live_server: Any, open_page: Any) -> None:
    server = live_server()
    seed_history(server)
    page, guard = open_page()
    open_dashboard(page, server.url, "history")
    expect(history_rows(page)).to_have_count(4)
    page.keyboard.press("j")
    page.keyboard.press("j")
    second = history_rows(page).nth(1)
    expect(second).to_be_focused()
    call_id = second.get_attribute("data-call-id")
    page.keyboard.press("Enter")
    dialog = page.locator("#pd-detail")
    expect(dialog.locator(".pd-conversation .pd-line")).to_have_count(3)
    assert focused(page)["inDetail"]
    expect(dialog.locator(".pd-detail-body")).to_be_focused()
    # the visible focus ring: an outline of at least 2 px
    assert dialog.locator(".pd-detail-body").evaluate("e => parseFloat(getComputedStyle(e).outlineWidth)") >= 2
    for key in ["Tab"] * 6 + ["Shift+Tab"] * 6:
        page.keyboard.press(key)
        assert focused(page)["inDetail"], (key, focused(page))
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert focused(page)["call"] == call_id

    # from a live card's button too, and its name says which call
    wait_until(page, "location.hash === '#history'")
    page.goto(f"{server.url}/dashboard#live")
    server.post_events([call_start("CA-kb-live", "+15557770202", "+15550001234")])
    button = live_card(page, "+15557770202").locator(".pd-live-open")
    expect(button).to_have_attribute("aria-label", "Details of the call from +15557770202 to +15550001234")
    button.focus()
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(button).to_be_focused()
    guard.check()


def test_shortcuts_are_listed_and_never_fire_while_typing(live_server: Any, open_page: Any) -> None:
    server = live_server()
    seed_history(server)
    page, guard = open_page()
    open_dashboard(page, server.url, "live")
    shortcuts = page.locator("#pd-shortcuts")
    page.keyboard.press("?")
    expect(shortcuts).to_be_visible()
    for key in ("/", "j", "k", "?", "Esc"):
        expect(shortcuts.locator("kbd", has_text=key).first).to_be_visible()
    page.keyboard.press("Escape")
    expect(shortcuts).to_be_hidden()

    # "/" goes to the search field from any view
    page.keyboard.press("/")
    expect(page.locator("#pd-q")).to_be_focused()
    assert page.evaluate("location.hash").startswith("#history")
    expect(history_rows(page)).to_have_count(4)
    # typing the shortcut keys in a field types them
    page.keyboard.type("jk?/")
    expect(page.locator("#pd-q")).to_have_value("jk?/")
    expect(page.locator("#pd-q")).to_be_focused()
    expect(shortcuts).to_be_hidden()
    page.keyboard.press("Control+a")
    page.keyboard.press("Backspace")
    expect(history_rows(page)).to_have_count(4)
    # in a select too: letters pick options there
    page.locator("select[name=status]").focus()
    page.keyboard.press("j")
    expect(page.locator("select[name=status]")).to_be_focused()
    # j / k walk the rows
    page.locator("#pd-h-history").click()  # focus out of the fields (the mouse only to set up)
    page.keyboard.press("j")
    expect(history_rows(page).nth(0)).to_be_focused()
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(history_rows(page).nth(2)).to_be_focused()
    page.keyboard.press("k")
    expect(history_rows(page).nth(1)).to_be_focused()
    guard.check()


# --------------------------------------------------------------------------- screen readers


ANNOUNCE_LOG = """() => {
  window.__pdSaid = [];
  const region = document.getElementById('pd-announcer');
  new MutationObserver(() => { if (region.textContent) window.__pdSaid.push([performance.now(), region.textContent]); })
    .observe(region, {childList: true, characterData: true, subtree: true});
}"""


def test_calls_starting_and_ending_are_announced_politely_and_rate_limited(live_server: Any, open_page: Any) -> None:
    server = live_server()
    page, guard = open_page()
    open_dashboard(page, server.url, "live")
    region = page.locator("#pd-announcer")
    assert region.get_attribute("role") == "status" and region.get_attribute("aria-live") == "polite"
    assert page.locator("[aria-live=assertive]").count() == 0
    page.evaluate(ANNOUNCE_LOG)
    with streaming(server, "CA-sr-1", "+15557770301"):
        wait_until(page, "window.__pdSaid.length >= 1")
        expect(live_card(page, "+15557770301").locator(".pd-line").nth(5)).to_be_visible()
        # a burst of calls while the last announcement is recent: one summary, not five
        server.post_events([call_start(f"CA-sr-b{i}", f"+1555777040{i}", "+15550001234") for i in range(5)])
        wait_until(page, "window.__pdSaid.length >= 2", 8.0)
        page.wait_for_timeout(500)
    server.post_events(finished_call("CA-sr-1", "+15557770301", ago=0)[1:])  # its call_end
    wait_until(page, "window.__pdSaid.length >= 3", 8.0)
    said = page.evaluate("window.__pdSaid")
    texts = [t for _, t in said]
    assert texts[0] == "Call started: +15557770301 to +15550001234", texts
    assert texts[1] == "5 calls started", texts
    assert texts[2].startswith("Call ended: +15557770301 to +15550001234"), texts
    assert not any("Streaming line" in t for t in texts), texts  # never a transcript line
    gaps = [b[0] - a[0] for a, b in zip(said, said[1:])]
    assert all(g >= 3900 for g in gaps), gaps
    # no transcript is a live region
    assert page.locator(".pd-transcript[aria-live]").count() == 0
    guard.check()


def test_every_chart_has_a_caption_and_a_data_table(live_server: Any, open_page: Any) -> None:
    from tests.test_ui_browser import cost_of, money, ms

    server = live_server()
    costs = [cost_of(0.001, 0.012, 0.0004, 0.0085), cost_of(0.002, 0.02, 0.0008, 0.017)]
    events: list[dict[str, Any]] = []
    for i, c in enumerate(costs):
        events += finished_call(f"CA-ch-{i}", f"+155588800{i}", ago=600 + i * 3600, cost=c, response=500 + i * 200)
    server.post_events(events)
    page, guard = open_page()
    open_dashboard(page, server.url, "analytics")
    expect(page.locator("#pd-chart-cost canvas")).to_have_count(1)
    overview = server.get("/api/v1/analytics/overview", params={"from": int(time.time()) - 86400}).json()["data"]
    total = money(overview["total_cost"])
    cost_summary = page.locator("#pd-chart-cost-summary")
    expect(cost_summary).to_contain_text(f"{total} in total over 2 hours with calls")
    expect(cost_summary).to_contain_text("highest hour")
    expect(cost_summary).to_contain_text(money(costs[1]["total"]))
    expect(page.locator("#pd-chart-latency-summary")).to_contain_text(
        f"Average {ms(overview['avg_latency_ms'])}, P95 {ms(overview['p95_latency_ms'])}")
    expect(page.locator("#pd-chart-components-summary")).to_contain_text(
        f"{total} in total: STT {money(overview['cost_breakdown']['stt'])}")
    # the canvases are hidden from assistive technology; captions and tables carry the numbers
    assert page.locator("#pd-chart-cost").get_attribute("aria-hidden") == "true"

    for key, rows in (("cost", 2), ("latency", 2), ("components", 4)):
        toggle = page.locator(f"[data-chart={key}] .pd-chart-table-toggle")
        table = page.locator(f"#pd-chart-{key}-table")
        expect(table).to_be_hidden()
        toggle.click()
        expect(toggle).to_have_attribute("aria-expanded", "true")
        expect(toggle).to_have_text("Hide data table")
        expect(table.locator("tbody tr")).to_have_count(rows)
        assert table.locator("thead th[scope=col]").count() >= 3
        assert table.locator("tbody th[scope=row]").count() == rows
    comp = page.locator("#pd-chart-components-table tbody tr")
    for i, key in enumerate(("stt", "llm", "tts", "telephony")):
        expect(comp.nth(i)).to_contain_text(money(overview["cost_breakdown"][key]))
    expect(page.locator("#pd-chart-cost-table tbody tr").last).to_contain_text(money(costs[0]["total"]))
    guard.check()


# --------------------------------------------------------------------------- motion and zoom


def running_animations(page: Page) -> int:
    return page.evaluate("document.getAnimations().length")


def test_reduced_motion_stops_animations(live_server: Any, open_page: Any) -> None:
    server = live_server()
    seed_history(server)
    counts = {}
    for motion in ("no-preference", "reduce"):
        page, guard = open_page()
        page.emulate_media(reduced_motion=motion)
        open_dashboard(page, server.url, "live")
        server.post_events([call_start(f"CA-motion-{motion}", "+15557770505", "+15550001234")])
        expect(live_card(page, "+15557770505")).to_have_count(1 if motion == "no-preference" else 2)
        live_anims = running_animations(page)
        page.goto(f"{server.url}/dashboard#call/CA-h-1")
        expect(page.locator("#pd-detail .pd-turn").first).to_be_visible()
        counts[motion] = (live_anims, running_animations(page),
                          page.evaluate("getComputedStyle(document.documentElement).scrollBehavior"))
        guard.check()
    assert counts["no-preference"][0] > 0  # the pulsing "Live" dot: the check can fail
    assert counts["reduce"][:2] == (0, 0), counts
    assert counts["reduce"][2] == "auto", counts


#: Data tables (a chart's, the providers leaderboard) may be wider than the screen: they scroll inside their own
#: focusable box (WCAG 1.4.10 exempts two-dimensional data); nothing else may stick out.
REFLOW = """() => {
  const W = document.documentElement.clientWidth;
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    if (!el.getClientRects().length || el.closest('.pd-chart-table, .pd-leaderboard-card .pd-table-wrap, .pd-visually-hidden, .pd-skip')) continue;
    const r = el.getBoundingClientRect();
    if (r.width && (r.right > W + 0.5 || r.left < -0.5)) out.push(`${el.tagName}.${el.className} ${Math.round(r.left)}..${Math.round(r.right)}`);
  }
  return {scroll: document.documentElement.scrollWidth, width: W, outside: out.slice(0, 10)};
}"""


def assert_reflows(page: Page, where: str) -> None:
    found = page.evaluate(REFLOW)
    assert found["scroll"] <= found["width"] and not found["outside"], (where, found)


def test_400_percent_zoom_needs_no_horizontal_scroll(live_server: Any, open_page: Any) -> None:
    """320 CSS px wide (1280 px at 400 %): every view fits; only data tables scroll, inside themselves."""
    server = live_server(PATTER_DASH_TOKEN="tok-a11y-zoom")
    seed_history(server)
    page, guard = open_page(viewport=(320, 640))
    page.goto(f"{server.url}/dashboard")
    assert_reflows(page, "sign-in page")
    page.locator("input[name=token]").fill("tok-a11y-zoom")
    page.keyboard.press("Enter")
    expect(page.locator("#pd-conn")).to_have_attribute("data-state", "live")
    with streaming(server, "CA-zoom", "+15557770606"):
        expect(live_card(page, "+15557770606").locator(".pd-line").nth(2)).to_be_visible()
        assert_reflows(page, "live")
        page.goto(f"{server.url}/dashboard#history")
        expect(history_rows(page)).to_have_count(4)
        page.click("#pd-filters-toggle")
        assert_reflows(page, "history with its filters open")
        history_rows(page).first.click()
        expect(page.locator("#pd-detail .pd-turn").first).to_be_visible()
        settle(page)
        assert_reflows(page, "call detail")
        assert page.locator("#pd-detail").evaluate("d => d.scrollWidth <= d.clientWidth")
        page.keyboard.press("Escape")
        page.keyboard.press("?")
        settle(page)
        assert_reflows(page, "shortcuts")
        page.keyboard.press("Escape")
        page.goto(f"{server.url}/dashboard#analytics")
        expect(page.locator("#pd-chart-cost canvas")).to_have_count(1)
        for toggle in page.locator(".pd-chart-table-toggle").all():
            toggle.click()
        assert_reflows(page, "analytics with the data tables open")
        # the cost table is wider than the screen: it scrolls inside its own box
        box = page.locator("#pd-chart-cost-table")
        assert box.evaluate("e => e.scrollWidth > e.clientWidth && getComputedStyle(e).overflowX === 'auto'")
        page.goto(f"{server.url}/dashboard#providers")
        expect(page.locator("#pd-providers-table tbody tr")).to_have_count(1)
        page.click("#pd-chart-distribution-toggle")
        settle(page)
        assert_reflows(page, "providers with the data table open")
        # the leaderboard is wider than the screen: it scrolls inside its own focusable box
        board = page.locator("#pd-providers-table").locator("xpath=..")
        assert board.evaluate("e => e.scrollWidth > e.clientWidth && getComputedStyle(e).overflowX === 'auto'")
    guard.check(allow=r"status of 401")


# --------------------------------------------------------------------------- the keyboard-only journey


NO_MOUSE = """
window.__pdPointer = 0;
for (const type of ["mousedown", "pointerdown", "touchstart"]) {
  document.addEventListener(type, () => { window.__pdPointer += 1; }, true);
}
"""


def tab_to(page: Page, selector: str, backwards: bool = False, limit: int = 80) -> None:
    """Press Tab (or Shift-Tab) until the focused element matches selector."""
    key = "Shift+Tab" if backwards else "Tab"
    for _ in range(limit):
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
        page.keyboard.press(key)
    raise AssertionError(f"{key} never reached {selector}; stuck at {focused(page)}")


def test_keyboard_only_journey(live_server: Any, open_page: Any) -> None:
    """Sign in, search, open a call, read its transcript, close it, export CSV, analytics, a chart's data
    table: the keyboard alone (no mousedown, pointerdown or touch event ever reaches the page)."""
    token = "tok-a11y-keys"
    server = live_server(PATTER_DASH_TOKEN=token)
    seed_history(server)
    page, guard = open_page()
    page.context.add_init_script(NO_MOUSE)
    page.goto(f"{server.url}/dashboard")

    # sign in: the token field has focus on arrival
    expect(page.locator("input[name=token]")).to_be_focused()
    page.keyboard.type(token)
    page.keyboard.press("Enter")
    expect(page.locator("#pd-conn")).to_have_attribute("data-state", "live")
    # the first Tab stop is the skip link, and it is visible when focused
    page.keyboard.press("Tab")
    expect(page.locator(".pd-skip")).to_be_focused()
    expect(page.locator(".pd-skip")).to_be_in_viewport()

    # search
    page.keyboard.press("Escape")
    page.keyboard.press("/")
    expect(page.locator("#pd-q")).to_be_focused()
    page.keyboard.type("delivery")
    rows = history_rows(page)
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("+15554440004")

    # open the call and read its transcript to the end
    tab_to(page, "tr.pd-row")
    page.keyboard.press("Enter")
    dialog = page.locator("#pd-detail")
    body = dialog.locator(".pd-detail-body")
    expect(body).to_be_focused()
    lines = dialog.locator(".pd-conversation .pd-line")
    expect(lines).to_have_count(3)
    expect(lines.nth(1)).to_contain_text("confirm the delivery window")
    page.keyboard.press("End")
    wait_until(page, "(() => { const b = document.querySelector('#pd-detail .pd-detail-body');"
                     " return b.scrollTop + b.clientHeight >= b.scrollHeight - 2; })()")
    expect(lines.last).to_be_in_viewport()

    # close it: focus is back on its row, the address back on the search
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(rows.first).to_be_focused()
    wait_until(page, "location.hash === '#history?q=delivery'")

    # export CSV of what the search found
    tab_to(page, "#pd-export-csv", backwards=True)
    with page.expect_download() as info:
        page.keyboard.press("Enter")
    csv = open(info.value.path(), encoding="utf-8").read()
    assert "+15554440004" in csv and "+15554440001" not in csv

    # analytics, and a chart's numbers as a table
    tab_to(page, "a.pd-tab[data-view=analytics]", backwards=True)
    page.keyboard.press("Enter")
    expect(page.locator("#pd-view-analytics")).to_be_visible()
    expect(page.locator("#pd-chart-cost canvas")).to_have_count(1)
    tab_to(page, "[data-chart=cost] .pd-chart-table-toggle")
    page.keyboard.press("Enter")
    table = page.locator("#pd-chart-cost-table")
    expect(table).to_be_visible()
    expect(table.locator("tbody tr").first).to_be_visible()
    page.keyboard.press("Tab")
    expect(table).to_be_focused()  # the table's box takes focus, so it scrolls with the arrow keys

    assert page.evaluate("window.__pdPointer") == 0
    guard.check(allow=r"status of 401")

"""Chromium: the header's firing badge and the Alerts view, on a real server with a real rule firing.

A caller-chosen call id full of markup is shown as text; axe finds no WCAG
2.1 A/AA violation in the view (light and dark); screenshots go to
docs/screenshots/.
"""

# ruff: noqa: F811  (the fixtures browser/open_page are imported, then named as test parameters)
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from tests.conftest import ROOT  # noqa: E402
from tests.ops.receiver import Receiver  # noqa: E402
from tests.ops.test_alerts import SECRET, slow_turn_rule, start, turn, webhook_rules  # noqa: E402
from tests.test_ui_a11y import assert_no_axe_violations  # noqa: E402
from tests.test_ui_browser import browser, open_dashboard, open_page  # noqa: E402,F401

pytestmark = [pytest.mark.timeout(300)]
HOSTILE = '<img src=x onerror="window.__pwned=1">&amp;'


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_alerts_view_and_header_badge(live_server: Any, open_page: Any, tmp_path: Path, theme: str) -> None:
    hook = Receiver(secret=SECRET)
    try:
        path = webhook_rules(tmp_path, hook, slow_turn_rule(1200, 60) + """scope = { direction = "inbound" }

[[rules]]
name = "failures"
kind = "failure_rate"
threshold = 20
window = 900
min_calls = 3
""", destination="ops-hook")
        server = live_server(PATTER_DASH_ALERTS=path)
        page, guard = open_page(color_scheme=theme, viewport=(1280, 900))
        open_dashboard(page, server.url, "live")
        badge = page.locator("#pd-firing")
        expect(badge).to_be_hidden()
        server.post_events([start(HOSTILE, "+15550001234"), turn(HOSTILE, 0, 2600), start("CA-ok", "+15550001234"), turn("CA-ok", 0, 450)])
        expect(badge).to_be_visible()
        expect(badge).to_have_text("1 alert firing")
        badge.click()
        expect(page.locator("#pd-view-alerts")).to_be_visible()
        card = page.locator(".pd-rule", has=page.locator("h2", has_text="slow-turn"))
        expect(card.locator(".pd-rule-state")).to_have_text("Firing")
        expect(card.locator(".pd-rule-firing a")).to_have_text(f"Call {HOSTILE}")  # as text, not markup
        expect(card.locator(".pd-rule-history li").first).to_contain_text("turn response latency 2,600 ms")
        expect(page.locator(".pd-rule", has=page.locator("h2", has_text="failures")).locator(".pd-rule-state")).to_have_text("OK")
        expect(page.locator("#pd-alert-dests tbody th")).to_have_text("ops-hook")
        assert page.evaluate("window.__pwned === undefined")
        assert_no_axe_violations(page, f"alerts view, firing ({theme})")
        shots = ROOT / "docs" / "screenshots"
        page.screenshot(path=str(shots / f"alerts-{theme}-desktop.png"), full_page=True)
        # a fast turn resolves it: the badge leaves, the card says resolved (within its cooldown)
        server.post_events([turn(HOSTILE, 1, 300)])
        expect(badge).to_be_hidden()
        expect(card.locator(".pd-rule-state")).to_have_text("Resolved")
        expect(card.locator(".pd-rule-history li").first).to_contain_text("RESOLVED")
        expect(page.locator("#pd-notice")).to_contain_text("Alert: [FIRING] slow-turn")
        assert_no_axe_violations(page, f"alerts view, resolved ({theme})")
        guard.check()
    finally:
        hook.close()


def test_alerts_view_reflows_at_400_percent_zoom(live_server: Any, open_page: Any, tmp_path: Path) -> None:
    from tests.test_ui_a11y import assert_reflows

    path = tmp_path / "alerts.toml"
    path.write_text('[[rules]]\nname = "a-rather-long-rule-name-for-a-narrow-screen"\nkind = "turn_latency"\nthreshold = 1000\n')
    server = live_server(PATTER_DASH_ALERTS=str(path))
    page, guard = open_page(viewport=(320, 640))
    open_dashboard(page, server.url, "alerts")
    server.post_events([start("CA-" + "x" * 60, "+15550001234"), turn("CA-" + "x" * 60, 0, 2600)])
    expect(page.locator("#pd-firing")).to_be_visible()
    expect(page.locator(".pd-rule-state")).to_have_text("Firing")
    assert_reflows(page, "alerts, firing")
    guard.check()

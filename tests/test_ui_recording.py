"""A call's recording in the browser (issue 14, part 3): real gunicorn + gevent, real Chromium, real speech.

The recording is made with espeak-ng and sox as Patter writes one (stereo 16 kHz PCM16; the caller on
the left from 0 to 1.5 s, the agent on the right from 2 to 3.5 s), and the call's transcript lines
are timed the same way. In the detail: the waveform is drawn (ink where each channel speaks), a line
clicked seeks there and plays, the highlighted line follows playback, a missing recording is said,
a call without one shows nothing; axe passes. Screenshot: docs/screenshots/recording.png.
"""

# ruff: noqa: F811  (the fixtures browser/open_page are imported, then named as test parameters)
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from tests.test_recordings import CALLER_WORDS, AGENT_WORDS, make_recording  # noqa: E402
from tests.test_ui_a11y import assert_no_axe_violations  # noqa: E402
from tests.test_ui_browser import (  # noqa: E402,F401
    SHOTS,
    browser,
    call_end,
    call_start,
    cost_of,
    ev,
    history_rows,
    latency,
    open_dashboard,
    open_page,
    turn_data,
)
from tests.test_ui_delete import open_call_from_history  # noqa: E402

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")), reason="espeak-ng and sox make the recording"),
]


def recorded_call(call_id: str, started: float, recording_path: str | None) -> list[dict[str, Any]]:
    """A 4-second call: the caller's words logged at 0.2 s, the agent's answer at 2.0 s (as the audio has them)."""
    start = call_start(call_id, "+15550100", "+15550199")
    start["data"]["started_at"] = started
    turns = [turn_data(0, CALLER_WORDS, AGENT_WORDS, latency(120.0, 380.0, 160.0, 700.0), started + 2.0)]
    history = [{"role": "user", "text": CALLER_WORDS, "timestamp": started + 0.2},
               {"role": "assistant", "text": AGENT_WORDS, "timestamp": started + 2.0}]
    end = call_end(call_id, ended_at=started + 4.0, duration=4.0, cost=cost_of(0.001, 0.004, 0.0005, 0.002),
                   turns=turns, history=history)
    if recording_path is not None:
        end["data"]["recording_path"] = recording_path
    return [start, end]


def ink(page: Any) -> dict[str, list[float]]:
    """For each half of the waveform (caller above, agent below), the share of each tenth of its width drawn as sound."""
    return page.evaluate("""() => {
      const c = document.querySelector('#pd-detail canvas.pd-waveform');
      const ctx = c.getContext('2d');
      const out = {};
      for (const [name, y0] of [['caller', 0], ['agent', Math.floor(c.height / 2)]]) {
        const data = ctx.getImageData(0, y0, c.width, Math.floor(c.height / 2)).data;
        const rows = Math.floor(c.height / 2);
        const cols = new Array(10).fill(0);
        for (let x = 0; x < c.width; x++) {
          let inked = 0;
          for (let y = 0; y < rows; y++) inked += data[(y * c.width + x) * 4 + 3] > 0;
          // Sound is ink taller than silence's 1 px line, shorter than the turn marker's and playhead's full height.
          if (inked > 4 && inked < rows) cols[Math.min(9, Math.floor(x / c.width * 10))] += 1;
        }
        out[name] = cols.map((n) => n / (c.width / 10));
      }
      return out;
    }""")


def playhead(page: Any) -> float:
    return page.evaluate("() => document.querySelector('#pd-detail audio').currentTime")


def test_play_seek_and_follow_the_transcript(live_server: Any, open_page: Any, tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    make_recording(root, "call.wav")
    server = live_server(PATTER_DASH_RECORDINGS_DIRS=str(root))
    now = time.time()
    server.post_events([
        *recorded_call("CA-none", now - 300, None),
        *recorded_call("CA-missing", now - 200, "missing.wav"),
        *recorded_call("CA-rec", now - 100, "call.wav"),
    ])
    page, guard = open_page()
    open_dashboard(page, server.url, "history")
    expect(history_rows(page)).to_have_count(3)
    dialog = page.locator("#pd-detail")
    section = dialog.locator("section.pd-recording")

    assert open_call_from_history(page, 0) == "CA-rec"
    audio = section.locator("audio")
    expect(audio).to_have_attribute("src", "/api/v1/call/recording?id=CA-rec")
    expect(section.locator(".pd-recording-status")).to_have_text("")
    page.wait_for_function("() => document.querySelector('#pd-detail audio').readyState >= 1")  # the WAV's header was read
    expect(section.locator("canvas.pd-waveform")).to_have_attribute("aria-label", "Waveform of the recording, 4s: caller above, agent below; turns at 0:02")
    # Ink where each channel speaks: the caller in the first 1.5 s of 4 (tenths 0-2), the agent from 2 to 3.5 s (5-8).
    drawn = ink(page)
    # (Speech has short pauses between words: a tenth is a quarter drawn at least.)
    assert min(drawn["caller"][0:3]) > 0.25 and max(drawn["caller"][4:10]) == 0, drawn
    assert max(drawn["agent"][0:5]) == 0 and min(drawn["agent"][5:8]) > 0.25, drawn

    lines = dialog.locator(".pd-conversation .pd-line")
    caller_line, agent_line = lines.nth(0), lines.nth(1)
    expect(caller_line.get_by_role("button", name="Play from 0:00")).to_be_visible()
    # Clicking a line seeks there (and plays): the agent's answer, 2.0 s in.
    agent_line.locator(".pd-text").click()
    page.wait_for_function("() => document.querySelector('#pd-detail audio').currentTime >= 2.0")
    expect(agent_line).to_have_attribute("aria-current", "true")
    expect(caller_line).not_to_have_attribute("aria-current", "true")
    page.evaluate("() => document.querySelector('#pd-detail audio').pause()")
    # The keyboard's way: the caller line's button; then the highlight follows playback into the agent's answer.
    caller_line.get_by_role("button", name="Play from 0:00").focus()
    page.keyboard.press("Enter")
    page.wait_for_function("() => { const a = document.querySelector('#pd-detail audio'); return !a.paused && a.currentTime > 0.3 && a.currentTime < 1.9; }")
    expect(caller_line).to_have_attribute("aria-current", "true")
    expect(caller_line).to_have_class("pd-line pd-line-caller pd-line-seekable pd-line-playing")
    page.wait_for_function("() => document.querySelector('#pd-detail audio').currentTime > 2.1", timeout=8000)
    expect(agent_line).to_have_attribute("aria-current", "true")
    expect(caller_line).not_to_have_attribute("aria-current", "true")
    page.evaluate("() => document.querySelector('#pd-detail audio').pause()")
    # Clicking the waveform seeks too: a quarter of the way is 1 s, the caller speaking.
    waveform = section.locator("canvas.pd-waveform")
    box = waveform.bounding_box()
    waveform.click(position={"x": box["width"] * 0.25, "y": box["height"] / 2})
    assert abs(playhead(page) - 1.0) < 0.1
    expect(caller_line).to_have_attribute("aria-current", "true")
    assert_no_axe_violations(page, "#pd-detail with a recording")
    SHOTS.mkdir(parents=True, exist_ok=True)
    dialog.screenshot(path=str(SHOTS / "recording.png"))

    page.keyboard.press("Escape")
    assert open_call_from_history(page, 1) == "CA-missing"
    expect(section.locator(".pd-recording-status")).to_have_text("Recording not available.")
    expect(section.locator("audio")).to_be_hidden()
    expect(lines.nth(0).locator(".pd-line-seek")).to_have_count(0)
    assert_no_axe_violations(page, "#pd-detail, recording not available")
    page.keyboard.press("Escape")
    assert open_call_from_history(page, 2) == "CA-none"
    expect(section).to_be_hidden()
    guard.check(allow="404")

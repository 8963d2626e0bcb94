"""Hub (patter_dash/core/hub.py): the replay ring, cursors, resume and reset, overflow and reaping, the cap.

Unit tests on a bare :class:`Hub`; the same rules end to end over SSE and WebSocket are in
tests/test_streaming.py and tests/test_hostile_streams.py.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from patter_dash.core.hub import OVERFLOW, RESET, SHUTDOWN, Hub, HubFull


def publish(hub: Hub, first: int, last: int, event_type: str = "transcript", call_id: str = "A") -> None:
    for seq in range(first, last + 1):
        hub.publish(seq, event_type, call_id, {"seq": seq, "type": event_type, "call_id": call_id})


def seqs(frames) -> list[int]:
    assert isinstance(frames, list), frames
    return [f.seq for f in frames]


def test_a_reader_gets_every_event_after_its_cursor_in_order_once() -> None:
    hub = Hub(replay_size=100)
    publish(hub, 1, 2)
    sub = hub.subscribe()  # live only: starts at the head
    publish(hub, 3, 7)
    assert seqs(hub.read(sub, 1)) == [3, 4, 5, 6, 7]
    t0 = time.monotonic()
    assert hub.read(sub, 0.05) == []  # nothing new: waits out the timeout, then an empty list
    assert time.monotonic() - t0 >= 0.04
    publish(hub, 8, 8)
    assert seqs(hub.read(sub, 1)) == [8]


def test_a_publish_wakes_a_waiting_reader_at_once() -> None:
    hub = Hub()
    sub = hub.subscribe()
    got: list = []
    reader = threading.Thread(target=lambda: got.append((hub.read(sub, 10), time.monotonic())))
    reader.start()
    time.sleep(0.05)
    published = time.monotonic()
    publish(hub, 1, 1)
    reader.join(5)
    frames, woke = got[0]
    assert seqs(frames) == [1] and woke - published < 1.0


def test_a_frame_is_one_sse_event_whatever_the_text_and_the_same_event_over_websocket() -> None:
    hub = Hub()
    sub = hub.subscribe()
    text = "line\r\nid: 999\nevent: call_end\n\ndata: forged\x00"
    hub.publish(1, "transcript", "A", {"call_id": "A", "line": {"text": text}})
    (frame,) = hub.read(sub, 1)
    head, data = frame.sse.decode().split("data: ", 1)
    assert head == "id: 1\nevent: transcript\n" and data.endswith("\n\n") and "\n" not in data[:-2]
    assert json.loads(data)["line"]["text"] == text
    assert json.loads(frame.ws) == {"id": 1, "event": "transcript", "data": {"call_id": "A", "line": {"text": text}}}


def test_a_reader_filters_by_type_and_call() -> None:
    hub = Hub()
    by_type = hub.subscribe(types=["call_end"])
    by_call = hub.subscribe(call_id="B")
    hub.publish(1, "call_start", "A", {})
    hub.publish(2, "call_end", "A", {})
    hub.publish(3, "transcript", "B", {})
    assert seqs(hub.read(by_type, 1)) == [2]
    assert seqs(hub.read(by_call, 1)) == [3]


def test_resume_gets_exactly_the_missed_events_and_a_gone_resume_point_is_a_reset() -> None:
    hub = Hub(replay_size=5)
    publish(hub, 1, 4)
    assert hub.check_resume(2) and hub.check_resume(4)
    resumed = hub.subscribe(after=2)
    assert seqs(hub.read(resumed, 1)) == [3, 4]
    stale = hub.subscribe(after=1)
    publish(hub, 5, 9)  # the ring holds 5..9: event 2 is gone
    assert not hub.check_resume(1) and hub.check_resume(4)
    assert hub.read(stale, 1) == RESET
    publish(hub, 10, 10)
    assert seqs(hub.read(stale, 1)) == [10]  # after a reset the reader is live again
    assert not hub.check_resume(11)  # not yet published


def test_a_reader_stuck_past_max_lag_is_cut_off_at_the_second_reap_and_a_busy_one_is_not() -> None:
    hub = Hub(replay_size=100, max_lag=3)
    cut: list[str] = []
    stuck = hub.subscribe(on_overflow=lambda: cut.append("stuck"))
    busy = hub.subscribe(on_overflow=lambda: cut.append("busy"))
    publish(hub, 1, 10)
    assert hub.reap() == 0  # first sighting: maybe just busy writing a backlog
    assert seqs(hub.read(busy, 1))[-1] == 10  # this one moves on
    publish(hub, 11, 20)
    # both are 10+ behind now, but only the one whose cursor has not moved is cut off
    assert hub.reap() == 1 and cut == ["stuck"] and hub.overflows == 1
    assert hub.read(stuck, 1) == OVERFLOW
    assert seqs(hub.read(busy, 1)) == list(range(11, 21))


def test_the_subscriber_cap_refuses_then_frees_a_slot_on_unsubscribe() -> None:
    hub = Hub(max_subscribers=2)
    first, _second = hub.subscribe(), hub.subscribe()
    assert hub.subscriber_count == 2 and hub.refusal() == "2 subscribers already connected"
    with pytest.raises(HubFull, match="2 subscribers"):
        hub.subscribe()
    hub.unsubscribe(first)
    assert hub.subscriber_count == 1 and hub.refusal() is None
    hub.subscribe()


def test_no_new_streams_once_shutdown_began():
    hub = Hub()
    hub.subscribe()
    hub.shutdown()
    with pytest.raises(HubFull, match="shutting down"):
        hub.subscribe()


def test_shutdown_wakes_waiting_readers_with_a_verdict() -> None:
    hub = Hub()
    sub = hub.subscribe()
    got: list = []
    reader = threading.Thread(target=lambda: got.append(hub.read(sub, 10)))
    reader.start()
    time.sleep(0.05)
    hub.shutdown()
    reader.join(5)
    assert got == [SHUTDOWN]

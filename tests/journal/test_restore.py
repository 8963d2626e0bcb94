"""The journal in-process: what one pipeline wrote, the next one reads back exactly (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patter_dash.core.pipeline import Pipeline
from patter_dash.core.store import CallFilter
from patter_dash.journal import JournalUnavailable, open_journal
from patter_dash.model import records
from patter_dash.model.events import make_event

from .conftest import query


def _pipeline(db: str, max_calls: int = 1_000) -> Pipeline:
    journal = open_journal(db)
    assert journal is not None
    journal.check()
    pipeline = Pipeline(max_calls=max_calls, journal=journal)
    pipeline.ensure_started()
    return pipeline


def _views(pipeline: Pipeline, db: str) -> dict[str, Any]:
    """Every call (memory first, the rest from the file), totals and the cost series."""
    now = 2_000_000_000.0
    store = pipeline.store
    stored = {row[0] for row in query(db, "SELECT call_id FROM calls")}
    # History as readers get it: memory's copy where memory has one (the writer may not have written it yet).
    calls = {c.call_id: c for c in pipeline.history.page(CallFilter(), 10**6, 0)[0]}
    assert set(calls) >= stored
    return {
        "active": {c.call_id: records.detail(c, now) for c in store.active_calls()},
        "completed": {i: records.detail(c, now) for i, c in calls.items()},
        "overview": store.overview(None, None),
        "costs": store.costs(None, None, "hour"),
    }


ARRIVAL = time.time() - 3600


def _stream(rng: random.Random, calls: int) -> list[tuple[str, dict[str, Any], str | None]]:
    """Calls in random interleavings, some never ending, some events sent twice, late events after the end."""
    base = ARRIVAL - 3 * 86_400
    events: list[tuple[str, dict[str, Any], str | None]] = []
    for n in range(calls):
        call_id = f"CA{n:04d}"
        start = base + rng.uniform(0, 2.5 * 86_400)
        script: list[tuple[str, dict[str, Any], str | None]] = [
            ("call_start", {"call_id": call_id, "caller": f"+1555{n:07d}", "callee": "+15550000000"}, f"{call_id}-s")
        ]
        turns = rng.randint(0, 4)
        for t in range(turns):
            script.append(("transcript", {"call_id": call_id, "role": "user", "text": rng.choice(["Yes.", "No", "hello"]),
                                          "timestamp": start + t}, None))
            script.append(("turn", {"call_id": call_id, "turn": {
                "turn_index": t, "user_text": "Yes.", "agent_text": f"answer {t}", "timestamp": start + t + 0.5,
                "latency": {"agent_response_ms": rng.uniform(200, 1500), "total_ms": 1800.0}}}, f"{call_id}-t{t}"))
        if rng.random() < 0.8:
            duration = rng.uniform(5, 600)
            cost = {k: round(rng.uniform(0, 0.05), 6) for k in ("stt", "tts", "llm", "telephony")}
            cost["total"] = round(sum(cost.values()), 6)
            script.append(("call_end", {"call_id": call_id, "ended_at": start + duration, "metrics": {
                "call_id": call_id, "duration_seconds": duration, "cost": cost}}, f"{call_id}-e"))
            if rng.random() < 0.2:  # late status after the end
                script.append(("call_status", {"call_id": call_id, "status": "completed"}, None))
        if rng.random() < 0.3:
            script.append(rng.choice(script))  # a re-delivery
        events.extend(script)
    rng.shuffle(events)  # calls interleave; a call's own order is mostly kept below
    events.sort(key=lambda e: (e[0] == "call_end", rng.random() < 0.9))
    return events


def _feed(pipeline: Pipeline, events: list[tuple[str, dict[str, Any], str | None]], first: int = 0) -> None:
    """Each event arrives at a time fixed by its place in the stream, so runs compare exactly."""
    for n, (kind, data, key) in enumerate(events, first):
        pipeline.submit([make_event(kind, dict(data), key, now=ARRIVAL + n)])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32), calls=st.integers(1, 40), split=st.floats(0, 1), max_calls=st.sampled_from([5, 1_000]))
def test_restart_restores_every_call_total_and_id(new_db: Any, seed: int, calls: int, split: float, max_calls: int) -> None:
    path = new_db()
    rng = random.Random(seed)
    events = _stream(rng, calls)
    cut = int(len(events) * split)
    first = _pipeline(path, max_calls)
    _feed(first, events[:cut])
    before = _views(first, path)
    first.stop()

    second = _pipeline(path, max_calls)
    try:
        assert _views(second, path) == before
        # Ids seen before the restart are still recognised: nothing is applied twice.
        for kind, data, key in events[:cut]:
            if key is not None:
                assert second.submit([make_event(kind, dict(data), key, now=ARRIVAL)])[0].duplicate
        _feed(second, events[cut:], cut)
        after = _views(second, path)
    finally:
        second.stop()

    # The same stream fed to one pipeline that never stopped.
    other = new_db()
    reference = _pipeline(other, max_calls)
    try:
        _feed(reference, events)
        assert _views(reference, other) == after
    finally:
        reference.stop()


def test_an_id_known_only_from_a_replayed_event_outlives_the_next_restart(new_db: Any) -> None:
    """A crash can leave an accepted event on disk before its id's row (the ids ride with the next
    transaction). The next process knows the id from replaying the event; when the call is then
    written whole, the event's row goes, so the id must have been written by then, or the restart
    after forgets it and the runtime's retry is applied twice."""
    path = new_db()
    start = make_event("call_start", {"call_id": "CA-replayed", "caller": "+15550001111"}, "start-key", now=ARRIVAL)
    first = _pipeline(path)
    first.submit([start])
    first.stop()
    query(path, "DELETE FROM seen")  # the crash image: the event is there, its id's row is not

    second = _pipeline(path)
    assert second.submit([make_event("call_start", {"call_id": "CA-replayed"}, "start-key", now=ARRIVAL)])[0].duplicate
    second.submit([make_event("call_end", {"call_id": "CA-replayed", "metrics": {"duration_seconds": 5}}, None, now=ARRIVAL + 5)])
    second.stop()
    # Folded into the call's row (PostgreSQL keeps folded events a while for the other processes reading the log).
    unfolded = " WHERE NOT folded" if path.startswith("postgresql://") else ""
    assert query(path, f"SELECT count(*) FROM events{unfolded}")[0][0] == 0

    third = _pipeline(path)
    try:
        again = third.submit([make_event("call_start", {"call_id": "CA-replayed"}, "start-key", now=ARRIVAL)])
        assert again[0].duplicate
    finally:
        third.stop()


def test_a_batch_on_disk_is_acknowledged_and_applied_once_when_reading_its_calls_back_fails(new_db: Any) -> None:
    """The commit holds the events; reading back the stored call they name then fails for a moment (the
    database went away between the two). The events count as written: acknowledged once the call can be
    read, applied to it once, and a fed copy is not queued to be written again."""
    path = new_db()
    pipeline = _pipeline(path, max_calls=2)
    try:
        for n in range(3):
            call_id = f"CA-{n}"
            pipeline.submit([make_event("call_start", {"call_id": call_id, "caller": "+15550001111"}, None, now=ARRIVAL + n),
                             make_event("call_end", {"call_id": call_id, "metrics": {"duration_seconds": 5}}, None,
                                        now=ARRIVAL + n + 1)])
        pipeline.submit([make_event("call_start", {"call_id": "CA-pusher"}, None, now=ARRIVAL + 9)])  # writes the rest
        assert "CA-0" not in pipeline.store.completed  # on disk only
        journal = pipeline.journal
        real, failures = journal.load_many, []

        def flaky(call_ids: Any) -> Any:
            if not failures:
                failures.append(list(call_ids))
                raise JournalUnavailable("the database went away for a moment")
            return real(call_ids)

        journal.load_many = flaky  # type: ignore[method-assign]
        real_commit, written = journal.commit, []

        def commit(batch: Any) -> None:
            real_commit(batch)
            written.extend(e.data.get("text") for e in batch.events)

        journal.commit = commit  # type: ignore[method-assign]
        late = make_event("transcript", {"call_id": "CA-0", "role": "user", "text": "a late line", "timestamp": ARRIVAL + 3},
                          None, now=ARRIVAL + 10)
        acks = pipeline.submit([late])  # before: JournalDown (503), though the line was on disk
        assert failures == [["CA-0"]] and not acks[0].duplicate
        for n in (3, 4):  # two more finished calls push CA-1 and CA-2 out of memory
            pipeline.submit([make_event("call_start", {"call_id": f"CA-{n}"}, None, now=ARRIVAL + 10 + n),
                             make_event("call_end", {"call_id": f"CA-{n}"}, None, now=ARRIVAL + 11 + n)])
        pipeline.submit([make_event("call_end", {"call_id": "CA-pusher"}, None, now=ARRIVAL + 20)])
        cold = next(c for c in ("CA-1", "CA-2") if c not in pipeline.store.completed)
        failures.clear()
        assert pipeline.feed("transcript", {"call_id": cold, "role": "user", "text": "another late line",
                                            "timestamp": ARRIVAL + 4})
        deadline = time.monotonic() + 10
        while not any(line[records.LINE_TEXT] == "another late line" for line in pipeline.history.get(cold).transcript):
            assert time.monotonic() < deadline, "the fed line was never applied"
            time.sleep(0.05)
        assert pipeline.health()["status"] == "ok"
        assert failures == [[cold]]
        assert written.count("a late line") == 1 and written.count("another late line") == 1  # each written once
    finally:
        pipeline.stop()
    stored = _pipeline(path, max_calls=10)
    try:
        texts = [line[records.LINE_TEXT] for call_id in ("CA-0", "CA-1", "CA-2") for line in stored.history.get(call_id).transcript]
        assert texts.count("a late line") == 1 and texts.count("another late line") == 1
    finally:
        stored.stop()
    unfolded = " AND NOT folded" if path.startswith("postgresql://") else ""
    assert query(path, f"SELECT count(*) FROM events WHERE type = 'transcript'{unfolded}")[0][0] == 0

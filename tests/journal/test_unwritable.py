"""A value the history cannot hold never ends the writer (SQLite file, the pipeline's own event thread).

Validation keeps every known such value out (a cost past 64-bit nano-dollars,
a lone surrogate in an event id: both ended the event thread, and ingest
answered 503 for good). What another path brings in, or a later bug lets
through, is found by writing the batch again piece by piece: only that event
is refused, or only those derived writes left out. One test injects the
failure (no input can produce one any more); the other replays a history
written before costs were bounded.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from patter_dash.core.aggregates import MAX_PER_CALL, NANO
from patter_dash.core.pipeline import ApplyFailed, Pipeline
from patter_dash.journal import Batch, open_journal
from patter_dash.journal.sqlite import SQLiteJournal
from patter_dash.model.events import make_event

from .conftest import query


def _poisoned(journal: SQLiteJournal, events: set[str] = frozenset(), calls: set[str] = frozenset()) -> None:
    """Make the file refuse a transaction holding these calls' events, or these calls written whole,
    as SQLite refuses an integer past 64 bits."""
    write = journal._write

    def refusing(db: sqlite3.Connection, batch: Batch) -> None:
        if {e.call_id for e in batch.events} & events or {call.call_id for call, _, _ in batch.snapshots} & calls:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        write(db, batch)

    journal._write = refusing  # type: ignore[method-assign]


def _start(path: Path, poison: set[str] = frozenset()) -> Pipeline:
    journal = open_journal(str(path))
    assert isinstance(journal, SQLiteJournal)
    journal.check()
    _poisoned(journal, events=poison)
    pipeline = Pipeline(journal=journal)
    pipeline.ensure_started()
    return pipeline


def _call(call_id: str) -> list[Any]:
    return [make_event("call_start", {"call_id": call_id}),
            make_event("call_end", {"call_id": call_id, "metrics": {"duration_seconds": 3.0, "cost": {"total": 0.25}}})]


def test_an_event_the_file_cannot_hold_is_refused_alone_and_the_writer_goes_on(tmp_path: Path) -> None:
    pipeline = _start(tmp_path / "history.db", {"BAD"})
    try:
        with pytest.raises(ApplyFailed):  # a 500 to whoever sent the body
            pipeline.submit([*_call("A"), make_event("call_start", {"call_id": "BAD"}), *_call("B")])
        assert pipeline.running
        assert pipeline.store.get("A") is not None and pipeline.store.get("B") is not None
        assert pipeline.store.get("BAD") is None
        failed = pipeline.counters["errors"]  # the batch, then BAD alone: each failed transaction counts
        assert failed == 2
        pipeline.submit(_call("C"))  # the next body: one transaction again, nothing refused
        assert pipeline.counters["errors"] == failed
    finally:
        pipeline.stop()
    path = str(tmp_path / "history.db")
    assert {row[0] for row in query(path, "SELECT call_id FROM calls")} == {"A", "B", "C"}
    assert query(path, "SELECT count(*) FROM events WHERE call_id = 'BAD'") == [(0,)]


def test_a_finished_call_the_file_cannot_hold_is_left_out_and_ingest_goes_on(tmp_path: Path) -> None:
    """The poison is in what applying derived (the call written whole): its events stay on disk."""
    pipeline = _start(tmp_path / "history.db")
    try:
        pipeline.submit([make_event("call_start", {"call_id": "WHOLE"})])
        _poisoned(pipeline.journal, calls={"WHOLE"})  # type: ignore[arg-type]
        pipeline.submit([make_event("call_end", {"call_id": "WHOLE"})])
        for n in range(3):  # each carries WHOLE's snapshot until it is found and left out
            pipeline.submit(_call(f"N{n}"))
        assert pipeline.running and pipeline.counters["errors"] >= 1
        assert all(pipeline.store.get(f"N{n}") is not None for n in range(3))
    finally:
        pipeline.stop()
    path = str(tmp_path / "history.db")
    assert {row[0] for row in query(path, "SELECT call_id FROM calls")} >= {"N0", "N1", "N2"}
    assert query(path, "SELECT count(*) FROM events WHERE call_id = 'WHOLE'") == [(2,)]  # replayed at start


def test_a_history_holding_a_cost_past_64_bit_nano_dollars_starts_and_counts_it_bounded(tmp_path: Path) -> None:
    """Written before costs were bounded: its replay ended the writer at every start."""
    path = str(tmp_path / "history.db")
    journal = open_journal(path)
    journal.check()
    journal.open()
    start, end = _call("HUGE")
    end.data["metrics"]["cost"]["total"] = 1e10  # as validation let it through then
    journal.commit(Batch(events=[start, end]))
    journal.close()

    pipeline = Pipeline(journal=open_journal(path))
    pipeline.journal.check()  # type: ignore[union-attr]
    pipeline.ensure_started()
    try:
        pipeline.submit(_call("AFTER"))
        assert pipeline.running and pipeline.counters["errors"] == 0
        total = pipeline.store.aggregates.total
        assert total.calls == 2
        assert total.cost[-1] == MAX_PER_CALL + round(0.25 * NANO)
    finally:
        pipeline.stop()
    assert query(path, "SELECT call_id, cost_total FROM calls ORDER BY call_id") == [
        ("AFTER", round(0.25 * NANO)), ("HUGE", MAX_PER_CALL)]

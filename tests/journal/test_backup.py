"""The online backup finishes while another process commits without pause, at a size where a stepwise copy never would."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import time
from pathlib import Path

from patter_dash.journal import Batch
from patter_dash.journal.sqlite import SQLiteJournal
from patter_dash.model.events import make_event


def _writer(path: str, stop, commits) -> None:  # type: ignore[no-untyped-def]
    journal = SQLiteJournal(path)
    journal.open()
    n = 0
    while not stop.is_set():
        event = make_event("transcript", {"call_id": f"W{n % 50}", "role": "user", "text": f"line {n}"}, f"w{n}", now=time.time())
        journal.commit(Batch([event], last_seq=n))
        commits.value = n = n + 1
        time.sleep(0.002)
    journal.close()


def test_backup_of_a_large_history_finishes_under_constant_commits(tmp_path: Path):
    path = tmp_path / "history.db"
    journal = SQLiteJournal(str(path))
    journal.check()
    with sqlite3.connect(path) as db:  # 60 MB of stored events: far more pages than one backup step copies
        db.executemany("INSERT INTO events (call_id, type, key, received_at, data) VALUES (?, 'transcript', NULL, 0, ?)",
                       [(f"OLD{n}", os.urandom(2_000)) for n in range(30_000)])
    db.close()
    context = multiprocessing.get_context("spawn")
    stop, commits = context.Event(), context.Value("i", 0)
    writer = context.Process(target=_writer, args=(str(path), stop, commits))
    writer.start()
    try:
        while commits.value < 10:
            time.sleep(0.01)
        started, before = time.monotonic(), commits.value
        journal.backup(str(tmp_path / "copy.db"))
        took, during = time.monotonic() - started, commits.value - before
    finally:
        stop.set()
        writer.join(10)
    print(f"backup of {path.stat().st_size / 1e6:.0f} MB in {took:.2f} s while {during} transactions committed")
    assert during > 0 and took < 10
    with sqlite3.connect(f"file:{tmp_path / 'copy.db'}?mode=ro", uri=True) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert copy.execute("SELECT count(*) FROM events WHERE call_id LIKE 'OLD%'").fetchone()[0] == 30_000
        assert copy.execute("SELECT count(*) FROM events WHERE call_id LIKE 'W%'").fetchone()[0] >= before

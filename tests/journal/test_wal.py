"""The SQLite file's write-ahead log stays bounded while ingest never pauses.

Commits go on while :meth:`SQLiteJournal.checkpoint` copies the WAL into the
file beside them (the pipeline runs it on a background thread). A passive
checkpoint never catches up with a writer that does not pause, and SQLite
only rewinds a WAL that one did: before ``wal_limit`` the log grew for as
long as ingest lasted (~7 MB a second of single-event ingest).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from patter_dash.journal import Batch
from patter_dash.journal.sqlite import SQLiteJournal
from patter_dash.model.events import make_event

from .conftest import query


def test_the_wal_stays_near_its_limit_under_writes_that_never_pause(tmp_path: Path) -> None:
    path = str(tmp_path / "history.db")
    journal = SQLiteJournal(path)
    journal.wal_limit = 1 << 20
    journal.check()
    journal.open()
    text = "x" * 2_000
    stop = threading.Event()
    largest = [0]

    def checkpoints() -> None:  # as the pipeline does, every few commits, on another thread
        while not stop.is_set():
            journal.checkpoint()
            largest[0] = max(largest[0], os.path.getsize(path + "-wal"))
            time.sleep(0.005)

    checkpointer = threading.Thread(target=checkpoints)
    checkpointer.start()
    written = 0
    deadline = time.monotonic() + 3.0
    try:
        while time.monotonic() < deadline or written < 2_000:
            journal.commit(Batch(events=[make_event("transcript", {"call_id": f"c{written}", "role": "user", "text": text})]))
            written += 1
    finally:
        stop.set()
        checkpointer.join()
        journal.close()
    # Every commit appends at least one 4 KiB page: the log went round its limit many times over. What it
    # may hold beyond the limit is what the writer adds during one passive pass (fast here: no pauses at all).
    assert written * 4096 > 64 * journal.wal_limit
    assert largest[0] <= 16 * journal.wal_limit, f"the WAL grew to {largest[0]:,} bytes over {written:,} commits"
    assert query(path, "SELECT count(*) FROM events") == [(written,)]

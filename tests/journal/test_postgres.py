"""What only the PostgreSQL journal has: its URL, its server, its schema shared with other processes.

Every refusal names ``PATTER_DASH_DB`` and never shows the password; the
schema is made once when several processes start together; several processes
write one ordered log, and one of them at a time holds the jobs lock.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from patter_dash.journal import Batch, JournalError, JournalUnavailable, open_journal
from patter_dash.journal.postgres import SCHEMA_VERSION
from patter_dash.model.events import Event, make_event
from patter_dash.run.cli import main as cli

from .conftest import query


def _refused(url: str) -> str:
    journal = open_journal(url)
    assert journal is not None
    with pytest.raises(JournalError) as caught:
        journal.check()
    message = str(caught.value)
    assert "PATTER_DASH_DB" in message, message
    return message


def test_a_wrong_url_password_database_or_port_refuses_to_start_naming_the_setting(pg_server: Any, pg_database: Any) -> None:
    url = pg_database()
    pg_server.password_role("right-password-1")
    base = f"postgresql://patter_pw:{{}}@127.0.0.1:{pg_server.port}/{url.rsplit('/', 1)[1]}"
    message = _refused(base.format("wrong-password-2"))
    assert "password authentication failed" in message and "wrong-password-2" not in message
    assert "postgresql://patter_pw@127.0.0.1" in message  # where, without the secret
    assert "does not exist" in _refused(pg_server.url("no_such_database"))
    assert "refused" in _refused(f"postgresql://postgres@127.0.0.1:{_closed_port()}/x").lower()
    with pytest.raises(JournalError, match="PATTER_DASH_DB is not a usable PostgreSQL URL"):
        open_journal("postgresql://host:notaport:/x y")
    # The right password: the role may create its tables in its own database.
    with pg_server.admin() as admin:
        admin.execute(f'ALTER DATABASE "{url.rsplit("/", 1)[1]}" OWNER TO patter_pw')
    good = open_journal(base.format("right-password-1"))
    assert good is not None
    good.check()
    assert good.path.startswith("postgresql://patter_pw@") and "right-password-1" not in good.path


def _closed_port() -> int:
    from tests.conftest import free_port

    return free_port()  # bound and released: nothing listens there


def test_a_newer_schema_or_another_applications_tables_are_left_untouched(pg_database: Any) -> None:
    newer = pg_database()
    open_journal(newer).check()  # type: ignore[union-attr]
    query(newer, f"INSERT INTO patter_dash_schema (version) VALUES ({SCHEMA_VERSION + 1})")
    assert "newer patter-dash" in _refused(newer)
    foreign = pg_database()
    query(foreign, "CREATE TABLE invoices (id int)")
    assert "another application" in _refused(foreign)
    assert query(foreign, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(1,)]  # nothing added


def test_processes_starting_together_migrate_once(pg_database: Any) -> None:
    url = pg_database()
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def check() -> None:
        try:
            start.wait()
            open_journal(url).check()  # type: ignore[union-attr]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=check) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert query(url, "SELECT version FROM patter_dash_schema ORDER BY version") == [(v,) for v in range(1, SCHEMA_VERSION + 1)]


def test_several_processes_write_one_ordered_log_and_one_of_them_runs_the_jobs(pg_database: Any) -> None:
    """Two journals on one database: numbers in commit order, each commit hands back what the other wrote first."""
    url = pg_database()
    first, second = open_journal(url), open_journal(url)
    assert first is not None and second is not None
    first.check()
    first.open()
    second.open()
    try:
        mine = [Event("call_start", "A", {"call_id": "A", "caller": "+1"}, "a1", 1.0),
                Event("call_start", "B", {"call_id": "B", "caller": "+2"}, "b1", 2.0)]
        first.commit(Batch(events=mine, after=0))
        assert [e.seq for e in mine] == sorted(e.seq for e in mine) and mine[0].seq > 0
        theirs = [Event("call_end", "A", {"call_id": "A"}, "a2", 3.0)]
        batch = Batch(events=theirs, after=0)
        second.commit(batch)
        # The first process's events, in order, ahead of the second's own (numbered after them).
        assert [(e.seq, e.type, e.call_id, e.key) for e in batch.before] == [(e.seq, e.type, e.call_id, e.key) for e in mine]
        assert theirs[0].seq > mine[-1].seq
        tail, trimmed = first.tail(mine[-1].seq)
        assert [(e.seq, e.key) for e in tail] == [(theirs[0].seq, "a2")] and trimmed == 0

        assert first.runs_jobs() and not second.runs_jobs() and first.runs_jobs()  # one holder, kept
        first.close()  # its connection gone, the lock is free: the next to ask takes it
        assert second.runs_jobs()
    finally:
        second.close()
        first.close()


def test_a_lost_connection_is_unavailable_then_written_again(pg_server: Any, pg_database: Any) -> None:
    """The server stopped under an open journal: writes and reads are JournalUnavailable, then resume by themselves."""
    url = pg_database()
    journal = open_journal(url)
    assert journal is not None
    journal.check()
    journal.open()
    try:
        event = make_event("call_start", {"call_id": "CA-1"}, "k1", now=1_700_000_000.0)
        journal.commit(Batch([event], last_seq=1))
        pg_server.stop("immediate")
        with pytest.raises(JournalUnavailable, match="PATTER_DASH_DB"):
            journal.commit(Batch([make_event("call_start", {"call_id": "CA-2"}, "k2", now=1_700_000_001.0)], last_seq=2))
        with pytest.raises(JournalUnavailable, match="PATTER_DASH_DB"):
            journal.load("CA-1")
        pg_server.start()
        journal.commit(Batch([make_event("call_start", {"call_id": "CA-3"}, "k3", now=1_700_000_002.0)], last_seq=3))
        assert journal.load("CA-x") is None
        restored = journal.restore(10)
        assert [e.call_id for e in restored.events] == ["CA-1", "CA-3"] and restored.last_seq == 3
    finally:
        journal.close()


def test_backup_points_at_pg_dump(pg_database: Any, tmp_path: Any, capsys: Any) -> None:
    url = pg_database()
    assert cli(["backup", "--db", url, str(tmp_path / "copy.db")]) == 2
    err = capsys.readouterr().err
    assert "pg_dump" in err and not (tmp_path / "copy.db").exists()


def test_a_log_row_no_process_can_read_is_counted_and_passed_never_stopping_the_others(pg_database: Any) -> None:
    """Rows another program (or a damaged disk) put in the log: an undecodable one and one of an unknown type.

    A process following the log goes past both (counted as errors, logged with their numbers) and applies
    what comes after; a process starting while they are there (unfolded) starts and serves the same.
    """
    from tests.journal.test_restore import _pipeline

    url = pg_database()
    writer, follower = _pipeline(url, 100), _pipeline(url, 100)
    try:
        call = [make_event("call_start", {"call_id": "CA-ok", "caller": "+15550001111"}, "ok-s"),
                make_event("call_end", {"call_id": "CA-ok", "metrics": {"call_id": "CA-ok", "duration_seconds": 3.0}}, "ok-e")]
        writer.submit(call[:1])
        query(url, "INSERT INTO events (call_id, type, key, received_at, data) VALUES "
                   "('CA-ok', 'transcript', NULL, 1, '\\xdeadbeef'::bytea), ('CA-ok', 'weird', NULL, 1, '\\x'::bytea)")
        writer.submit(call[1:])
        last = query(url, "SELECT max(id) FROM events")[0][0]
        for pipeline in (writer, follower):
            deadline = time.monotonic() + 10
            while pipeline._seq < last and time.monotonic() < deadline:
                time.sleep(0.05)
            assert pipeline._seq == last
            assert pipeline.store.get("CA-ok").status == "completed"
        assert follower.counters["errors"] == 2 and follower.store.aggregates.total.calls == 1
        late = _pipeline(url, 100)  # the two rows are still in the log, unfolded
        try:
            assert late.store.get("CA-ok").status == "completed" and late.store.aggregates.total.calls == 1
        finally:
            late.stop()
    finally:
        writer.stop()
        follower.stop()


def test_a_process_starting_while_another_commits_applies_what_that_commit_holds(pg_database: Any) -> None:
    """A commit in flight has taken its numbers, not yet visible, when a process starts: it must follow them.

    The start took its position from the id sequence once, which counts numbers of uncommitted
    transactions: the events committed under it were never applied (one worker of a -w 2 server a call short).
    """
    import psycopg

    from patter_dash.journal.codec import pack_event
    from tests.journal.test_restore import _pipeline

    url = pg_database()
    _pipeline(url, 100).stop()  # the schema
    call = [make_event("call_start", {"call_id": "CA-flight", "caller": "+15550001111"}, "f-s"),
            make_event("call_end", {"call_id": "CA-flight", "metrics": {"call_id": "CA-flight", "duration_seconds": 3.0}}, "f-e")]
    with psycopg.connect(url) as other:  # another process's commit, between taking its numbers and committing
        for event in call:
            other.execute("INSERT INTO events (call_id, type, key, received_at, data) VALUES (%s, %s, %s, %s, %s)",
                          (event.call_id, event.type, event.key, event.received_at, pack_event(event)))
        starting = _pipeline(url, 100)
        other.commit()
    try:
        deadline = time.monotonic() + 10
        while starting.store.get("CA-flight") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert starting.store.get("CA-flight").status == "completed"
        assert starting.store.aggregates.total.calls == 1
    finally:
        starting.stop()

"""``q`` over every retained call (issue 13): the journal's index answers as memory's substring test does.

The index is a trigram FTS5 table (SQLite, schema 6) or a ``pg_trgm`` GIN
index (PostgreSQL) over the folded text of each stored call; memory tests the
same folded fields one by one. For any text and
any query (FTS syntax, quotes, stars, Unicode that folds to other lengths) the
two agree; the index follows every write: a changed snapshot, a deletion, the
retention purge, a restart, and a file migrated from an older schema.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from patter_dash.core.store import CallFilter
from patter_dash.journal import Batch, open_journal
from patter_dash.journal.codec import freeze, thaw
from patter_dash.journal.sqlite import MIGRATIONS, SQLiteJournal, index_waiting
from patter_dash.model import search
from patter_dash.model.events import make_event
from patter_dash.model.records import Call
from patter_dash.run.app import create_app

from .conftest import ENGINES, query

ROOT = Path(__file__).resolve().parents[2]
NOW = time.time()
NUMBERS = (0, 0, 0, 0, 0, 0, None, 0, None, None)  # what a call adds to analytics: nothing here
HOSTILE = ['"', '""', '"unbalanced', 'a"b', "*", "**", "a*", "*a", "NEAR(a b)", "a AND b", "a OR b", "NOT a",
           "call_id:CA", "^a", "a:b", "(", ")", "{a b}", "'", "%", "_", "\\", "a-b", "+", "-", "\x00", "\u00a0",
           "😀", "İ", "ß", "a" * 256, " ".join("ab" for _ in range(20)), '"a" "b" "c"', "a \"b c\" d*"]


def _call(call_id: str, done: int, *, caller: str = "", callee: str = "", lines: tuple[str, ...] = ()) -> Call:
    call = Call(call_id, NOW - 1000 + done)
    call.caller, call.callee = caller, callee
    call.ended_at, call.status, call.done = call.started_at + 30, "completed", done
    call.transcript = [("user" if i % 2 else "assistant", text, None) for i, text in enumerate(lines)]
    return call


def _found(journal: SQLiteJournal, q: str) -> tuple[list[str], int | None]:
    calls, total = journal.page(CallFilter(query=q), 10**9, [], 1000, 0, count=True)
    return [c.call_id for c in calls], total


def _intact(path: str) -> None:
    """The index holds exactly the stored calls: one entry per ``calls`` row, none left by a replaced or deleted one.

    FTS5's own integrity-check does not see entries whose row is gone from a contentless table;
    its per-document size table (one row per indexed completion number) does. PostgreSQL keeps its GIN
    index with the rows itself: there, each row's text is the text its state gives.
    """
    if path.startswith("postgresql://"):
        for call_id, text, state in query(path, "SELECT call_id, search, state FROM calls"):
            assert text == thaw(bytes(state)).search_text(), call_id
        return
    db = sqlite3.connect(path)
    try:
        with db:  # what waits for the index goes in first (the pipeline does it within a second)
            index_waiting(db, 10**9)
        db.execute("INSERT INTO calls_fts (calls_fts) VALUES ('integrity-check')")
        indexed = [r[0] for r in db.execute("SELECT id FROM calls_fts_docsize ORDER BY id")]
        assert indexed == [r[0] for r in db.execute("SELECT done FROM calls ORDER BY done")]
    finally:
        db.close()


@pytest.fixture(scope="module", params=ENGINES)
def journal(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    if request.param == "sqlite":
        db = str(tmp_path_factory.mktemp("search") / "h.db")
    else:
        db = request.getfixturevalue("pg_server").database()
    j = open_journal(db)
    j.check()
    j.open()
    yield j
    _intact(db)
    j.close()


def _journal(db: str) -> Any:
    j = open_journal(db)
    j.check()
    j.open()
    return j


# ---------------------------------------------------------------- the same answers as memory

# Stored text has no NUL (cleaned at ingest); a query may hold anything.
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=14)


@st.composite
def _queries(draw: Any, fields: list[str]) -> str:
    """A part of a field (often), random text with the language's characters, or both as terms."""
    def piece() -> str:
        source = draw(st.sampled_from(fields))
        if source and draw(st.booleans()):
            i = draw(st.integers(0, len(source) - 1))
            return source[i : i + draw(st.integers(1, 6))]
        return draw(st.text(alphabet=st.sampled_from('aAbßSİiΣς "*:^-+ \t\n\x00()'), min_size=1, max_size=6))
    parts = [piece() for _ in range(draw(st.integers(1, 3)))]
    quoted = ['"' + p + '"' if draw(st.booleans()) else p for p in parts]
    return " ".join(quoted) + ("*" if draw(st.booleans()) else "")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), fields=st.lists(st.lists(texts, min_size=4, max_size=7), min_size=1, max_size=4))
@example(data=None, fields=[["CA-12", "+15551234", "", "Straße", "STRASSE"]])
def test_the_index_answers_as_memory_does(journal: SQLiteJournal, data: Any, fields: list[list[str]]) -> None:
    """For random calls and queries, the calls the index finds are those memory's test finds, newest first
    (some calls in the index, the others still waiting for it: SQLite fills it in batches)."""
    calls = [_call(f[0] or f"id{n}", n + 1, caller=f[1], callee=f[2], lines=tuple(f[3:])) for n, f in enumerate(fields)]
    calls = list({c.call_id: c for c in calls}.values())
    journal.commit(Batch(snapshots=[(c, c.done, NUMBERS) for c in calls]))
    journal.index_pending(data.draw(st.integers(0, len(calls))) if data is not None else 1)
    try:
        everything = [t for c in calls for t in (c.call_id, c.caller, c.callee, *(line[1] for line in c.transcript))]
        queries = [data.draw(_queries(everything)) for _ in range(4)] if data is not None else ["strasse", '"ca-1"*', "+1555 ss"]
        for q in queries:
            try:
                found = search.terms(q)
            except search.BadQuery:
                continue
            expected = [c.call_id for c in sorted(calls, key=lambda c: -c.done) if c.searchable(found)]
            assert _found(journal, q) == (expected, len(expected)), q
    finally:
        journal.forget([c.call_id for c in calls])
    assert _found(journal, "a") == ([], 0) or journal.page(CallFilter(), 10**9, [], 1, 0)[0] == []


def test_the_language_words_phrases_prefixes_numbers_and_ids(new_db: Any) -> None:
    j = _journal(db := new_db())
    try:
        j.commit(Batch(snapshots=[(c, c.done, NUMBERS) for c in [
            _call("CA-1201", 1, caller="+15551230001", lines=("I want a refund for my card", "Sure.")),
            _call("CA-1302", 2, caller="+44 20 7946 0958", lines=("The card was declined", "REFUNDS take 5 days")),
            _call("XY-9", 3, caller="+15559990000", callee="+15551239999", lines=("Straße 5, Köln", "call_id: NEAR ^x")),
        ]]))
        for indexed in (0, 1, 3):  # the same answers while calls wait for the index (SQLite), and once in it
            j.index_pending(indexed)
            _the_language(j)
    finally:
        j.close()
    _intact(db)


def _the_language(j: Any) -> None:
    assert _found(j, "refund") == (["CA-1302", "CA-1201"], 2)  # inside a word, any case
    assert _found(j, "refund card") == (["CA-1302", "CA-1201"], 2)  # every term, in different lines too
    assert _found(j, "card refund") == _found(j, "refund card")  # any order
    assert _found(j, '"refund for"') == (["CA-1201"], 1)  # a phrase, spaces included
    assert _found(j, '"card refund"') == ([], 0)  # a phrase in order, within one line
    assert _found(j, '"declined refunds"') == ([], 0)  # never across two lines
    assert _found(j, "refu* decl*") == (["CA-1302"], 1)  # a star ends a prefix
    assert _found(j, "+1555123") == (["XY-9", "CA-1201"], 2)  # a number's prefix, caller or callee
    assert _found(j, "+44 20") == (["CA-1302"], 1)  # two terms, both in the number
    assert _found(j, "ca-12") == (["CA-1201"], 1)  # an id's prefix
    assert _found(j, "STRASSE köln") == (["XY-9"], 1)  # case folding: ß is ss
    assert _found(j, "call_id: near ^x") == (["XY-9"], 1)  # FTS syntax is text
    assert _found(j, "5") == (["XY-9", "CA-1302", "CA-1201"], 3)  # one character: scanned, same rule
    assert _found(j, "ok") == ([], 0)
    assert _found(j, "%") == _found(j, "r_f") == _found(j, "\\") == ([], 0)  # LIKE's wildcards are characters


# ---------------------------------------------------------------- the index follows every write


def test_a_snapshot_written_again_replaces_its_entry(new_db: Any) -> None:
    """A late line or an annotation writes the call again (INSERT OR REPLACE): the old text leaves the index."""
    j = _journal(db := new_db())
    try:
        first = _call("CA-1", 1, lines=("first words",))
        j.commit(Batch(snapshots=[(first, 1, NUMBERS), (_call("CA-2", 2, lines=("other",)), 2, NUMBERS)]))
        j.index_pending(10)  # in the index, then written again: out of it, waiting, in it again
        again = _call("CA-1", 1, lines=("first words", "a late line"))
        for n in range(3):
            j.commit(Batch(snapshots=[(again, 1, NUMBERS)]))
            if n == 1:
                j.index_pending(10)
        assert _found(j, "first words") == (["CA-1"], 1)  # once, not once per write
        _intact(db)
        assert _found(j, "late line") == (["CA-1"], 1)
        j.commit(Batch(snapshots=[(_call("CA-1", 1, lines=("all new",)), 1, NUMBERS)]))
        assert _found(j, "first") == ([], 0) and _found(j, "all new") == (["CA-1"], 1)
        if db.startswith("postgresql://"):
            assert query(db, "SELECT count(*) FROM calls WHERE search LIKE '%other%'")[0][0] == 1
        else:
            assert query(db, "SELECT count(*) FROM calls_fts WHERE calls_fts MATCH '\"other\"'")[0][0] == 1
    finally:
        j.close()
    _intact(db)


def _app(db: str, max_calls: int = 3) -> Flask:
    return create_app({"TESTING": True}, db=db, max_calls=max_calls, call_timeout=0, retention_days=0)


def _feed(app: Flask, calls: list[tuple[str, str, str, float]]) -> None:
    pipeline = app.extensions["patter_dash"].pipeline
    events = []
    for call_id, caller, text, start in calls:
        events += [
            make_event("call_start", {"call_id": call_id, "caller": caller, "callee": "+15550000000"}, f"{call_id}-s", now=start),
            make_event("transcript", {"call_id": call_id, "role": "user", "text": text}, None, now=start + 1),
            make_event("call_end", {"call_id": call_id, "ended_at": start + 60, "metrics": {"duration_seconds": 60}},
                       f"{call_id}-e", now=start + 60),
        ]
    pipeline.submit(events)
    pipeline.submit([make_event("call_status", {"call_id": "settle", "status": "in-progress"}, "settle", now=NOW)])


def _ids(app: Flask, q: str) -> list[str]:
    response = app.test_client().get(f"/api/v1/calls?q={quote(q, safe='')}&limit=100")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["pagination"]["total"] == len(body["data"])
    return [row["call_id"] for row in body["data"]]


def _written(app: Flask) -> None:
    """Every finished call on disk (the writer's next tick)."""
    pipeline = app.extensions["patter_dash"].pipeline
    deadline = time.monotonic() + 10
    while pipeline.unwritten() or pipeline.store.dirty():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_deletion_retention_and_restart(new_db: Any) -> None:
    """Calls deleted (one, or by the purge) leave the search; a restarted server searches what it kept."""
    path = new_db()
    app = _app(path)
    try:
        old = NOW - 30 * 86_400
        _feed(app, [(f"CA-{n:02d}", f"+1555{n:07d}", f"order {n} refund", (old if n < 4 else NOW - 3600) + n) for n in range(10)])
        _written(app)
        assert _ids(app, "refund") == [f"CA-{n:02d}" for n in reversed(range(10))]  # 3 in memory, 7 from disk
        assert app.test_client().delete("/api/v1/calls/CA-05").status_code == 200
        assert app.test_client().delete("/api/v1/calls/CA-01").status_code == 200
        assert "CA-05" not in _ids(app, "refund") and _ids(app, '"order 5 "') == []
        assert _ids(app, "+15550000001") == []
        pipeline = app.extensions["patter_dash"].pipeline
        assert pipeline.delete_before(NOW - 7 * 86_400) == 3  # the retention purge's cut: CA-00, 02, 03
        assert _ids(app, "refund") == [f"CA-{n:02d}" for n in (9, 8, 7, 6, 4)]
    finally:
        app.extensions["patter_dash"].stop()
    _intact(path)
    again = _app(path, max_calls=2)
    try:
        assert _ids(again, "refund") == [f"CA-{n:02d}" for n in (9, 8, 7, 6, 4)]
        assert _ids(again, '"order 6 refund"') == ["CA-06"]
        assert _ids(again, "+1555000000") == [f"CA-{n:02d}" for n in (9, 8, 7, 6, 4)]
    finally:
        again.extensions["patter_dash"].stop()


def test_a_running_server_fills_the_index_soon_after_calls_are_written(tmp_path: Path) -> None:
    """Written calls wait for the index (``fts_pending``) only a moment: the writer adds them in a batch once
    ingest goes quiet, and ``q`` finds them all the while, from their text and then from the index."""
    path = str(tmp_path / "history.db")
    app = _app(path, max_calls=3)
    try:
        _feed(app, [(f"CA-{n:02d}", f"+1555{n:07d}", f"order {n} refund", NOW - 3600 + n) for n in range(20)])
        everyone = [f"CA-{n:02d}" for n in reversed(range(20))]
        assert _ids(app, "refund") == everyone
        _written(app)
        deadline = time.monotonic() + 5
        while query(path, "SELECT count(*) FROM fts_pending")[0][0]:
            assert time.monotonic() < deadline, "the index was not brought up to date"
            time.sleep(0.05)
        assert [r[0] for r in query(path, "SELECT id FROM calls_fts_docsize ORDER BY id")] == \
            [r[0] for r in query(path, "SELECT done FROM calls ORDER BY done")]
        assert _ids(app, "refund") == everyone and _ids(app, '"order 7 "') == ["CA-07"]
    finally:
        app.extensions["patter_dash"].stop()


def test_a_schema_4_file_is_indexed_on_upgrade(tmp_path: Path) -> None:
    """A file written by the release before (schema 4, search as lowercased bytes) is searched by the new rules."""
    path = tmp_path / "v4.db"
    db = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:4]:
        for statement in filter(str.strip, script.split(";")):
            db.execute(statement)
    db.execute("PRAGMA application_id=0x50445348")
    db.execute("PRAGMA user_version=4")
    for done, (call_id, text) in enumerate([("CA-1", "Die Straße ist gesperrt"), ("CA-2", "all   good"), ("CA-3", "refund")], 1):
        call = _call(call_id, done, caller=f"+1555000{done}", lines=(text,))
        old_search = b"\xff".join(f.lower().encode() for f in (call_id, call.caller, "", text))  # schema 2's column
        db.execute(
            "INSERT INTO calls VALUES (?, ?, ?, 'completed', '', ?, '', '', 30000, 0, 0, 0, 0, 0, NULL, 0, NULL, NULL, ?, ?, '', 0)",
            (call_id, done, call.started_at, call.caller, freeze(call), old_search),
        )
    db.close()
    j = SQLiteJournal(str(path))
    j.check()
    j.open()
    try:
        assert _found(j, "STRASSE") == (["CA-1"], 1)
        assert _found(j, '"all   good"') == (["CA-2"], 1) and _found(j, '"all good"') == ([], 0)  # a phrase as it is
        assert _found(j, "+1555000") == (["CA-3", "CA-2", "CA-1"], 3)
        j.forget(["CA-3"])
        assert _found(j, "refund") == ([], 0)
    finally:
        j.close()
    _intact(str(path))


def test_a_schema_7_file_keyed_by_row_is_indexed_again_by_completion(tmp_path: Path) -> None:
    """The release before keyed the index by the row (rewrites moved a call's entry); the upgrade keys it by ``done``."""
    path = str(tmp_path / "v7.db")
    j = SQLiteJournal(path)
    j.check()
    j.open()
    calls = [_call(f"CA-{n}", n, lines=(f"line {n}", "refund please" if n % 2 else "fine")) for n in range(1, 7)]
    j.commit(Batch(snapshots=[(c, c.done, NUMBERS) for c in calls]))
    j.commit(Batch(snapshots=[(calls[0], 1, NUMBERS)]))  # written again: a new row, the newest rowid
    j.close()
    db = sqlite3.connect(path, isolation_level=None)  # as schema 7 had it: external content, keyed by rowid
    db.executescript("DROP TRIGGER calls_fts_insert; DROP TRIGGER calls_fts_delete; DROP TABLE calls_fts; DROP TABLE fts_pending;"
                     f"{MIGRATIONS[5]}; INSERT INTO calls_fts (rowid, search) SELECT rowid, search FROM calls;"
                     "PRAGMA user_version=7;")
    assert db.execute("SELECT count(*) FROM calls_fts WHERE calls_fts MATCH '\"refund\"'").fetchone()[0] == 3
    db.close()
    j = SQLiteJournal(path)
    j.check()
    j.open()
    try:
        assert _found(j, "refund") == (["CA-5", "CA-3", "CA-1"], 3)  # newest completion first, CA-1's rewrite or not
        assert [c.call_id for c in j.page(CallFilter(query="refund"), 10**9, [], 1, 2)[0]] == ["CA-1"]
    finally:
        j.close()
    _intact(path)


_words = st.sampled_from(["refund", "card", "account", "my account", "ok", "fine"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(st.lists(_words, min_size=1, max_size=3), min_size=1, max_size=12),
    statuses=st.lists(st.sampled_from(["completed", "failed"]), min_size=12, max_size=12),
    q=st.sampled_from(["refund", "account", '"my account"', "card ok", "fine"]),
    status=st.sampled_from([None, "failed"]),
    below=st.integers(1, 14),
    skip=st.sets(st.integers(1, 13), max_size=4),
    offset=st.integers(0, 4),
    counted=st.sampled_from([search.COUNT_LIMIT, 0, 1, 3]),
    indexed=st.integers(0, 12),
)
def test_a_page_and_its_count_below_the_window_by_the_index(
    journal: Any, monkeypatch: pytest.MonkeyPatch, lines: list[list[str]], statuses: list[str], q: str,
    status: str | None, below: int, skip: set[int], offset: int, counted: int, indexed: int,
) -> None:
    """The disk's part of a ``q`` page (``done < below``, not the calls memory holds, ``skip``), alone or with
    another filter, from any offset: the index's newest-first walk and count give what a scan of the calls gives,
    the count stopping one past the limit (a lower bound, said so by the page)."""
    monkeypatch.setattr(search, "COUNT_LIMIT", counted)
    calls = [_call(f"CB-{n}", n, lines=tuple(words)) for n, words in enumerate(lines, 1)]
    for call, st_ in zip(calls, statuses):
        call.status = st_
    journal.commit(Batch(snapshots=[(c, c.done, NUMBERS) for c in calls]))
    journal.index_pending(indexed)  # the oldest in the index, the rest waiting for it (SQLite)
    try:
        flt = CallFilter(query=q, status=status)
        expected = [c.call_id for c in sorted(calls, key=lambda c: -c.done)
                    if c.done < below and c.done not in skip and flt.matches(c)]
        page, total = journal.page(flt, below, sorted(skip), 3, offset, count=True)
        assert ([c.call_id for c in page], total) == (expected[offset : offset + 3], min(len(expected), counted + 1))
    finally:
        journal.forget([c.call_id for c in calls])


def test_the_first_schema_fixture_migrates_all_the_way_and_is_searched(tmp_path: Path) -> None:
    """tests/fixtures/history-schema-1.db (a file as the first release wrote it) searched after five migrations."""
    path = tmp_path / "v1.db"
    shutil.copyfile(ROOT / "tests" / "fixtures" / "history-schema-1.db", path)
    j = SQLiteJournal(str(path))
    j.check()
    j.open()
    try:
        assert _found(j, '"call 4 line 3"') == (["V1-CALL-4"], 1)
        assert _found(j, "v1-call") == (["V1-CALL-4", "V1-CALL-3", "V1-CALL-2", "V1-CALL-1"], 4)
        assert _found(j, "+15550000002") == (["V1-CALL-2"], 1)
    finally:
        j.close()
    _intact(str(path))


# ---------------------------------------------------------------- hostile queries and the match


def test_hostile_queries_are_text_or_a_clear_400(new_db: Any) -> None:
    """FTS syntax, LIKE's wildcards, quotes, stars, NUL: a 200 with memory's answer, or a 400 naming q; never a 500."""
    path = new_db()
    app = _app(path, max_calls=1)
    ref = create_app({"TESTING": True}, db=":memory:", max_calls=100, call_timeout=0, retention_days=0)
    try:
        lines = ['He said "NEAR(a b)" AND left', "call_id: ^x a-b", "50% off_sale \\o/", "İstanbul Straße ok", "(a)"]
        calls = [(f"CA-{n}", f"+1555{n:07d}", text, NOW - 3600 + n) for n, text in enumerate(lines)]
        for a in (app, ref):
            _feed(a, calls)
        _written(app)
        for q in HOSTILE:
            url = f"/api/v1/calls?q={quote(q, safe='')}"
            got, want = app.test_client().get(url), ref.test_client().get(url)
            assert got.status_code in (200, 400), (q, got.status_code)
            assert got.status_code == want.status_code and got.get_json() == want.get_json(), q
            if got.status_code == 400:
                assert "'q'" in got.get_json()["error"], q
        for name in ("status", "direction", "provider_mode", "tag", "provider", "model"):  # the other text filters
            for value in ("\x00", "a\x00b", "%", "_", "\\"):
                url = f"/api/v1/calls?{name}={quote(value, safe='')}"
                got, want = app.test_client().get(url), ref.test_client().get(url)
                assert got.status_code == want.status_code and got.get_json() == want.get_json(), url
        assert app.test_client().get("/api/v1/calls?q=%22").get_json()["error"].startswith("invalid parameter 'q'")
        assert [r["call_id"] for r in app.test_client().get('/api/v1/calls?q=%22near(a%20b)%22').get_json()["data"]] == ["CA-0"]
    finally:
        app.extensions["patter_dash"].stop()
        ref.extensions["patter_dash"].stop()


def test_past_the_count_limit_the_total_is_a_lower_bound_and_every_page_still_comes(
    new_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A q matching more stored calls than are counted: ``total`` is memory's matches plus the limit, said to be a
    lower bound (``total_exact`` false); paging on still lists every match, newest first. Under it: exact, no key."""
    monkeypatch.setattr(search, "COUNT_LIMIT", 5)
    app = _app(new_db(), max_calls=3)
    try:
        _feed(app, [(f"CA-{n:02d}", f"+1555{n:07d}", "a refund please" if n % 4 else "all fine", NOW - 1000 + n)
                    for n in range(1, 17)])
        _written(app)
        client = app.test_client()
        first = client.get("/api/v1/calls?q=refund&limit=5").get_json()
        matching = [f"CA-{n:02d}" for n in range(16, 0, -1) if n % 4]  # 12: 2 held in memory, 10 on disk
        assert first["pagination"] == {"limit": 5, "offset": 0, "count": 5, "total": 2 + 5, "total_exact": False}
        listed = [r["call_id"] for offset in range(0, 15, 5)
                  for r in client.get(f"/api/v1/calls?q=refund&limit=5&offset={offset}").get_json()["data"]]
        assert listed == matching
        fine = client.get("/api/v1/calls?q=fine").get_json()["pagination"]
        assert fine == {"limit": 50, "offset": 0, "count": 4, "total": 4}  # exact: no total_exact
        started = client.get("/api/v1/calls?q=refund&sort=started_at&limit=1").get_json()["pagination"]
        assert started["total"] == 7 and started["total_exact"] is False
    finally:
        app.extensions["patter_dash"].stop()


def test_each_row_says_where_q_was_found(new_db: Any) -> None:
    """``match``: the first line (reading order) holding a term, cut around it, with the spans to mark; plain text."""
    app = _app(new_db(), max_calls=1)
    try:
        long = "x" * 400 + " the <b>REFUND</b> " + "y" * 400
        _feed(app, [("CA-1", "+15550000001", long, NOW - 100), ("CA-2", "+15550000002", "nothing here", NOW - 50)])
        _written(app)
        rows = app.test_client().get("/api/v1/calls?q=refund").get_json()["data"]
        assert [r["call_id"] for r in rows] == ["CA-1"]  # from disk (memory holds one call: CA-2)
        match = rows[0]["match"]
        assert match["index"] == 0 and match["role"] == "user"
        assert len(match["text"]) <= search.MATCH_CHARS + 2 and match["text"].startswith("…") and match["text"].endswith("…")
        start, end = match["spans"][0]
        assert match["text"][start:end] == "REFUND" and "<b>REFUND</b>" in match["text"]  # text, never made HTML
        by_number = app.test_client().get("/api/v1/calls?q=%2B15550000002").get_json()["data"]
        assert [r["call_id"] for r in by_number] == ["CA-2"] and by_number[0]["match"] is None  # not in a line
        assert "match" not in app.test_client().get("/api/v1/calls").get_json()["data"][0]
    finally:
        app.extensions["patter_dash"].stop()

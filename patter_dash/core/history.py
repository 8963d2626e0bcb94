"""History: reads of finished calls across memory and the journal (list, detail, export, edge hours).

Memory holds the newest ``PATTER_DASH_MAX_CALLS`` finished calls; with a
journal the older ones are on disk and stay reachable. History is ordered by
completion (``Call.done``): memory's window is its newest part, the disk its
older part (:class:`~patter_dash.core.store.Held`), so a read answers from
memory when memory holds every call it needs and otherwise asks the journal
for the part below the window, on a native thread (:func:`offload`), never
on the gevent loop. Where memory holds a call newer than its copy on disk
(changed, or not yet written), memory's copy is the one read.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from ..model import search
from ..model.records import Call
from .aggregates import Numbers, contribution
from .cooperative import offload
from .store import CallFilter, by_start

if TYPE_CHECKING:
    from .pipeline import Pipeline

#: Calls an export reads from disk at once, and the state bytes that end a page sooner
#: (a page of long transcripts): memory stays flat however long the export.
EXPORT_PAGE = 200
EXPORT_BYTES = 4 * 1024 * 1024


class Page(NamedTuple):
    """A page of history, how many calls match in all, and whether that is the exact count or a lower bound."""

    calls: list[Call]
    total: int
    exact: bool = True


class History:
    """The history reads of one :class:`~patter_dash.core.pipeline.Pipeline` (its store and journal)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def page(self, flt: CallFilter, limit: int, offset: int, sort: str = "ended_at") -> Page:
        """A page of the finished calls matching ``flt`` (memory and disk), newest first, and the match count.

        ``sort``: ``ended_at`` is completion order (as the calls finished),
        ``started_at`` the start (ties: completion). With ``q``, the disk's
        matches are counted up to ``search.COUNT_LIMIT``: past it the total is
        a lower bound (``exact`` False).
        """
        if sort == "started_at":
            return self._page_by_start(flt, limit, offset)
        pipeline = self._pipeline
        store, journal = pipeline.store, pipeline.journal
        if journal is None:
            return Page(*store.page(flt, limit, offset))
        if flt.empty and (newest := store.newest(limit, offset)) is not None:
            return Page(*newest)
        held = store.held(pipeline.unwritten())
        if held.on_disk_only <= 0:  # memory holds every stored call
            calls = held.window + held.older
            matched = calls if flt.empty else [c for c in calls if flt.matches(c)]
            return Page(matched[offset : offset + limit], len(matched))
        if flt.empty and offset + limit <= len(held.window):
            return Page(held.window[offset : offset + limit], held.stored)
        memory = held.window if flt.empty else [c for c in held.window if flt.matches(c)]
        older = held.older if flt.empty else [c for c in held.older if flt.matches(c)]
        page = memory[offset : offset + limit]
        # The rest of the page lies below the window: disk rows merged with ``older``.
        below = max(0, offset - len(memory))
        wanted = limit - len(page)
        first = max(0, below - len(older))
        fetch = below + wanted - first if wanted > 0 else 0
        skip = [c.done for c in held.older]
        disk, counted = offload(
            lambda: journal.page(flt, held.floor, skip, fetch, first, count=not flt.empty)
        ) if fetch or not flt.empty else ([], None)
        if wanted > 0:
            page += _merge(disk, first, older, below, wanted, complete=len(disk) < fetch)
        on_disk = held.on_disk_only if counted is None else min(counted, search.COUNT_LIMIT)
        return Page(page, len(memory) + on_disk + len(older), counted is None or counted <= search.COUNT_LIMIT)

    def _page_by_start(self, flt: CallFilter, limit: int, offset: int) -> Page:
        """:meth:`page` by start: the first ``offset + limit`` of memory and of disk (keys only), merged."""
        pipeline = self._pipeline
        store, journal = pipeline.store, pipeline.journal
        if journal is None:
            return Page(*store.page_by_start(flt, limit, offset))
        _, total, exact = self.page(flt, 0, 0)  # the count, by the same rules as the default order
        held = store.held(pipeline.unwritten())
        memory = held.window + held.older
        matched = memory if flt.empty else [c for c in memory if flt.matches(c)]
        wanted = offset + limit
        top = heapq.nlargest(wanted, matched, key=by_start)
        keys: list[tuple[float, int, Call | None]] = [(c.started_at, c.done, c) for c in top]
        if held.on_disk_only > 0:
            skip = [c.done for c in held.older]
            disk = offload(lambda: journal.by_start(flt, held.floor, skip, wanted))
            keys += [(started_at, done, None) for started_at, done in disk]
        keys.sort(key=lambda k: (k[0], k[1]), reverse=True)
        chosen = keys[offset:wanted]
        marks = [done for _, done, call in chosen if call is None]
        loaded = offload(journal.load_done, marks) if marks else {}
        # A call deleted between the two reads is left out, as a page read a moment later would.
        page = [call if call is not None else loaded.get(done) for _, done, call in chosen]
        return Page([c for c in page if c is not None], total, exact)

    def get(self, call_id: str) -> Call | None:
        """One call, live or finished, from memory or else from disk."""
        pipeline = self._pipeline
        journal = pipeline.journal
        call = self._in_memory(call_id)
        if call is not None or journal is None:
            return call
        call = offload(journal.load, call_id)
        # It may have left memory while the disk was read, before its transaction committed.
        return call if call is not None else self._in_memory(call_id)

    def _in_memory(self, call_id: str) -> Call | None:
        pipeline = self._pipeline
        store = pipeline.store
        call = store.get(call_id) or store.unsaved(call_id)
        if call is None:
            call = next((c for c in pipeline.unwritten() if c.call_id == call_id), None)
        return call

    def batches(self, flt: CallFilter, sort: str = "ended_at") -> Iterator[list[Call]]:
        """Every finished call matching ``flt``, newest first, in batches (an export).

        Memory's window is taken as references when the first batch is asked
        for; the disk part follows a page at a time below it (by completion
        number, so calls finishing meanwhile neither shift nor repeat rows), and
        each page is let go once the reader has it.
        """
        if sort == "started_at":
            yield from self._batches_by_start(flt)
            return
        pipeline = self._pipeline
        store, journal = pipeline.store, pipeline.journal
        if journal is None:
            yield store.snapshot(flt)
            return
        held = store.held(pipeline.unwritten())
        yield held.window if flt.empty else [c for c in held.window if flt.matches(c)]
        older = held.older if flt.empty else [c for c in held.older if flt.matches(c)]
        if held.on_disk_only <= 0:
            yield older
            return
        skip = [c.done for c in held.older]
        below = held.floor
        while True:
            disk, _ = offload(lambda: journal.page(flt, below, skip, EXPORT_PAGE, max_bytes=EXPORT_BYTES))
            if not disk:
                yield older
                return
            below = disk[-1].done
            ahead = [c for c in older if c.done > below]
            older = older[len(ahead):]
            yield _merge(disk, 0, ahead, 0, len(disk) + len(ahead), complete=True)

    def _batches_by_start(self, flt: CallFilter) -> Iterator[list[Call]]:
        """:meth:`batches` by start: memory's calls sorted once, merged with disk pages read by (start, done)."""
        pipeline = self._pipeline
        store, journal = pipeline.store, pipeline.journal
        if journal is None:
            calls = store.snapshot(flt)
            calls.sort(key=by_start, reverse=True)
            yield calls
            return
        held = store.held(pipeline.unwritten())
        memory = held.window + held.older
        memory = memory if flt.empty else [c for c in memory if flt.matches(c)]
        memory.sort(key=by_start, reverse=True)
        if held.on_disk_only <= 0:
            yield memory
            return
        skip = [c.done for c in held.older]
        after: tuple[float, int] | None = None
        i = 0
        while True:
            keys = offload(lambda: journal.by_start(flt, held.floor, skip, EXPORT_PAGE, after))
            if not keys:
                yield memory[i:]
                return
            after = keys[-1]
            ahead: list[Call] = []
            while i < len(memory) and by_start(memory[i]) > after:
                ahead.append(memory[i])
                i += 1
            marks = [done for _, done in keys]
            loaded = offload(journal.load_done, marks)
            disk = [loaded[done] for done in marks if done in loaded]
            yield sorted(ahead + disk, key=by_start, reverse=True)

    def cold_rows(self, lo: float, hi: float) -> list[tuple[float, str, Numbers]]:
        """The aggregates' edge-hour hook: the counted calls started in [lo, hi) that memory does not hold.

        Called with the store's lock held, so memory stands still; only the
        writer's commits move on, and they only bring the disk up to memory.
        The calls that left memory before their transaction committed are
        taken first (from memory) and their disk copies skipped.
        """
        pipeline = self._pipeline
        store, journal = pipeline.store, pipeline.journal
        assert journal is not None
        held = store.completed
        evicted = {c.call_id: c for c in (*store.dirty(), *pipeline.unwritten()) if c.call_id not in held}
        rows = offload(journal.numbers_between, lo, hi)
        found: list[tuple[float, str, Any]] = [
            (started_at, status, numbers) for call_id, started_at, status, numbers in rows
            if call_id not in held and call_id not in evicted
        ]
        found += [(c.started_at, c.status, contribution(c)) for c in evicted.values() if lo <= c.started_at < hi]
        return found


def _merge(disk: list[Call], first: int, older: list[Call], offset: int, wanted: int, *, complete: bool) -> list[Call]:
    """``wanted`` calls from ``offset`` of the history below memory's window (disk rows and ``older``, newest first).

    ``disk`` are the disk's rows from its ``first`` on; ``older`` every call
    memory holds below the window (they are not among the disk's rows). Rows
    before ``disk[0]`` are ``first`` disk rows and the ``older`` calls newer
    than it, so ``disk[0]`` sits at ``first + that many``; with ``first`` at
    most ``offset - len(older)`` that is at or before ``offset``. Past the
    last disk row read, ``older`` calls are known to come next only when the
    disk had no more (``complete``).
    """
    if not disk:
        return older[offset : offset + wanted] if first == 0 else []
    top = disk[0].done
    above = [c for c in older if c.done > top]
    rest = [c for c in older if c.done < top]
    merged = list(above) if first == 0 else []
    start = 0 if first == 0 else first + len(above)
    i = j = 0
    while i < len(disk) or j < len(rest):
        if j < len(rest) and (i == len(disk) or rest[j].done > disk[i].done):
            if i == len(disk) and not complete:
                break
            merged.append(rest[j])
            j += 1
        else:
            merged.append(disk[i])
            i += 1
    return merged[offset - start : offset - start + wanted]

"""Store: the state the event stream builds (active calls + recent history).

The event thread is the only writer (:meth:`CallStore.apply`); request
handlers read concurrently under the same short lock. Completed calls live in
an insertion-ordered ring (oldest evicted first) indexed by id; aggregates are
updated on every change and eviction so reads never scan history. The
ordering rules for late, early and repeated events live here, in one place.
"""

from __future__ import annotations

import heapq
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from operator import attrgetter
from typing import Any, NamedTuple

from ..model import quality, search
from ..model.events import COST_KEYS, LATENCY_KEYS, PERCENTILE_KEYS, Event
from ..model.records import (
    AGENT_TEXT,
    LINE_EXTRA,
    LINE_ROLE,
    LINE_TEXT,
    LINE_TIMESTAMP,
    TERMINAL_STATUSES,
    TIMESTAMP,
    TURN_INDEX,
    USER_TEXT,
    Call,
    Line,
    Turn,
    intern,
    line_extra,
    line_turn,
    make_turn,
    pack,
)
from ..model.patterlog import masked_number
from ..model.views import (
    CALL_UPDATED,
    MAX_LINES,  # transcript lines kept per call: a runaway call cannot exhaust memory
)
from .aggregates import DAY, HOUR, NANO, Aggregates, contribution

#: Told (under the store's lock) when a call completes (``completed``) and when its call_end is applied
#: (``ended``); both at once when the call_end is what completed it.
Watcher = Callable[[Call, bool, bool], None]

#: Top-level event fields the record models; anything else lands in ``Call.extra``.
_KNOWN_FIELDS = frozenset({
    "call_id", "caller", "callee", "direction", "status", "ended_at", "started_at", "timestamp",
    "transcript", "conversation_history", "metrics", "role", "text", "turn", "cost_so_far", "llm_ttft_ms",
})
_METRICS_MODELLED = frozenset({"call_id", "duration_seconds", "turns", "cost", *PERCENTILE_KEYS})
#: What a line models; every other field sent with it (turnIndex, tool_name, ...) is kept with the line.
_LINE_FIELDS = frozenset({"role", "text", "timestamp"})
#: A transcript event also names its call and lends its ``history`` to the stamp (see events).
_LINE_EVENT_FIELDS = _LINE_FIELDS | {"call_id", "history"}
#: Transcript characters kept per call (``PATTER_DASH_MAX_CALL_TEXT``): 10,000
#: lines of 20,000 characters would otherwise be 200 M characters in one call.
MAX_CALL_TEXT = 2_000_000
#: Live calls held at once (``PATTER_DASH_MAX_ACTIVE_CALLS``); past it the longest idle is closed.
MAX_ACTIVE_CALLS = 10_000
#: Status given to a live call closed to make room for a new one.
IDLE_STATUS = "timeout"
#: Tolerance before an event's own clock is called skewed against ours.
CLOCK_SKEW_SECONDS = 300.0
#: No call in a runtime's records is older than this (2000-01-01 UTC); before it, the clock is wrong.
EARLIEST_TIME = 946_684_800.0
_APPENDING = frozenset({"transcript", "turn"})


class Applied(NamedTuple):
    """What one event did to the store, for the writer to publish."""

    call: Call
    changed: bool
    #: The event made the call (its first change): readers have not seen it yet.
    new: bool
    #: The transcript lines this event appended (a line, or a turn's mirrored words), in order.
    lines: Any


#: How far back a line is compared when telling a re-delivery from a repeat.
RECENT_LINES = 50
#: Seconds after a turn's end within which the agent's line of that turn may still be stamped (Patter stamps the
#: turn when it completes; the agent's transcript callback can follow by a few milliseconds).
TURN_LINE_GRACE = 1.0


def _spoke(line: Line, role: str, text: str, index: int | None) -> bool:
    """Whether ``line`` is the turn's own line for ``role`` (see :meth:`CallStore._mirror_turn`)."""
    if line[LINE_ROLE] != role:
        return False
    own = line_turn(line)
    if own is not None and index is not None:
        return own == index
    return line[LINE_TEXT] == text


def _carried(live: list[Line], final: list[Mapping[str, Any]]) -> list[dict[str, Any] | None]:
    """For each final line, the extra of the live line it repeats, or None.

    The same line stamped the same (a live line takes its stamp from Patter's
    history) is that line; otherwise the first live line not yet matched with
    the same role and text, in order (a mirrored turn line was stamped with the
    turn's time). Linear: one pass over each list.
    """
    result: list[dict[str, Any] | None] = [None] * len(final)
    if not any(line[LINE_EXTRA] for line in live):
        return result
    exact: dict[tuple[Any, ...], deque[int]] = {}
    loose: dict[tuple[Any, ...], deque[int]] = {}
    for i, line in enumerate(live):
        if line[LINE_EXTRA]:
            exact.setdefault((line[LINE_ROLE], line[LINE_TEXT], line[LINE_TIMESTAMP]), deque()).append(i)
            loose.setdefault((line[LINE_ROLE], line[LINE_TEXT]), deque()).append(i)
    used: set[int] = set()
    for queue in (exact, loose):
        for j, line in enumerate(final):
            if result[j] is not None:
                continue
            role, text = line.get("role") or "", line.get("text") or ""
            key = (role, text, line.get("timestamp")) if queue is exact else (role, text)
            candidates = queue.get(key)
            while candidates and candidates[0] in used:
                candidates.popleft()
            if candidates:
                i = candidates.popleft()
                used.add(i)
                result[j] = live[i][LINE_EXTRA]
    return result


def _turn_order(turn: Turn) -> tuple[bool, Any]:
    """Turns by index; those without one last, in arrival order (the sort is stable)."""
    index = turn[TURN_INDEX]
    return (index is None, index if index is not None else 0)


def sane_time(call: Call, value: float | None, received: float) -> float:
    """A runtime's timestamp, if believable for an event that arrived at ``received``.

    Outside [2000-01-01, arrival + 5 min] the arrival time stands in and the
    call is flagged ``clock_skew``: no duration or average uses such a clock.
    """
    if value is None:
        return received
    if EARLIEST_TIME <= value <= received + CLOCK_SKEW_SECONDS:
        return value
    call.flag("clock_skew")
    return received


#: A range filter's (lowest, highest), both included; None: no bound.
Range = tuple[float | None, float | None]
NO_RANGE: Range = (None, None)


@dataclass(frozen=True, slots=True)
class CallFilter:
    """The history filters shared by the list, export and analytics routes."""

    status: str | None = None
    direction: str | None = None
    start: float | None = None  # started_at >= start
    end: float | None = None  # started_at < end
    query: str | None = None
    provider_mode: str | None = None
    tag: str | None = None  # one of the call's tags, exactly
    has_notes: bool | None = None  # whether the call's notes are non-empty
    duration: Range = NO_RANGE  # seconds
    cost: Range = NO_RANGE  # total cost, USD
    latency: Range = NO_RANGE  # response latency, ms (Call.latency_ms)
    provider: str | None = None  # one of the call's STT, LLM, TTS or telephony providers, exactly
    model: str | None = None  # one of the call's STT, LLM or TTS models, exactly
    # Conversation quality (model/quality.py's figures, as the summary's ``quality`` block gives them).
    interruptions: Range = NO_RANGE  # count
    dead_air: Range = NO_RANGE  # ms
    talk_over: Range = NO_RANGE  # ms (a call measured from events has none: never in a talk_over range)
    tool_failures: Range = NO_RANGE  # count
    # (bounds, q's terms) worked out once: matches() runs once a call held in memory, for every read.
    _tests: tuple[list[tuple[str, float | None, float | None]], tuple[str, ...] | None] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def bounds(self) -> list[tuple[str, float | None, float | None]]:
        """The range filters as (column, lowest, highest) in the history file's units (ms, nano-dollars, ms).

        Memory compares :func:`~patter_dash.core.aggregates.contribution`'s
        numbers, which are what the file stores: both read a bound alike.
        """
        out = []
        for column, (lo, hi), scale in (("duration_ms", self.duration, 1000), ("cost_total", self.cost, NANO), ("latency_ms", self.latency, None)):
            if lo is not None or hi is not None:
                scaled = (lo, hi) if scale is None else tuple(None if b is None else round(b * scale) for b in (lo, hi))
                out.append((column, *scaled))
        for name, (column, _, _) in quality.FILTERS.items():
            lo, hi = getattr(self, name)
            if lo is not None or hi is not None:
                out.append((column, lo, hi))
        return out

    def matches(self, call: Call) -> bool:
        tests = self._tests
        if tests is None:
            tests = (self.bounds(), search.terms(self.query) if self.query else None)
            object.__setattr__(self, "_tests", tests)  # frozen for callers, not for its own cache
        bounds, found = tests
        if self.status and call.status != self.status:
            return False
        if self.direction and call.direction != self.direction:
            return False
        if self.start is not None and call.started_at < self.start:
            return False
        if self.end is not None and call.started_at >= self.end:
            return False
        if self.provider_mode and (call.meta_value("provider_mode") or "") != self.provider_mode:
            return False
        if self.tag and self.tag not in call.tags:
            return False
        if self.has_notes is not None and bool(call.notes) != self.has_notes:
            return False
        if self.provider is not None and self.provider not in call.labels()[0]:
            return False
        if self.model is not None and self.model not in call.labels()[1]:
            return False
        if bounds:
            duration_ms, cost, latency = contribution(call)
            numbers = {"duration_ms": duration_ms, "cost_total": cost[-1], "latency_ms": latency}
            if any(column in quality.COLUMNS for column, _, _ in bounds):
                numbers.update(zip(quality.COLUMNS, quality.columns(call)))
            for column, lo, hi in bounds:
                value = numbers[column]
                if value is None or (lo is not None and value < lo) or (hi is not None and value > hi):
                    return False
        return found is None or call.searchable(found)

    @property
    def empty(self) -> bool:
        return (
            not (self.status or self.direction or self.query or self.provider_mode or self.tag or self.provider or self.model)
            and self.start is None and self.end is None and self.has_notes is None and not self.bounds()
        )


class CallStore:
    """Active calls plus a bounded ring of completed ones, with live aggregates."""

    def __init__(
        self,
        max_completed: int = 10_000,
        *,
        max_call_text: int = MAX_CALL_TEXT,
        max_active: int = MAX_ACTIVE_CALLS,
        keep_history: bool = False,
        watchers: list[Watcher] | None = None,
        done_scale: int = 0,
    ) -> None:
        self.max_completed = max_completed
        #: A shared journal: completion numbers come from the event's journal number (``seq * done_scale``
        #: and up), so every process gives a call the same one (history pages merge memory and disk by it).
        self.done_scale = done_scale
        #: Readers of completions (Prometheus metrics): a list the owner shares, so a store made
        #: again (a forked worker) keeps them. Called only when a call completes or ends, never per line.
        self.watchers: list[Watcher] = [] if watchers is None else watchers
        #: Calls leaving memory stay in the totals (a journal keeps them); the writer
        #: collects what changed for it (:meth:`take_dirty`).
        self.keep_history = keep_history
        self.done = 0
        #: Every finished call with ``done >= floor`` is held in :attr:`completed` (the memory window);
        #: older ones may be on disk only (history kept beyond memory).
        self.floor = 0
        self._dirty: dict[str, Call] = {}
        #: Calls the events being applied name: once finished they stay in memory until :meth:`release`.
        self._pinned: set[str] = set()
        self.max_call_text = max_call_text
        self.max_active = max_active
        self.make_lock()
        self.active: dict[str, Call] = {}
        self.completed: OrderedDict[str, Call] = OrderedDict()
        self.aggregates = Aggregates()
        self.evicted = 0
        #: Live calls, least recently touched first: the front is the longest idle (O(1) to find).
        self._idle: OrderedDict[str, Call] = OrderedDict()
        self.evicted_idle = 0
        self._closed: list[Call] = []
        self._costs_cache: dict[tuple[Any, ...], dict[str, Any]] = {}

    def make_lock(self) -> None:
        """(Re)create the lock, e.g. in the serving process once gevent has patched threading.

        A lock made before the patch (``--preload``) is not greenlet-aware.
        """
        self.lock = threading.RLock()

    # ================================================================ writing

    def apply(self, event: Event) -> Applied:
        """Apply one event; says which call it touched, whether anything changed, and what it appended.

        Never raises on order. ``changed`` is False when the event repeated
        what the call already holds (a re-delivered line, a second ``call_end``).
        """
        with self.lock:
            if self.done_scale:
                self.done = max(self.done, event.seq * self.done_scale)
            call = self._find_or_create(event)
            new = call.seq == 0
            held = len(call.transcript)
            handler: Callable[[Call, Event], bool | None] = getattr(self, f"_on_{event.type}")
            if call.active:
                changed = handler(call, event) is not False
                if not call.active:
                    self._complete(call, ended=event.type == "call_end")
            else:
                self.aggregates.remove(call)
                try:
                    changed = handler(call, event) is not False
                finally:
                    self.aggregates.add(call)
                if changed and self.keep_history:
                    self._dirty[call.call_id] = call
                if changed and event.type == "call_end":
                    for watcher in self.watchers:
                        watcher(call, False, True)
            if changed:
                call.seq = event.seq
            # Only transcript and turn events append; call_end replaces the transcript whole.
            lines = call.transcript[held:] if event.type in _APPENDING and len(call.transcript) > held else ()
            return Applied(call, changed, new and changed, lines)

    def _find_or_create(self, event: Event) -> Call:
        call = self.active.get(event.call_id) or self.completed.get(event.call_id)
        if call is not None:
            if call.active and event.type != CALL_UPDATED:  # an operator's note is not a sign of life
                self._touch(call, event.received_at)
            return call
        if event.type == CALL_UPDATED:
            # The writer checks the call exists before it queues one; a replayed one whose call
            # is gone must not start an empty call.
            raise LookupError(f"no call {event.call_id!r} to annotate")
        self._make_room()
        call = Call(event.call_id, event.received_at)
        if event.type not in ("call_start", "call_initiated"):
            call.flag("no_start")  # turn/transcript/end before any start
        self.active[call.call_id] = call
        self._touch(call, event.received_at)
        return call

    def _touch(self, call: Call, at: float) -> None:
        call.last_event_at = max(call.last_event_at, at)
        self._idle[call.call_id] = call
        self._idle.move_to_end(call.call_id)

    def _make_room(self) -> None:
        """Close the longest-idle live calls until a new one fits (nothing new is refused).

        A runtime that never sends call_end (crash, lost network) would
        otherwise grow the live set forever. The closed call ends at its last
        event, as status ``timeout`` flagged ``evicted_idle``, and counts in
        history and analytics like any finished call.
        """
        while len(self.active) >= self.max_active and self._idle:
            _, call = self._idle.popitem(last=False)
            self._close(call, "evicted_idle")
            self.evicted_idle += 1

    def close_stale(self, cutoff: float) -> int:
        """Close live calls with no event since ``cutoff`` (``PATTER_DASH_CALL_TIMEOUT``): status ``timeout``.

        A runtime that crashed never sends call_end; its call would stay live for
        ever. A late call_end still completes it (the completed-call rules).
        """
        closed = 0
        with self.lock:
            while self._idle:
                call = next(iter(self._idle.values()))
                if call.last_event_at >= cutoff:
                    break
                del self._idle[call.call_id]
                self._close(call, "stale_timeout")
                closed += 1
        return closed

    def close_logged(self, call_id: str, seq: int, flag: str = "stale_timeout") -> bool:
        """Close one live call as a shared journal's close event says (the stale-call rule, decided by one process)."""
        with self.lock:
            call = self.active.get(call_id)
            if call is None:
                return False
            if self.done_scale:
                self.done = max(self.done, seq * self.done_scale)
            self._idle.pop(call_id, None)
            self._close(call, flag)
            call.seq = seq
            return True

    def least_recent(self) -> Iterator[Call]:
        """Live calls, the longest idle first (the event thread's own read: no lock)."""
        return iter(self._idle.values())

    def _close(self, call: Call, flag: str) -> None:
        call.status = IDLE_STATUS
        call.ended_at = max(call.last_event_at, call.started_at)
        call.flag(flag)
        self._complete(call)
        self._closed.append(call)

    def take_closed(self) -> list[Call]:
        """The calls closed without a call_end since the last call, for the writer to announce."""
        with self.lock:
            closed, self._closed = self._closed, []
        return closed

    def take_dirty(self, into: dict[str, Call] | None = None) -> list[Call]:
        """Completed calls made or changed since the last call, for the writer to journal.

        ``into`` (the writer's calls not yet written) gets them under the lock,
        so a reader (:meth:`held`) always finds a changed call in one or the other.
        """
        with self.lock:
            dirty, self._dirty = list(self._dirty.values()), {}
            if into is not None:
                into.update((call.call_id, call) for call in dirty)
        return dirty

    def has_dirty(self) -> bool:
        return bool(self._dirty)  # one read of a dict's size: no lock needed

    def dirty(self) -> list[Call]:
        """The calls :meth:`take_dirty` would give now (left as they are)."""
        with self.lock:
            return list(self._dirty.values())

    def unsaved(self, call_id: str) -> Call | None:
        """A finished call changed since the writer last took them (maybe no longer in memory's window)."""
        with self.lock:
            return self._dirty.get(call_id)

    def _complete(self, call: Call, ended: bool = False) -> None:
        del self.active[call.call_id]
        self._idle.pop(call.call_id, None)
        self.done += 1
        call.done = self.done
        self.completed[call.call_id] = call
        self.aggregates.add(call)
        if self.keep_history:
            self._dirty[call.call_id] = call
        for watcher in self.watchers:
            watcher(call, True, ended)
        self._trim()

    def _trim(self) -> None:
        pinned = self._pinned
        # Pinned calls (a batch being applied names them) may stay beyond the bound until released.
        while len(self.completed) > self.max_completed + len(pinned):
            if pinned:
                # The oldest call not pinned: there is one, as more calls are held than pinned.
                old = self.completed.pop(next(k for k in self.completed if k not in pinned))
            else:
                _, old = self.completed.popitem(last=False)
            if self.keep_history:
                self.aggregates.forget(old)  # still counted: it stays on disk
                # Calls leave in completion order (those taken back from disk first), so
                # every newer one is still here.
                self.floor = max(self.floor, old.done + 1)
            else:
                self.aggregates.remove(old)
            self.evicted += 1

    # ---------------------------------------------------------- whole calls

    def load(self, hours: list[tuple[Any, ...]], latencies: list[tuple[Any, ...]], calls: list[Call], done: int) -> None:
        """Restore history: the sums of every stored call, and the newest calls whole (oldest first)."""
        with self.lock:
            self.aggregates.load(hours, latencies)
            for call in calls:
                self.completed[call.call_id] = call
                self.aggregates.adopt(call)
            self.done = max(self.done, done)
            # The newest calls came back: any call stored with a later completion is among them.
            self.floor = max(self.floor, calls[0].done if calls else done + 1)
            self._trim()

    def adopt_cold(self, call: Call) -> None:
        """Take back a finished call from disk (a late event for it arrived), as the oldest in memory.

        Its numbers are counted already; it is older than every call held, so
        the order of history stays right, and it leaves memory first again,
        once the events that brought it back are applied (it stays pinned until
        :meth:`release`).
        """
        with self.lock:
            if call.call_id in self.completed or call.call_id in self.active:
                return
            self.completed[call.call_id] = call
            self.completed.move_to_end(call.call_id, last=False)
            self.aggregates.adopt(call)
            self._pinned.add(call.call_id)

    def pin(self, call_ids: Iterable[str]) -> None:
        """Keep these calls in memory once finished, until :meth:`release` (a batch naming them is being applied).

        A call that ends early in a batch and has a late event later in it
        (a status, a line) must still be there for it, or a new call would start.
        """
        with self.lock:
            self._pinned.update(call_ids)

    def release(self) -> None:
        """The pinned calls' events are applied: they may leave memory again (the oldest first)."""
        with self.lock:
            if self._pinned:
                self._pinned.clear()
                self._trim()

    def delete(self, call_id: str, unwritten: Call | None = None) -> Call | None:
        """Remove a call held in memory, live or finished, from every index and total.

        A finished call that left memory before the writer had its changes
        (``unwritten``: one the writer took) is still counted: it is taken out
        of the totals here too.
        """
        with self.lock:
            call = self.active.pop(call_id, None)
            if call is not None:
                self._idle.pop(call_id, None)
                return call
            call = self.completed.pop(call_id, None)
            unwritten = self._dirty.pop(call_id, None) or unwritten
            self._pinned.discard(call_id)
            if call is not None:
                self.aggregates.remove(call)
            elif unwritten is not None and self.keep_history:
                self.aggregates.count(unwritten.started_at, unwritten.status, contribution(unwritten), -1)
                call = unwritten
            return call

    def uncount(self, started_at: float, status: str, numbers: Any) -> None:
        """Take a call that is only on disk out of the totals (deleted or purged there)."""
        with self.lock:
            self.aggregates.count(started_at, status, numbers, -1)

    # ----------------------------------------------------------- per type

    def _identity(self, call: Call, data: Mapping[str, Any], *, overwrite: bool) -> None:
        for name in ("caller", "callee", "direction"):
            value = data.get(name)
            if value and (overwrite or not getattr(call, name)):
                setattr(call, name, intern(value) if name == "direction" else value)
                if name != "direction" and masked_number(value):
                    call.flag("number_masked")  # kept as the runtime wrote it: it cannot be shown or searched whole
        extra = {k: v for k, v in data.items() if k not in _KNOWN_FIELDS}
        if extra:
            call.extra = {**(call.extra or {}), **extra}

    def _on_call_initiated(self, call: Call, event: Event) -> None:
        self._identity(call, event.data, overwrite=call.active)
        if call.active:
            call.status = "initiated"
            if not call.direction:
                call.direction = "outbound"

    def _on_call_start(self, call: Call, event: Event) -> None:
        self._identity(call, event.data, overwrite=call.active)
        if call.active:
            call.status = "in-progress"
            if "no_start" in call.flags:
                # A turn or line came first; the start is the earliest we saw.
                call.started_at = min(call.started_at, event.received_at)

    def _on_transcript(self, call: Call, event: Event) -> bool:
        data = event.data
        sent_at = data.get("timestamp")
        if sent_at is not None and self._holds_line(call, data["role"], data["text"], sent_at):
            return False  # the same line, stamped the same: delivered twice
        if sent_at is not None and "turnIndex" not in data and self._spoken_in_turn(call, data["role"], data["text"], sent_at):
            return False  # a turn (a followed log, or Patter's metrics) already put these words in
        extra, size, cut = line_extra(data, _LINE_EVENT_FIELDS)
        if cut:
            call.flag("extra_truncated")
        return self._add_line(call, data["role"], data["text"], sane_time(call, sent_at, event.received_at), extra, size)

    @staticmethod
    def _holds_line(call: Call, role: str, text: str, sent_at: float) -> bool:
        # A re-delivery follows its original closely; a look further back would
        # make a long call's lines quadratic.
        return any(
            line[LINE_ROLE] == role and line[LINE_TEXT] == text and line[LINE_TIMESTAMP] == sent_at
            for line in call.transcript[-RECENT_LINES:]
        )

    @staticmethod
    def _spoken_in_turn(call: Call, role: str, text: str, sent_at: float) -> bool:
        """Whether a line stamped with a turn already says this, and this line was spoken before that turn ended.

        Lines of a followed log (and those mirrored from a turn) carry the
        turn's index; the runtime's callbacks deliver the same words later,
        stamped with their own time, which is before the turn's end. The
        same words said again in a later turn come after it: those are kept.
        """
        for line in call.transcript[-RECENT_LINES:]:
            if line[LINE_ROLE] != role or line[LINE_TEXT] != text:
                continue
            index = line_turn(line)
            if index is None:
                continue
            ended = next((t[TIMESTAMP] for t in reversed(call.turns) if t[TURN_INDEX] == index), None)
            if isinstance(ended, (int, float)) and sent_at <= ended + TURN_LINE_GRACE:
                return True
        return False

    def _add_line(
        self, call: Call, role: str, text: str, timestamp: float, extra: dict[str, Any] | None = None, extra_size: int = 0
    ) -> bool:
        if not text:
            return False
        if not self._admit_line(call, len(text) + extra_size, len(call.transcript)):
            return True  # counted and flagged: the call changed
        call.transcript.append((intern(role), text, timestamp, extra))
        return True

    def _on_turn(self, call: Call, event: Event) -> None:
        data = event.data
        texts = {line[LINE_TEXT]: line[LINE_TEXT] for line in call.transcript[-12:]}  # the lines this turn spoke
        turn = make_turn(data["turn"], texts)
        index = turn[TURN_INDEX]
        held = call.turns
        repeated = index is not None and any(t[TURN_INDEX] == index for t in held)
        if not repeated and (not held or index is None or (held[-1][TURN_INDEX] is not None and held[-1][TURN_INDEX] < index)):
            call.turns = (*held, turn)  # the usual case: the next turn, in order
        else:
            turns = [t for t in held if index is None or t[TURN_INDEX] != index]
            turns.append(turn)
            turns.sort(key=_turn_order)
            call.turns = tuple(turns)
        if not call.active:
            call.flag("late_turn")
            return
        if data.get("cost_so_far"):
            call.cost = pack(data["cost_so_far"], COST_KEYS)
        if not repeated:
            self._mirror_turn(call, turn, sane_time(call, turn[TIMESTAMP], event.received_at))

    def _mirror_turn(self, call: Call, turn: Turn, at: float) -> None:
        """Put the turn's words into the transcript unless its own lines already did.

        Patter sends each line through ``on_transcript`` and then the whole turn
        through ``on_metrics``; a turn's lines are the ones since the previous
        turn's. Matching there, and only there, keeps a caller who says "Yes."
        again, and a line of the next turn that came early stays unclaimed.
        Where lines carry Patter's ``turnIndex`` it decides (as in Patter: one
        line per turn and role): a line of another turn is never claimed, and
        this turn's line is, even when its words differ from the turn's. A
        mirrored line is stamped with the turn's index, as Patter stamps it.
        """
        index = turn[TURN_INDEX]
        claimed = call.turn_mark
        lines = call.transcript
        for role, text in (("user", turn[USER_TEXT]), ("assistant", turn[AGENT_TEXT])):
            if not text:
                continue
            found = next((i for i in range(call.turn_mark, len(lines)) if _spoke(lines[i], role, text, index)), None)
            if found is None:
                extra, size, _ = line_extra({"turnIndex": index}, frozenset()) if index is not None else (None, 0, False)
                self._add_line(call, role, text, at, extra, size)
                found = len(lines) - 1
            claimed = max(claimed, found + 1)
        if index is not None:
            # The mark never passes a later turn's line that came early (a mirrored line lands after it):
            # that line is its own turn's to claim.
            later = next((i for i in range(call.turn_mark, claimed) if (own := line_turn(lines[i])) is not None and own > index), None)
            if later is not None:
                claimed = later
        call.turn_mark = claimed

    def _on_call_updated(self, call: Call, event: Event) -> bool:
        """An operator's tags, notes or rating (validated by model/annotations.py), or what the call's recording
        measured (``quality``: only the server's own analysis sends it, never a PATCH); False when nothing changes."""
        data = event.data
        tags = tuple(intern(t) for t in data["tags"]) if "tags" in data else call.tags
        notes = data.get("notes", call.notes)
        rating = data.get("rating", call.rating)
        measured = data.get("quality", call.quality)
        if (tags, notes, rating, measured) == (call.tags, call.notes, call.rating, call.quality):
            return False
        call.tags, call.notes, call.rating, call.quality = tags, notes, rating, measured
        return True

    def _on_call_status(self, call: Call, event: Event) -> None:
        status = intern(event.data["status"].strip().lower())
        at = sane_time(call, event.data.get("timestamp"), event.received_at)
        call.status_history = (*call.status_history, (status, at))
        if not call.active:
            call.flag("late_status")  # recorded above, not applied
            return
        self._identity(call, event.data, overwrite=False)
        call.status = status
        if status in TERMINAL_STATUSES:
            call.ended_at = max(at, call.started_at)

    def _on_call_end(self, call: Call, event: Event) -> bool:
        if call.ended_by_end_event:
            return False  # a repeated call_end is a no-op
        data = event.data
        call.ended_by_end_event = True
        self._identity(call, data, overwrite=False)
        metrics = data.get("metrics") or {}
        ended_at = data.get("ended_at")
        if ended_at is not None:
            ended_at = sane_time(call, ended_at, event.received_at)
        elif call.ended_at is not None:
            ended_at = call.ended_at
        else:
            ended_at = event.received_at
        duration = metrics.get("duration_seconds")
        if duration is not None and not EARLIEST_TIME <= ended_at - duration:
            call.flag("clock_skew")  # a start before 2000: the duration is not believable
            duration = None
        if duration is not None:
            # Patter's call_end carries ended_at and the duration but no start;
            # deriving it keeps the call consistent with the runtime's own clock.
            started = ended_at - duration
            if "no_start" not in call.flags and abs(started - call.started_at) > CLOCK_SKEW_SECONDS:
                call.flag("clock_skew")
            call.started_at = started
        elif "no_start" in call.flags and data.get("started_at") is not None:
            call.started_at = sane_time(call, data["started_at"], event.received_at)
        if ended_at < call.started_at:
            call.flag("clock_skew")
        call.ended_at = max(ended_at, call.started_at)
        call.duration = max(0.0, duration) if duration is not None else call.ended_at - call.started_at
        lines = data.get("conversation_history") or data.get("transcript")
        if lines:
            call.transcript = self._bounded_transcript(call, lines)
        if metrics:
            self._metrics(call, metrics)  # after the transcript: turns share its strings
        status = (data.get("status") or "").lower()
        if status in TERMINAL_STATUSES:
            call.status = intern(status)
        elif call.status not in TERMINAL_STATUSES:
            call.status = "completed"
        return True

    def _admit_line(self, call: Call, size: int, held: int) -> bool:
        """Whether one more line of ``size`` characters (its text and kept fields) fits the call's budgets.

        A refused line is counted, and the call flagged, instead of grown.
        """
        if held >= MAX_LINES or call.text_chars + size > self.max_call_text:
            call.dropped_lines += 1
            call.flag("transcript_truncated")
            return False
        call.text_chars += size
        return True

    def _bounded_transcript(self, call: Call, lines: list[Mapping[str, Any]]) -> list[Line]:
        """call_end's whole transcript, within the same budgets as live lines.

        It replaces what the live lines built, so the counts start again; a
        complete final transcript clears the live phase's truncation flag.
        Patter's ``conversation_history`` holds role, text and timestamp only:
        each final line keeps the fields its live line came with (its
        ``turnIndex``, a tool line's fields), found by :func:`_carried`.
        """
        carried = _carried(call.transcript, lines)
        call.text_chars = call.dropped_lines = 0
        kept: list[Line] = []
        for i, line in enumerate(lines):
            text = line.get("text") or ""
            fields: Mapping[str, Any] = line
            if carried[i]:
                fields = {**carried[i], **line}  # what the final line says wins
            extra, size, cut = line_extra(fields, _LINE_FIELDS)
            if cut:
                call.flag("extra_truncated")
            if self._admit_line(call, len(text) + size, len(kept)):
                kept.append((intern(line.get("role") or ""), text, line.get("timestamp"), extra))
        if not call.dropped_lines and "transcript_truncated" in call.flags:
            call.flags = tuple(f for f in call.flags if f != "transcript_truncated")
        return kept

    def _metrics(self, call: Call, metrics: Mapping[str, Any]) -> None:
        if metrics.get("cost"):
            call.cost = pack(metrics["cost"], COST_KEYS)
        blocks = tuple(pack(metrics.get(name), LATENCY_KEYS) for name in PERCENTILE_KEYS)
        call.percentiles = blocks if any(b is not None for b in blocks) else None
        meta = {k: intern(v) for k, v in metrics.items() if k not in _METRICS_MODELLED}
        call.meta = meta or None
        if metrics.get("turns"):
            texts = {line[LINE_TEXT]: line[LINE_TEXT] for line in call.transcript}
            call.turns = tuple(make_turn(t, texts) for t in metrics["turns"])

    # ================================================================ reading

    def get(self, call_id: str) -> Call | None:
        with self.lock:
            return self.active.get(call_id) or self.completed.get(call_id)

    def active_calls(self, limit: int | None = None, offset: int = 0) -> list[Call]:
        """Live calls newest first (by when the dashboard first saw each), one page of them.

        Arrival order is the dict's own, so a page costs O(offset + limit), not
        a sort of every live call under the lock.
        """
        with self.lock:
            newest_first = reversed(self.active.values())
            return list(islice(newest_first, offset, None if limit is None else offset + limit))

    def page(self, flt: CallFilter, limit: int, offset: int) -> tuple[list[Call], int]:
        """Newest-first page of completed calls matching ``flt``, and the match count."""
        with self.lock:
            newest_first = reversed(self.completed.values())
            if flt.empty:
                return list(islice(newest_first, offset, offset + limit)), len(self.completed)
            matched = [c for c in newest_first if flt.matches(c)]
        return matched[offset : offset + limit], len(matched)

    def page_by_start(self, flt: CallFilter, limit: int, offset: int) -> tuple[list[Call], int]:
        """Like :meth:`page`, newest start first (ties: newest completion)."""
        with self.lock:
            calls = self.completed.values()
            matched = calls if flt.empty else [c for c in calls if flt.matches(c)]
            # A selection, not a sort: O(n log k) for the first pages, which are the ones read.
            return heapq.nlargest(offset + limit, matched, key=by_start)[offset:], len(matched)

    def newest(self, limit: int, offset: int) -> tuple[list[Call], int] | None:
        """An unfiltered page that lies in memory's window, and the count of every stored call; else None.

        The history page every open dashboard polls: O(offset + limit), no copy of the window.
        """
        with self.lock:
            behind = 0  # calls held below the floor: a few at the oldest end, if any
            for call in self.completed.values():
                if call.done >= self.floor:
                    break
                behind += 1
            if offset + limit > len(self.completed) - behind:
                return None
            page = list(islice(reversed(self.completed.values()), offset, offset + limit))
            return page, self.aggregates.total.calls

    def held(self, unwritten: Iterable[Call] = ()) -> Held:
        """What memory holds of history, for a read that also goes to disk (see :class:`Held`).

        ``unwritten``: finished calls the writer took for a transaction not yet
        committed; those no longer in memory are on disk only once it is.
        """
        with self.lock:
            newest_first = list(reversed(self.completed.values()))
            completed = self.completed
            evicted = [c for c in (*self._dirty.values(), *unwritten) if c.call_id not in completed]
            floor, stored = self.floor, self.aggregates.total.calls
        # Taken back from disk (adopt_cold) at the oldest end: behind the window, older than the floor.
        split = len(newest_first)
        while split and newest_first[split - 1].done < floor:
            split -= 1
        window = newest_first[:split]
        older = {c.call_id: c for c in (*newest_first[split:], *evicted)}
        return Held(window, sorted(older.values(), key=_by_done, reverse=True), floor, stored)

    def snapshot(self, flt: CallFilter) -> list[Call]:
        """Completed calls matching ``flt``, newest first, for a streamed export.

        A list of references (8 bytes a call), taken under the lock, so the
        export neither holds the lock nor sees calls evicted mid-stream vanish.
        """
        with self.lock:
            calls = list(reversed(self.completed.values()))
        return calls if flt.empty else [c for c in calls if flt.matches(c)]

    def overview(self, start: float | None, end: float | None) -> dict[str, Any]:
        with self.lock:
            totals = self.aggregates.between(start, end).view()
            by_status = self.aggregates.status_counts(start, end)
            active = len(self.active)
        return {
            "total_calls": totals["calls"],
            "total_minutes": totals["minutes"],
            "avg_duration": totals["avg_duration"],
            "avg_latency_ms": totals["avg_latency_ms"],
            "p95_latency_ms": totals["p95_latency_ms"],
            "total_cost": totals["total_cost"],
            "cost_breakdown": totals["cost_breakdown"],
            "active_calls": active,
            "calls_by_status": by_status,
        }

    def costs(self, start: float | None, end: float | None, bucket: str | None) -> dict[str, Any]:
        """The period's cost and its series; cached until the aggregates change.

        A series has one point per hour or day of data (44 days of history are
        44 points, each with its own P95), and the dashboard asks again every
        time a call ends or the page refreshes.
        """
        key = (start, end, bucket, self.aggregates.version)
        cached = self._costs_cache.get(key)
        if cached is not None:
            return cached
        result = self._costs(start, end, bucket)
        if len(self._costs_cache) > 64:
            self._costs_cache.clear()
        self._costs_cache[key] = result
        return result

    def _costs(self, start: float | None, end: float | None, bucket: str | None) -> dict[str, Any]:
        with self.lock:
            totals = self.aggregates.between(start, end).view()
            span = self.aggregates.span()
            lo = start if start is not None else (span[0] if span else None)
            hi = end if end is not None else (span[1] if span else None)
            if bucket is None:
                bucket = "hour" if lo is None or hi is None or hi - lo <= 2 * DAY else "day"
            width = HOUR if bucket == "hour" else DAY
            series = [
                {"t": t, **_series_point(v.view())} for t, v in self.aggregates.series(start, end, width)
            ]
        return {
            "total_cost": totals["total_cost"],
            "breakdown": totals["cost_breakdown"],
            "calls_analyzed": totals["calls"],
            "total_minutes": totals["minutes"],
            "period": {"from": start, "to": end},
            "bucket": bucket,
            "series": series,
        }

    def sizes(self) -> dict[str, int]:
        with self.lock:
            return {
                "active": len(self.active),
                "completed": len(self.completed),
                "max_completed": self.max_completed,
                "evicted": self.evicted,
                "max_active": self.max_active,
                "evicted_idle": self.evicted_idle,
            }


class Held(NamedTuple):
    """History as memory holds it at one moment (:meth:`CallStore.held`).

    Finished calls are ordered by completion (``done``). Those with ``done >=
    floor`` are all in ``window``; older ones are on disk, except ``older``,
    which memory holds newer than the disk's copy (taken back for a late
    event, or left memory before their transaction committed). A read from
    disk takes ``done < floor`` without ``older``'s, and merges ``older`` in.
    """

    window: list[Call]  # newest first
    older: list[Call]  # newest first
    floor: int
    #: Finished calls stored in all (memory and disk): the count analytics keep.
    stored: int

    @property
    def on_disk_only(self) -> int:
        return self.stored - len(self.window) - len(self.older)


#: History's order for ``sort=started_at``: the start, then the completion number (unique) for ties.
by_start = attrgetter("started_at", "done")


def _by_done(call: Call) -> int:
    return call.done


def _series_point(view: dict[str, Any]) -> dict[str, Any]:
    return {
        "calls": view["calls"],
        "minutes": view["minutes"],
        "cost": {**view["cost_breakdown"], "total": view["total_cost"]},
        "avg_latency_ms": view["avg_latency_ms"],
        "p95_latency_ms": view["p95_latency_ms"],
    }

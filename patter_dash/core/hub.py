"""Hub: fan-out of applied events to live readers (SSE and WebSocket).

The event thread publishes each applied event once, pre-encoded, into a
fixed-size replay ring in the order published. A subscriber is a cursor
into that ring: its "queue" is the slice between its cursor and the head, so
publishing costs O(1) whatever the number of readers, a slow reader never
slows the publisher, and a reader that lagged more than ``max_lag`` events is
told to reconnect (it resumes with Last-Event-ID and loses nothing that is
still in the ring). Readers wait on one shared event that each publish sets;
the event thread never blocks on them and they never take a lock to read.

Sequence numbers only increase; they need not be consecutive. With a shared
journal (PostgreSQL) a frame's number is the journal's global sequence, which
has gaps (an event another process wrote that changed nothing here, a rolled
back insert), and the frames one logged event makes (a deletion of several
calls) share its number: only the last of them carries the SSE ``id``, so a
reader cut off in the middle gets the whole group again, never loses part.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from ..model import jsoncodec


@dataclass(frozen=True, slots=True)
class Frame:
    """One published event, encoded once for every reader (the ring holds 10,000).

    ``call_ids`` is a tuple, not a set: a tuple of strings leaves the
    collector's sight, so a full collection walks one object a frame, not two.
    """

    seq: int
    type: str
    call_id: str
    sse: bytes  # the whole SSE event; data is one line of JSON (the encoder escapes CR, LF, NUL)
    #: Every call the frame is about when there are several (a bulk ``call_deleted``): a
    #: reader following one call (``?call_id=``) must still learn that it was deleted.
    call_ids: tuple[str, ...] = ()

    @classmethod
    def encode(cls, seq: int, event_type: str, call_id: str, payload: dict[str, Any],
               call_ids: Collection[str] = (), *, with_id: bool = True) -> Frame:
        head = cls._head(seq, event_type, with_id).encode()
        return cls(seq, event_type, call_id, b"".join((head, jsoncodec.dumpb(payload), b"\n\n")), tuple(call_ids))

    @staticmethod
    def _head(seq: int, event_type: str, with_id: bool = True) -> str:
        return f"id: {seq}\nevent: {event_type}\ndata: " if with_id else f"event: {event_type}\ndata: "

    @property
    def ws(self) -> str:
        """The same event as one WebSocket text frame (derived: WebSocket readers are few)."""
        data = self.sse[self.sse.index(b"\ndata: ") + 7 : -2].decode()
        return f'{{"id":{self.seq},"event":"{self.type}","data":{data}}}'


class HubFull(Exception):
    """Raised by :meth:`Hub.subscribe` past ``max_subscribers``."""


@dataclass(eq=False, slots=True)
class Subscription:
    cursor: int
    #: Frames published before this reader's next one (a position in the ring, not a sequence number).
    position: int = 0
    types: frozenset[str] | None = None
    call_id: str | None = None
    #: Called (from the reaper) to cut off a reader stuck in a socket write.
    on_overflow: Callable[[], None] | None = None
    state: str = "open"  # open | overflow | closed
    #: The cursor at the previous reap: a reader is stuck only if it has not moved.
    reaped_cursor: int = -1

    def wants(self, frame: Frame) -> bool:
        return (self.types is None or frame.type in self.types) and (
            self.call_id is None or frame.call_id == self.call_id or self.call_id in frame.call_ids
        )


# What Hub.read returns besides a list of frames.
RESET = "reset"  # the resume point is older than the replay ring
OVERFLOW = "overflow"  # the reader fell more than max_lag behind
SHUTDOWN = "shutdown"  # the server is stopping


class Hub:
    def __init__(self, replay_size: int = 10_000, max_subscribers: int = 1_000, max_lag: int = 2_000) -> None:
        self.replay_size = replay_size
        self.max_subscribers = max_subscribers
        self.max_lag = min(max_lag, replay_size)
        self._head = 0
        #: The newest sequence number no longer resumable from (its frames left the ring, or came before it).
        self._floor = 0
        #: Frames published so far: frame ``p`` is at ``_ring[p % replay_size]``.
        self._count = 0
        #: A shared journal's sequence is global: a reader resuming from a number this
        #: process has not reached yet (it was served by another) waits for it instead
        #: of a reset, up to this far ahead (further is no number of this journal's).
        self.ahead_allowed = 0
        self.overflows = 0
        self._ring: list[Frame | None] = [None] * replay_size
        self._subs: set[Subscription] = set()
        self._closing = False
        self.make_primitives()

    def make_primitives(self) -> None:
        """(Re)create the lock and the wake-up event, e.g. after gevent patched threading."""
        self._lock = threading.Lock()
        # Readers wait on the current tick; each publish sets it and starts a new
        # one, so one call wakes every reader and readers never take a lock.
        self._tick = threading.Event()

    @property
    def head(self) -> int:
        """The last sequence number published (or started from)."""
        return self._head

    @head.setter
    def head(self, seq: int) -> None:
        """Start numbering at ``seq`` (a restored history): nothing at or before it can be resumed from here."""
        self._head = seq
        self._floor = seq
        # Frames held are of the numbering left behind: none of them is handed out again.
        self._count += self.replay_size
        self._ring = [None] * self.replay_size

    # ------------------------------------------------------------- publishing

    def publish(self, seq: int, event_type: str, call_id: str, payload: dict[str, Any], call_ids: Collection[str] = (),
                *, with_id: bool = True) -> None:
        """Called by the event thread only (the single writer); ``seq`` never below the head.

        ``with_id=False``: a frame of a group sharing ``seq`` that is not its last (no SSE ``id``).
        """
        frame = Frame.encode(seq, event_type, call_id, payload, call_ids, with_id=with_id)
        slot = self._count % self.replay_size
        old = self._ring[slot]
        if old is not None:
            self._floor = max(self._floor, old.seq)
        self._ring[slot] = frame
        self._count += 1
        self._head = seq  # after the frame is in place: readers go by head
        tick, self._tick = self._tick, threading.Event()
        tick.set()

    def _position_after(self, seq: int) -> int:
        """The position of the first frame held with a number above ``seq`` (the count: none yet)."""
        size, count = self.replay_size, self._count
        # Frames are in order of number: bisect the positions held by their frame's seq.
        return bisect_right(_Seqs(self._ring, size), seq, max(0, count - size), count)

    def reap(self) -> int:
        """Cut off readers lagging past ``max_lag``; returns how many. Called periodically.

        A reader is stuck only if its cursor has not moved since the previous
        reap: one that is busy writing a large backlog is left alone.
        """
        laggards = []
        with self._lock:
            for sub in self._subs:
                if sub.state == "open" and self._count - sub.position > self.max_lag and sub.position == sub.reaped_cursor:
                    sub.state = "overflow"
                    laggards.append(sub)
                sub.reaped_cursor = sub.position
        for sub in laggards:
            self.overflows += 1
            if sub.on_overflow is not None:
                sub.on_overflow()
        return len(laggards)

    def shutdown(self) -> None:
        self._closing = True
        self._tick.set()

    # --------------------------------------------------------------- reading

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    def subscribe(
        self,
        after: int | None = None,
        types: Collection[str] | None = None,
        call_id: str | None = None,
        on_overflow: Callable[[], None] | None = None,
    ) -> Subscription:
        """A new reader; ``after`` is a Last-Event-ID to resume from (None: live only)."""
        with self._lock:
            refused = self.refusal()
            if refused:
                raise HubFull(refused)
            if after is None or after >= self._head:
                cursor, position = (self._head if after is None else after), self._count
            else:
                cursor, position = after, self._position_after(after)
            sub = Subscription(cursor, position, frozenset(types) if types else None, call_id, on_overflow)
            self._subs.add(sub)
            return sub

    def refusal(self) -> str | None:
        """Why :meth:`subscribe` would refuse a reader now, or None.

        Lets a route answer 503 before it commits to a streamed 200, while the
        subscription itself is only taken once the body is sent.
        """
        if self._closing:
            return "server shutting down"
        if len(self._subs) >= self.max_subscribers:
            return f"{self.max_subscribers} subscribers already connected"
        return None

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            sub.state = "closed"
            self._subs.discard(sub)

    def read(self, sub: Subscription, timeout: float) -> list[Frame] | str:
        """Frames after the cursor (possibly none after ``timeout``), or a verdict."""
        tick = self._tick  # before looking at the count: a publish in between sets this tick
        if sub.state == "open" and not self._closing and self._count <= sub.position:
            tick.wait(timeout)
        if self._closing:
            return SHUTDOWN
        if sub.state == "overflow":
            return OVERFLOW
        count, size, ring = self._count, self.replay_size, self._ring
        if count - sub.position > size:
            sub.cursor, sub.position = self._head, count
            return RESET
        frames = [ring[p % size] for p in range(sub.position, count)]
        if self._count - sub.position > size:
            sub.cursor, sub.position = self._head, self._count  # overwritten while we read: the resume point is gone
            return RESET
        sub.position = count
        cursor = sub.cursor
        out = [f for f in frames if f is not None and f.seq > cursor and sub.wants(f)]
        if frames and frames[-1] is not None:
            sub.cursor = max(cursor, frames[-1].seq)
        return out

    def check_resume(self, after: int) -> bool:
        """Whether every event after ``after`` is still in the ring (or, shared, yet to come here)."""
        return self._floor <= after <= self._head + self.ahead_allowed


class _Seqs:
    """The ring's frame numbers by position, for :func:`bisect_right` (no list built)."""

    __slots__ = ("_ring", "_size")

    def __init__(self, ring: list[Frame | None], size: int) -> None:
        self._ring, self._size = ring, size

    def __getitem__(self, position: int) -> int:
        frame = self._ring[position % self._size]
        return -1 if frame is None else frame.seq

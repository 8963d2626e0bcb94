"""Hub: fan-out of applied events to live readers (SSE and WebSocket).

The event thread publishes each applied event once, pre-encoded, into a
fixed-size replay ring indexed by sequence number. A subscriber is a cursor
into that ring: its "queue" is the slice between its cursor and the head, so
publishing costs O(1) whatever the number of readers, a slow reader never
slows the publisher, and a reader that lagged more than ``max_lag`` events is
told to reconnect (it resumes with Last-Event-ID and loses nothing that is
still in the ring). Readers wait on one shared event that each publish sets;
the event thread never blocks on them and they never take a lock to read.
"""

from __future__ import annotations

import threading
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
               call_ids: Collection[str] = ()) -> Frame:
        head = cls._head(seq, event_type).encode()
        return cls(seq, event_type, call_id, b"".join((head, jsoncodec.dumpb(payload), b"\n\n")), tuple(call_ids))

    @staticmethod
    def _head(seq: int, event_type: str) -> str:
        return f"id: {seq}\nevent: {event_type}\ndata: "

    @property
    def ws(self) -> str:
        """The same event as one WebSocket text frame (derived: WebSocket readers are few)."""
        data = self.sse[len(self._head(self.seq, self.type).encode()) : -2].decode()
        return f'{{"id":{self.seq},"event":"{self.type}","data":{data}}}'


class HubFull(Exception):
    """Raised by :meth:`Hub.subscribe` past ``max_subscribers``."""


@dataclass(eq=False, slots=True)
class Subscription:
    cursor: int
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
        self.head = 0
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

    # ------------------------------------------------------------- publishing

    def publish(self, seq: int, event_type: str, call_id: str, payload: dict[str, Any], call_ids: Collection[str] = ()) -> None:
        """Called by the event thread only (the single writer)."""
        frame = Frame.encode(seq, event_type, call_id, payload, call_ids)
        self._ring[seq % self.replay_size] = frame
        self.head = seq  # after the frame is in place: readers go by head
        tick, self._tick = self._tick, threading.Event()
        tick.set()

    def reap(self) -> int:
        """Cut off readers lagging past ``max_lag``; returns how many. Called periodically.

        A reader is stuck only if its cursor has not moved since the previous
        reap: one that is busy writing a large backlog is left alone.
        """
        laggards = []
        with self._lock:
            for sub in self._subs:
                if sub.state == "open" and self.head - sub.cursor > self.max_lag and sub.cursor == sub.reaped_cursor:
                    sub.state = "overflow"
                    laggards.append(sub)
                sub.reaped_cursor = sub.cursor
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
            cursor = self.head if after is None else min(after, self.head)
            sub = Subscription(cursor, frozenset(types) if types else None, call_id, on_overflow)
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
        tick = self._tick  # before looking at head: a publish in between sets this tick
        if sub.state == "open" and not self._closing and self.head <= sub.cursor:
            tick.wait(timeout)
        if self._closing:
            return SHUTDOWN
        if sub.state == "overflow":
            return OVERFLOW
        head, size = self.head, self.replay_size
        if head - sub.cursor > size:
            sub.cursor = head
            return RESET
        frames = [self._ring[s % size] for s in range(sub.cursor + 1, head + 1)]
        if frames and (frames[0] is None or frames[0].seq != sub.cursor + 1):
            sub.cursor = head  # overwritten while we read: the resume point is gone
            return RESET
        sub.cursor = head
        return [f for f in frames if f is not None and sub.wants(f)]

    def check_resume(self, after: int) -> bool:
        """Whether every event after ``after`` is still in the ring."""
        return self.head - self.replay_size <= after <= self.head

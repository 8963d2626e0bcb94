"""Hub: fan-out of applied events to live readers (SSE and WebSocket).

The event thread publishes each applied event once, pre-encoded, into a
fixed-size replay ring indexed by sequence number. A subscriber is a cursor
into that ring: its "queue" is the slice between its cursor and the head, so
publishing costs O(1) whatever the number of readers, a slow reader never
slows the publisher, and a reader that lagged more than ``max_lag`` events is
told to reconnect (it resumes with Last-Event-ID and loses nothing that is
still in the ring). Readers wait on one condition; the event thread never
blocks on them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Frame:
    """One published event, encoded once for every reader."""

    seq: int
    type: str
    call_id: str
    data: str  # one line of JSON (json.dumps escapes CR, LF and NUL)

    @property
    def sse(self) -> str:
        return f"id: {self.seq}\nevent: {self.type}\ndata: {self.data}\n\n"

    @property
    def ws(self) -> str:
        return f'{{"id":{self.seq},"event":"{self.type}","data":{self.data}}}'


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
        return (self.types is None or frame.type in self.types) and (self.call_id is None or frame.call_id == self.call_id)


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
        self._cond = threading.Condition()
        self._subs: set[Subscription] = set()
        self._closing = False

    # ------------------------------------------------------------- publishing

    def publish(self, seq: int, event_type: str, call_id: str, payload: dict[str, Any]) -> None:
        frame = Frame(seq, event_type, call_id, json.dumps(payload, separators=(",", ":"), allow_nan=False))
        with self._cond:
            self._ring[seq % self.replay_size] = frame
            self.head = seq
            self._cond.notify_all()

    def reap(self) -> int:
        """Cut off readers lagging past ``max_lag``; returns how many. Called periodically."""
        with self._cond:
            laggards = []
            for sub in self._subs:
                if sub.state == "open" and self.head - sub.cursor > self.max_lag and sub.cursor == sub.reaped_cursor:
                    sub.state = "overflow"
                    laggards.append(sub)
                sub.reaped_cursor = sub.cursor
            if laggards:
                self._cond.notify_all()
        for sub in laggards:
            self.overflows += 1
            if sub.on_overflow is not None:
                sub.on_overflow()
        return len(laggards)

    def shutdown(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()

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
        with self._cond:
            if self._closing:
                raise HubFull("server shutting down")
            if len(self._subs) >= self.max_subscribers:
                raise HubFull(f"{self.max_subscribers} subscribers already connected")
            cursor = self.head if after is None else min(after, self.head)
            sub = Subscription(cursor, frozenset(types) if types else None, call_id, on_overflow)
            self._subs.add(sub)
            return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._cond:
            sub.state = "closed"
            self._subs.discard(sub)

    def read(self, sub: Subscription, timeout: float) -> list[Frame] | str:
        """Frames after the cursor (possibly none after ``timeout``), or a verdict."""
        with self._cond:
            if sub.state == "open" and not self._closing and self.head <= sub.cursor:
                self._cond.wait(timeout)
            if self._closing:
                return SHUTDOWN
            if sub.state == "overflow":
                return OVERFLOW
            if self.head - sub.cursor > self.replay_size:
                sub.cursor = self.head
                return RESET
            frames = [self._ring[s % self.replay_size] for s in range(sub.cursor + 1, self.head + 1)]
            sub.cursor = self.head
        return [f for f in frames if f is not None and sub.wants(f)]

    def check_resume(self, after: int) -> bool:
        """Whether every event after ``after`` is still in the ring."""
        with self._cond:
            return after >= self.head - self.replay_size and after <= self.head

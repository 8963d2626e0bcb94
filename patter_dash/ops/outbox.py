"""Outbox: alert notifications delivered to their configured URLs, off the event thread, with retries.

One :class:`Courier` per destination: a bounded queue (past ``queue`` the
oldest notification is dropped, counted and logged) and one background
worker (a greenlet under gevent: ``http.client`` on patched sockets
cooperates) that POSTs the head, retrying with exponential backoff
(:data:`BACKOFF_FIRST` doubling up to :data:`BACKOFF_MAX`) up to
``max_attempts``, then drops it (counted, logged). The event thread only
appends to a deque: a hanging or failing endpoint never slows ingest.

With a history (``PATTER_DASH_DB``) each notification is written to the
``alert_outbox`` table by the worker (through
:func:`~patter_dash.core.cooperative.offload`) before it is sent, and deleted
once delivered or given up, so a restart sends what was pending, and on
PostgreSQL so does the process that takes the jobs over (:meth:`Courier.adopt`).
Delivery is at least once: a notification sent just before a crash, not yet
deleted, is sent again; its ``id`` lets a receiver drop the repeat.

Webhook requests carry ``X-Patter-Dash-Timestamp`` (Unix seconds, fresh at each
attempt) and ``X-Patter-Dash-Signature: sha256=<hex HMAC-SHA256 of
"<timestamp>.<body>" with the destination's secret>``. Redirects are not
followed: only configured URLs are called.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from typing import Any

from ..core.cooperative import gevent_active, offload
from ..journal import JournalUnavailable, Outbox
from ..model import jsoncodec
from .alert_config import Destination

log = logging.getLogger("patter_dash")

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 300.0
SIGNATURE_HEADER = "X-Patter-Dash-Signature"
TIMESTAMP_HEADER = "X-Patter-Dash-Timestamp"
USER_AGENT = "patter-dash-alerts/1"


class AttemptTooLong(Exception):
    """An attempt that had no complete answer within its destination's ``timeout`` (a failed attempt)."""


def _whole_attempt_within(seconds: float) -> contextlib.AbstractContextManager[Any]:
    """The whole attempt, connecting to reading the answer, within ``seconds``.

    ``urlopen``'s timeout bounds each socket operation, not their sum: a
    receiver answering a byte every second held the courier for ever, and
    its queue filled and dropped. Under gevent (where couriers are
    greenlets) a ``gevent.Timeout`` ends the attempt; a native thread cannot
    be interrupted, so elsewhere only each read is bounded.
    """
    if not gevent_active():
        return contextlib.nullcontext()
    import gevent

    return gevent.Timeout(seconds, AttemptTooLong(f"no complete answer within {seconds:g} s"))


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` + hex HMAC-SHA256 of ``<timestamp>.<body>``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def slack_body(notification: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook body: ``text`` (also shown in notifications) and one section block."""
    icon = ":red_circle:" if notification["state"] == "firing" else ":large_green_circle:"
    # Slack's own escaping: caller text (a call id) can then neither mention @channel nor make a link.
    message = notification["message"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = f"{icon} {message}"
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


@dataclass(slots=True)
class Letter:
    """One notification for one destination."""

    id: str
    body: bytes
    attempts: int = 0
    next_at: float = 0.0
    row: int | None = None  # its alert_outbox row once written


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # a 3xx is a failed attempt
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class Courier:
    """Delivers one destination's notifications in order, one at a time, from a background worker."""

    def __init__(self, destination: Destination, table: Outbox | None = None) -> None:
        self.destination = destination
        self.table = table
        self.queue: deque[Letter] = deque()
        self.stats = {"queued": 0, "delivered": 0, "failed_attempts": 0, "dropped": 0, "given_up": 0}
        self.last_error: str | None = None
        self._wake: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        #: Written to the outbox table by the worker, in one transaction per turn of its loop.
        self._unsaved: list[Letter] = []
        self._doomed: list[int] = []
        #: Read the table's pending rows at the worker's next turn (see adopt).
        self._adopting = False

    # ----------------------------------------------------- event thread side

    def post(self, letter_id: str, notification: dict[str, Any]) -> None:
        """Queue a notification (O(1), never blocks); the oldest is dropped past the bound."""
        body = notification if self.destination.type == "webhook" else slack_body(notification)
        self._append(Letter(letter_id, jsoncodec.dumpb(body)))

    def _append(self, letter: Letter) -> None:
        idle = not self.queue  # the worker waits for work only then; in a backoff it looks again within 1 s
        self.queue.append(letter)
        if self.table is not None:
            self._unsaved.append(letter)
        self.stats["queued"] += 1
        while len(self.queue) > self.destination.queue:
            old = self.queue.popleft()
            old.attempts = -1  # dropped: not to be written if it was not yet
            dropped = self.stats["dropped"] = self.stats["dropped"] + 1
            if dropped in (1, 10, 100) or dropped % 1000 == 0:  # counted always, logged now and then
                log.warning("patter-dash alerts: %s: queue full (%d), dropped notification %s (%d dropped so far)",
                            self.destination.name, self.destination.queue, old.id, dropped)
            if old.row is not None and old.row >= 0:
                self._doomed.append(old.row)  # deleted by the worker: no SQLite on the event thread
        if idle and self._wake is not None:
            self._wake.set()

    # ---------------------------------------------------------- worker side

    def start(self, adopt: bool = True) -> None:
        """Start the worker in this process (the serving one: gevent has patched threading by now).

        ``adopt``: send what the table holds from before (see :meth:`adopt`).
        """
        self._wake = threading.Event()
        self._stopping = False
        self._adopting = adopt
        self._thread = threading.Thread(target=self._run, name=f"patter-dash-alerts-{self.destination.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    def adopt(self) -> None:
        """Send the notifications the table holds that this courier does not (a restart's, or those of
        the process that ran the jobs before this one); from any thread."""
        self._adopting = True
        if self._wake is not None:
            self._wake.set()

    def _adopt_pending(self) -> None:
        self._adopting = False
        if self.table is None:
            return
        try:
            rows = offload(self.table.pending, self.destination.name)
        except JournalUnavailable as exc:
            log.error("patter-dash alerts: cannot read the pending outbox of %s: %s", self.destination.name, exc)
            return
        held = {letter.row for letter in self.queue}
        found = [Letter(letter_id, bytes(body), row=row) for row, letter_id, body in rows if row not in held]
        if found:
            log.info("patter-dash alerts: %s: %d notifications pending from before", self.destination.name, len(found))
            self.queue.extendleft(reversed(found))  # older than anything queued here since

    def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        while not self._stopping:
            if self._adopting:
                self._adopt_pending()
            if not self.queue:
                wake.wait(5.0)
                wake.clear()
                continue
            self._persist_new()
            if not self.queue:
                continue
            letter = self.queue[0]
            delay = letter.next_at - time.monotonic()
            if delay > 0:
                wake.wait(min(delay, 1.0))  # and new notifications are written to the outbox meanwhile
                wake.clear()
                continue
            ok = self._send(letter)
            done = ok or letter.attempts >= self.destination.max_attempts
            if done and self.queue and self.queue[0] is letter:  # (not dropped for a newer one meanwhile)
                self.queue.popleft()
            if ok:
                self.stats["delivered"] += 1
                self._forget(letter)
            elif letter.attempts >= self.destination.max_attempts:
                self.stats["given_up"] += 1
                log.error("patter-dash alerts: %s: gave up on notification %s after %d attempts (%s)",
                          self.destination.name, letter.id, letter.attempts, self.last_error)
                self._forget(letter)
            else:
                letter.next_at = time.monotonic() + min(BACKOFF_FIRST * 2 ** (letter.attempts - 1), BACKOFF_MAX)

    def _persist_new(self) -> None:
        """Write the notifications not on disk yet (before their first attempt) and delete the finished ones."""
        if self.table is None:
            return
        unsaved, self._unsaved = [letter for letter in self._unsaved if letter.attempts >= 0], []
        doomed, self._doomed = self._doomed, []
        if not unsaved and not doomed:
            return
        try:
            rows = offload(self.table.sync, self.destination.name, [(l.id, l.body) for l in unsaved], doomed)
        except JournalUnavailable as exc:
            log.error("patter-dash alerts: cannot write the outbox (%s); sending from memory", exc)
            rows = [-1] * len(unsaved)
        for letter, row in zip(unsaved, rows):
            letter.row = row
            if letter.attempts < 0 and row >= 0:  # dropped while it was being written
                self._doomed.append(row)

    def _forget(self, letter: Letter) -> None:
        """Delete a finished notification's row now (one short transaction, with any others waiting)."""
        if self.table is None or letter.row is None or letter.row < 0:
            return
        self._doomed.append(letter.row)
        self._persist_new()

    def _send(self, letter: Letter) -> bool:
        dest = self.destination
        letter.attempts += 1
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if dest.type == "webhook" and dest.secret:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(dest.secret, timestamp, letter.body)
        request = urllib.request.Request(dest.url, data=letter.body, headers=headers, method="POST")
        try:
            with _whole_attempt_within(dest.timeout), _OPENER.open(request, timeout=dest.timeout) as response:
                response.read(65536)
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except Exception as exc:  # refused, reset, timed out, DNS: all a failed attempt
            self.last_error = f"{type(exc).__name__}: {exc}"
            return self._failed(letter)
        if 200 <= status < 300:
            return True
        self.last_error = f"HTTP {status}"
        return self._failed(letter)

    def _failed(self, letter: Letter) -> bool:
        self.stats["failed_attempts"] += 1
        failures = self.stats["failed_attempts"]
        if failures in (1, 10, 100) or failures % 1000 == 0:
            log.warning("patter-dash alerts: %s: delivery failed (%s); %d failed attempts so far",
                        self.destination.name, self.last_error, failures)
        return False

    def view(self) -> dict[str, Any]:
        return {"name": self.destination.name, "type": self.destination.type, "pending": len(self.queue),
                **self.stats, "last_error": self.last_error}

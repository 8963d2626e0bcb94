"""Client side of the dashboard: a Patter runtime in another process feeding a remote patter-dash.

Owns the path from an in-process ``feed(type, data, id=)`` call to the
dashboard's ingest API: plain-JSON conversion of Patter's dataclasses, a bounded
in-memory buffer, and one background thread that delivers batches over HTTP
(``POST {url}/api/v1/ingest``, stdlib only) or WebSocket
(``{url}/api/v1/ingest/ws`` via ``simple_websocket``). Every event carries an
idempotency ``id``, so a batch whose answer was lost is simply sent again and
the server acknowledges the repeats as duplicates. ``feed`` never blocks on the
network and never raises: a voice agent must not stall because its dashboard is
down.

    client = DashboardClient("http://dash:8000", token="...")
    agent = Patter(..., **client.patter_callbacks())
    ...
    client.close()
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import http.client
import itertools
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any, Literal

from ..web.context import API_PREFIX

log = logging.getLogger(__name__)

INGEST_PATH = f"{API_PREFIX}/ingest"
BACKOFF_START = 0.1
BACKOFF_CAP = 5.0
DROP_WARNING_EVERY = 10.0
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
SPLIT_STATUSES = frozenset({400, 413, 422})
MESSAGE_TOO_BIG = 1009  # WebSocket close code


class RecordingUploadError(Exception):
    """The dashboard refused a recording (``status``: its HTTP status) or could not be reached (``status`` None)."""

    def __init__(self, status: int | None, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}" if status is not None else detail)
        self.status = status
        self.detail = detail


class _Retry(Exception):
    """Delivery failed in a way that sending the same events again may fix."""


def to_plain(value: Any) -> Any:
    """Deep-copy ``value`` into JSON-ready dicts and lists.

    Copying (not just converting) matters: the caller may keep mutating the
    dicts it handed us (Patter's transcript ``history`` grows) after ``feed``
    returns, and the buffered event must keep the state it had then.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_plain(v) for v in value]
    return value


class DashboardClient:
    """Buffered, retrying sender of Patter events to a patter-dash server."""

    def __init__(self, url: str, *, token: str | None = None, transport: Literal["http", "ws"] = "http",
                 buffer_size: int = 10_000, batch_size: int = 200, flush_interval: float = 0.25,
                 timeout: float = 5.0) -> None:
        if transport not in ("http", "ws"):
            raise ValueError(f"transport must be 'http' or 'ws', not {transport!r}")
        if buffer_size < 1 or batch_size < 1:
            raise ValueError("buffer_size and batch_size must be >= 1")
        base = url.rstrip("/")
        for suffix in (INGEST_PATH + "/ws", INGEST_PATH):  # tolerate a full ingest URL
            if base.endswith(suffix):
                base = base[: -len(suffix)]
        self.transport = transport
        self.base_url = base.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
        self.http_url = base.replace("ws://", "http://", 1).replace("wss://", "https://", 1) + INGEST_PATH
        self.ws_url = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + INGEST_PATH + "/ws"
        self._target = self.ws_url if transport == "ws" else self.http_url
        self.timeout = timeout
        self.buffer_size = buffer_size
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

        self.sent = 0
        self.dropped = 0
        self.rejected = 0
        self.retries = 0
        self._buf: collections.deque[dict[str, Any]] = collections.deque()
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._flushing = 0
        self._last_drop_warning = float("-inf")
        self._ws: Any = None
        self._thread = threading.Thread(target=self._run, name="patter-dash-client", daemon=True)
        self._thread.start()

    # ---- producer side: called from the voice runtime, must stay cheap ----

    def feed(self, event_type: str, data: Any, *, id: str | None = None) -> bool:
        """Queue one event for delivery. Returns False when it was dropped."""
        try:
            event = {"type": event_type, "data": to_plain(data), "id": id or uuid.uuid4().hex}
            with self._lock:
                if self._closed or len(self._buf) >= self.buffer_size:
                    self.dropped += 1
                    self._warn_dropped()
                    return False
                self._buf.append(event)
                full = len(self._buf) >= self.batch_size
            if full:
                self._wake.set()
            return True
        except Exception:  # a broken payload must never reach the caller's call flow
            log.exception("patter-dash: could not queue %r event", event_type)
            return False

    def _warn_dropped(self) -> None:
        now = time.monotonic()
        if now - self._last_drop_warning >= DROP_WARNING_EVERY:
            self._last_drop_warning = now
            log.warning("patter-dash: buffer full (%d events) or client closed, %d events dropped so far",
                        self.buffer_size, self.dropped)

    def patter_callbacks(self, *, upload_recordings: bool = False) -> dict[str, Any]:
        """The ``on_call_start``/``on_transcript``/``on_metrics``/``on_call_end`` callbacks for Patter.

        ``upload_recordings``: when a call ends with a ``recording_path`` (Patter's
        ``local_recording=True``), send the file to the dashboard too, from a thread
        of its own (the call's event loop never waits for it; a failure is logged).
        """
        from patter_dash.model.patter import (
            patter_callbacks,  # lazy: keeps this module importable on its own
        )

        callbacks = patter_callbacks(self.feed)
        if upload_recordings:
            end = callbacks["on_call_end"]

            async def on_call_end(data: Any) -> None:
                await end(data)
                plain = to_plain(data)
                path = plain.get("recording_path") if isinstance(plain, dict) else None
                call_id = plain.get("call_id") if isinstance(plain, dict) else None
                if isinstance(path, str) and path and isinstance(call_id, str) and call_id:
                    threading.Thread(target=self._upload_quietly, args=(call_id, path), daemon=True,
                                     name="patter-dash-recording").start()

            callbacks["on_call_end"] = on_call_end
        return callbacks

    def upload_recording(self, call_id: str, path: str, *, timeout: float = 120.0, wait_for_call: float = 10.0) -> dict[str, Any]:
        """Send a finished call's recording (a WAV file) to the dashboard: ``PUT .../call/recording?id=``.

        The events buffered so far are delivered first, so the dashboard knows the
        call; a 404 or a retryable status is tried again for ``wait_for_call``
        seconds. Returns the server's description of what it stored; raises
        :class:`RecordingUploadError` when it refuses (400 not a PCM16 WAV, 413 too
        large, 401 no token...) or cannot be reached. Blocks: call it off the
        voice loop (``patter_callbacks(upload_recordings=True)`` does).
        """
        self.flush(wait_for_call)
        url = f"{self.base_url}{API_PREFIX}/call/recording?{urllib.parse.urlencode({'id': call_id})}"
        size = os.path.getsize(path)
        headers = {**self._headers, "Content-Type": "audio/wav", "Content-Length": str(size)}
        deadline = time.monotonic() + wait_for_call
        pause = BACKOFF_START
        while True:
            try:
                with open(path, "rb") as body:
                    request = urllib.request.Request(url, data=body, headers=headers, method="PUT")
                    with urllib.request.urlopen(request, timeout=timeout) as response:
                        answer = json.loads(response.read())
                return answer.get("data", answer) if isinstance(answer, dict) else {}
            except urllib.error.HTTPError as exc:
                detail = exc.read(500).decode("utf-8", "replace")
                status: int | None = exc.code
                if exc.code not in (404, *RETRY_STATUSES) or time.monotonic() >= deadline:
                    raise RecordingUploadError(exc.code, detail) from None
            except (OSError, http.client.HTTPException) as exc:
                if isinstance(exc, FileNotFoundError) or time.monotonic() >= deadline:
                    raise RecordingUploadError(None, str(getattr(exc, "reason", None) or exc)) from None
                status = None
            log.debug("patter-dash: recording upload for %r answered %s; retrying", call_id, status)
            time.sleep(pause)
            pause = min(pause * 2, BACKOFF_CAP)

    def _upload_quietly(self, call_id: str, path: str) -> None:
        try:
            self.upload_recording(call_id, path)
        except RecordingUploadError as exc:
            log.error("patter-dash: the recording of call %r was not uploaded: %s", call_id, exc)
        except Exception:  # a bug here must not surface in the voice runtime
            log.exception("patter-dash: recording upload failed")

    @property
    def pending(self) -> int:
        return len(self._buf)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every buffered event is delivered (or rejected). True if the buffer emptied."""
        with self._drained:
            if self._stop.is_set():  # no sender left to empty it
                return not self._buf
            self._flushing += 1  # the sender stops waiting for full batches meanwhile
            self._wake.set()
            try:
                return self._drained.wait_for(lambda: not self._buf, timeout)
            finally:
                self._flushing -= 1

    def close(self, timeout: float = 5.0) -> bool:
        """Flush for up to ``timeout`` seconds, then stop the sender. True if nothing was left behind."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
        self.flush(timeout)
        self._stop.set()
        self._wake.set()
        self._thread.join(max(0.0, deadline - time.monotonic()) + 0.1)
        self._close_ws()
        return not self._buf

    def __enter__(self) -> DashboardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- sender thread ----

    def _run(self) -> None:
        backoff = BACKOFF_START
        limit = self.batch_size  # shrinks after a 413/400/1009, doubles back after each success
        while not self._stop.is_set():
            if len(self._buf) < limit and not self._flushing:
                self._wake.wait(self.flush_interval)  # let a batch build up
                self._wake.clear()
            with self._lock:
                batch = list(itertools.islice(self._buf, limit))
            if not batch:
                continue
            try:
                send = self._send_ws if self.transport == "ws" else self._send_http
                limit = send(batch, limit)
                if backoff > BACKOFF_START:
                    log.info("patter-dash: delivering again after %d retries", self.retries)
                backoff = BACKOFF_START
            except _Retry as exc:
                self.retries += 1
                # one warning per outage, not one per retry while a dashboard is down for hours
                log.log(logging.WARNING if backoff == BACKOFF_START else logging.DEBUG,
                        "patter-dash: delivery to %s failed (%s), retrying with backoff", self._target, exc)
                self._stop.wait(backoff * random.uniform(0.5, 1.0))  # jitter: many runtimes, one dashboard
                backoff = min(backoff * 2, BACKOFF_CAP)
            except Exception:  # a bug here must not end delivery for the process lifetime
                log.exception("patter-dash: sender error")
                self._stop.wait(BACKOFF_CAP)

    def _done(self, count: int, *, delivered: bool) -> None:
        """Remove ``count`` events from the head: they are acknowledged or given up on."""
        with self._lock:
            for _ in range(count):
                self._buf.popleft()
            if delivered:
                self.sent += count
            else:
                self.rejected += count
            self._drained.notify_all()

    def _send_http(self, batch: list[dict[str, Any]], limit: int) -> int:
        """POST one batch; returns the batch-size limit to use next."""
        body = json.dumps({"events": batch}, default=str, separators=(",", ":")).encode()
        request = urllib.request.Request(self.http_url, data=body, headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(500).decode("utf-8", "replace")
            if exc.code in RETRY_STATUSES:
                raise _Retry(f"HTTP {exc.code}") from None
            if exc.code in SPLIT_STATUSES and len(batch) > 1:
                # Too large, or one bad event failing a batch validated whole: resend the head in
                # halves, so only the offending events end up rejected, not their neighbours.
                return max(1, len(batch) // 2)
            log.error("patter-dash: ingest refused %d events: HTTP %d %s", len(batch), exc.code, detail)
            self._done(len(batch), delivered=False)
            return limit
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets
            raise _Retry(getattr(exc, "reason", None) or exc) from None
        self._done(len(batch), delivered=True)
        return min(self.batch_size, limit * 2)

    def _send_ws(self, batch: list[dict[str, Any]], limit: int) -> int:
        """Send each event as a frame, then read the acks in order; returns the next batch limit.

        Frames are pipelined and acks matched by position, so on anything
        unexpected the connection is dropped: a stale ack must never be read as
        the answer to a later frame. Unacked events stay buffered and go again.
        """
        import simple_websocket  # only needed for transport="ws"

        ws = None
        acked = 0
        try:
            ws = self._ws if self._ws is not None and self._ws.connected else self._connect_ws()
            for event in batch:
                ws.send(json.dumps(event, default=str, separators=(",", ":")))
            for _ in batch:
                raw = ws.receive(timeout=self.timeout)
                if raw is None:
                    raise _Retry("no ack within timeout")
                ack = json.loads(raw)
                if ack.get("ok"):
                    self._done(1, delivered=True)
                elif _retryable_ack(ack):
                    raise _Retry(f"server busy: {ack.get('error')}")
                else:
                    log.error("patter-dash: ingest refused event %s: %s %s", self._buf[0].get("id"),
                              ack.get("error"), ack.get("details", ""))
                    self._done(1, delivered=False)
                acked += 1
            return min(self.batch_size, limit * 2)
        except simple_websocket.ConnectionError as exc:  # the upgrade was answered with an HTTP error
            status = exc.status_code
            if isinstance(status, int) and 400 <= status < 500 and status not in RETRY_STATUSES:
                log.error("patter-dash: WebSocket upgrade refused (HTTP %d), dropping %d events",
                          status, len(batch))
                self._done(len(batch), delivered=False)
                return limit
            raise _Retry(f"WebSocket upgrade failed: HTTP {status}") from None
        except Exception as exc:  # closed or reset socket, ack timeout, a garbled ack
            if ws is not None:
                ws.thread.join(0.2)  # let its reader record the server's close code
            too_big = ws is not None and ws.close_reason == MESSAGE_TOO_BIG
            self._close_ws()
            if not too_big:
                raise (exc if isinstance(exc, _Retry) else _Retry(f"WebSocket error: {exc!r}")) from None
            if len(batch) - acked > 1:
                # The server drops the connection before acking frames it had already read, so
                # the culprit is unknown: go one frame at a time until it is the only one in flight.
                return 1
            log.error("patter-dash: event %s is larger than the server's WebSocket limit, dropped",
                      self._buf[0].get("id"))
            self._done(1, delivered=False)
            return limit

    def _connect_ws(self) -> Any:
        headers = {k: v for k, v in self._headers.items() if k == "Authorization"}
        self._ws = _ws_client_class(self.timeout).connect(self.ws_url, headers=headers)
        return self._ws

    def _close_ws(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                ws.close()
            except Exception:  # already closed by the peer
                pass


@functools.cache
def _ws_client_class(timeout: float) -> type:
    """simple_websocket.Client whose handshake cannot hang on a silent server.

    The stock client reads the upgrade answer with no timeout at all.
    """
    import simple_websocket

    class Client(simple_websocket.Client):
        def handshake(self) -> None:
            self.sock.settimeout(timeout)
            try:
                super().handshake()
            finally:
                self.sock.settimeout(None)

    return Client


def _retryable_ack(ack: dict[str, Any]) -> bool:
    """A negative ack that means "later", not "never" (the WS twin of 503/429)."""
    if "retry" in ack:
        return bool(ack["retry"])
    status = ack.get("status")
    if isinstance(status, int):
        return status in RETRY_STATUSES
    return any(word in str(ack.get("error", "")).lower() for word in ("full", "busy", "overload", "retry"))

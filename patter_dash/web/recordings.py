"""Recordings over HTTP: a call's WAV (with Range), its waveform peaks, and uploads from another host.

``GET /api/v1/calls/{id}/recording`` (and ``/call/recording?id=``) serves
``audio/wav`` with byte ranges: one range gives 206, several give the whole file
(200), one past the end or malformed gives 416. The file is read in chunks on
a native thread and released when the client leaves. ``.../recording/peaks``
gives each channel's min/max in :data:`~patter_dash.core.recordings.PEAK_BUCKETS`
slices, computed once per file off the gevent loop. ``PUT`` stores a WAV
(token-protected like every write, at most ``PATTER_DASH_RECORDING_MAX_BYTES``,
checked to be RIFF/WAVE PCM16 with one or two channels) under the history
file's directory. Which files may be served, and how a path is checked, is
:mod:`patter_dash.core.recordings`; no path ever comes from the request.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import MethodNotAllowed, RequestEntityTooLarge

from ..core import speech
from ..core.cooperative import offload
from ..core.pipeline import JournalDown, QueueFull
from ..core.recordings import HEADER_BYTES, BadWav, Located, NotAvailable, Recordings, compute_peaks, read_header
from ..model import quality
from ..model.records import Call
from . import auth, params
from .bodies import describe, guarded, shutdown_socket
from .context import current_dashboard
from .deadline import read_within

bp = Blueprint("recordings", __name__)
log = logging.getLogger("patter_dash")

#: Bytes read from disk per chunk sent: one native-thread hop per 256 kB.
CHUNK = 262_144
#: The slowest upload accepted, past PATTER_DASH_BODY_TIMEOUT: a 40 MB recording may take 10 minutes.
UPLOAD_MIN_RATE = 65_536
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def _call(call_id: str) -> Call | None:
    return current_dashboard().pipeline.history.get(call_id)


def _not_found(message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify(error=message, **extra), 404


def _open(call: Call, *, quiet_if_none: bool = False) -> Located | Response | tuple[Response, int]:
    recordings: Recordings = current_dashboard().recordings
    try:
        return offload(recordings.open, call.call_id, call.started_at, call.meta_value("recording_path"))
    except NotAvailable as exc:
        if quiet_if_none and not exc.named:
            # The detail asks every call for its waveform: "none" is an answer, not an error (no 404 in the console).
            return jsonify(data=None, recorded=False)
        if exc.named:
            log.warning("patter-dash: the recording of call %r is not available: %s", call.call_id, exc.reason)
        # "recorded": the call names a recording (or one was found but refused): the UI says "not available".
        # Why is logged, not answered: a path named by ingested text must not probe which files exist.
        return _not_found("recording not available", recorded=exc.named)


@bp.get("/calls/<anypath:call_id>/recording")
def recording(call_id: str) -> Response | tuple[Response, int]:
    call = _call(call_id)
    if call is None:
        return _not_found("Call not found")
    located = _open(call)
    if not isinstance(located, Located):
        return located
    try:
        return _ranged(located)
    except BaseException:
        located.close()
        raise


def _ranged(located: Located) -> Response | tuple[Response, int]:
    size = located.size
    etag = f'"{located.identity[2]:x}-{located.identity[3]:x}-{size:x}"'
    start, length, status = 0, size, 200
    header = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if header is not None and (if_range is None or if_range.strip() == etag):
        spec = header.strip().replace(" ", "")
        if "," in spec and spec.startswith("bytes="):
            pass  # several ranges: the whole file (RFC 9110 allows it; no player asks for more than one)
        else:
            match = _RANGE.fullmatch(spec)
            first, last = (match.group(1), match.group(2)) if match else ("", "")
            if match and first:
                start = int(first)
                end = min(int(last), size - 1) if last else size - 1
                ok = start < size and (not last or int(last) >= start)
            elif match and last:  # a suffix: the last N bytes
                start = max(0, size - int(last))
                end = size - 1
                ok = int(last) > 0 and size > 0
            else:
                ok = False
            if not ok:
                located.close()
                response = jsonify(error=f"range not satisfiable: the recording has {size} bytes")
                response.headers["Content-Range"] = f"bytes */{size}"
                return response, 416
            length, status = end - start + 1, 206
    body = guarded(_chunks(located, start, length), describe(), shutdown_socket(socket.SHUT_RDWR))
    # Not direct_passthrough: Werkzeug then hands the server the bare body, and the close callback below never runs.
    response = Response(body, status=status, mimetype="audio/wav")
    response.headers["Content-Length"] = str(length)
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["ETag"] = etag
    if status == 206:
        response.headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{size}"
    response.call_on_close(located.close)  # also when the body is never read (HEAD, a client gone first)
    return response


def _chunks(located: Located, start: int, length: int) -> Iterator[bytes]:
    position, left = start, length
    while left > 0:
        chunk = offload(os.pread, located.fd, min(CHUNK, left), position)
        if not chunk:
            # Shorter than announced (the file was cut meanwhile): guarded() cuts the connection.
            raise OSError(f"the recording ended {left} bytes early")
        position += len(chunk)
        left -= len(chunk)
        yield chunk


@bp.get("/calls/<anypath:call_id>/recording/peaks")
def peaks(call_id: str) -> Response | tuple[Response, int]:
    call = _call(call_id)
    if call is None:
        return _not_found("Call not found")
    located = _open(call, quiet_if_none=True)
    if not isinstance(located, Located):
        return located
    try:
        view = _once(located, "peaks", compute_peaks)
        if call.quality is None and not call.active and located.info.channels == 2:
            # The detail asks every call for its peaks: a finished call's quality is measured the first time.
            _measure(call, located)
    finally:
        located.close()
    return jsonify(data={"call_id": call.call_id, **view}, recorded=True)


def _once(located: Located, kind: str, compute: Any) -> dict[str, Any]:
    """``compute(fd, info)`` for this version of the file, once: cached, and a second asker waits for the first."""
    recordings: Recordings = current_dashboard().recordings
    view = recordings.cached_peaks(located, kind)
    if view is not None:
        return view
    key = (kind, *located.identity, located.size)
    lock = recordings.computing.setdefault(key, threading.Lock())  # a greenlet's lock under gevent: waiting yields
    try:
        with lock:
            view = recordings.cached_peaks(located, kind)
            if view is None:
                view = offload(compute, located.fd, located.info)
                recordings.keep_peaks(located, view, kind)
    finally:
        recordings.computing.pop(key, None)
    return view


def _measure(call: Call, located: Located) -> dict[str, Any]:
    """The recording's quality figures (once per file version), stored in the call when they differ from what it holds.

    Stored as an event of the call (journaled, announced as ``call_updated``), so
    the filters, exports and analytics read them. A journal that cannot be
    written leaves the call as it was: the figures are still answered.
    """
    figures = _once(located, "quality", speech.analyse)
    kept = quality.measured(figures)
    if call.quality != kept and not call.active:
        try:
            current_dashboard().pipeline.annotate(call.call_id, {"quality": kept})
        except (JournalDown, QueueFull) as exc:
            log.warning("patter-dash: the quality of call %r was measured but not stored: %s", call.call_id, exc)
    return figures


@bp.get("/calls/<anypath:call_id>/recording/quality")
def recording_quality(call_id: str) -> Response | tuple[Response, int]:
    """What the call's recording measures (model/quality.py, core/speech.py); the call keeps the figures."""
    call = _call(call_id)
    if call is None:
        return _not_found("Call not found")
    located = _open(call, quiet_if_none=True)
    if not isinstance(located, Located):
        return located
    try:
        if located.info.channels != 2:
            return jsonify(data=None, recorded=True, measured=False, reason="a mono recording does not tell the caller from the agent")
        if call.active:
            figures = _once(located, "quality", speech.analyse)  # a live call's file is still growing: not stored
        else:
            figures = _measure(call, located)
    finally:
        located.close()
    return jsonify(data={"call_id": call.call_id, **figures}, recorded=True, measured=True)


@bp.put("/calls/<anypath:call_id>/recording")
@auth.write
def upload(call_id: str) -> Response | tuple[Response, int]:
    """Keep a WAV as this call's recording (a dashboard on another host than the agent's)."""
    dash = current_dashboard()
    recordings: Recordings = dash.recordings
    if recordings.upload_dir is None:
        return jsonify(error="this dashboard keeps history in memory only: set PATTER_DASH_DB (or PATTER_DASH_DATA_DIR) to keep uploaded recordings"), 409
    limit = dash.settings.RECORDING_MAX_BYTES
    too_large = RequestEntityTooLarge(f"a recording may have at most {limit} bytes (PATTER_DASH_RECORDING_MAX_BYTES)")
    if (request.content_length or 0) > limit:
        raise too_large
    call = _call(call_id)
    if call is None:
        return _not_found("Call not found")
    request.max_content_length = limit + 1  # a chunked body is cut there: one byte more means too large
    expected = request.content_length or limit
    fd, temporary = offload(recordings.new_upload)
    kept = False
    try:
        try:
            size = read_within(dash.settings.BODY_TIMEOUT + expected / UPLOAD_MIN_RATE, lambda: _receive(fd, limit))
        except RequestEntityTooLarge:
            raise too_large from None
        if size > limit:
            raise too_large
        try:
            info = read_header(offload(os.pread, fd, HEADER_BYTES, 0), size)
        except BadWav as exc:
            return jsonify(error=f"not a recording this dashboard plays: {exc}"), 400
        if info.frames == 0:
            return jsonify(error="not a recording this dashboard plays: it holds no audio"), 400
        offload(os.fsync, fd)
        target = recordings.upload_path(call.call_id)
        replaced = os.path.exists(target)
        offload(os.replace, temporary, target)
        kept = True
    finally:
        os.close(fd)
        if not kept:
            try:
                os.unlink(temporary)
            except OSError:
                pass
    data = {"call_id": call.call_id, "bytes": size, "channels": info.channels,
            "sample_rate": info.sample_rate, "duration": round(info.duration, 3)}
    if info.channels == 2 and not call.active:
        # Uploaded once the call ended (DashboardClient): measured now, so filters and analytics have it.
        located = _open(call, quiet_if_none=True)
        if isinstance(located, Located):
            try:
                _measure(call, located)
            finally:
                located.close()
    return jsonify(data=data), 200 if replaced else 201


def _receive(fd: int, limit: int) -> int:
    """Copy the body into ``fd`` a chunk at a time (reads yield to other greenlets; writes run off the loop)."""
    stream = request.stream
    total = 0
    while True:
        chunk = stream.read(65_536)
        if not chunk:
            return total
        total += len(chunk)
        if total > limit:
            return total
        offload(_write_all, fd, chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _other_method(call_id: str = "") -> None:
    raise MethodNotAllowed(valid_methods=["GET", "HEAD", "OPTIONS", "PUT"] if request.path.endswith("/recording") else ["GET", "HEAD", "OPTIONS"])


# Without these, PATCH or DELETE /calls/x/recording would reach the call routes as the call "x/recording"
# (an id may hold slashes). Named *_fallback: they are not methods these paths answer.
bp.add_url_rule("/calls/<anypath:call_id>/recording", "recording_method_fallback", _other_method, methods=["POST", "PATCH", "DELETE"])
bp.add_url_rule("/calls/<anypath:call_id>/recording/peaks", "peaks_method_fallback", _other_method,
                methods=["POST", "PUT", "PATCH", "DELETE"])
bp.add_url_rule("/calls/<anypath:call_id>/recording/quality", "quality_method_fallback", _other_method,
                methods=["POST", "PUT", "PATCH", "DELETE"])


def _query_id() -> str:
    call_id = request.args.get("id")
    if not call_id:
        raise params.BadParam("id", "is required: the call's id, percent-encoded")
    return call_id


# The query forms, for ids a path cannot carry (see api.call_by_id); the dashboard uses these.
@bp.get("/call/recording")
def recording_by_id() -> Response | tuple[Response, int]:
    return recording(_query_id())


@bp.get("/call/recording/peaks")
def peaks_by_id() -> Response | tuple[Response, int]:
    return peaks(_query_id())


@bp.get("/call/recording/quality")
def quality_by_id() -> Response | tuple[Response, int]:
    return recording_quality(_query_id())


@bp.put("/call/recording")
@auth.write
def upload_by_id() -> Response | tuple[Response, int]:
    return upload(_query_id())

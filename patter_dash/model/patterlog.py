"""Patter's call logs: one call folder written by Patter's ``CallLogger`` → the events the pipeline takes.

``PATTER_LOG_DIR`` makes getpatter 0.7.0 write ``<root>/calls/YYYY/MM/DD/<id>/``:
``metadata.json`` (replaced atomically; ``in_progress`` until the call ends),
``transcript.jsonl`` (one ``TurnMetrics`` dict a line) and ``events.jsonl``
(``tool_call``, ``tool_result``, ``barge_in``, ``error``). :func:`read_call`
reads one folder and says what it holds as events with stable ids
(``patterlog:<call_id>:...``), so importing a folder twice, or once by the
``import`` command and once by a follower, applies it once. It reads files
only; walking a root and feeding the pipeline is the caller's concern.

What Patter really writes, and how it is read here:

- ``call_id`` comes from ``metadata.json``; the folder name is a sanitised copy.
- ``ended_at`` is when the file was written: the end is ``started_at + duration_ms``.
- ``latency.p50_ms``/``p95_ms``/``p99_ms`` are *total* latency; the full breakdowns
  (``avg``, ``p50``, ...) carry the response latency and are what is read.
- Turns can be missing (a gap in ``turn_index``); tool events carry no turn and are
  written before the turn they belong to is logged: each is placed before the
  agent's words of the next turn logged after it, as the caller heard them.
- Masked (``***1234``) and hashed (``sha256:...``) numbers are kept as written
  (the store flags such calls ``number_masked``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .clean import ValidationError
from .events import MAX_ID_LENGTH, Event, make_event

#: ``schema_version`` majors this reader understands (CallLogger: "bumped on any breaking shape change").
KNOWN_MAJOR = "1"
#: Bytes read of ``metadata.json`` at most, and of one JSONL line; past them the file or line is skipped.
MAX_METADATA_BYTES = 1 << 20
MAX_LINE_BYTES = 1 << 20
#: Bytes read of one JSONL file at most: a runaway file cannot exhaust the importer's memory.
MAX_JSONL_BYTES = 64 << 20
#: Patter's marker of a barged-in turn.
INTERRUPTED = "[interrupted]"


@dataclass
class CallLog:
    """What one call folder holds.

    ``state`` is ``completed``, ``in_progress`` or ``skipped`` (then ``reason`` says why and
    ``events`` is empty). ``problems`` are (path, reason) for lines or files left out of a call
    that was still read.
    """

    folder: str
    state: str
    call_id: str | None = None
    started_at: float | None = None
    events: list[Event] = field(default_factory=list)
    reason: str = ""
    problems: list[tuple[str, str]] = field(default_factory=list)


_HEX = frozenset("0123456789abcdef")


def masked_number(value: Any) -> bool:
    """Whether a caller or callee is one Patter redacted (``PATTER_LOG_REDACT_PHONE``): ``***1234`` or ``sha256:<hex>``."""
    if not isinstance(value, str):
        return False
    if value.startswith("***"):
        return True
    digest = value[7:]
    return value.startswith("sha256:") and 8 <= len(digest) <= 64 and set(digest) <= _HEX


def event_key(call_id: str, part: str) -> str:
    """The stable id of one event of a logged call; a very long call id is hashed to stay within 256 characters."""
    head = call_id if len(call_id) <= 180 else "sha256:" + hashlib.sha256(call_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"patterlog:{head}:{part}"[:MAX_ID_LENGTH]


def epoch(value: Any) -> float | None:
    """An ISO 8601 string (CallLogger's ``...Z``) or epoch number → epoch seconds; None when neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            return None  # CallLogger always writes UTC with a zone: a bare time is not its
        return moment.timestamp()
    return None


def _no_constants(name: str) -> None:
    # Python's json (which CallLogger uses) writes NaN and Infinity; they mean "no value" here.
    return None


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_no_constants)


def _known(version: Any) -> bool:
    return isinstance(version, str) and (version == KNOWN_MAJOR or version.startswith(KNOWN_MAJOR + "."))


def _read_metadata(path: str) -> tuple[dict[str, Any] | None, str]:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_METADATA_BYTES + 1)
    except FileNotFoundError:
        return None, "no metadata.json (CallLogger writes it when a call starts): nothing says which call this is"
    except PermissionError:
        return None, f"metadata.json cannot be read by this user (uid {os.getuid()}): CallLogger writes it mode 0600; run the import as the agent's user or make it readable"
    except OSError as exc:
        return None, f"metadata.json cannot be read: {exc.strerror or exc}"
    if len(raw) > MAX_METADATA_BYTES:
        return None, f"metadata.json is larger than {MAX_METADATA_BYTES} bytes"
    try:
        meta = _loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return None, f"metadata.json is not JSON ({exc})"
    if not isinstance(meta, dict):
        return None, "metadata.json is not a JSON object"
    if not _known(meta.get("schema_version")):
        return None, f"metadata.json has schema_version {meta.get('schema_version')!r}; this release reads {KNOWN_MAJOR}.x"
    return meta, ""


def _read_jsonl(path: str, problems: list[tuple[str, str]]) -> list[tuple[int, dict[str, Any]]] | None:
    """The records of a JSONL file with their line numbers; bad lines are reported and left out.

    None when the file exists but cannot be read at all (the call is then not imported:
    a later import, once it can be read, brings it whole).
    """
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return []  # events.jsonl exists only once something was logged
    except OSError as exc:
        problems.append((path, f"cannot be read by this user (uid {os.getuid()}): {exc.strerror or exc}"))
        return None
    name = os.path.basename(path)
    out: list[tuple[int, dict[str, Any]]] = []
    with fh:
        try:
            data = fh.read(MAX_JSONL_BYTES + 1)
        except OSError as exc:
            problems.append((path, f"cannot be read: {exc.strerror or exc}"))
            return None
    if len(data) > MAX_JSONL_BYTES:
        problems.append((path, f"larger than {MAX_JSONL_BYTES} bytes: only the first {MAX_JSONL_BYTES} were read"))
        data = data[:MAX_JSONL_BYTES]
        data = data[: data.rfind(b"\n") + 1]
    lines = data.split(b"\n")
    last = len(lines) - 1  # after the final newline: b"" when the file ends whole
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        if number - 1 == last:
            # No newline yet: CallLogger writes a record and its newline in one append, so this is a
            # line being written now (a live call) or cut by a crash. Never guessed at.
            problems.append((where, f"half-written last line of {name} (no newline)"))
            continue
        if len(raw) > MAX_LINE_BYTES:
            problems.append((where, f"line longer than {MAX_LINE_BYTES} bytes"))
            continue
        try:
            record = _loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            problems.append((where, f"not JSON ({exc})"))
            continue
        if not isinstance(record, dict):
            problems.append((where, "not a JSON object"))
            continue
        if not _known(record.get("schema_version")):
            problems.append((where, f"schema_version {record.get('schema_version')!r} unknown (this release reads {KNOWN_MAJOR}.x)"))
            continue
        out.append((number, record))
    return out


def _latency(meta: dict[str, Any]) -> dict[str, Any]:
    """CallMetrics' percentile breakdowns from metadata's ``latency``.

    The flat ``p50_ms``/``p95_ms``/``p99_ms`` are each percentile's ``total_ms`` (what the
    caller waited plus their own speech), so they only stand in, as ``total_ms``, where the
    full breakdown is missing: never as the response latency.
    """
    latency = meta.get("latency")
    if not isinstance(latency, dict):
        return {}
    out: dict[str, Any] = {}
    for name, flat in (("avg", None), ("p50", "p50_ms"), ("p95", "p95_ms"), ("p99", "p99_ms")):
        block = latency.get(name)
        if isinstance(block, dict):
            out[f"latency_{name}"] = block
        elif flat is not None and isinstance(latency.get(flat), (int, float)) and not isinstance(latency.get(flat), bool):
            out[f"latency_{name}"] = {"total_ms": latency[flat]}
    return out


def _tool_text(name: str, args: Any, result: Any) -> str:
    """The line Patter's stream handler puts in the transcript for a tool invocation."""
    if result is None:
        return f"{name}({json.dumps(args if args is not None else {}, default=str)})"  # Patter's own json.dumps
    shown = result if isinstance(result, str) else json.dumps(result, default=str)
    return f"{name}(...) → {shown if len(shown) <= 200 else shown[:200] + '…'}"


def read_call(folder: str) -> CallLog:
    """Read one call folder into events (see the module's docstring); never raises for what the files hold."""
    problems: list[tuple[str, str]] = []
    meta, why = _read_metadata(os.path.join(folder, "metadata.json"))
    if meta is None:
        return CallLog(folder, "skipped", reason=why)
    call_id = meta.get("call_id")
    if not isinstance(call_id, str) or not call_id.strip() or len(call_id) > MAX_ID_LENGTH:
        return CallLog(folder, "skipped", reason="metadata.json has no usable call_id")
    started = epoch(meta.get("started_at"))
    if started is None:
        return CallLog(folder, "skipped", call_id=call_id, reason=f"metadata.json started_at {meta.get('started_at')!r} is not an ISO time")
    turns = _read_jsonl(os.path.join(folder, "transcript.jsonl"), problems)
    logged = _read_jsonl(os.path.join(folder, "events.jsonl"), problems)
    if turns is None or logged is None:
        return CallLog(folder, "skipped", call_id=call_id, started_at=started, reason=problems[-1][1], problems=problems)
    in_progress = meta.get("status") == "in_progress"
    log = CallLog(folder, "in_progress" if in_progress else "completed", call_id, started, problems=problems)

    def add(kind: str, data: dict[str, Any], part: str, at: float, where: str) -> None:
        try:
            log.events.append(make_event(kind, {"call_id": call_id, **data}, event_key(call_id, part), now=at, copy=False))
        except ValidationError as exc:
            detail = "; ".join(f"{d.get('field')}: {d.get('error')}" for d in exc.details) or exc.message
            problems.append((where, f"refused: {detail}"))

    meta_path = os.path.join(folder, "metadata.json")
    identity = {k: meta[k] for k in ("caller", "callee", "direction") if isinstance(meta.get(k), str) and meta[k]}
    labels = {k: meta[k] for k in ("telephony_provider", "provider_mode") if isinstance(meta.get(k), str) and meta[k]}
    context = {k: meta[k] for k in ("trace_id", "agent") if meta.get(k)}
    add("call_start", {**identity, **labels, **context, "started_at": started}, "start", started, meta_path)

    # Tool events go before the turn logged next after them (they are written first); by time order.
    pending: list[tuple[float, int, dict[str, Any]]] = []
    for number, record in logged or []:
        kind = record.get("type")
        data = record.get("data") if isinstance(record.get("data"), dict) else {}
        at = epoch(record.get("ts"))
        if kind in ("tool_call", "tool_result") and isinstance(data.get("name"), str) and data["name"]:
            pending.append((at if at is not None else started, number, data))
        # barge_in and error events are read from the turns and metadata they repeat
        # (a turn's "[interrupted]" or bargein_ms; metadata's error): one source each.
    pending.sort(key=lambda p: (p[0], p[1]))
    events_path = os.path.join(folder, "events.jsonl")
    transcript_path = os.path.join(folder, "transcript.jsonl")

    def tools_until(limit: float | None) -> None:
        while pending and (limit is None or pending[0][0] <= limit):
            at, number, data = pending.pop(0)
            name, args, result = data["name"], data.get("arguments"), data.get("result")
            add("transcript", {"role": "tool", "text": _tool_text(name, args, result), "timestamp": at,
                               "tool_name": name, "tool_args": args if args is not None else {}, "tool_result": result},
                f"event:{number}", at, f"{events_path}:{number}")

    last = started
    for number, record in turns or []:
        turn = {k: v for k, v in record.items() if k not in ("schema_version", "ts")}
        written = epoch(record.get("ts"))
        at = epoch(turn.get("timestamp")) or written or last
        index = turn.get("turn_index")
        part = f"turn:{index}" if isinstance(index, int) and not isinstance(index, bool) else f"line:{number}"
        user = turn.get("user_text")
        if isinstance(user, str) and user:
            # The caller's words first, then the tools the agent called for them, then its answer
            # (mirrored from the turn by the store), as the call went.
            line = {"role": "user", "text": user, "timestamp": at}
            if part.startswith("turn:"):
                line["turnIndex"] = index
            add("transcript", line, f"user:{part}", at, f"{transcript_path}:{number}")
        tools_until(written if written is not None else at)
        add("turn", {"turn": turn}, part, at, f"{transcript_path}:{number}")
        last = max(last, at)
    tools_until(None)

    if in_progress:
        return log
    duration_ms = meta.get("duration_ms")
    duration = duration_ms / 1000 if isinstance(duration_ms, (int, float)) and not isinstance(duration_ms, bool) and duration_ms >= 0 else None
    ended = started + duration if duration is not None else (epoch(meta.get("ended_at")) or last)
    metrics: dict[str, Any] = {"call_id": call_id, **_latency(meta)}
    if duration is not None:
        metrics["duration_seconds"] = duration
    if isinstance(meta.get("cost"), dict):
        metrics["cost"] = meta["cost"]
    metrics.update(labels)
    if isinstance(meta.get("error"), str) and meta["error"]:
        metrics["error_code"] = meta["error"]
    end: dict[str, Any] = {**identity, "ended_at": ended, "metrics": metrics}
    if isinstance(meta.get("status"), str) and meta["status"] and meta["status"] != "completed":
        end["status"] = meta["status"]
    if isinstance(meta.get("turns"), int) and not isinstance(meta.get("turns"), bool):
        end["turns_reported"] = meta["turns"]  # may exceed the turns logged: an interrupted one can be missing
    if isinstance(meta.get("recording_path"), str) and meta["recording_path"]:
        end["recording_path"] = meta["recording_path"]
    add("call_end", end, "end", max(ended, last), meta_path)
    if not any(e.type == "call_end" for e in log.events):
        return CallLog(folder, "skipped", call_id=call_id, started_at=started, reason=problems[-1][1], problems=problems)
    return log

"""Import: ``patter-dash import DIR`` backfills every call under a Patter log root into the history file.

Walks ``<root>/calls/YYYY/MM/DD/<id>/`` in date order, reads each folder with
:func:`patter_dash.model.patterlog.read_call` and submits its events through
the pipeline's normal path (journal first, then the store), with their stable
ids, so importing again applies nothing twice. A call the history already
holds finished (from callbacks, notify or an earlier import) is left as it is:
its lines are not added a second time. Nothing a folder holds stops the
import; every folder left out is reported with its path and the reason.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO

from ..config import ConfigError, Settings
from ..core.measuring import RecordingMeasurer
from ..core.pipeline import Pipeline, QueueFull
from ..core.recordings import Recordings
from ..journal import JournalUnavailable, open_journal
from ..model import records
from ..model.events import Event
from ..model.patterlog import CallLog, read_call

#: Events submitted at once (one journal transaction or a few): well under the queue's 10,000.
SUBMIT_EVENTS = 2_000


@dataclass
class Summary:
    imported: int = 0
    present: int = 0
    in_progress: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: Lines or files left out of calls that were imported.
    problems: list[tuple[str, str]] = field(default_factory=list)
    folders: int = 0
    #: Imported calls whose recording gave their quality figures (:class:`~patter_dash.core.measuring.RecordingMeasurer`).
    measured: int = 0

    def lines(self) -> list[str]:
        out = [
            f"patter-dash: {self.folders} call folders: {self.imported} imported, {self.present} already present, "
            f"{self.in_progress} in progress (imported as live calls; import again once they end), "
            f"{len(self.skipped)} skipped"
        ]
        if self.measured:
            out.append(f"  {self.measured} recordings measured (conversation quality)")
        out += [f"  skipped {path}: {why}" for path, why in self.skipped]
        if self.problems:
            out.append(f"  {len(self.problems)} lines or files left out of imported calls:")
            out += [f"  left out {path}: {why}" for path, why in self.problems]
        return out


def call_folders(root: str) -> Iterator[str]:
    """Every call folder under ``root/calls``, oldest day first; only CallLogger's numeric date levels."""
    calls = os.path.join(root, "calls")

    def numeric(path: str) -> list[str]:
        try:
            names = os.listdir(path)
        except OSError:
            return []
        return sorted(n for n in names if n.isdigit() and os.path.isdir(os.path.join(path, n)))

    for year in numeric(calls):
        for month in numeric(os.path.join(calls, year)):
            for day in numeric(os.path.join(calls, year, month)):
                day_dir = os.path.join(calls, year, month, day)
                try:
                    names = sorted(os.listdir(day_dir))
                except OSError:
                    continue
                for name in names:
                    folder = os.path.join(day_dir, name)
                    # Not followed out of the root: a symlinked folder is not one CallLogger made.
                    if not name.startswith(".") and os.path.isdir(folder) and not os.path.islink(folder):
                        yield folder


class Importer:
    """Feeds call folders into one pipeline; a follower can hold one and call :meth:`add` per folder."""

    def __init__(self, pipeline: Pipeline, *, retention_days: float = 0, note_recorded: bool = False) -> None:
        self.pipeline = pipeline
        self.retention_days = retention_days
        self.summary = Summary()
        self._batch: list[Event] = []
        #: Finished calls imported with a recording (named by Patter, or beside the log): (call_id, started_at, path).
        #: Only for the import command, which measures them at the end; a server's follower has them measured as
        #: they end (core/measuring.py), and must not keep a list that grows for as long as it runs.
        self.note_recorded = note_recorded
        self.recorded: list[tuple[str, float, str | None]] = []

    def add(self, folder: str) -> CallLog:
        return self.take(read_call(folder))

    def take(self, log: CallLog) -> CallLog:
        """Queue what a folder read (:func:`read_call`) holds that the history lacks; ``add`` reads and takes."""
        folder = log.folder
        summary = self.summary
        summary.folders += 1
        if log.state == "skipped":
            summary.skipped.append((folder, log.reason))
            summary.problems += [p for p in log.problems if p[1] != log.reason]
            return log
        assert log.call_id is not None and log.started_at is not None
        if self.retention_days and log.started_at < time.time() - self.retention_days * 86_400:
            summary.skipped.append((folder, f"started more than PATTER_DASH_RETENTION_DAYS ({self.retention_days:g}) days ago: "
                                            "the dashboard's retention would delete it"))
            return log
        held = self._held(log.call_id)
        if held is not None and not held.active and held.ended_by_end_event:
            summary.present += 1
            return log
        events = log.events if held is None else self._new_to(held, log.events)
        summary.problems += log.problems
        if log.state == "in_progress":
            summary.in_progress += 1
        else:
            summary.imported += 1
        if log.state == "completed" and self.note_recorded:
            named = next((e.data.get("recording_path") for e in log.events if e.type == "call_end"), None)
            if named or os.path.exists(os.path.join(folder, "recording.wav")):
                self.recorded.append((log.call_id, log.started_at, named))
        self._batch += events
        if len(self._batch) >= SUBMIT_EVENTS:
            self.flush()
        return log

    def _held(self, call_id: str) -> records.Call | None:
        if any(e.call_id == call_id for e in self._batch):
            self.flush()  # the same call id in two folders: the second sees the first
        return self.pipeline.history.get(call_id)

    @staticmethod
    def _new_to(call: records.Call, events: list[Event]) -> list[Event]:
        """A call the history holds live (callbacks, or an earlier import of it in progress): its lines are not sent twice.

        The ids dedupe what an earlier import sent; lines that came another way
        (callbacks stamp them differently) are matched by what they say.
        """
        said = {(line[records.LINE_ROLE], line[records.LINE_TEXT]) for line in call.transcript}
        tools = {
            (extra.get("tool_name"), repr(extra.get("tool_args")), repr(extra.get("tool_result")))
            for line in call.transcript if line[records.LINE_ROLE] == "tool" and (extra := line[records.LINE_EXTRA])
        }
        kept = []
        for event in events:
            data = event.data
            if event.type == "transcript":
                if data["role"] == "tool":
                    if (data.get("tool_name"), repr(data.get("tool_args")), repr(data.get("tool_result"))) in tools:
                        continue
                elif (data["role"], data["text"]) in said:
                    continue
            kept.append(event)
        return kept

    def flush(self) -> None:
        batch, self._batch = self._batch, []
        for start in range(0, len(batch), SUBMIT_EVENTS):
            self.pipeline.submit(batch[start : start + SUBMIT_EVENTS], timeout=120.0)


def run_import(root: str, db: str, settings: Settings, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """The ``import`` command: 0 when every folder was read (even if some were skipped), 2 when it could not run."""
    if not os.path.isdir(root):
        raise ConfigError(f"{root} is not a directory (a Patter log root holds calls/YYYY/MM/DD/<call id>/)")
    if not os.path.isdir(os.path.join(root, "calls")):
        raise ConfigError(f"{root} has no calls/ folder: point it at PATTER_LOG_DIR (the folder that holds calls/)")
    journal = open_journal(db, sync=settings.DB_SYNC)
    if journal is None:
        raise ConfigError("history is kept in memory only (PATTER_DASH_DB=:memory:): name a file with --db PATH")
    journal.check()
    pipeline = Pipeline(
        queue_size=max(settings.QUEUE_SIZE, SUBMIT_EVENTS),
        max_calls=settings.MAX_CALLS,
        max_call_text=settings.MAX_CALL_TEXT,
        max_active_calls=settings.MAX_ACTIVE_CALLS,
        journal=journal,
        # Closing stale calls and purging old ones are the server's: the import only adds.
        call_timeout=None,
        retention_days=0,
        redact=settings.REDACT,
        redact_key=settings.REDACT_KEY.encode() if settings.REDACT_KEY else None,
    )
    pipeline.ensure_started()
    if pipeline.journal_error is not None:
        pipeline.stop()
        raise ConfigError(f"cannot write the history: {pipeline.journal_error}")
    importer = Importer(pipeline, retention_days=settings.RETENTION_DAYS, note_recorded=True)
    tty = err.isatty()
    started = time.monotonic()
    try:
        folders = sorted(call_folders(root))  # listing first: the progress line knows its total
        for n, folder in enumerate(folders, 1):
            importer.add(folder)
            if tty and (n % 50 == 0 or n == len(folders)):
                width = 30
                done = width * n // len(folders)
                err.write(f"\r[{'#' * done}{'.' * (width - done)}] {n}/{len(folders)} calls")
                err.flush()
        importer.flush()
        # Their recordings' quality, once every call is in (an annotation each: journaled like an operator's).
        measurer = RecordingMeasurer(pipeline, Recordings((root, *settings.RECORDINGS_DIRS), None), watch=False)
        for call_id, started_at, named in importer.recorded:
            kept = measurer.analyse(call_id, started_at, named)
            if kept is not None and pipeline.annotate(call_id, {"quality": kept}, timeout=120.0) is not None:
                importer.summary.measured += 1
    except (QueueFull, JournalUnavailable) as exc:
        raise ConfigError(f"cannot write the history {db}: {exc}") from None
    finally:
        if tty:
            err.write("\n")
        pipeline.stop(timeout=60.0)
    for line in importer.summary.lines():
        print(line, file=out)
    print(f"patter-dash: into {db} in {time.monotonic() - started:.1f} s", file=out)
    return 0

"""Follow: the server reads Patter's call logs while they are written (``PATTER_DASH_PATTER_LOG_DIR``).

CallLogger writes a call into ``<root>/calls/YYYY/MM/DD/<id>/`` (the UTC day it
started), appends to its JSONL files and replaces ``metadata.json`` at the end.
Only recent day folders can change, so only they are looked at: today's,
yesterday's (a call that began before midnight) and those of calls still in
progress. Nothing walks the whole tree, so a root with 100,000 calls costs
what a root with ten does.

How a change is noticed:

- **notify** (Linux): inotify watches on those day folders (a new call folder)
  and on each open call folder (its files), read by a native thread of its own
  (:func:`~patter_dash.core.cooperative.native_thread`), which only queues the
  folder and wakes the follower; watchdog supplies the inotify bindings.
  (Watchdog's ``Observer`` itself cannot run in gunicorn's gevent worker:
  ``patch_all`` swaps the ``queue.Queue`` it subclasses and turns its threads
  into greenlets.)
- **poll** (``PATTER_DASH_PATTER_LOG_POLL=1``, or when inotify is unavailable):
  every :data:`POLL_INTERVAL`, a stat of each recent day folder (its mtime moves
  when a call folder is added) and of each open call folder's three files.

The follower itself is a greenlet of the serving loop (a thread elsewhere):
reads and stats run on native threads (:func:`offload`), and a folder read is
applied through :class:`~patter_dash.run.importer.Importer`, with the stable
event ids of :mod:`patter_dash.model.patterlog`, so what was applied before (by
the import command, an earlier run, or callbacks for the same call) is not
applied twice.

The cursor, kept in the journal's info table (:meth:`Pipeline.remember`), is per
call folder the size, mtime and inode of each of its files when last read (the
bytes read of each JSONL file) and what the folder held (completed, in progress,
skipped), plus the last UTC day followed. A starting server looks at the days
from the day before that one to today and at the folders still open, and reads
only the folders whose files changed: what Patter wrote while the dashboard was
down appears once, and nothing else is read again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from ..core.cooperative import Slices, Wakeup, gevent_active, native_thread, offload, original
from ..core.pipeline import ApplyFailed, Pipeline, QueueFull
from ..journal import JournalUnavailable
from ..model.patterlog import CallLog, read_call
from .importer import Importer

log = logging.getLogger("patter_dash")

#: Seconds between two looks at the recent days when polling (and between housekeeping rounds when notified).
POLL_INTERVAL = 0.5
TICK_INTERVAL = 1.0
#: Seconds before a round that could not be written (queue full, history down) is tried again.
RETRY_DELAY = 1.0
#: Seconds between two looks at whether this process now runs the jobs (and so follows), while another does.
STANDBY_LOOK = 1.0
#: Call folders read and applied at once (a catch-up of a busy day goes in steps of this many).
READ_CHUNK = 500
#: Days before today that are always followed (calls that started before midnight UTC).
RECENT_DAYS = 1
#: What each file of a call folder is, for its fingerprint.
FILES = ("metadata.json", "transcript.jsonl", "events.jsonl")
#: Reasons a folder is skipped that only mean "being written": not reported as errors.
TRANSIENT = ("no metadata.json",)


def _fingerprint(folder: str) -> list[Any] | None:
    """Per file (size, mtime ns, ctime ns, inode) or None when absent; None when the folder is gone.

    ctime moves on chmod: a file made readable is read again. The size is the number of
    bytes a read takes in (what was read up to; a half-written last line is read again).
    """
    out: list[Any] = []
    for name in FILES:
        try:
            st = os.stat(os.path.join(folder, name))
        except FileNotFoundError:
            if name == "metadata.json" and not os.path.isdir(folder):
                return None
            out.append(None)
        except OSError as exc:
            out.append(["error", exc.errno])
        else:
            out.append([st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino])
    return out


def _day_of(started: datetime) -> tuple[str, str, str]:
    return f"{started.year:04d}", f"{started.month:02d}", f"{started.day:02d}"


@dataclass
class _Look:
    """What a look at the followed days found (made off the loop, applied on it)."""

    changed: set[str] = field(default_factory=set)
    mtimes: dict[str, int] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    fallback: str | None = None


#: What the follower is told besides a folder: look at the followed days now; and read every open folder too.
LOOK = ""
LOOK_ALL = None


class _Inotify:
    """inotify watches read on a native thread of their own; each change is handed to ``changed``.

    Watched: day folders (``day``: a call folder made in it), their parents while a
    day does not exist yet (``parent``) and open call folders (``call``: their
    files). ``changed`` gets a call folder, :data:`LOOK` (a day appeared or went)
    or :data:`LOOK_ALL` (the kernel's queue overflowed: events were lost).
    """

    def __init__(self, changed: Any) -> None:
        from watchdog.observers import inotify_c as ic  # Linux only: ImportError / UnsupportedLibcError elsewhere

        self._ic = ic
        c = ic.InotifyConstants
        folders = c.IN_CREATE | c.IN_MOVED_TO | c.IN_DELETE | c.IN_ONLYDIR | c.IN_DONT_FOLLOW
        self._masks = {
            "day": folders,
            "parent": folders,
            "call": folders | c.IN_MODIFY | c.IN_CLOSE_WRITE | c.IN_ATTRIB,
        }
        self._changed = changed
        fd = ic.inotify_init()
        if fd < 0:
            raise _errno_error("inotify_init")
        self._fd = fd
        self._kill_r, self._kill_w = os.pipe()
        # A native lock: taken on the watcher thread and on offloaded ones, never on the serving loop.
        self._lock = original("_thread", "allocate_lock")()
        self._by_wd: dict[int, tuple[str, str]] = {}  # wd → (path, kind)
        self._by_path: dict[str, int] = {}
        self._closed = False
        self._exited = False
        native_thread(self._run, "patter-dash-inotify")

    def watch(self, path: str, kind: str) -> None:
        """Watch ``path`` as ``kind``; OSError when it cannot be (gone, the watch limit reached)."""
        with self._lock:
            if self._closed:
                return
            old = self._by_path.get(path)
            if old is not None and self._by_wd.get(old, ("", ""))[1] == kind:
                return
            wd = self._ic.inotify_add_watch(self._fd, os.fsencode(path), self._masks[kind])
            if wd < 0:
                raise _errno_error(f"inotify cannot watch {path}")
            self._by_wd[wd] = (path, kind)  # the same folder again (a parent become a day) keeps its wd
            self._by_path[path] = wd

    def unwatch(self, path: str) -> None:
        with self._lock:
            wd = self._by_path.pop(path, None)
            if wd is not None and not self._closed:
                self._by_wd.pop(wd, None)
                self._ic.inotify_rm_watch(self._fd, wd)

    def watched(self, kind: str | None = None) -> set[str]:
        with self._lock:
            return {path for path, k in self._by_wd.values() if kind is None or k == kind}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if not self._exited:
                os.write(self._kill_w, b"!")  # the reader closes the descriptors, under this lock

    @property
    def alive(self) -> bool:
        return not self._exited

    def _run(self) -> None:
        select = original("select", "select")  # blocking here is the point: this is not the serving loop
        c = self._ic.InotifyConstants
        try:
            while True:
                ready, _, _ = select([self._fd, self._kill_r], [], [])
                if self._kill_r in ready:
                    return
                try:
                    buffer = os.read(self._fd, 64 * 1024)
                except InterruptedError:
                    continue
                for wd, mask, _cookie, name in self._ic.InotifyFD._parse_event_buffer(buffer):
                    if mask & c.IN_Q_OVERFLOW:
                        self._changed(LOOK_ALL)
                        continue
                    with self._lock:
                        entry = self._by_wd.get(wd)
                        if mask & c.IN_IGNORED and entry is not None:  # its folder went (a retention sweep)
                            self._by_wd.pop(wd, None)
                            if self._by_path.get(entry[0]) == wd:
                                del self._by_path[entry[0]]
                    if entry is None:
                        continue
                    path, kind = entry
                    if kind == "call":
                        self._changed(path)
                    elif kind == "day" and mask & c.IN_ISDIR and mask & (c.IN_CREATE | c.IN_MOVED_TO) and name[:1] != b".":
                        folder = os.path.join(path, os.fsdecode(name))
                        try:
                            self.watch(folder, "call")  # before the read: nothing written after it is missed
                        except OSError:
                            pass  # the follower's read says what is wrong with it
                        self._changed(folder)
                    elif kind == "parent" or mask & c.IN_IGNORED or mask & c.IN_DELETE:
                        self._changed(LOOK)
        except Exception:  # the follower notices (alive) and polls instead
            log.exception("patter-dash: the inotify reader stopped")
        finally:
            with self._lock:
                self._closed = self._exited = True
                for fd in (self._fd, self._kill_r, self._kill_w):
                    try:
                        os.close(fd)
                    except OSError:
                        pass


def _errno_error(what: str) -> OSError:
    import ctypes

    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


class Follower:
    """Follows one Patter log root into one pipeline; :meth:`start` in the serving process, :meth:`stop` at exit."""

    def __init__(self, pipeline: Pipeline, root: str, *, poll: bool = False, retention_days: float = 0) -> None:
        self.pipeline = pipeline
        self.root = os.path.abspath(root)
        self.calls_dir = os.path.join(self.root, "calls")
        self.retention_days = retention_days
        self.mode = "poll" if poll else "notify"
        self.poll_reason: str | None = "PATTER_DASH_PATTER_LOG_POLL is set" if poll else None
        self.status = "starting"
        self.waiting_for: str | None = None
        self.calls_followed = 0
        #: Call folders read since start (a starting server reads only those changed since it last ran).
        self.folders_read = 0
        self.errors = 0
        self.last_error: dict[str, Any] | None = None
        self.last_read_at: float | None = None
        # The cursor rows of this root: its own prefix (a hash: the path may hold anything).
        digest = hashlib.sha256(os.fsencode(self.root)).hexdigest()[:16]
        self._prefix = f"patterlog:{digest}:"
        #: Folders of the followed days (and open ones), by path: [fingerprint, state] as last read.
        self._known: dict[str, list[Any]] = {}
        #: Event ids applied from each open folder in this process (a live call's later reads send only the new).
        self._sent: dict[str, set[str]] = {}
        #: The folders of ``_known`` not completed (in progress, or skipped for now): what a look checks.
        self._open: set[str] = set()
        self._reported: dict[str, str] = {}
        self._changes: deque[str | None] = deque()
        self._day_mtimes: dict[str, int] = {}
        self._day_watermark: str | None = None
        self._inotify: _Inotify | None = None
        self._wakeup: Wakeup | None = None
        self._stopping = False
        self._pid: int | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Begin following (the pipeline's ``on_start``: once in the serving process, on its serving thread)."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._stopping = False
        self._wakeup = Wakeup()
        if gevent_active():
            import gevent

            gevent.spawn(self._main)
        else:
            threading.Thread(target=self._main, name="patter-dash-follow", daemon=True).start()

    def stop(self) -> None:
        self._stopping = True
        if self._inotify is not None:
            self._inotify.close()
        if self._wakeup is not None:
            self._wakeup.send()

    def view(self) -> dict[str, Any]:
        """The ``patter_logs`` block of ``/api/v1/health``."""
        return {
            "root": self.root,
            "mode": self.mode,
            "poll_reason": self.poll_reason,
            "status": self.status,
            "waiting_for": self.waiting_for,
            "calls_followed": self.calls_followed,
            "folders_read": self.folders_read,
            "live": sum(1 for folder in list(self._open) if self._known.get(folder, (None, ""))[1] == "in_progress"),
            "days": sorted({self._day_key(folder) for folder in self._days()}),
            "errors": self.errors,
            "last_error": self.last_error,
            "last_read_at": self.last_read_at,
        }

    # ----------------------------------------------------------------- cursor

    def _row(self, folder: str) -> str:
        rel = os.path.relpath(folder, self.root)
        if not (rel.isascii() and rel.isprintable()):
            rel = "x:" + os.fsencode(rel).hex()  # SQLite text must be valid UTF-8
        return self._prefix + "f:" + rel

    def _folder(self, row: str) -> str | None:
        rel = row[len(self._prefix) + 2 :]
        if rel.startswith("x:"):
            try:
                rel = os.fsdecode(bytes.fromhex(rel[2:]))
            except ValueError:
                return None
        return os.path.join(self.root, rel)

    def _load_cursor(self) -> None:
        journal = self.pipeline.journal
        if journal is None:
            return
        try:
            rows = offload(journal.info, self._prefix)
        except Exception as exc:  # a damaged row must not stop the server: it reads the days again
            self._error(journal.path, f"the follow cursor could not be read: {exc}")
            return
        for name, value in rows.items():
            if name == self._prefix + "day" and isinstance(value, str):
                self._day_watermark = value
            elif name.startswith(self._prefix + "f:") and isinstance(value, list) and len(value) == 2:
                folder = self._folder(name)
                if folder is not None:
                    self._remember(folder, value)

    # ----------------------------------------------------------------- days

    def _today(self) -> datetime:
        return datetime.now(timezone.utc)

    def _day_dir(self, day: datetime) -> str:
        return os.path.join(self.calls_dir, *_day_of(day))

    def _day_key(self, day_dir: str) -> str:
        return "-".join(day_dir.split(os.sep)[-3:])

    def _days(self) -> set[str]:
        """The day folders followed now: recent days and those of open folders."""
        today = self._today()
        days = {self._day_dir(today - timedelta(days=n)) for n in range(RECENT_DAYS + 1)}
        days |= {os.path.dirname(folder) for folder in list(self._open)}
        return days

    def _catch_up_days(self) -> set[str]:
        """On start: every day since the day before the last one followed (today and yesterday the first time)."""
        days = self._days()
        if self._day_watermark:
            try:
                since = datetime.strptime(self._day_watermark, "%Y-%m-%d").replace(tzinfo=timezone.utc) - timedelta(days=1)
            except ValueError:
                since = None
            today = self._today()
            while since is not None and since.date() <= today.date():
                days.add(self._day_dir(since))
                since += timedelta(days=1)
        return days

    # ----------------------------------------------------------------- the loop

    def _main(self) -> None:
        try:
            self._setup_notify()
            caught_up = everything = cursor_loaded = False
            next_tick = 0.0
            while not self._stopping:
                if not self.pipeline.runs_jobs:
                    # Several processes share the history (PostgreSQL): one follows, the one running the
                    # jobs. Another takes over where the cursor it shares says, once it holds them.
                    self.status, caught_up, cursor_loaded = "standby", False, False
                    self._changes.clear()
                    self._wait(STANDBY_LOOK)
                    continue
                now = time.monotonic()
                if not cursor_loaded:
                    self._load_cursor()
                    cursor_loaded = True
                if not caught_up:
                    caught_up = self._catch_up()
                    next_tick = now + self._interval()
                elif now >= next_tick or everything:
                    self._tick(everything)
                    everything = False
                    next_tick = now + self._interval()
                folders: set[str] = set()
                while self._changes:
                    folder = self._changes.popleft()
                    if folder is LOOK_ALL:
                        everything = True  # the kernel lost events: look at every followed folder
                    elif folder == LOOK:
                        next_tick = 0.0
                    else:
                        folders.add(folder)
                if folders and not self._read(folders):
                    self._wait(RETRY_DELAY)
                    continue
                if self._changes or everything or next_tick == 0.0:
                    continue
                self._wait(max(0.0, min(self._interval(), next_tick - time.monotonic())))
        except Exception:  # the server goes on serving; health says following stopped
            log.exception("patter-dash: following %s stopped", self.root)
            self.status = "stopped"
            self._error(self.root, "following stopped on an unexpected error (see the server log)")
        finally:
            if self._inotify is not None:
                self._inotify.close()
            if self._stopping:
                self.status = "stopped"

    def _interval(self) -> float:
        return POLL_INTERVAL if self.mode == "poll" else TICK_INTERVAL

    def _wait(self, seconds: float) -> None:
        assert self._wakeup is not None
        self._wakeup.wait(seconds)

    def _changed(self, folder: str | None) -> None:
        """From the inotify thread: a folder to read, or :data:`LOOK` / :data:`LOOK_ALL`. Thread-safe, never blocks."""
        self._changes.append(folder)
        if self._wakeup is not None:
            self._wakeup.send()

    def _setup_notify(self) -> None:
        if self.mode != "notify":
            return
        try:
            self._inotify = _Inotify(self._changed)
        except Exception as exc:  # not Linux, no inotify, the instance limit reached
            self._fall_back(f"inotify is not available ({exc})")

    def _fall_back(self, reason: str) -> None:
        if self.mode != "poll":
            log.warning("patter-dash: following %s by polling: %s", self.root, reason)
        self.mode, self.poll_reason = "poll", reason
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None

    def _catch_up(self) -> bool:
        """Look at every day since the last followed and every open folder; read what changed. Whether done."""
        if not self._root_ready():
            return False
        self.status = "catching_up"
        days = self._catch_up_days()
        changed = self._apply_look(offload(self._look, days, True))
        if changed and not self._read(changed):
            return False
        self._prune()
        self.status = "following"
        log.info("patter-dash: caught up with %s (%d call folders read)", self.root, self.folders_read)
        return True

    def _tick(self, everything: bool = False) -> None:
        """Housekeeping: the root appearing, a new day, a day swept away; polling also looks for changes."""
        if not self._root_ready():
            return
        if self._inotify is not None and not self._inotify.alive and not self._stopping:
            self._fall_back("the inotify reader stopped (see the server log)")
        changed = self._apply_look(offload(self._look, self._days(), everything))
        if changed:
            self._read(changed)
        today = self._today().strftime("%Y-%m-%d")
        if today != self._day_watermark:
            self._prune()

    def _root_ready(self) -> bool:
        ready = offload(os.path.isdir, self.calls_dir)
        if not ready:
            if self.status != "waiting":
                log.warning("patter-dash: waiting for %s (no calls/ folder yet: Patter makes it at its first call)", self.root)
            self.status, self.waiting_for = "waiting", f"{self.calls_dir} does not exist yet"
            return False
        if self.status in ("starting", "waiting"):
            log.info("patter-dash: following Patter's call logs in %s (%s)", self.root, self.mode)
            self.status = "following"
        self.waiting_for = None
        return True

    # ----------------------------------------------------------------- looking (on a native thread)

    def _look(self, days: set[str], everything: bool) -> _Look:
        """What to read: new folders in ``days``, and open ones (every known one: ``everything``) that changed.

        Runs off the loop and changes nothing of the follower (health reads it
        meanwhile): the caller applies the answer. Notified, a day is listed only
        when first watched or when asked to (``everything``): inotify reports
        what comes after. Polling lists a day when its mtime moved (a folder was
        added or removed).
        """
        found = _Look()
        notify = self._inotify if self.mode == "notify" else None
        watched = notify.watched() if notify is not None else set()
        listed: set[str] = set()
        for day in sorted(days):
            try:
                mtime = os.stat(day).st_mtime_ns
            except FileNotFoundError:
                found.gone.append(day)
                if notify is not None:
                    self._watch_parent(notify, day, watched)  # a new day: noticed when its folder is made
                continue
            except OSError as exc:
                found.errors.append((day, f"cannot be read: {exc.strerror or exc}"))
                continue
            new_watch = False
            if notify is not None and day not in watched:
                try:
                    notify.watch(day, "day")  # before listing it: nothing added after is missed
                    new_watch = True
                except OSError as exc:
                    found.fallback, notify = str(exc), None
            if not (everything or new_watch or (notify is None and self._day_mtimes.get(day) != mtime)):
                continue
            try:
                with os.scandir(day) as entries:
                    names = [e.name for e in entries if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]
            except OSError as exc:
                found.errors.append((day, f"cannot be listed: {exc.strerror or exc}"))
                continue
            found.mtimes[day] = mtime
            listed.add(day)
            found.changed.update(f for f in (os.path.join(day, name) for name in names) if f not in self._known)
        checked = self._known if everything else {f: self._known[f] for f in list(self._open) if f in self._known}
        for folder, entry in list(checked.items()):
            if entry[1] == "completed" and not (everything and os.path.dirname(folder) in listed):
                continue
            new_watch = False
            if notify is not None and entry[1] != "completed" and folder not in watched:
                try:
                    notify.watch(folder, "call")
                    new_watch = True
                except FileNotFoundError:
                    pass  # gone: the read below says so
                except OSError as exc:
                    found.fallback, notify = str(exc), None
            if notify is not None and not everything and not new_watch:
                continue  # inotify says when an open folder changes
            if _fingerprint(folder) != entry[0]:
                found.changed.add(folder)
        return found

    def _watch_parent(self, notify: _Inotify, day: str, watched: set[str]) -> None:
        """Watch the deepest folder of ``day``'s path that exists (calls/, the year, the month) for it to appear."""
        path = day
        while path != self.root and len(path) > len(self.root):
            path = os.path.dirname(path)
            if os.path.isdir(path):
                if path not in watched:
                    try:
                        notify.watch(path, "parent")
                    except OSError:
                        pass  # the next tick looks again
                return

    def _apply_look(self, found: _Look) -> set[str]:
        self._day_mtimes.update(found.mtimes)
        for day in found.gone:
            self._day_mtimes.pop(day, None)
            self._gone_day(day)
        for path, why in found.errors:
            self._error(path, why)
        if found.fallback:
            self._fall_back(found.fallback)
        return found.changed

    def _gone_day(self, day: str) -> None:
        """A day folder vanished (Patter's retention sweep): forget its folders; the calls stored stay."""
        gone = [folder for folder in self._known if os.path.dirname(folder) == day]
        if gone:
            log.info("patter-dash: %s is gone (Patter's retention); its %d calls stay in the history", day, len(gone))
            for folder in gone:
                self._forget(folder)

    def _remember(self, folder: str, entry: list[Any]) -> None:
        self._known[folder] = entry
        if entry[1] == "completed":
            self._open.discard(folder)
        else:
            self._open.add(folder)

    def _forget(self, folder: str) -> None:
        self._known.pop(folder, None)
        self._open.discard(folder)
        self._sent.pop(folder, None)
        self._reported.pop(folder, None)
        if self._inotify is not None:
            offload(self._inotify.unwatch, folder)
        self.pipeline.remember({self._row(folder): None})

    def _read_many(self, folders: list[str]) -> list[tuple[str, list[Any] | None, CallLog | None]]:
        """Each folder's fingerprint and what it holds (None: it is gone); on a native thread."""
        notify = self._inotify if self.mode == "notify" else None
        out: list[tuple[str, list[Any] | None, CallLog | None]] = []
        for folder in folders:
            if notify is not None:
                try:
                    notify.watch(folder, "call")  # before reading: what is written after is notified
                except OSError:
                    pass  # gone (the read says so), or out of watches: the next look falls back to polling
            fingerprint = _fingerprint(folder)  # before the read: a change during it is seen by the next look
            out.append((folder, fingerprint, read_call(folder) if fingerprint is not None else None))
        return out

    # ----------------------------------------------------------------- reading into the history

    def _read(self, folders: set[str]) -> bool:
        """Read folders and apply what is new, :data:`READ_CHUNK` at a time; whether all was written.

        What could not be written (queue full, history down) is marked to be read again.
        """
        ordered = sorted(folders)
        for start in range(0, len(ordered), READ_CHUNK):
            chunk = ordered[start : start + READ_CHUNK]
            if not self._read_chunk(chunk):
                self._changes.extend(ordered[start:])
                return False
        return True

    def _read_chunk(self, folders: list[str]) -> bool:
        reads = offload(self._read_many, folders)
        self.folders_read += sum(1 for _, _, call_log in reads if call_log is not None)
        importer = Importer(self.pipeline, retention_days=self.retention_days)
        rows: dict[str, Any] = {}
        sent_now: dict[str, set[str]] = {}
        try:
            counted = self._take(reads, importer, rows, sent_now)
            importer.flush()
        except (QueueFull, JournalUnavailable) as exc:
            self._error(self.root, f"calls read could not be written yet: {exc}")
            return False
        except ApplyFailed as exc:  # reading again would not help: the cursor moves on
            self._error(self.root, f"an event read could not be applied: {exc}")
            counted = 0
        done = []
        for folder, keys in sent_now.items():
            entry = rows[self._row(folder)]
            self._remember(folder, entry)
            if entry[1] == "completed":
                self._sent.pop(folder, None)
                done.append(folder)
            else:
                self._sent.setdefault(folder, set()).update(keys)
        notify = self._inotify
        if notify is not None and done:
            offload(lambda: [notify.unwatch(folder) for folder in done])  # CallLogger writes nothing more there
        self.calls_followed += counted
        self.last_read_at = time.time()
        self.pipeline.remember(rows)  # after the events are on disk: a crash between reads them again
        return True

    def _take(self, reads: list[tuple[str, list[Any] | None, CallLog | None]], importer: Importer,
              rows: dict[str, Any], sent_now: dict[str, set[str]]) -> int:
        """Queue what each folder read holds that is new; how many calls go in for the first time."""
        counted = 0
        slices = Slices()  # a catch-up of thousands of calls lets requests run between them
        for folder, fingerprint, call_log in reads:
            if call_log is None or fingerprint is None:
                if folder in self._known:
                    self._forget(folder)
                continue
            sent = self._sent.get(folder, set())
            fresh = [e for e in call_log.events if e.key not in sent]
            call_log.events = fresh
            summary = importer.summary
            before = (summary.present, len(summary.skipped))
            importer.take(call_log)
            if fresh and not sent and call_log.state != "skipped" and (summary.present, len(summary.skipped)) == before:
                counted += 1  # a call whose events go in now for the first time in this process
            sent_now[folder] = {e.key for e in fresh if e.key is not None}
            self._report(folder, call_log)
            rows[self._row(folder)] = [fingerprint, call_log.state]
            slices.pause_if_due()
        return counted

    def _report(self, folder: str, call_log: CallLog) -> None:
        """Say once (per folder and reason) what of it could not be read: in the log and the health block."""
        problems = [(path, why) for path, why in call_log.problems if "half-written last line" not in why]
        if call_log.state == "skipped" and not call_log.reason.startswith(TRANSIENT):
            problems.insert(0, (folder, call_log.reason))
        if not problems:
            self._reported.pop(folder, None)
            return
        path, why = problems[0]
        if self._reported.get(folder) == why:
            return
        self._reported[folder] = why
        for path, why in problems:
            self._error(path, why)

    def _error(self, path: str, reason: str) -> None:
        self.errors += 1
        self.last_error = {"path": path, "reason": reason, "at": time.time()}
        log.warning("patter-dash: %s: %s", path, reason)

    def _prune(self) -> None:
        """Drop the cursor of folders no longer followed (days before yesterday, finished); note today as followed."""
        days = self._days()
        rows: dict[str, Any] = {}
        for folder in [f for f, entry in self._known.items() if entry[1] == "completed" and os.path.dirname(f) not in days]:
            self._known.pop(folder, None)
            rows[self._row(folder)] = None
        for day in [d for d in self._day_mtimes if d not in days]:
            self._day_mtimes.pop(day, None)
        notify = self._inotify
        if notify is not None:
            offload(lambda: [notify.unwatch(path) for path in notify.watched("day") - days])
        self._day_watermark = self._today().strftime("%Y-%m-%d")
        rows[self._prefix + "day"] = self._day_watermark
        self.pipeline.remember(rows)

"""Recordings: finding a call's WAV under the configured roots, reading its header, its waveform peaks, uploads.

Patter (``local_recording=True``) writes each call as a stereo WAV, 16 kHz
PCM16, left channel the caller, right channel the agent, and names it in
``on_call_end`` (and ``metadata.json``) as ``recording_path``; with call
logging on it is ``recording.wav`` in the call's log folder. A recording is
looked for, in order: one uploaded to this dashboard (``PUT .../recording``,
kept under a directory of its own beside the history file, named by a hash of
the call id), the call's ``recording_path`` (absolute, or relative to a root:
Patter writes it relative to the agent's working directory), and
``calls/YYYY/MM/DD/<id>/recording.wav`` under each root.

Only regular files under a root are ever opened: every candidate is resolved
(``realpath``: ``..`` and symlinks) and must lie inside a resolved root, the
last component is opened without following a symlink, and the opened file is
checked again through ``/proc/self/fd`` (a directory swapped for a symlink
between the check and the open is caught). A path never comes from a request:
only from the stored call.

Everything here blocks on the disk; the web layer runs it off the gevent loop.
"""

from __future__ import annotations

import array
import hashlib
import os
import re
import stat
import struct
import sys
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

#: Waveform buckets per channel: enough for a drawer 1,000 pixels wide, and 24 kB of JSON.
PEAK_BUCKETS = 1000
#: Peaks kept in memory (each about 16 kB); keyed by file identity, so a changed file is read again.
PEAK_CACHE = 64
#: A recording_path longer than this is not a path anyone wrote.
MAX_PATH = 4096
#: Bytes of a WAV read to find its ``data`` chunk: Patter's header is 44 bytes; others add a LIST chunk or two.
HEADER_BYTES = 65536
UPLOAD_DIR = "recordings"
#: Patter's ``safe_path_segment``: the folder name CallLogger gives a call id.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_PCM = 1
_EXTENSIBLE = 0xFFFE


class BadWav(ValueError):
    """A file that is not a WAV this dashboard plays (the message says what is wrong)."""


@dataclass(frozen=True)
class WavInfo:
    channels: int
    sample_rate: int
    data_offset: int
    data_bytes: int

    @property
    def frames(self) -> int:
        return self.data_bytes // (2 * self.channels)

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def read_header(head: bytes, file_size: int) -> WavInfo:
    """The format and the audio's place in a WAV whose first bytes are ``head``.

    Only RIFF/WAVE, PCM (plain or WAVE_FORMAT_EXTENSIBLE), 16 bits, one or two
    channels. A ``data`` size of 0 or past the end (a header Patter had not yet
    patched: the agent was still recording or crashed) means "to the end of the file".
    """
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise BadWav("not a WAV file: no RIFF/WAVE header")
    pos = 12
    fmt: tuple[int, int, int] | None = None
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        body = pos + 8
        if chunk == b"fmt ":
            if size < 16 or body + 16 > len(head):
                raise BadWav("the fmt chunk is too short")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", head, body)
            if tag == _EXTENSIBLE and size >= 40 and body + 26 <= len(head):
                tag = struct.unpack_from("<H", head, body + 24)[0]  # the sub-format GUID starts with the tag
            fmt = (tag, channels, rate)
            if tag != _PCM or bits != 16:
                raise BadWav(f"only 16-bit PCM is played (format {tag}, {bits} bits)")
            if channels not in (1, 2):
                raise BadWav(f"only 1 or 2 channels are played ({channels})")
            if not 1000 <= rate <= 384_000:
                raise BadWav(f"sample rate {rate} Hz is not an audio rate")
        elif chunk == b"data":
            if fmt is None:
                raise BadWav("the data chunk comes before the fmt chunk")
            available = max(0, file_size - body)
            length = size if 0 < size <= available else available
            length -= length % (2 * fmt[1])
            return WavInfo(fmt[1], fmt[2], body, length)
        pos = body + size + (size & 1)  # chunks are padded to an even length
    raise BadWav("no fmt and data chunks in the header")


def safe_segment(call_id: str) -> str:
    """The folder name Patter's CallLogger gives ``call_id`` (getpatter.utils.log_sanitize.safe_path_segment)."""
    cleaned = _UNSAFE.sub("_", _CONTROL.sub("", call_id))[:64].strip(".")
    return cleaned or "unknown"


def upload_name(call_id: str) -> str:
    """An uploaded recording's file name: a hash of the id, so no caller text becomes a path."""
    return hashlib.sha256(call_id.encode("utf-8", "surrogatepass")).hexdigest() + ".wav"


def _real(path: str) -> str | None:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return None


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


@dataclass
class Located:
    """An open recording: its file descriptor (the caller closes it), size, identity and format."""

    fd: int
    size: int
    identity: tuple[str, int, int, int]  # path, device, inode, mtime: the peaks cache key
    info: WavInfo
    closed: bool = False

    def close(self) -> None:
        # Once only: a second close could close a descriptor the number was reused for.
        if self.closed:
            return
        self.closed = True
        try:
            os.close(self.fd)
        except OSError:
            pass


class NotAvailable(Exception):
    """No recording can be served; ``named`` says whether the call names one (then the UI says it is not available)."""

    def __init__(self, reason: str, named: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.named = named


class Recordings:
    """Where recordings may be read (``roots``) and where uploads are kept (``upload_dir``, or None)."""

    def __init__(self, roots: tuple[str, ...] | list[str], upload_dir: str | None) -> None:
        self.roots = tuple(os.path.abspath(r) for r in roots)
        self.upload_dir = os.path.abspath(upload_dir) if upload_dir else None
        self._peaks: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._peaks_lock = threading.Lock()
        #: Peaks being computed, by file: a second request waits for the first instead of reading the file again.
        self.computing: dict[tuple[Any, ...], threading.Lock] = {}

    def _real_roots(self, with_uploads: bool) -> list[str]:
        roots = [*self.roots, *([self.upload_dir] if with_uploads and self.upload_dir else [])]
        return [r for r in map(_real, roots) if r is not None and os.path.isdir(r)]

    def candidates(self, call_id: str, started_at: float | None, recording_path: Any) -> tuple[list[str], bool]:
        """Paths to try, best first, and whether the call itself names a recording (``recording_path``)."""
        paths: list[str] = []
        if self.upload_dir:
            paths.append(os.path.join(self.upload_dir, upload_name(call_id)))
        named = isinstance(recording_path, str) and 0 < len(recording_path) <= MAX_PATH and "\x00" not in recording_path
        if named:
            if os.path.isabs(recording_path):
                paths.append(recording_path)
            else:
                paths.extend(os.path.join(root, recording_path) for root in self.roots)
        if started_at is not None:
            try:
                start = datetime.fromtimestamp(started_at, tz=timezone.utc)
            except (OverflowError, OSError, ValueError):
                start = None
            if start is not None:
                # CallLogger dates the folder by its own start time; ours can differ by a little across midnight.
                days = dict.fromkeys((start + timedelta(seconds=s)).strftime("%Y/%m/%d") for s in (0, -120, 120))
                segment = safe_segment(call_id)
                for root in self.roots:
                    for day in days:
                        paths.append(os.path.join(root, "calls", *day.split("/"), segment, "recording.wav"))
        return paths, named

    def open(self, call_id: str, started_at: float | None, recording_path: Any) -> Located:
        """The call's recording, opened; :class:`NotAvailable` says why not."""
        paths, named = self.candidates(call_id, started_at, recording_path)
        roots = self._real_roots(with_uploads=True)
        if not roots:
            raise NotAvailable("no recordings directory is configured (PATTER_DASH_RECORDINGS_DIRS)", named)
        why = "no recording file found under the recordings directories"
        seen = False  # a file was there but refused: the UI says "not available" rather than nothing
        for path in paths:
            real = _real(path)
            if real is None or not _inside(real, roots):
                if real is not None and os.path.lexists(path):
                    seen = True
                    why = "the recording lies outside the recordings directories"
                continue
            try:
                fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
            except FileNotFoundError:
                continue
            except OSError as exc:
                seen = True
                why = f"the recording cannot be opened: {exc.strerror or exc}"
                continue
            try:
                located = self._check(fd, roots)
            except (NotAvailable, BadWav, OSError) as exc:
                os.close(fd)
                seen = True
                why = getattr(exc, "reason", None) or str(exc)
                continue
            return located
        raise NotAvailable(why, named or seen)

    def _check(self, fd: int, roots: list[str]) -> Located:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotAvailable("the recording is not a regular file", True)
        opened = f"/proc/self/fd/{fd}"
        if os.path.exists(opened):
            # What was really opened: a directory on the way may have been swapped for a symlink after realpath.
            real = os.readlink(opened)
            if not _inside(real, roots):
                raise NotAvailable("the recording lies outside the recordings directories", True)
        else:
            real = ""
        head = os.pread(fd, HEADER_BYTES, 0)
        info = read_header(head, st.st_size)
        return Located(fd, st.st_size, (real, st.st_dev, st.st_ino, st.st_mtime_ns), info)

    # ------------------------------------------------------------------ peaks

    def cached_peaks(self, located: Located, kind: str = "peaks") -> dict[str, Any] | None:
        """The peaks (or, ``kind="quality"``, the quality figures) computed for this version of the file
        (path, inode, mtime, size), if any."""
        key = (kind, *located.identity, located.size)
        with self._peaks_lock:
            view = self._peaks.get(key)
            if view is not None:
                self._peaks.move_to_end(key)
            return view

    def keep_peaks(self, located: Located, view: dict[str, Any], kind: str = "peaks") -> None:
        with self._peaks_lock:
            self._peaks[(kind, *located.identity, located.size)] = view
            while len(self._peaks) > PEAK_CACHE:
                self._peaks.popitem(last=False)

    # ---------------------------------------------------------------- uploads

    def upload_path(self, call_id: str) -> str:
        assert self.upload_dir is not None
        return os.path.join(self.upload_dir, upload_name(call_id))

    def new_upload(self) -> tuple[int, str]:
        """A temporary file in the upload directory (created 0700 if missing): (fd, path)."""
        assert self.upload_dir is not None
        os.makedirs(self.upload_dir, mode=0o700, exist_ok=True)
        return tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=self.upload_dir)

    def remove_uploads(self, call_ids: list[str]) -> int:
        """Delete these calls' uploaded recordings (the calls were deleted); how many there were."""
        if not self.upload_dir:
            return 0
        removed = 0
        for call_id in call_ids:
            try:
                os.unlink(self.upload_path(call_id))
            except OSError:
                continue  # none was uploaded (or it is already gone)
            removed += 1
        return removed


def compute_peaks(fd: int, info: WavInfo, buckets: int = PEAK_BUCKETS) -> dict[str, Any]:
    """Read the audio once, a bucket at a time (memory stays at one bucket), into per-channel min/max."""
    frames = info.frames
    count = max(1, min(buckets, frames))
    per = -(-frames // count) if frames else 1
    width = 2 * info.channels
    mins: list[list[float]] = [[] for _ in range(info.channels)]
    maxs: list[list[float]] = [[] for _ in range(info.channels)]
    offset, end = info.data_offset, info.data_offset + frames * width
    while offset < end and len(mins[0]) < count:
        raw = os.pread(fd, min(per * width, end - offset), offset)
        if not raw:
            break
        offset += len(raw)
        raw = raw[: len(raw) - len(raw) % width]
        samples = array.array("h", raw)
        if sys.byteorder == "big":
            samples.byteswap()
        for ch in range(info.channels):
            part = samples[ch :: info.channels] if info.channels > 1 else samples
            if part:
                mins[ch].append(round(min(part) / 32768, 4))
                maxs[ch].append(round(max(part) / 32767, 4))
    names = ("caller", "agent") if info.channels == 2 else ("mixed",)
    return {
        "duration": round(info.duration, 3),
        "sample_rate": info.sample_rate,
        "channels": [{"name": names[ch], "min": mins[ch], "max": maxs[ch]} for ch in range(info.channels)],
        "buckets": len(mins[0]),
        "bucket_seconds": round(per / info.sample_rate, 6),
    }

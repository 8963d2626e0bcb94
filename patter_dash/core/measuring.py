"""Measuring: a call's recording measured once the call ends (its conversation quality), beside every request.

A call that ends naming a recording (``recording_path``), or whose recording
Patter's log folder holds under a recordings root, gets its quality figures
from the audio without anyone opening it: the analysis runs on a native
thread and its result goes to the call as an annotation queued for the one
writer (journaled, announced as ``call_updated``), so filters, exports and
analytics read the recording's figures, not only the events' estimate. A call
measured so is measured again only if its file changes and it is opened.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..model import quality
from ..model.records import Call
from . import speech
from .cooperative import in_background
from .recordings import NotAvailable, Recordings

if TYPE_CHECKING:
    from .pipeline import Pipeline

log = logging.getLogger("patter_dash")


class RecordingMeasurer:
    """Watches a pipeline's calls end and measures their recordings (see the module's docstring)."""

    def __init__(self, pipeline: Pipeline, recordings: Recordings) -> None:
        self.pipeline = pipeline
        self.recordings = recordings
        self.measured = 0
        pipeline.watchers.append(self.watch)

    def watch(self, call: Call, completed: bool, ended: bool) -> None:
        """Told under the store's lock: only decides, the work is handed to a native thread."""
        if not ended or call.active or call.quality is not None or not self.recordings.roots:
            return
        in_background(self.measure, call.call_id, call.started_at, call.meta_value("recording_path"))

    def measure(self, call_id: str, started_at: float | None, recording_path: object) -> None:
        """On a native thread: open, analyse, hand the figures to the writer; never raises (nobody waits)."""
        try:
            located = self.recordings.open(call_id, started_at, recording_path)
        except NotAvailable:
            return  # no recording, or one that is never served: the events' figures stand
        except Exception:
            log.exception("patter-dash: the recording of call %r could not be opened to measure it", call_id)
            return
        try:
            if located.info.channels != 2:
                return  # a mono recording does not tell the caller from the agent
            figures = speech.analyse(located.fd, located.info)
        except Exception:
            log.exception("patter-dash: the recording of call %r could not be measured", call_id)
            return
        finally:
            located.close()
        self.pipeline.annotate_soon(call_id, {"quality": quality.measured(figures)})
        self.measured += 1

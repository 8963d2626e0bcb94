"""Cooperative: living with gevent's one OS thread (pauses, hand-offs to native threads).

Under gunicorn's gevent worker one OS thread runs every request; a blocking
C call there (SQLite, fsync) stalls them all. :func:`offload` runs such a call
on gevent's pool of native threads while the calling greenlet waits and the
others run; in a threaded host it just calls.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def gevent_active() -> bool:
    try:
        from gevent import monkey
    except ImportError:
        return False
    return bool(monkey.is_module_patched("threading"))


def on_foreign_native_thread() -> bool:
    """Under gevent, whether we run on an OS thread other than the main one.

    Greenlets spawned there would belong to that thread's own hub, which
    nobody runs; the event thread must start from the serving (main) thread.
    """
    if not gevent_active():
        return False
    from gevent._hub_local import get_hub_if_exists

    hub = get_hub_if_exists()
    if hub is not None:
        # The serving thread runs the default loop. (Comparing thread objects fails in a
        # gunicorn worker: forked, its thread is not the one ``main_thread()`` names.)
        return not hub.loop.default
    from gevent.monkey import get_original

    current, main = get_original("threading", ["current_thread", "main_thread"])
    return current() is not main()


class Wakeup:
    """Wake a waiting greenlet or thread from any thread or greenlet.

    Under gevent a native OS thread cannot wake a greenlet through gevent's
    primitives, so ``send()`` goes through a libev async watcher, which is
    safe from any thread; made on the serving thread, it wakes that loop.
    """

    def __init__(self) -> None:
        self._watcher: Any = None
        if gevent_active():
            import gevent.event
            from gevent import get_hub

            self._event: Any = gevent.event.Event()
            self._watcher = get_hub().loop.async_()
            self._watcher.start(self._event.set)
        else:
            self._event = threading.Event()

    def send(self) -> None:
        if self._watcher is not None:
            self._watcher.send()
        else:
            self._event.set()

    def wait(self, timeout: float) -> None:
        self._event.wait(timeout)
        self._event.clear()

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher.close()


def native_thread(fn: Callable[..., Any], name: str) -> None:
    """Run ``fn()`` on a new OS thread of its own, also under gevent (where ``threading`` makes greenlets).

    For a loop that blocks in C (a read of an inotify descriptor) and must
    never hold the serving loop: it may use only what is safe off that loop
    (plain data under the GIL, :meth:`Wakeup.send`, original ``select``).
    """
    if gevent_active():
        from gevent.monkey import get_original

        get_original("_thread", "start_new_thread")(fn, ())
    else:
        threading.Thread(target=fn, name=name, daemon=True).start()


def original(module: str, name: str) -> Any:
    """The unpatched ``module.name`` (``select.select``) for use on a :func:`native_thread`."""
    if gevent_active():
        from gevent.monkey import get_original

        return get_original(module, name)
    return getattr(__import__(module), name)


def let_others_run() -> None:
    """Pause a long job so other requests run, I/O included.

    Under gevent, ``sleep(0)`` may resume us before the loop polls sockets, so a
    long export starved every other client for seconds; any positive sleep waits
    for the next loop iteration. In threaded hosts it releases the GIL.
    """
    time.sleep(1e-6)


#: The longest stretch a loop of small jobs (applying events) keeps the loop before others run.
SLICE_SECONDS = 0.002


class Slices:
    """Pause a loop of small jobs every :data:`SLICE_SECONDS` of work.

    By time, not by count: an event costs 10 µs or 2 ms (a call's end with a
    long transcript), so "every 100" held a health check for 5 ms or 200 ms.
    """

    __slots__ = ("_end",)

    def __init__(self) -> None:
        self._end = time.monotonic() + SLICE_SECONDS

    def used_up(self) -> bool:
        return time.monotonic() >= self._end

    def pause_if_due(self) -> bool:
        """Let others run if this slice is used up; whether it paused."""
        if not self.used_up():
            return False
        let_others_run()
        self._end = time.monotonic() + SLICE_SECONDS
        return True


@functools.cache
def _hub_monitor_imported() -> None:
    """Import gevent's hub monitor once, on the serving thread, before work goes to native threads.

    A native thread that waits on gevent's primitives (psycopg's pool does,
    seeing gevent's patches) gets a hub of its own, which starts a monitor
    thread when ``GEVENT_MONITOR_THREAD_ENABLE`` is set, importing the monitor
    module. Two threads importing it at once meet Python's import lock inside a
    hub callback: ``BlockingSwitchOutError``, and a journal failed to open. Once
    imported, there is no lock to meet.
    """
    with contextlib.suppress(ImportError):
        import gevent._monitor  # noqa: F401


def offload(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on a native thread under gevent (this greenlet waits, others run); here otherwise.

    Its error is raised here, in the caller, and only here: gevent's pool
    prints every exception a task raises as a traceback on stderr even when
    the caller catches it, and a full disk or a missing file is an answer
    (a 503, a 404), not a crash to log.
    """
    if gevent_active() and not on_foreign_native_thread():
        from gevent import get_hub

        _hub_monitor_imported()

        def run() -> tuple[bool, Any]:
            try:
                return True, fn(*args)
            except Exception as exc:  # handed to the caller below
                return False, exc

        ok, value = get_hub().threadpool.apply(run)
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]
    return fn(*args)


def in_background(fn: Callable[..., Any], *args: Any) -> None:
    """``fn(*args)`` on a native thread, not waited for (work nobody should wait on, such as an fsync)."""
    if gevent_active() and not on_foreign_native_thread():
        from gevent import get_hub

        _hub_monitor_imported()
        get_hub().threadpool.spawn(fn, *args)
    elif gevent_active():
        fn(*args)  # a greenlet of this thread's hub would never run
    else:
        threading.Thread(target=fn, args=args, daemon=True, name="patter-dash-background").start()

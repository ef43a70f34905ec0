"""Watch a capture folder: index (and optionally stamp) every FITS/SER file once it is complete.

- New and changed files are found by watchdog (inotify on Linux), with watchdog's polling
  observer as the fallback (``poll=True``, or when inotify cannot start), and by a rescan
  of the folder every ``rescan_s`` seconds as a safety net.
- A FITS file counts as complete when its size and mtime have not changed for ``settle_s``
  seconds; a SER file growing frame by frame has its complete frames indexed as they come
  (at most every ``min(settle_s, 0.5)`` s), and the header frame count may be 0 while it is
  recorded (it is read by its size). A file renamed into the folder is new.
- An incomplete file (no complete frame yet, a truncated FITS) is retried later and never
  recorded as an error; a complete file that cannot be read is recorded with its error and
  retried when it changes.
- Only regular files are looked at: a FIFO, socket or device with a frame file's name is
  skipped without being opened (opening a FIFO would wait for a writer), so the watcher
  never blocks and still stops on SIGTERM.
- State lives in the database: each file is committed in one transaction, and at start the
  folder is compared with the index, so a restart (even after ``kill -9``) neither indexes a
  file twice nor misses one. With a stamp folder, a FITS file indexed but not yet stamped
  (the watcher was killed in between) is stamped at the next start.
- ``no_frames`` is raised when no new frame came for longer than expected (``idle_alert_s``,
  by default five times the recent interval between new frames, at least 60 s) and
  cleared by the next frame.
"""

from __future__ import annotations

import os
import queue
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qhytime.service.index import FRAME_SUFFIXES, FrameIndex, IngestResult, iso

NS_PER_S = 1_000_000_000


@dataclass
class _Pending:
    size: int
    mtime_ns: int
    since: float
    next_try: float = 0.0
    tries: int = 0


@dataclass
class WatchStats:
    """What a watcher did since it started (the status line)."""

    folder: str
    observer: str = "none"
    files: int = 0
    frames: int = 0
    errors: int = 0
    stamped: int = 0
    pending: int = 0
    waiting: int = 0
    alerts: int = 0
    last_end_ns: int | None = None
    last_file: str | None = None
    idle: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["last_end"] = iso(self.last_end_ns)
        return out

    def line(self) -> str:
        """One status line."""
        last = iso(self.last_end_ns) or "-"
        return (
            f"watching {self.folder} ({self.observer}): {self.files} file(s), {self.frames} "
            f"frame(s) indexed, {self.pending} pending, {self.waiting} waiting, "
            f"{self.errors} error(s), last frame {last}, {self.alerts} active alert(s)"
            + (" [NO FRAMES]" if self.idle else "")
        )


@dataclass
class Watcher:
    """Index a folder's frame files as they are written.

    Parameters
    ----------
    index : FrameIndex
    folder : path
    recursive : bool
        Watch sub-folders too.
    settle_s : float
        Seconds a file's size and mtime must stay the same before it counts as complete.
    stamp_dir : path, optional
        Also write stamped copies of FITS files here (``qhytime stamp``).
    poll : bool
        Use watchdog's polling observer instead of inotify.
    fallback, exposure_ns
        As for :meth:`FrameIndex.ingest`.
    idle_alert_s : float, optional
        Raise ``no_frames`` after this long without a new frame (default: automatic).
    clock : callable
        Monotonic seconds (injected in tests).
    log : callable(str), optional
        Receives one line per file indexed, appended, stamped or failed.

    Examples
    --------
    Driven by hand (``run`` loops over ``step`` with a live observer until stopped):

    >>> import tempfile, os
    >>> from qhytime.simulate import CameraSim
    >>> tmp = tempfile.mkdtemp()
    >>> _ = CameraSim(width=64, height=16, exposure_us=5000.0).write_fits(os.path.join(tmp, "cap"), 2)
    >>> now = [0.0]
    >>> with FrameIndex(os.path.join(tmp, "i.sqlite")) as index:
    ...     w = Watcher(index, os.path.join(tmp, "cap"), settle_s=2.0, clock=lambda: now[0])
    ...     w.rescan()
    ...     first = w.step()              # just seen: not settled yet
    ...     now[0] += 2.5
    ...     done = [r.action for r in w.step()]
    >>> first, done, w.stats.frames
    ([], ['indexed', 'indexed'], 2)
    """

    index: FrameIndex
    folder: str | os.PathLike[str]
    recursive: bool = False
    settle_s: float = 2.0
    stamp_dir: str | os.PathLike[str] | None = None
    poll: bool = False
    poll_interval_s: float = 1.0
    rescan_s: float = 30.0
    fallback: bool = False
    exposure_ns: int | None = None
    idle_alert_s: float | None = None
    clock: Callable[[], float] = time.monotonic
    log: Callable[[str], None] | None = None
    stats: WatchStats = field(init=False)

    def __post_init__(self) -> None:
        self.folder = os.path.abspath(os.fspath(self.folder))
        self.stats = WatchStats(folder=str(self.folder))
        self._events: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._pending: dict[str, _Pending] = {}
        self._known: dict[str, tuple[int, int]] = {}
        self._stamp_tried: set[str] = set()
        self._observer: Any = None
        self._last_rescan = float("-inf")
        self._last_frame_at: float | None = None
        self._arrivals: deque[float] = deque(maxlen=20)
        self._last_alert_count = float("-inf")

    # -- discovery -----------------------------------------------------------------------------
    def _wanted(self, path: str) -> bool:
        if not path.lower().endswith(FRAME_SUFFIXES):
            return False
        name = os.path.basename(path)
        if name.startswith(".") or ".qhytime-tmp" in name:
            return False
        rel = os.path.relpath(path, str(self.folder))
        if rel.startswith(".."):
            return False
        return self.recursive or os.sep not in rel

    def _note(self, path: str) -> None:
        """A path may have changed: track it until it is complete and indexed."""
        if not self._wanted(path):
            return
        try:
            st = os.stat(path)
        except OSError:
            self._pending.pop(path, None)
            return
        if not stat.S_ISREG(st.st_mode):  # a FIFO, socket, device or folder: never opened
            self._pending.pop(path, None)
            return
        pend = self._pending.get(path)
        if pend is None:
            if self._known.get(path) == (st.st_size, st.st_mtime_ns):
                self._maybe_stamp_later(path)
                return
            self._pending[path] = _Pending(st.st_size, st.st_mtime_ns, self.clock())

    def rescan(self) -> None:
        """Compare the folder with the index (at start, and every ``rescan_s`` seconds)."""
        self._known.update(
            {p: (v[0], v[1]) for p, v in self.index.file_snapshot(self.folder).items()}
        )
        base = str(self.folder)
        walker = os.walk(base) if self.recursive else [(base, [], os.listdir(base))]
        for root, dirs, names in walker:
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                self._note(os.path.join(root, name))
        self._last_rescan = self.clock()

    def start(self) -> None:
        """Start the observer (inotify, or polling) and look at what is there already."""
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers.polling import PollingObserver

        events = self._events

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                if event.is_directory or event.event_type in ("deleted", "opened"):
                    return
                dest = getattr(event, "dest_path", "") or ""
                for p in (dest, event.src_path):
                    if p:
                        events.put(os.fsdecode(p))

        handler = Handler()
        obs: Any = None
        if not self.poll:
            try:
                from watchdog.observers import Observer

                obs = Observer(timeout=0.25)  # a short poll of its queue: a quick stop
                obs.schedule(handler, str(self.folder), recursive=self.recursive)
                obs.start()
                self.stats.observer = "inotify" if "Inotify" in type(obs).__name__ else "native"
            except OSError as err:  # e.g. the inotify watch limit: poll instead
                self._say(f"cannot watch {self.folder} natively ({err}): polling instead")
                obs = None
        if obs is None:
            obs = PollingObserver(timeout=self.poll_interval_s)
            obs.schedule(handler, str(self.folder), recursive=self.recursive)
            obs.start()
            self.stats.observer = "polling"
        self._observer = obs
        self.rescan()

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5.0)
            self._observer = None

    # -- work ----------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        if self.log is not None:
            self.log(text)

    def step(self, stop: threading.Event | None = None) -> list[IngestResult]:
        """One pass: take the events, index the files that are ready, update the status."""
        now = self.clock()
        while True:
            try:
                self._note(self._events.get_nowait())
            except queue.Empty:
                break
        if now - self._last_rescan >= self.rescan_s:
            self.rescan()
        done: list[IngestResult] = []
        for path in sorted(self._pending, key=lambda p: self._pending[p].since):
            if stop is not None and stop.is_set():
                break
            pend = self._pending[path]
            try:
                st = os.stat(path)
            except OSError:
                del self._pending[path]
                continue
            if not stat.S_ISREG(st.st_mode):  # replaced by a FIFO, socket, ...: skipped
                del self._pending[path]
                continue
            now = self.clock()
            changed = (st.st_size, st.st_mtime_ns) != (pend.size, pend.mtime_ns)
            if changed:
                pend.size, pend.mtime_ns, pend.since = st.st_size, st.st_mtime_ns, now
            if now < pend.next_try:
                continue
            if path.lower().endswith(".ser"):
                # frames have a fixed size: the complete ones can be indexed as they come
                growing = now - pend.since < self.settle_s
            elif changed or now - pend.since < self.settle_s:
                continue  # still being written
            else:
                growing = False
            done.append(self._ingest(path, st, growing=growing))
        self._update_status()
        return done

    def _ingest(self, path: str, st: os.stat_result, *, growing: bool) -> IngestResult:
        now = self.clock()
        pend = self._pending[path]
        res = self.index.ingest(path, fallback=self.fallback, exposure_ns=self.exposure_ns,
                                record_incomplete=False)  # fmt: skip
        pend.tries += 1
        if res.action == "incomplete" or (res.action == "error" and growing):
            # not complete yet (or unreadable while it may still grow): try again later
            pend.next_try = now + max(self.settle_s, 0.5)
            self.stats.waiting = sum(1 for p in self._pending.values() if p.tries)
            return res
        self._known[path] = (st.st_size, st.st_mtime_ns)
        if res.action in ("indexed", "appended"):
            if res.action == "indexed":
                self.stats.files += 1
            self.stats.frames += res.frames
            self.stats.last_file = path
            if res.frames:
                self._frames_arrived(now, res)
            self._say(f"{res.action:<9} {path}: {res.frames} frame(s)"
                      + (f", {res.alerts} alert(s)" if res.alerts else "")
                      + (f" [{res.message}]" if res.message else ""))  # fmt: skip
            if not path.lower().endswith(".ser"):
                self._stamp(path)
        elif res.action == "error":
            self.stats.errors += 1
            self._say(f"error     {path}: {res.message}")
        if growing and res.status == "partial":
            pend.next_try = now + min(self.settle_s, 0.5)  # keep following a recording SER
        else:
            del self._pending[path]
        return res

    def _frames_arrived(self, now: float, res: IngestResult) -> None:
        from qhytime.service.alerts import clear_alerts

        if self._last_frame_at is not None:
            self._arrivals.append(now - self._last_frame_at)
        self._last_frame_at = now
        if self.stats.idle:
            clear_alerts(self.index, "no_frames", source="watch", now_ns=time.time_ns())
            self.stats.idle = False
        with self.index.session() as s:
            from sqlalchemy import func, select

            from qhytime.service.index import IndexFrame

            self.stats.last_end_ns = s.scalar(
                select(func.max(IndexFrame.end_ns)).where(IndexFrame.file_id == res.file_id)
            )

    def idle_limit_s(self) -> float | None:
        """Seconds without a new frame before ``no_frames`` (None: not yet known)."""
        if self.idle_alert_s is not None:
            return float(self.idle_alert_s)
        if len(self._arrivals) < 3:
            return None
        gaps = sorted(self._arrivals)
        return max(60.0, 5.0 * gaps[len(gaps) // 2])

    def _update_status(self) -> None:
        from qhytime.service.alerts import count_alerts, raise_alert

        now = self.clock()
        self.stats.pending = len(self._pending)
        limit = self.idle_limit_s()
        if (
            limit is not None and self._last_frame_at is not None and not self.stats.idle
            and now - self._last_frame_at > limit
        ):  # fmt: skip
            raise_alert(self.index, "no_frames",
                        f"no new frame in {self.folder} for {now - self._last_frame_at:.0f} s "
                        f"(expected within {limit:.0f} s)", source="watch",
                        now_ns=time.time_ns())  # fmt: skip
            self.stats.idle = True
        if now - self._last_alert_count >= 5.0:
            self.stats.alerts = count_alerts(self.index)
            self._last_alert_count = now

    # -- stamping ------------------------------------------------------------------------------
    def _stamp_target(self, path: str) -> Path | None:
        if self.stamp_dir is None or path.lower().endswith(".ser"):
            return None
        return Path(self.stamp_dir) / os.path.basename(path)

    def _maybe_stamp_later(self, path: str) -> None:
        target = self._stamp_target(path)
        if target is not None and path not in self._stamp_tried and not target.exists():
            self._stamp(path)

    def _stamp(self, path: str) -> None:
        from qhytime.errors import QhytimeError
        from qhytime.stamp import stamp_fits

        target = self._stamp_target(path)
        if target is None:
            return
        self._stamp_tried.add(path)
        try:  # stamp_fits writes whole files only (a temporary name, then a rename)
            stamp_fits(path, target, store=self.index.store, fallback=self.fallback)
        except (QhytimeError, OSError) as err:
            self._say(f"unstamped {path}: {err}")
            return
        self.stats.stamped += 1
        self._say(f"stamped   {path} -> {target}")

    # -- the loop ------------------------------------------------------------------------------
    def run(
        self,
        stop: threading.Event,
        *,
        tick_s: float | None = None,
        on_status: Callable[[WatchStats], None] | None = None,
    ) -> WatchStats:
        """Watch until ``stop`` is set; the file being indexed is finished first."""
        tick = tick_s if tick_s is not None else max(0.05, min(0.5, self.settle_s / 4))
        self.start()
        try:
            while not stop.is_set():
                self.step(stop)
                if on_status is not None:
                    on_status(self.stats)
                stop.wait(tick)
        finally:
            self.stop()
        return self.stats

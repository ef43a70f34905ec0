"""Per-file work on a dask.distributed cluster (the ``dask`` extra), or in-process.

``qhytime decode``, ``stamp``, ``index`` and ``lightcurve`` split their work into a pure
per-file part (decode one file, stamp one file, work out one file's index records, measure
one file's frames) and a part that stays with the caller, in input order (the checks across
single-frame FITS files, the database writes, the light curve's frame sequence). The
per-file part goes through an :class:`Executor`:

- :class:`LocalExecutor` runs it in this process, one file after another;
- :class:`DaskExecutor` submits it to a ``distributed.Client``: an existing scheduler
  (``--dask ADDRESS``) or a ``LocalCluster`` started and closed here (``--workers N``).

Either way the results come back **in input order** and are identical: the caller consumes
them in order while a bounded window of work is in flight (:attr:`DaskExecutor.window`
tasks, by default two per worker thread, each a batch of files sized to take about
:data:`BATCH_TARGET_S`), so 100,000 files are never submitted at once and memory stays
bounded. A file that fails is a status in its job's own terms (an ``error`` record, an
``error`` stamp result), never a lost batch: even a worker that dies on a file only turns
that file into an error. Warnings raised on a worker (a fallback calibration, a pinned one)
are sent back with the result and raised again here, in order.

**The calibration.** Workers never open the user's database. When a job looks calibrations
up, the caller takes a :class:`CalibrationSnapshot` of the store (every calibration and
retraction, read in one go) and sends it with the work: a worker's lookup gives exactly the
answer the store gives at that moment (:meth:`CalibrationSnapshot.lookup`), whatever
database the workers could or could not reach. The frame index is written by the caller
only (:meth:`qhytime.service.index.FrameIndex.ingest_paths`), one transaction per file with
bulk inserts, as its records come back.

dask is imported only when a :class:`DaskExecutor` is opened: importing this module (or
:mod:`qhytime.api`) imports no dask and touches no network.

For benchmarks: :func:`index_files` indexes files with a given executor and returns the
results; time it with :func:`open_executor` opened beforehand, so that the cluster's start is
not counted::

    with open_executor(workers=2) as ex:
        results = index_files(paths, "index.sqlite", executor=ex)

Examples
--------
>>> with open_executor() as ex:                       # no address, no workers: in-process
...     list(ex.map(abs, [-2, 3, -4]))
[2, 3, 4]
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeVar

from qhytime.errors import CalibrationError, ClusterError

if TYPE_CHECKING:
    from qhytime.calibration import Calibration, Setting
    from qhytime.service.index import IngestResult
    from qhytime.store import CalibrationStore, LookupResult

T = TypeVar("T")
R = TypeVar("R")

WINDOW_PER_THREAD = 2
"""Batches in flight per worker thread (:attr:`DaskExecutor.window`)."""

BATCH_TARGET_S = 0.2
"""Seconds of work one task aims at (a batch of short files, or one long one)."""

MAX_BATCH = 32
"""Most items in one task."""

CONNECT_TIMEOUT_S = 10
"""How long to wait for a scheduler given by address."""

_SCHEDULER_KWARGS = {"dashboard_address": "127.0.0.1:0"}
"""No dashboard, and the scheduler's small HTTP server (health, metrics) on a free port of
its own: dask tries 8787 first, which another cluster on the machine may hold (and leaks a
socket when it is taken)."""

_WARM_MODULES = ("qhytime.decode", "qhytime.framerows", "qhytime.stamp", "qhytime.service.index")


# -- executors ---------------------------------------------------------------------------------


class Executor:
    """Where per-file work runs; results always come back in input order.

    Subclasses implement :meth:`map` and :meth:`call`. ``remote`` is True when the work runs
    in other processes (it then only sees what is sent to it: a calibration snapshot, not
    the store; paths that must be valid where the workers run).

    Examples
    --------
    >>> from functools import partial
    >>> def scaled(x: int, *, by: int) -> int:
    ...     return x * by
    >>> with open_executor() as ex:           # or open_executor(workers=2), the same results
    ...     list(ex.map(partial(scaled, by=10), range(4)))
    [0, 10, 20, 30]
    """

    remote: bool = False

    def map(
        self,
        fn: Callable[[T], R],
        items: Iterable[T],
        *,
        on_error: Callable[[T, BaseException], R] | None = None,
    ) -> Iterator[R]:
        """``fn(item)`` for every item, in input order.

        Parameters
        ----------
        fn : callable
            A module-level function (or a ``functools.partial`` of one): it is pickled for
            remote workers.
        items : iterable
            Pulled lazily, a bounded number ahead of the results consumed.
        on_error : callable, optional
            ``on_error(item, exc)`` gives the result of an item whose work raised (or whose
            worker died); it may raise instead. Without it the exception propagates.
        """
        raise NotImplementedError

    def call(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(*args)``, run now (where the executor runs its work), its result returned."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the executor holds (a :class:`LocalExecutor` holds nothing)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """Runs the work in this process, one item after another, as it is consumed.

    Examples
    --------
    >>> ex = LocalExecutor()
    >>> list(ex.map(int, ["1", "x", "3"], on_error=lambda item, exc: -1))
    [1, -1, 3]
    >>> ex.call(divmod, 7, 2)
    (3, 1)
    """

    remote = False

    def map(
        self,
        fn: Callable[[T], R],
        items: Iterable[T],
        *,
        on_error: Callable[[T, BaseException], R] | None = None,
    ) -> Iterator[R]:
        for item in items:
            if on_error is None:
                value = fn(item)
            else:
                try:
                    value = fn(item)
                except Exception as exc:  # one failing item is a status, not a lost batch
                    value = on_error(item, exc)
            yield value

    def call(self, fn: Callable[..., R], *args: Any) -> R:
        return fn(*args)


# Python's warning filters and their recording are process-wide, not per thread: a dask
# worker with several threads would mix the warnings of the items it runs at once (and lose
# some). Items therefore run one at a time in each worker process, warnings recorded; start
# workers with one thread each (`dask worker --nthreads 1`, as --workers does) to waste none.
_CAPTURE = threading.RLock()


class _Captured:
    """``fn`` run with its warnings recorded, so that they travel back with the result."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any) -> tuple[Any, list[Warning]]:
        with _CAPTURE, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = self.fn(*args)
        return value, [w.message for w in caught if isinstance(w.message, Warning)]


class _Batch:
    """``fn`` over a batch of items on a worker: per item its value or its exception, and its
    warnings; and the time the batch took (to size the next batches)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, items: list[Any]) -> tuple[list[tuple[Any, Any, list[Warning]]], float]:
        t0 = time.perf_counter()
        out = []
        for item in items:
            with _CAPTURE, warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    value, error = self.fn(item), None
                except Exception as exc:  # sent back, the caller's on_error decides
                    value, error = None, exc
            out.append(
                (value, error, [w.message for w in caught if isinstance(w.message, Warning)])
            )
        return out, time.perf_counter() - t0


def _reraise_warnings(caught: list[Warning]) -> None:
    for w in caught:
        warnings.warn(w, stacklevel=3)


class DaskExecutor(Executor):
    """Submits the work to a ``distributed.Client`` in batches, a bounded number in flight.

    Items go to the workers in batches (one task each) sized so that a task takes about
    :data:`BATCH_TARGET_S` (one item for a long file, up to :data:`MAX_BATCH` short ones:
    a task's round trip costs milliseconds), :attr:`window` batches in flight at once;
    results are handed back one item at a time, in input order. A batch whose worker died
    is run again item by item, so that only the item that kills a worker is lost.

    Parameters
    ----------
    client : distributed.Client
    window : int, optional
        Batches in flight at once (default :data:`WINDOW_PER_THREAD` per worker thread, at
        least 4). At most ``window x MAX_BATCH`` items are held.

    Notes
    -----
    Open one with :func:`open_executor`, which also checks that the workers run this
    qhytime version.

    Examples
    --------
    A client of your own (here an in-process cluster of one thread; ``Client("tcp://...")``
    for a running scheduler):

    >>> from distributed import Client, LocalCluster
    >>> from qhytime.decode import decode_paths
    >>> with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
    ...                   dashboard_address=None, scheduler_kwargs=_SCHEDULER_KWARGS
    ...                   ) as cluster, Client(cluster) as client:
    ...     ex = DaskExecutor(client)
    ...     [r.status for r in decode_paths(["tests/data/video16.ser"], executor=ex)][:3]
    ['ok', 'ok', 'ok']
    """

    remote = True
    max_batch = MAX_BATCH

    def __init__(self, client: Any, *, window: int | None = None) -> None:
        self.client = client
        if window is None:
            threads = sum(client.nthreads().values()) or 1
            window = max(4, WINDOW_PER_THREAD * threads)
        if window < 1:
            raise ClusterError(f"window {window}: at least one batch must be in flight")
        self.window = int(window)

    def map(
        self,
        fn: Callable[[T], R],
        items: Iterable[T],
        *,
        on_error: Callable[[T, BaseException], R] | None = None,
    ) -> Iterator[R]:
        task = _Batch(fn)
        it = iter(items)
        pending: deque[tuple[list[T], Any]] = deque()
        size = 1  # items per batch, adapted to the time a batch takes

        def fill() -> None:
            while len(pending) < self.window:
                batch = list(islice(it, size))
                if not batch:
                    return
                pending.append((batch, self._submit(task, batch)))

        try:
            fill()
            while pending:
                batch, fut = pending.popleft()
                try:
                    done, elapsed = fut.result()
                except Exception as exc:  # the worker died, or the batch could not travel
                    done = self._one_by_one(task, batch, exc)
                else:
                    per_item = max(elapsed / len(batch), 1e-4)
                    size = max(1, min(self.max_batch, int(BATCH_TARGET_S / per_item)))
                finally:
                    fut.release()
                fill()  # keep the workers busy while the caller works on these results
                for item, (value, error, caught) in zip(batch, done, strict=True):
                    _reraise_warnings(caught)
                    if error is not None:
                        if on_error is None:
                            raise error
                        value = on_error(item, error)
                    yield value
        finally:
            for _, fut in pending:
                fut.cancel()

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        # dask's note on a large argument (a long file's blocks sent to a light curve's
        # worker) is about its own efficiency, not the user's results
        with _dask_quiet():
            return self.client.submit(fn, *args, pure=False)

    def _one_by_one(
        self, task: _Batch, batch: list[Any], exc: BaseException
    ) -> list[tuple[Any, Any, list[Warning]]]:
        """A failed batch again, item by item: only the items that fail alone fail."""
        if len(batch) == 1:
            return [(None, exc, [])]
        out = []
        for item in batch:
            fut = self._submit(task, [item])
            try:
                (one,), _ = fut.result()
            except Exception as err:
                one = (None, err, [])
            finally:
                fut.release()
            out.append(one)
        return out

    def call(self, fn: Callable[..., R], *args: Any) -> R:
        fut = self._submit(_Captured(fn), *args)
        try:
            value, caught = fut.result()
        finally:
            fut.release()
        _reraise_warnings(caught)
        return value  # type: ignore[no-any-return]


def task_failure(exc: BaseException) -> str:
    """What to report for an item whose work failed outside qhytime's own error handling.

    Examples
    --------
    >>> task_failure(RuntimeError("boom"))
    'the work failed (RuntimeError: boom)'
    """
    name = type(exc).__name__
    if name in ("KilledWorker", "CancelledError", "CommClosedError", "FutureCancelledError"):
        return f"the dask worker running it was lost ({name}: {exc}); run the file again"
    return f"the work failed ({name}: {exc})"


def _warm() -> str:
    """Run on every worker when an executor opens: import the modules the jobs use (so the
    first files do not pay for it) and say which qhytime the worker runs."""
    import importlib

    import qhytime

    for name in _WARM_MODULES:
        importlib.import_module(name)
    return qhytime.__version__


@contextmanager
def _dask_quiet() -> Iterator[None]:
    """dask's own chatter while a cluster starts or stops (its deprecation notes, a port
    in use, a slow scratch folder): not the user's business, silenced here only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        warnings.simplefilter("ignore", ResourceWarning)
        warnings.filterwarnings("ignore", module=r"distributed(\.|$)")
        warnings.filterwarnings("ignore", module=r"dask(\.|$)")
        warnings.filterwarnings("ignore", module=r"tornado(\.|$)")
        yield


@contextmanager
def open_executor(
    address: str | None = None, *, workers: int | None = None, window: int | None = None
) -> Iterator[Executor]:
    """The executor for ``--dask ADDRESS`` / ``--workers N`` (in-process when neither).

    Parameters
    ----------
    address : str, optional
        A running dask scheduler (``tcp://host:8786``, or what ``dask-jobqueue``'s or
        ``dask-kubernetes``' cluster gives as ``cluster.scheduler_address``). It is left
        running when done.
    workers : int, optional
        Start a ``LocalCluster`` of this many worker processes (one thread each) on this
        machine, and close it when done.
    window : int, optional
        Files in flight at once (see :class:`DaskExecutor`).

    Yields
    ------
    Executor
        A :class:`LocalExecutor` when neither is given, else a :class:`DaskExecutor`.

    Raises
    ------
    ClusterError
        dask.distributed is not installed, the scheduler cannot be reached, both or a bad
        number were given, or the workers run another qhytime version (results must be
        identical: install the same version there).

    Examples
    --------
    >>> with open_executor() as ex:
    ...     type(ex).__name__, ex.remote
    ('LocalExecutor', False)
    """
    if address is not None and workers is not None:
        raise ClusterError(
            "give a scheduler address (--dask) or a number of workers (--workers), not both"
        )
    if address is None and workers is None:
        with LocalExecutor() as local:
            yield local
        return
    if workers is not None and not 1 <= int(workers) <= 1024:
        raise ClusterError(f"--workers {workers}: give 1 to 1024 worker processes")
    try:
        with _dask_quiet():
            import distributed
    except ImportError:
        raise ClusterError(
            "dask.distributed is not installed: pip install 'qhytime[dask]' (or run without "
            "--dask/--workers)"
        ) from None
    import qhytime

    cluster = client = None
    try:
        with _dask_quiet():
            if workers is not None:
                try:
                    # silence_logs: the workers' shutdown chatter (a heartbeat to a scheduler
                    # that just closed) is not the user's business; their errors come back
                    # with the results.
                    cluster = distributed.LocalCluster(
                        n_workers=int(workers), threads_per_worker=1, processes=True,
                        dashboard_address=None, scheduler_kwargs=_SCHEDULER_KWARGS,
                        silence_logs=logging.CRITICAL,
                    )  # fmt: skip
                except Exception as exc:
                    raise ClusterError(
                        f"cannot start {workers} local dask worker(s): {exc} (a script that "
                        'starts workers needs `if __name__ == "__main__":`)'
                    ) from None
                client = distributed.Client(cluster, set_as_default=False)
            else:
                try:
                    client = distributed.Client(
                        address, timeout=CONNECT_TIMEOUT_S, set_as_default=False
                    )
                except (OSError, ValueError, TypeError) as exc:
                    raise ClusterError(
                        f"cannot reach the dask scheduler at {address}: {exc}. Start one (`dask "
                        "scheduler`, dask-jobqueue, dask-kubernetes) or check the address"
                    ) from None
        try:
            versions = client.run(_warm)
        except ImportError as exc:
            raise ClusterError(
                f"qhytime is not importable on the dask workers ({exc}): install it there "
                f"(the same version, {qhytime.__version__})"
            ) from None
        other = sorted({v for v in versions.values() if v != qhytime.__version__})
        if other:
            raise ClusterError(
                f"the dask workers run qhytime {', '.join(other)}, this client "
                f"{qhytime.__version__}: install the same version on the workers"
            )
        if not versions:
            raise ClusterError(f"the dask scheduler at {address} has no workers")
        yield DaskExecutor(client, window=window)
    finally:
        with _dask_quiet():
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()


# -- the calibration, for workers ---------------------------------------------------------------


class CalibrationSnapshot:
    """Every calibration and retraction of a store, read at once, answering lookups as the
    store does: what workers get instead of the database.

    It has the store's lookup interface (:meth:`lookup`, :meth:`pinned`, :meth:`get`), so it
    can be given wherever a job takes ``store=``; it pickles (a few hundred bytes per
    calibration).

    Examples
    --------
    >>> import tempfile, os
    >>> from qhytime.store import CalibrationStore
    >>> with CalibrationStore(os.path.join(tempfile.mkdtemp(), "c.sqlite")) as store:
    ...     snap = CalibrationSnapshot.from_store(store)
    ...     setting = store.list()[0].setting
    ...     same = snap.lookup(setting).calibration == store.lookup(setting).calibration
    >>> same, len(snap)
    (True, 2)
    """

    def __init__(
        self, calibrations: Iterable[Calibration], keys: dict[int, str], where: str = "a snapshot"
    ) -> None:
        self.calibrations: dict[int, Calibration] = {int(c.id): c for c in calibrations}  # type: ignore[arg-type]
        self.keys = dict(keys)
        self.where = where
        self.readonly = True
        current: dict[str, int] = {}
        for cid, cal in self.calibrations.items():
            if cal.retracted:
                continue
            key = self.keys[cid]
            current[key] = max(current.get(key, cid), cid)
        self._current = current

    def __len__(self) -> int:
        return len(self.calibrations)

    @classmethod
    def from_store(cls, store: CalibrationStore) -> CalibrationSnapshot:
        """Read every calibration (with its stored setting key) and retraction of ``store``.

        Raises
        ------
        StoreError
            When the database cannot be read.
        """
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        from qhytime.store import CalibrationRow, RetractionRow

        try:
            with Session(store.engine) as s, s.begin():
                rows = list(s.scalars(select(CalibrationRow).order_by(CalibrationRow.id)))
                rets = {r.calibration_id: r for r in s.scalars(select(RetractionRow))}
                cals = [r.to_calibration(rets.get(r.id)) for r in rows]
                keys = {int(r.id): str(r.setting_key) for r in rows}
        except Exception as err:
            from sqlalchemy import exc as sa_exc

            if isinstance(err, sa_exc.SQLAlchemyError):
                raise store._store_error(err) from err
            raise
        return cls(cals, keys, where=store.where)

    def get(self, calibration_id: int) -> Calibration:
        """The calibration with this id (as :meth:`CalibrationStore.get`)."""
        cal = self.calibrations.get(int(calibration_id))
        if cal is None:
            raise CalibrationError(f"no calibration with id {calibration_id} in {self.where}")
        return cal

    def pinned(self, calibration_id: int, setting: Setting | None = None) -> LookupResult:
        """A calibration chosen by id (as :meth:`CalibrationStore.pinned`, warnings too)."""
        from qhytime.store import _pinned_result

        return _pinned_result(self.get(calibration_id), setting)

    def lookup(self, setting: Setting, *, fallback: bool = False) -> LookupResult:
        """The current calibration for a setting, exactly as :meth:`CalibrationStore.lookup`
        finds it (exact match of this unit, then model-wide; else the nearest fallback, only
        when ``fallback``, warned)."""
        from qhytime.store import _warn_if_fallback

        return _warn_if_fallback(self._lookup(setting, fallback), setting)

    def _lookup(self, setting: Setting, fallback: bool) -> LookupResult:
        from qhytime.store import LookupResult, _differences, _exact_keys, _nearest

        for key in _exact_keys(setting):
            cid = self._current.get(key)
            if cid is not None:
                cal = self.calibrations[cid]
                if _differences(setting, cal.setting) == []:
                    return LookupResult(calibration=cal, kind="exact")
        hard = (setting.camera_model, setting.readout_mode, setting.bit_depth, setting.usb_traffic)
        candidates = [
            (cal.setting, cid, lambda cal=cal: cal)
            for cid in self._current.values()
            if (
                (cal := self.calibrations[cid]).setting.camera_model,
                cal.setting.readout_mode, cal.setting.bit_depth, cal.setting.usb_traffic,
            ) == hard
        ]  # fmt: skip
        return _nearest(setting, candidates, fallback)


def for_workers(executor: Executor | None, store: Any) -> Any:
    """What a job sends its per-file work instead of ``store``: the store itself in-process,
    a :class:`CalibrationSnapshot` of it for remote workers (None stays None).

    Examples
    --------
    >>> for_workers(LocalExecutor(), None) is None
    True
    """
    if store is None or executor is None or not executor.remote:
        return store
    if isinstance(store, CalibrationSnapshot):
        return store
    return CalibrationSnapshot.from_store(store)


# -- an entry point for benchmarks and scripts --------------------------------------------------


def index_files(
    paths: Iterable[str | os.PathLike[str]],
    db: str | os.PathLike[str] | None = None,
    *,
    executor: Executor | None = None,
    fallback: bool = False,
    exposure_ns: int | None = None,
) -> list[IngestResult]:
    """Index files into the frame index of ``db`` with ``executor`` (in-process by default):
    what ``qhytime index --dask/--workers`` runs, as one call.

    Folders stand for their FITS/SER files. The per-file work runs on the executor; this
    process writes the database, one transaction per file, in input order.

    Returns
    -------
    list of IngestResult
        One per file, in input order.

    Examples
    --------
    >>> import tempfile, os
    >>> from qhytime.simulate import CameraSim
    >>> tmp = tempfile.mkdtemp()
    >>> paths = CameraSim(width=64, height=16, exposure_us=5000.0).write_fits(tmp, 2)
    >>> with open_executor() as ex:
    ...     [r.action for r in index_files(paths, os.path.join(tmp, "i.sqlite"), executor=ex)]
    ['indexed', 'indexed']
    """
    from qhytime.readers import expand_paths
    from qhytime.service.index import FrameIndex

    with FrameIndex(db) as index:
        return list(
            index.ingest_paths(
                expand_paths(paths), executor=executor, fallback=fallback, exposure_ns=exposure_ns
            )
        )


__all__ = [
    "CONNECT_TIMEOUT_S", "WINDOW_PER_THREAD", "CalibrationSnapshot", "DaskExecutor", "Executor",
    "LocalExecutor", "for_workers", "index_files", "open_executor", "task_failure",
]  # fmt: skip

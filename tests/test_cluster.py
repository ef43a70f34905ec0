"""dask.distributed (issue 11): the four commands on a LocalCluster of 2 worker processes give
exactly what they give in-process, with a failing file in every batch; the calibration
snapshot answers as the store does; results come back in order, a lost worker is a status.

One cluster for the module (``open_executor(workers=2)``: ``LocalCluster(n_workers=2,
threads_per_worker=1, processes=True, dashboard_address=None)``); the commands reach it with
``--dask ADDRESS``. Its processes must be gone when it is closed.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner, Result

from qhytime.calibration import Calibration, Setting
from qhytime.cli import main
from qhytime.cluster import CalibrationSnapshot, Executor, LocalExecutor, open_executor
from qhytime.decode import decode_paths, decode_series
from qhytime.simulate import CameraSim, Star
from qhytime.store import CalibrationStore
from qhytime.timebase import unix_ns_to_iso

from conftest import need

SIM = {"width": 64, "height": 40, "crop_y": 3400, "exposure_us": 20_000.0,
       "frame_interval_us": 25_000.0, "seed": 3}  # fmt: skip
STARS = [Star(30.3, 25.2, 2e6, fwhm_px=3.0), Star(12.0, 10.0, 1e6, fwhm_px=3.0)]
N_FITS = 8


def _have_distributed() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def executor() -> Iterator[Executor]:
    """The module's LocalCluster (2 worker processes), closed cleanly at the end."""
    need(_have_distributed(), "dask.distributed (pip install '.[dask]')")
    import psutil

    with open_executor(workers=2) as ex:
        # the worker processes (multiprocessing's resource tracker, shared by every process
        # it spawns, lives as long as this interpreter: not ours to stop)
        spawned = [p for p in psutil.Process().children(recursive=True)
                   if "resource_tracker" not in " ".join(p.cmdline())]  # fmt: skip
        assert len(spawned) >= 2  # the workers are processes of their own
        yield ex
    _, alive = psutil.wait_procs(spawned, timeout=15)
    assert not alive, f"dask processes left running: {[p.pid for p in alive]}"


@pytest.fixture(scope="module")
def address(executor: Executor) -> str:
    return str(executor.client.scheduler.address)  # type: ignore[attr-defined]


def sim_calibration(sim: CameraSim) -> Calibration:
    s = Setting(camera_model=sim.camera_model, readout_mode=sim.readout_mode, roi_y=sim.crop_y,
                roi_x=sim.crop_x, roi_width=sim.width * sim.binning,
                roi_height=sim.height * sim.binning, binning=sim.binning, stream_mode="single")  # fmt: skip
    return Calibration(setting=s, reference=sim.reference, offset0_us=sim.offset0_us,
                       line_period_ns=sim.line_period_ns, offset0_sigma_us=0.05, method="LED fit")  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A FITS sequence with a star (and an unreadable file among it), a FITS file of another
    ROI (its calibration only a fallback), a SER video and a truncated copy; a database with
    the sequence's calibration."""
    root = tmp_path_factory.mktemp("cluster")
    sim = CameraSim(**SIM)  # type: ignore[arg-type]
    fits_paths = [str(p) for p in sim.write_fits(root / "seq", N_FITS, stars=STARS)]
    bad = root / "seq" / "frame_0003_bad.fits"
    bad.write_bytes(b"SIMPLE  = not a FITS file at all")
    seq = sorted([*fits_paths, str(bad)])
    other = CameraSim(**{**SIM, "crop_y": 1000, "sequence0": 500})  # type: ignore[arg-type]
    roi = [str(p) for p in other.write_fits(root / "roi", 2, prefix="roi")]
    ser = root / "video.ser"
    CameraSim(**{**SIM, "seed": 4}).write_ser(ser, 12, stars=STARS)  # type: ignore[arg-type]
    raw = ser.read_bytes()
    truncated = root / "cut.ser"
    truncated.write_bytes(raw[: len(raw) - 3000])
    db = root / "cal.sqlite"
    with CalibrationStore(db) as store:
        store.add(sim_calibration(sim))
    return {"root": root, "sim": sim, "seq": seq, "fits": fits_paths, "bad": str(bad),
            "roi": roi, "ser": str(ser), "cut": str(truncated), "db": str(db)}  # fmt: skip


def _cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _both(address: str, *args: str) -> tuple[Result, Result]:
    """The command in this process, then on the cluster."""
    return _cli(*args), _cli(*args, "--dask", address)


# -- the four commands, in-process and on the cluster -----------------------------------------


def test_decode_json_same_on_cluster(address: str, data: dict[str, Any]) -> None:
    files = [*data["seq"], data["ser"], data["cut"], *data["roi"], str(data["root"] / "missing.fits")]
    local, dask = _both(address, "decode", "--json", *files)
    assert local.exit_code == dask.exit_code == 1  # unreadable files: exit 1, the rest decoded
    assert dask.stdout == local.stdout
    recs = [json.loads(x) for x in local.stdout.splitlines()]
    by_file = {r["file"]: r for r in recs}
    assert by_file[data["bad"]]["status"] == "error"
    assert by_file[str(data["root"] / "missing.fits")]["status"] == "error"
    assert [r["status"] for r in recs if r["file"] == data["cut"]][-1] == "error"  # missing tail
    # the sequence's end stamps are the simulator's (reference "end": its true stamp time)
    sim = data["sim"]
    for i, f in enumerate(data["fits"]):
        assert by_file[f]["status"] == "ok"
        assert by_file[f]["end"]["utc"] == str(unix_ns_to_iso(sim.block_for(i)[2]))


def test_decode_series_api_same_on_cluster(executor: Executor, data: dict[str, Any]) -> None:
    """The library call: every file's columns and reasons, the across-file checks included."""
    files = [*data["seq"], data["ser"], *data["roi"]]
    here = list(decode_series(files))
    there = list(decode_series(files, executor=executor))
    assert [f.path for f in there] == [f.path for f in here] == files
    for a, b in zip(here, there, strict=True):
        assert a.error == b.error and a.exposure == b.exposure
        if a.decoded is None:
            assert b.decoded is None
            continue
        assert b.decoded is not None
        assert a.decoded.reasons == b.decoded.reasons
        for k in ("start", "end", "now"):
            np.testing.assert_array_equal(a.decoded.unix_ns[k], b.decoded.unix_ns[k])
            assert a.decoded.unix_ns[k].dtype == b.decoded.unix_ns[k].dtype == np.int64


def test_stamp_same_on_cluster(address: str, data: dict[str, Any], tmp_path: Path) -> None:
    """Calibrations looked up by the workers from a snapshot of the database: the exact one,
    a fallback (warned, here), an unreadable file in the batch."""
    files = [*data["seq"], *data["roi"]]
    out_local, out_dask = tmp_path / "local", tmp_path / "dask"
    common = ["--db", data["db"], "--fallback", "--quiet"]
    local = _cli("stamp", *files, "--out", str(out_local), *common)
    dask = _cli("stamp", *files, "--out", str(out_dask), *common, "--dask", address)
    assert local.exit_code == dask.exit_code == 1  # the unreadable file
    assert dask.stdout.replace(str(out_dask), "OUT") == local.stdout.replace(str(out_local), "OUT")
    assert dask.stderr == local.stderr
    assert "FALLBACK" in local.stdout and "qhytime: warning: no calibration matches" in dask.stderr
    assert f"error  {data['bad']}" in dask.stderr
    names = sorted(p.name for p in out_local.iterdir())
    assert names == sorted(p.name for p in out_dask.iterdir()) == sorted(
        Path(f).name for f in files if f != data["bad"]
    )
    for name in names:  # the same bytes, whoever wrote them
        assert (out_dask / name).read_bytes() == (out_local / name).read_bytes()
    # and the right times: frame 0's first row ends offset0 + its rows' step after the stamp
    sim = data["sim"]
    with fits.open(out_dask / Path(data["fits"][0]).name) as hdul:
        end0 = int(hdul["ROWTIMES"].data["END_NS"][0])
        assert hdul[0].header["QT_CALK"] == "exact"
    ref = sim.block_for(0)[2]
    assert abs(end0 - ref - round(float(sim.row_end_rel_ns()[0].max()))) <= 1


def _index_dump(db: str) -> list[dict[str, Any]]:
    from qhytime.service.index import FrameIndex

    with FrameIndex(db) as index:
        return [f.to_dict() for f in index.frames(limit=10_000)]


def test_index_same_on_cluster(address: str, data: dict[str, Any], tmp_path: Path) -> None:
    """Workers read and decode; the client writes: the same index, file by file."""
    db_local, db_dask = tmp_path / "local.sqlite", tmp_path / "dask.sqlite"
    shutil.copy(data["db"], db_local)
    shutil.copy(data["db"], db_dask)
    files = [*data["seq"], data["ser"], data["cut"], *data["roi"]]
    common = ["--json", "--quiet", "--exposure-s", "0.02"]
    local = _cli("index", *files, "--db", str(db_local), *common)
    dask = _cli("index", *files, "--db", str(db_dask), *common, "--dask", address)
    assert local.exit_code == dask.exit_code == 1
    assert dask.stdout == local.stdout
    results = [json.loads(x) for x in local.stdout.splitlines()]
    assert [r["path"] for r in results] == [os.path.abspath(f) for f in files]
    assert {r["path"]: r["action"] for r in results}[data["bad"]] == "error"
    frames = _index_dump(str(db_local))
    assert frames == _index_dump(str(db_dask))
    sim = data["sim"]
    seq = [f for f in frames if f["file"] in data["fits"]]
    assert len(seq) == N_FITS and all(f["calibration_id"] for f in seq)
    assert [f["end"] for f in seq] == [str(unix_ns_to_iso(sim.block_for(i)[2])) for i in range(N_FITS)]
    again = _cli("index", *files, "--db", str(db_dask), *common, "--dask", address)
    assert {json.loads(x)["action"] for x in again.stdout.splitlines()} == {"unchanged"}


@pytest.mark.parametrize("fixed", [True, False], ids=["fixed", "tracked"])
def test_lightcurve_same_on_cluster(
    address: str, data: dict[str, Any], tmp_path: Path, fixed: bool
) -> None:
    """Fixed apertures (files in parallel) and tracked ones (files in turn): the same samples,
    the same CSV; the unreadable file is a sample with status error."""
    args = ["lightcurve", *data["seq"], "--target", "30,25", "--comparison", "12,10",
            "--aperture", "4", "--annulus", "7,12", "--db", data["db"], "--json", "-q"]  # fmt: skip
    if fixed:
        args.append("--fixed")
    local = _cli(*args, "-o", str(tmp_path / "local.csv"))
    dask = _cli(*args, "-o", str(tmp_path / "dask.csv"), "--dask", address)
    assert local.exit_code == dask.exit_code == 1  # the unreadable file is an error sample
    assert dask.stdout == local.stdout
    assert dask.stderr.replace("dask.csv", "X.csv") == local.stderr.replace("local.csv", "X.csv")
    assert (tmp_path / "dask.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    recs = [json.loads(x) for x in local.stdout.splitlines()]
    assert [r["status"] for r in recs].count("error") == 1
    assert next(r for r in recs if r["status"] == "error")["file"] == data["bad"]
    # timed at the target's own row: its start is that row's start after frame 0's stamp
    sim = data["sim"]
    first = recs[0]["apertures"]["target"]
    assert first["row"] == 25
    rel_end = round(float(sim.row_end_rel_ns()[25].max()))
    expected = sim.block_for(0)[2] + rel_end - round(sim.exposure_us * 1000)
    assert abs(first["start_ns"] - expected) <= 1


def test_lightcurve_mixed_sources_api(executor: Executor, data: dict[str, Any]) -> None:
    """FITS, SER, a truncated SER and a missing file in one light curve, tracked: the library
    result is the same on the cluster, field by field."""
    from qhytime.occultation import light_curve
    from qhytime.rowmodel import RowModel

    sim = data["sim"]
    m = RowModel.from_us(offset0_us=sim.offset0_us, line_period_ns=sim.line_period_ns)
    paths = [*data["seq"][:3], data["ser"], data["cut"], str(data["root"] / "gone.fits"), *data["seq"][3:]]
    kw = {"radius": 4.0, "annulus": (7.0, 12.0), "model": m, "exposure_ns": 20_000_000}
    here = light_curve(paths, (30, 25), [(12, 10)], **kw)  # type: ignore[arg-type]
    there = light_curve(paths, (30, 25), [(12, 10)], executor=executor, **kw)  # type: ignore[arg-type]
    assert list(there.records()) == list(here.records())
    assert (there.timing, there.sources, there.settings) == (here.timing, here.sources, here.settings)
    np.testing.assert_array_equal(there.frame_start_ns, here.frame_start_ns)
    assert here.status.count("error") == 3  # the truncated tail, the missing file, the bad one


# -- the executor ---------------------------------------------------------------------------


def test_results_in_input_order_with_bounded_look_ahead(executor: Executor) -> None:
    pulled: list[int] = []

    def items() -> Iterator[int]:
        for i in range(40):
            pulled.append(i)
            yield i

    def slow_first(i: int) -> int:  # early items finish last
        time.sleep(0.002 * (40 - i))
        return i * i

    it = executor.map(slow_first, items())
    assert next(it) == 0
    ex: Any = executor
    assert len(pulled) <= ex.window * ex.max_batch + 1 and len(pulled) < 40
    assert list(it) == [i * i for i in range(1, 40)]


def test_failing_item_is_a_status(executor: Executor) -> None:
    def work(i: int) -> int:
        if i == 2:
            raise ValueError("item 2 is bad")
        return i

    def status(item: int, exc: BaseException) -> int:
        assert isinstance(exc, ValueError) and str(exc) == "item 2 is bad"
        return -1

    assert list(executor.map(work, range(5), on_error=status)) == [0, 1, -1, 3, 4]
    assert list(LocalExecutor().map(work, range(5), on_error=status)) == [0, 1, -1, 3, 4]


def test_warnings_on_workers_come_back(executor: Executor) -> None:
    import warnings

    def warns(i: int) -> int:
        warnings.warn(f"note {i}", UserWarning, stacklevel=1)
        return i

    with pytest.warns(UserWarning) as caught:
        assert list(executor.map(warns, range(3))) == [0, 1, 2]
    assert [str(w.message) for w in caught] == ["note 0", "note 1", "note 2"]


def test_decode_goes_on_past_a_failing_task(
    monkeypatch: pytest.MonkeyPatch, data: dict[str, Any]
) -> None:
    """A file whose work fails outside qhytime's own handling is an error record; the batch
    goes on (in-process here; on a cluster a lost worker is reported the same way)."""
    import qhytime.decode as decode

    real = decode.decode_one

    def flaky(name: str, **kw: Any) -> Any:
        if name == data["fits"][1]:
            raise RuntimeError("disk vanished")
        return real(name, **kw)

    monkeypatch.setattr(decode, "decode_one", flaky)
    recs = list(decode_paths(data["fits"][:3], executor=LocalExecutor()))
    assert [r.status for r in recs] == ["ok", "error", "invalid"]
    assert recs[1].reasons == ["not decoded: the work failed (RuntimeError: disk vanished)"]
    assert recs[2].reasons[0].startswith("sequence_gap")  # the sequence goes on past it


def test_decoded_files_pickle(data: dict[str, Any]) -> None:
    """What workers send back: every file of a set, truncated and unreadable ones too."""
    files = [data["fits"][0], data["ser"], data["cut"], data["bad"]]
    for item in decode_series(files):
        back = pickle.loads(pickle.dumps(item))
        assert [r.to_dict() for r in back.emit()] == [r.to_dict() for r in item.emit()]
        if item.decoded is not None and item.decoded.truncation is not None:
            assert str(back.decoded.truncation) == str(item.decoded.truncation)  # type: ignore[union-attr]


# -- the calibration snapshot ---------------------------------------------------------------


def _outcome(fn: Any) -> tuple[Any, ...]:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            r = fn()
            got: tuple[Any, ...] = ("ok", r.calibration, r.kind, r.differences, r.extra_offset0_sigma_us)
        except Exception as exc:  # the same error, with the same words
            got = ("error", type(exc).__name__, str(exc))
    return (*got, [(type(w.message).__name__, str(w.message)) for w in caught])


def test_snapshot_answers_as_the_store(tmp_path: Path) -> None:
    """Every lookup and pin of a store with unit-specific, model-wide, superseded and retracted
    calibrations gives the same calibration, kind, widening, warnings and errors from its
    snapshot."""
    base = Setting(camera_model="QHY600PRO", readout_mode="High Gain", roi_width=64,
                   roi_height=40, roi_y=3400)  # fmt: skip
    with CalibrationStore(tmp_path / "s.sqlite") as store:

        def cal(setting: Setting, o0: float) -> Calibration:
            return Calibration(setting=setting, reference="end", offset0_us=o0,
                               line_period_ns=43194.5, method="LED fit")  # fmt: skip

        store.add(cal(base, 1990.0))
        store.add(cal(base, 1991.0))  # supersedes
        unit = store.add(cal(Setting(**{**base.to_dict(), "serial": "A1"}), 1992.0))
        wide = store.add(cal(Setting(**{**base.to_dict(), "roi_y": 0, "roi_height": 6388}), 1993.0))
        live = store.add(cal(Setting(**{**base.to_dict(), "roi_y": 100, "stream_mode": "live"}), 1994.0))
        store.retract(unit.id, "bad cable")  # type: ignore[arg-type]
        store.add(cal(Setting(**{**base.to_dict(), "serial": "B2", "binning": 2}), 1995.0))
        snap = pickle.loads(pickle.dumps(CalibrationSnapshot.from_store(store)))
        queries = [
            base,
            Setting(**{**base.to_dict(), "serial": "A1"}),
            Setting(**{**base.to_dict(), "serial": "B2"}),
            Setting(**{**base.to_dict(), "serial": "B2", "binning": 2}),
            Setting(**{**base.to_dict(), "roi_y": 10}),
            Setting(**{**base.to_dict(), "roi_y": 100, "stream_mode": "live"}),
            Setting(**{**base.to_dict(), "roi_y": 7, "stream_mode": "live"}),
            Setting(**{**base.to_dict(), "readout_mode": "Photographic DSO", "roi_width": 9576,
                       "roi_height": 6388, "roi_y": 0}),  # the shipped ones
            Setting(**{**base.to_dict(), "readout_mode": "nobody's"}),
            Setting(**{**base.to_dict(), "bit_depth": 8}),
        ]
        assert len(snap) == store.count()
        for q in queries:
            for fb in (False, True):
                assert _outcome(lambda q=q, fb=fb: snap.lookup(q, fallback=fb)) == _outcome(
                    lambda q=q, fb=fb: store.lookup(q, fallback=fb)
                ), (q.key(), fb)
            for cid in (1, unit.id, wide.id, live.id, 999):
                assert _outcome(lambda q=q, c=cid: snap.pinned(c, q)) == _outcome(
                    lambda q=q, c=cid: store.pinned(c, q)
                ), (q.key(), cid)


# -- options and errors -----------------------------------------------------------------------


def test_options_exclude_each_other(data: dict[str, Any]) -> None:
    res = _cli("decode", "--dask", "tcp://127.0.0.1:1", "--workers", "2", data["fits"][0])
    assert res.exit_code == 2 and "--dask and --workers exclude each other" in res.stderr
    res = _cli("decode", "--workers", "0", data["fits"][0])
    assert res.exit_code == 2 and "--workers" in res.stderr


def test_unreachable_scheduler_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, data: dict[str, Any]
) -> None:
    need(_have_distributed(), "dask.distributed (pip install '.[dask]')")
    import qhytime.cluster

    monkeypatch.setattr(qhytime.cluster, "CONNECT_TIMEOUT_S", 1)
    res = _cli("stamp", data["fits"][0], "--dask", "tcp://127.0.0.1:9", "--offset0-us", "1974",
               "--line-period-ns", "43194")  # fmt: skip
    assert res.exit_code == 1
    assert res.stderr.startswith("qhytime: cannot reach the dask scheduler at tcp://127.0.0.1:9")
    assert "Traceback" not in res.output


def test_import_api_imports_no_dask() -> None:
    code = ("import sys, qhytime.api, qhytime.cluster, qhytime.cli; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]; "
            "print(bad); sys.exit(1 if bad else 0)")  # fmt: skip
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_lost_worker_is_a_status(executor: Executor) -> None:
    """A worker that dies on an item (a crash in a library, the OOM killer): that item's
    result is the caller's error status, the others come back. (Last: the nanny restarts the
    worker.)"""
    from distributed import KilledWorker

    def crash_on_two(i: int) -> int:
        if i == 2:
            os._exit(1)
        return i

    from qhytime.cluster import DaskExecutor

    client = executor.client  # type: ignore[attr-defined]
    # No retries on other workers (the scheduler's default is 3 more crashes), and one item in
    # flight at a time: a dying worker also takes the items queued on it (dask retries those
    # elsewhere when retries are allowed).
    before = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
    client.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler, "allowed_failures", 0))
    try:
        out = list(DaskExecutor(client, window=1).map(
            crash_on_two, range(5), on_error=lambda item, exc: ("lost", item, type(exc).__name__)
        ))  # fmt: skip
    finally:
        client.run_on_scheduler(
            lambda dask_scheduler: setattr(dask_scheduler, "allowed_failures", before)
        )
    assert out == [0, 1, ("lost", 2, KilledWorker.__name__), 3, 4]


# -- warnings on a worker with several threads ---------------------------------------------------


def _warn_between_sleeps(i: int) -> int:
    """An item that warns while others may be running on the same worker's other threads."""
    import time
    import warnings

    time.sleep(0.01 * (i % 3))
    warnings.warn(f"item {i}", UserWarning, stacklevel=1)
    time.sleep(0.01 * ((i + 1) % 3))
    return i


def test_each_item_keeps_its_own_warnings_on_a_threaded_worker() -> None:
    """Warning filters are process-wide: on a worker with 4 threads, items that warn at once
    must neither lose their warnings nor get another item's (each comes back with its own
    item, in input order)."""
    need(_have_distributed(), "dask.distributed (pip install '.[dask]')")
    import cloudpickle
    from distributed import Client, LocalCluster

    from qhytime.cluster import _SCHEDULER_KWARGS, DaskExecutor

    me = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(me)  # the workers cannot import the tests folder
    try:
        with LocalCluster(n_workers=1, threads_per_worker=4, processes=True,
                          dashboard_address=None, scheduler_kwargs=_SCHEDULER_KWARGS) as cluster, \
                Client(cluster) as client:  # fmt: skip
            ex = DaskExecutor(client)
            ex.max_batch = 1  # one item per task: the four threads run items at once
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = list(ex.map(_warn_between_sleeps, range(40)))
    finally:
        cloudpickle.unregister_pickle_by_value(me)
    assert out == list(range(40))
    assert [str(w.message) for w in caught] == [f"item {i}" for i in range(40)]

"""Frame timing index on SQLite and PostgreSQL: truth of the reference frames, idempotent ingest,
changed and growing files, missing calibration/exposure, refresh, migrations, concurrent writers,
and row times equal to ``qhytime rows`` to the ns."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, func, inspect, select

from qhytime.calibration import Calibration
from qhytime.cli import main
from qhytime.decode import decode_file
from qhytime.errors import RowModelError
from qhytime.framerows import file_timing, setting_from_reader
from qhytime.readers import open_frames
from qhytime.readers.serfile import _HEADER, SER_MAGIC, unix_ns_to_dotnet_ticks
from qhytime.service.index import FrameIndex, IndexFrame, file_records, parse_iso_ns
from qhytime.simulate import CameraSim
from qhytime.store import CalibrationStore, head_revision, run_migrations

DATA = Path(__file__).parent / "data"


def add_calibration(store: CalibrationStore, path: str | Path, **kw: Any) -> Calibration:
    """Store a calibration for the setting of ``path`` (as read from the file)."""
    with open_frames(path) as r:
        setting = setting_from_reader(r, 0)
    values: dict[str, Any] = dict(reference="end", offset0_us=1974.286, offset0_sigma_us=0.5,
                                  line_period_ns=43194.0, line_period_sigma_ns=0.01,
                                  method="manual")  # fmt: skip
    values.update(kw)
    return store.add(Calibration(setting=setting, **values))


def ser_bytes(sim: CameraSim, first: int, n: int) -> bytes:
    return b"".join(sim.frame(i, noise=False).image.astype("<u2").tobytes()
                    for i in range(first, first + n))  # fmt: skip


def ser_header(sim: CameraSim, count: int) -> bytes:
    return _HEADER.pack(SER_MAGIC, 0, 0, 1, sim.width, sim.height, 16, count, b"", b"QHY600PRO",
                        b"", 0, 0)  # fmt: skip


def unique_frames(index: FrameIndex) -> tuple[int, int]:
    with index.session() as s:
        n = s.scalar(select(func.count(IndexFrame.id)))
        distinct = s.execute(select(IndexFrame.file_id, IndexFrame.frame).distinct()).all()
    return int(n or 0), len(distinct)


# -- the reference frames against their truth ---------------------------------------------------


def test_reference_frames_match_truth(db_url: str, truth: dict[str, Any]) -> None:
    files = sorted(p for p in DATA.iterdir() if p.suffix in (".fits", ".ser"))
    with FrameIndex(db_url) as index:
        results = {Path(r.path).name: r for r in index.ingest_paths(files)}
        for t in truth["frames"]:
            (f,) = index.frames(file=str(DATA / t["file"]), frame=t["frame"])
            assert (f.start_ns, f.end_ns, f.now_ns) == (
                t["start"]["unix_ns"], t["end"]["unix_ns"], t["now"]["unix_ns"],
            ), t["file"]  # fmt: skip
            assert f.sequence == t["sequence"] and f.pps_count == t["pps_count"]
            assert f.latitude_deg == pytest.approx(t["latitude_deg"], abs=1e-9)
            assert f.longitude_deg == pytest.approx(t["longitude_deg"], abs=1e-9)
            d = f.to_dict()
            assert (d["start"], d["end"], d["now"]) == (
                t["start"]["utc"], t["end"]["utc"], t["now"]["utc"])  # fmt: skip
        # the refused inputs: indexed with the reason their time is refused, kept partly
        # (a truncated file's complete frames), or recorded as unreadable
        for bad in truth["bad"]:
            res = results[bad["file"]]
            frames = index.frames(file=str(DATA / bad["file"]))
            codes = {r.split(":")[0] for f in frames for r in f.reasons}
            if bad["expect"] == "no_gps_block":
                assert [f.status for f in frames] == ["invalid"] and "no_gps_block" in codes
                assert not frames[0].timed and frames[0].start_ns is None
            elif bad["expect"] == "invalid_stamp":
                assert [f.status for f in frames] == ["invalid"] and "ticks_out_of_range" in codes
            elif bad["expect"] == "truncated":
                assert (res.status, len(frames)) == ("partial", bad["complete_frames"])
                assert "truncated" in res.message
            else:
                assert (bad["expect"], res.action, frames) == ("not_fits", "error", [])
        assert all(r.action != "error" for n, r in results.items() if not n.startswith("bad_"))


# -- idempotence, changed files, growing SER -----------------------------------------------------


def test_same_file_again_adds_nothing_changed_file_is_replaced(db_url: str, tmp_path: Path) -> None:
    sim = CameraSim(width=64, height=16, exposure_us=5000.0, frame_interval_us=6000.0)
    fits = sim.write_fits(tmp_path / "cap", 3)
    ser = sim.write_ser(tmp_path / "cap" / "v.ser", 12)
    paths = [*fits, ser]
    with FrameIndex(db_url) as index:
        assert [r.action for r in index.ingest_paths(paths, exposure_ns=5_000_000)] == ["indexed"] * 4
        ids_before = {f.id for f in index.frames(file=str(ser))}
        assert index.count() == 15 and unique_frames(index) == (15, 15)
        assert [r.action for r in index.ingest_paths(paths)] == ["unchanged"] * 4
        assert index.count() == 15
        # rewrite frame_0001 with other content (another capture under the same name)
        CameraSim(width=64, height=16, exposure_us=5000.0, sequence0=700).write_fits(
            tmp_path / "other", 2)  # fmt: skip
        shutil.copyfile(tmp_path / "other" / "frame_0001.fits", fits[1])
        # and only touch frame_0002's mtime: a changed mtime is re-indexed as well
        st = os.stat(fits[2])
        os.utime(fits[2], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        acts = [r.action for r in index.ingest_paths(paths)]
        assert acts == ["unchanged", "indexed", "indexed", "unchanged"]
        assert index.count() == 15 and unique_frames(index) == (15, 15)
        (f1,) = index.frames(file=str(fits[1]))
        assert f1.sequence == 701  # the new content, not the old
        assert {f.id for f in index.frames(file=str(ser))} == ids_before  # untouched file
        # the same file by its bare name, by sequence, by time range
        assert [f.frame for f in index.frames(file="v.ser", sequence=5)] == [4]
        t0 = index.frames(file="v.ser", frame=3)[0].end_ns
        got = index.frames(time_from_ns=t0, time_to_ns=t0 + 1)
        assert [(Path(f.file).name, f.frame) for f in got] == [("v.ser", 3)]


def test_ser_growing_frame_by_frame_is_appended(db_url: str, tmp_path: Path) -> None:
    sim = CameraSim(width=64, height=16, exposure_us=5000.0, frame_interval_us=6000.0)
    path = tmp_path / "rec.ser"
    with open(path, "wb") as fh:  # a capture program records: frame count 0 in the header
        fh.write(ser_header(sim, 0))
        fh.write(ser_bytes(sim, 0, 3))
    with FrameIndex(db_url) as index:
        r = index.ingest(path, exposure_ns=5_000_000)
        assert (r.action, r.frames, r.status) == ("indexed", 3, "partial")
        first_ids = [f.id for f in index.frames(file=str(path))]
        with open(path, "ab") as fh:  # two more frames and half of the next
            fh.write(ser_bytes(sim, 3, 2))
            fh.write(ser_bytes(sim, 5, 1)[:700])
        r = index.ingest(path, exposure_ns=5_000_000)
        assert (r.action, r.frames, r.total_frames) == ("appended", 2, 5)
        with open(path, "r+b") as fh:  # the rest, then the header count and the trailer
            fh.seek(-700, 2)
            fh.write(ser_bytes(sim, 5, 3))
            fh.seek(0)
            fh.write(ser_header(sim, 8))
            fh.seek(0, 2)
            starts = [sim.block_for(i)[1] - 5_000_000 for i in range(8)]
            fh.write(np.asarray(unix_ns_to_dotnet_ticks(np.array(starts)), "<i8").tobytes())
        r = index.ingest(path, exposure_ns=5_000_000)
        assert (r.action, r.frames, r.total_frames, r.status) == ("appended", 3, 8, "ok")
        frames = index.frames(file=str(path))
        assert [f.id for f in frames[:3]] == first_ids  # kept, not replaced
        assert unique_frames(index) == (8, 8)
        d = decode_file(path)
        assert [f.end_ns for f in frames] == d.unix_ns["end"].tolist()
        assert [f.sequence for f in frames] == list(range(1, 9))
        assert index.ingest(path).action == "unchanged"


# -- frames without row times, and the refresh ---------------------------------------------------


def test_missing_exposure_and_calibration_then_refresh(db_url: str, tmp_path: Path) -> None:
    sim = CameraSim(width=64, height=16, exposure_us=5000.0, frame_interval_us=6000.0)
    fits = sim.write_fits(tmp_path, 1)[0]
    ser = sim.write_ser(tmp_path / "v.ser", 4)
    with FrameIndex(db_url) as index:
        index.ingest(fits)
        index.ingest(ser)  # no exposure given
        (f,) = index.frames(file=str(fits))
        assert f.calibration_id is None and not f.timed and f.status == "ok"
        assert [r.split(":")[0] for r in f.reasons] == ["no_calibration"]
        s = index.frames(file=str(ser), frame=0)[0]
        assert {r.split(":")[0] for r in s.reasons} == {"no_calibration", "no_exposure"}
        with pytest.raises(RowModelError, match="no_calibration"):
            index.row_times(f)
        t = f.end_ns
        assert list(index.at(t)) == []
        assert list(index.refresh()) == []  # nothing new to pick up
        cal = add_calibration(index.store, fits)
        refreshed = list(index.refresh())
        assert [(Path(r.path).name, r.action, r.calibration_id) for r in refreshed] == [
            ("frame_0000.fits", "refreshed", cal.id)]  # fmt: skip
        (f,) = index.frames(file=str(fits))
        assert f.timed and f.reasons == []
        ft = file_timing(fits, store=index.store)
        mine, lib = index.row_times(f), ft.row_times(0)
        for a in ("start_ns", "mid_ns", "end_ns"):
            assert np.array_equal(getattr(mine, a), getattr(lib, a))
        assert np.array_equal(mine.sigma_ns, lib.sigma_ns)
        hits = list(index.at(int(lib.end_ns[0, 0]) - 1))
        assert [h[0].id for h in hits] == [f.id]


def test_row_times_equal_qhytime_rows_to_the_ns(tmp_path: Path) -> None:
    """The index (no file access) and `qhytime rows` (the file) give the same row times; both
    match the simulator's truth within the tick quantisation of the stamps."""
    db = str(tmp_path / "i.sqlite")
    sim = CameraSim(width=48, height=20, crop_y=102, binning=2, exposure_us=3000.0,
                    offset0_us=1500.0, line_period_ns=40_000.0, readout="2cms")  # fmt: skip
    fits = sim.write_fits(tmp_path / "cap", 1)[0]
    ser = sim.write_ser(tmp_path / "cap" / "v.ser", 6)
    with CalibrationStore(db) as store:
        for p in (fits, ser):
            add_calibration(store, p, offset0_us=1500.0, line_period_ns=40_000.0)
    runner = CliRunner()
    env = {"QHYTIME_DB": db}
    res = runner.invoke(main, ["index", str(tmp_path / "cap"), "--exposure-s", "0.003", "--quiet"],
                        env=env)  # fmt: skip
    assert res.exit_code == 0, res.output
    for path, frame, extra in ((fits, 0, []), (ser, 4, ["--exposure-s", "0.003"])):
        lib = runner.invoke(main, ["rows", str(path), "--frame", str(frame), "--json", *extra],
                            env=env)  # fmt: skip
        assert lib.exit_code == 0, lib.output
        want = [json.loads(line) for line in lib.stdout.splitlines() if line.startswith("{")]
        got = runner.invoke(main, ["query", "--file", str(path), "--frame", str(frame), "--rows",
                                   "0:20", "--json"], env=env)  # fmt: skip
        assert got.exit_code == 0, got.output
        (obj,) = [json.loads(line) for line in got.stdout.splitlines()]
        rows = obj["rows"]
        assert len(rows) == len(want) == 20
        for a, b in zip(rows, want, strict=True):
            assert {k: a[k] for k in b} == b  # row, start, mid, end, sigma_ns: identical
            assert parse_iso_ns(a["end"]) == a["end_ns"]
        if path == ser:
            continue  # a SER names no crop, binning or readout mode: only the FITS has the truth
        # the simulator's truth: each image row ends at reference + its true end (binned: the
        # latest of its rows); the stamps are truncated to 100 ns ticks
        shot = sim.frame(frame)
        truth_end = shot.reference_ns + shot.row_end_ns
        err = np.array([r["end_ns"] for r in rows]) - truth_end
        assert np.abs(err).max() <= 101, err


# -- migrations and concurrent writers -----------------------------------------------------------


def test_migration_from_0003_keeps_calibrations(db_url: str) -> None:
    engine = create_engine(db_url)
    with engine.begin() as conn:
        run_migrations(conn, "0003")
        conn.exec_driver_sql(
            "INSERT INTO calibrations (setting_key, camera_model, readout_mode, is_2cms, roi_x, "
            "roi_y, roi_width, roi_height, binning, bit_depth, usb_traffic, stream_mode, "
            "reference, offset0_us, offset0_sigma_us, line_period_ns, line_period_sigma_ns, "
            "method, measured_at, notes, provenance, source, created_at) VALUES ('k', "
            "'QHY600PRO', 'Photographic DSO', false, 0, 0, 100, 100, 1, 16, 0, 'single', 'end', "
            "1.5, 0.1, 43194.0, 0.01, 'manual', '2024-01-01', '', '', 'user', '2024-01-01')"
        )
    engine.dispose()
    with CalibrationStore(db_url) as store:
        assert store.schema_revision() == head_revision()
        assert [c.offset0_us for c in store.list(include_superseded=True)] == [1.5]
        tables = set(inspect(store.engine).get_table_names())
        assert {"index_files", "index_frames", "index_alerts", "gnss_log"} <= tables


def _ingest_worker(url: str, paths: list[str]) -> None:
    with FrameIndex(url) as index:
        for r in index.ingest_paths(paths, exposure_ns=5_000_000):
            assert r.action in ("indexed", "unchanged"), r


def test_two_processes_indexing_the_same_files(db_url: str, tmp_path: Path) -> None:
    sim = CameraSim(width=64, height=16, exposure_us=5000.0, frame_interval_us=6000.0)
    paths = [str(p) for p in sim.write_fits(tmp_path, 16)]
    paths += [str(sim.write_ser(tmp_path / f"v{k}.ser", 40)) for k in range(2)]
    FrameIndex(db_url).close()  # create the database first (as a site's setup does)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_ingest_worker, args=(db_url, order))
             for order in (paths, paths[::-1])]  # fmt: skip
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    with FrameIndex(db_url) as index:
        assert unique_frames(index) == (16 + 80, 16 + 80)
        assert len(index.files()) == 18
        for p in paths:
            assert len(index.frames(file=p)) == decode_file(p).__len__()


# -- the per-file work is a pure function -------------------------------------------------------


def test_file_records_writes_nothing_and_batches(tmp_path: Path) -> None:
    sim = CameraSim(width=64, height=16, exposure_us=5000.0, frame_interval_us=6000.0)
    ser = sim.write_ser(tmp_path / "v.ser", 7)
    db = str(tmp_path / "i.sqlite")
    rec = file_records(ser, db, exposure_ns=5_000_000)  # opens and closes the store by URL
    assert rec.status == "ok" and len(rec) == 7 and rec.exposure_ns == 5_000_000
    batches = list(rec.batches(file_id=1, size=3))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert [row["frame"] for b in batches for row in b] == list(range(7))
    assert batches[0][0]["end_ns"] == int(decode_file(ser).unix_ns["end"][0])
    with FrameIndex(db) as index:
        assert index.count() == 0  # nothing was written
        assert index.write(rec).action == "indexed" and index.count() == 7


def test_query_cli(tmp_path: Path) -> None:
    db = str(tmp_path / "i.sqlite")
    sim = CameraSim(width=64, height=16, exposure_us=5000.0, frame_interval_us=6000.0)
    sim.write_fits(tmp_path / "cap", 3)
    runner = CliRunner()
    env = {"QHYTIME_DB": db}
    assert runner.invoke(main, ["index", str(tmp_path / "cap"), "--quiet"], env=env).exit_code == 0
    out = runner.invoke(main, ["query", "--json"], env=env)
    objs = [json.loads(line) for line in out.stdout.splitlines()]
    keys = {"id", "file", "frame", "sequence", "status", "reasons", "start_ns", "end_ns",
            "now_ns", "start", "end", "now", "exposure_ns", "calibration_id"}  # fmt: skip
    assert len(objs) == 3 and all(keys <= set(o) for o in objs)
    assert [o["sequence"] for o in objs] == [1, 2, 3]
    assert all(parse_iso_ns(o["start"]) == o["start_ns"] for o in objs)
    one = runner.invoke(main, ["query", "--sequence", "2", "--json"], env=env)
    assert [json.loads(x)["frame"] for x in one.stdout.splitlines()] == [0]
    page = runner.invoke(main, ["query", "--limit", "1", "--offset", "1", "--json"], env=env)
    assert [json.loads(x)["sequence"] for x in page.stdout.splitlines()] == [2]
    rng = runner.invoke(main, ["query", "--from", objs[1]["end"], "--to", objs[2]["start"] + "Z",
                               "--json"], env=env)  # fmt: skip
    assert [json.loads(x)["sequence"] for x in rng.stdout.splitlines()] == [2]
    none = runner.invoke(main, ["query", "--at", "2000-01-01T00:00:00Z", "--json"], env=env)
    assert (none.exit_code, none.stdout) == (0, "")
    bad = runner.invoke(main, ["query", "--at", "yesterday"], env=env)
    assert bad.exit_code == 2 and "ISO" in bad.output
    missing = runner.invoke(main, ["query", "--file", "nope.fits"], env=env)
    assert missing.exit_code == 2 and "no such file in the index" in missing.output
    assert runner.invoke(main, ["index"], env=env).exit_code == 2

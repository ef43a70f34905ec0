"""The index of a long file written part by part (``FileRecords.parts``): exactly what the
index holds when the whole file is decoded at once — file row, every frame row, every alert —
for a damaged SER, a stale frame in a live stream, and a SER growing while it is indexed.

Truth is the whole-file path (one :func:`decode_reader`, checked against the reference frames
in ``test_service_index.py``); the streamed path runs with chunks of a few frames so a
300-frame file is written in dozens of parts, on SQLite and on the PostgreSQL server.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from damaged import damaged_frames
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from test_service_alerts import stale_stream
from test_service_index import add_calibration, ser_bytes, ser_header

import qhytime.decode
from qhytime.readers.serfile import write_ser
from qhytime.service import index as index_mod
from qhytime.service.index import AlertRow, FrameIndex, IndexFile, IndexFrame
from qhytime.simulate import CameraSim

NOW_NS = 1_800_000_000_000_000_000


def _dump(index: FrameIndex) -> dict[str, Any]:
    """Everything the index holds, ids replaced by what they point at."""
    with index.session() as s:
        files = {f.id: f.path for f in s.scalars(select(IndexFile))}
        file_rows = [
            {c.name: getattr(f, c.key) for c in IndexFile.__table__.columns
             if c.name not in ("id", "indexed_ns", "mtime_ns")}  # mtime: the file written twice
            for f in s.scalars(select(IndexFile).order_by(IndexFile.path))
        ]  # fmt: skip
        frame_of = {}
        frames = []
        for fr in s.scalars(select(IndexFrame).order_by(IndexFrame.file_id, IndexFrame.frame)):
            frame_of[fr.id] = (files[fr.file_id], fr.frame)
            row = {c.name: getattr(fr, c.key) for c in IndexFrame.__table__.columns
                   if c.name not in ("id", "file_id")}  # fmt: skip
            frames.append((files[fr.file_id], row))
        alerts = sorted(
            (a.kind, a.message, a.source, files.get(a.file_id), frame_of.get(a.frame_id),
             a.frames, a.t_ns, a.cleared_ns)
            for a in s.scalars(select(AlertRow))
        )  # fmt: skip
    return {"files": file_rows, "frames": sorted(frames, key=lambda x: (x[0], x[1]["frame"])),
            "alerts": alerts}  # fmt: skip


def _index(url: str, steps: list, chunk: int | None, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Run ``steps`` (callables taking the index) with decode chunks of ``chunk`` frames."""
    with monkeypatch.context() as m:
        if chunk is not None:  # short files too, in chunks of a few frames
            m.setattr(qhytime.decode, "DECODE_CHUNK_FRAMES", chunk)
            m.setattr(qhytime.decode, "WHOLE_FILE_FRAMES", 0)
        with FrameIndex(url) as index:
            for step in steps:
                step(index)
            return _dump(index)


def _whole_and_streamed(db_url, tmp_path, steps, monkeypatch, chunk=7):
    whole = _index(f"sqlite:///{tmp_path / 'whole.sqlite'}", steps, None, monkeypatch)
    streamed = _index(db_url, steps, chunk, monkeypatch)
    return whole, streamed


def test_damaged_ser_streamed_equals_whole(db_url, tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    path = tmp_path / "damaged.ser"
    write_ser(path, damaged_frames(300, rng, 0.06))

    def add(index):
        add_calibration(index.store, path, reference="now")  # the now-stamp wander note too

    def ingest(index):
        r = index.ingest(path, exposure_ns=10_000_000, now_ns=NOW_NS)
        assert (r.action, r.frames) == ("indexed", 300)

    parts = []
    real = index_mod._frame_columns
    monkeypatch.setattr(index_mod, "_frame_columns", lambda *a: parts.append(a) or real(*a))
    whole, streamed = _whole_and_streamed(db_url, tmp_path, [add, ingest], monkeypatch)
    assert len(parts) == 1 + 300 // 7 + 1  # the whole file once, then 43 parts of 7 frames
    assert len(whole["frames"]) == 300
    assert sum(1 for _, f in whole["frames"] if f["status"] == "invalid") > 10
    assert "now stamp" in whole["files"][0]["message"]  # the wander note, from all frames
    assert whole["files"][0]["span_lo_ns"] is not None
    assert {a[0] for a in whole["alerts"]} >= {"sequence", "suspect_time"} or whole["alerts"]
    assert streamed == whole


def test_stale_frame_and_neighbour_files_streamed_equal_whole(db_url, tmp_path, monkeypatch):
    """A live stream with a stale frame (late_frame), and a second file continuing the run
    after a gap (a sequence alert across files)."""
    sim = CameraSim(width=64, height=16, exposure_us=5000.0, frame_interval_us=6000.0)
    frames = stale_stream(sim, 40, 23)
    first, second = tmp_path / "a.ser", tmp_path / "b.ser"
    write_ser(first, frames[:30])
    write_ser(second, frames[33:])  # three frames missing between the files

    def steps(index):
        add_calibration(index.store, first)
        for p in (second, first):  # out of order: the later file's alert is cleared, raised again
            index.ingest(p, exposure_ns=5_000_000, now_ns=NOW_NS)

    whole, streamed = _whole_and_streamed(db_url, tmp_path, [steps], monkeypatch, chunk=4)
    kinds = [a[0] for a in whole["alerts"]]
    assert "late_frame" in kinds and "sequence_gap" in kinds
    assert streamed == whole


def test_growing_ser_streamed_equals_whole(db_url, tmp_path, monkeypatch):
    """A SER being recorded (frame count 0), indexed, grown, indexed (appended), finished."""
    sim = CameraSim(width=64, height=16, exposure_us=5000.0, frame_interval_us=6000.0)
    path = tmp_path / "rec.ser"
    finished = tmp_path / "finished.ser"  # the same camera setting, for the calibration
    write_ser(finished, np.stack([sim.frame(i, noise=False).image for i in range(3)]))

    def start(index):
        add_calibration(index.store, finished)
        r = index.ingest(path, exposure_ns=5_000_000, now_ns=NOW_NS)
        assert (r.action, r.frames) == ("indexed", 25)

    def _begin():
        with open(path, "wb") as fh:
            fh.write(ser_header(sim, 0))
            fh.write(ser_bytes(sim, 0, 25))
        return path

    def grow(index):
        with open(path, "ab") as fh:
            fh.write(ser_bytes(sim, 25, 20))
            fh.write(ser_bytes(sim, 45, 1)[:500])
        r = index.ingest(path, exposure_ns=5_000_000, now_ns=NOW_NS)
        assert (r.action, r.frames, r.total_frames) == ("appended", 20, 45)

    def finish(index):
        with open(path, "r+b") as fh:
            fh.seek(-500, 2)
            fh.write(ser_bytes(sim, 45, 5))
            fh.seek(0)
            fh.write(ser_header(sim, 50))
        r = index.ingest(path, exposure_ns=5_000_000, now_ns=NOW_NS)
        assert (r.action, r.frames, r.total_frames, r.status) == ("appended", 5, 50, "ok")

    for p in tmp_path.glob("*.sqlite"):
        p.unlink()
    _begin()
    whole = _index(f"sqlite:///{tmp_path / 'whole.sqlite'}", [start, grow, finish], None,
                   monkeypatch)  # fmt: skip
    _begin()
    streamed = _index(db_url, [start, grow, finish], 6, monkeypatch)
    assert len(whole["frames"]) == 50
    assert streamed == whole


def test_a_file_replaced_between_plan_and_write_is_planned_again(tmp_path, monkeypatch):
    """Streamed records read the file again when written: if it changed in between, nothing of
    the old plan is written and the file is planned again (the new content is indexed)."""
    rng = np.random.default_rng(9)
    path = tmp_path / "v.ser"
    write_ser(path, damaged_frames(60, rng, 0.0))
    other = damaged_frames(60, np.random.default_rng(10), 0.0)
    real_plan = index_mod.plan_ingest
    calls = []

    def plan_then_replace(*a, **kw):
        rec = real_plan(*a, **kw)
        if not calls:
            write_ser(path, other)  # another file under the same name
        calls.append(rec)
        return rec

    monkeypatch.setattr(qhytime.decode, "DECODE_CHUNK_FRAMES", 8)
    monkeypatch.setattr(qhytime.decode, "WHOLE_FILE_FRAMES", 0)
    monkeypatch.setattr(index_mod, "plan_ingest", plan_then_replace)
    with FrameIndex(f"sqlite:///{tmp_path / 'i.sqlite'}") as index:
        add_calibration(index.store, path)
        r = index.ingest(path, exposure_ns=10_000_000, now_ns=NOW_NS)
        assert r.action == "indexed" and len(calls) == 2
        rows = index.frames(file=str(path))
    from qhytime.decode import decode_file

    want = decode_file(path).unix_ns["end"].tolist()
    assert [f.end_ns for f in rows] == want


def test_no_room_for_the_temporary_copy_is_a_clear_status(tmp_path, monkeypatch):
    """The first pass of a long file copies its block bytes to a temporary file: when that
    cannot be made, ``qhytime decode`` and the index say so for that file and go on."""
    import tempfile

    from qhytime.decode import decode_paths

    path = tmp_path / "v.ser"
    write_ser(path, damaged_frames(40, np.random.default_rng(3), 0.0))
    monkeypatch.setattr(qhytime.decode, "DECODE_CHUNK_FRAMES", 8)
    monkeypatch.setattr(qhytime.decode, "WHOLE_FILE_FRAMES", 0)

    def refuse(*a, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    recs = list(decode_paths([str(path), "tests/data/fits16_000.fits"], chunk_frames=8))
    assert recs[0].status == "error" and "TMPDIR" in recs[0].reasons[0]
    assert [(r.file, r.status) for r in recs[1:]] == [("tests/data/fits16_000.fits", "ok")]
    with FrameIndex(f"sqlite:///{tmp_path / 'i.sqlite'}") as index:
        add_calibration(index.store, path)
        r = index.ingest(path, exposure_ns=10_000_000, now_ns=NOW_NS)
        assert r.action == "error" and "TMPDIR" in r.message and r.path == str(path)
        assert index.count() == 0 and index.files() == []  # nothing half-written


class _Part:
    """The part of a file :class:`FrameTally` reads: columns and reasons of some frames."""

    def __init__(self, frames, present, seq, end):
        from qhytime.validity import FrameReasons

        self.columns = {"frame": frames, "present": present, "sequence": seq, "end_ns": end}
        self.reasons = FrameReasons(len(frames))

    def __len__(self):
        return len(self.columns["frame"])


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60), n_prev=st.integers(0, 8),
       parts=st.integers(1, 6))  # fmt: skip
def test_tally_late_frames_equal_late_frames(seed, n, n_prev, parts):
    """The late frames and cadence of a file tallied part by part are :func:`late_frames`' of
    all its frames with the frames indexed before as context (hand-checked there)."""
    from qhytime.service.alerts import FrameTally, late_frames

    rng = np.random.default_rng(seed)
    m = n_prev + n
    step = rng.choice([1, 1, 1, 1, 2, 0, -1], size=m)
    seq = np.cumsum(step).astype(np.int64) + 1000
    d = rng.choice([100, 100, 101, 99, 250, 300, 0, -50], size=m) * 1_000_000
    end = np.cumsum(d).astype(np.int64) + 10**18
    present = rng.random(n) < 0.9
    prev = list(zip(seq[:n_prev].tolist(), end[:n_prev].tolist(), strict=True))
    tally = FrameTally()
    cuts = np.sort(rng.integers(0, n + 1, size=parts - 1))
    for lo, hi in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [n]]), strict=True):
        tally.add(_Part(np.arange(lo, hi) + 7, present[lo:hi], seq[n_prev + lo : n_prev + hi],
                        end[n_prev + lo : n_prev + hi]))  # fmt: skip
    pos = np.flatnonzero(present)
    keep = np.concatenate([np.arange(n_prev), n_prev + pos])
    late, cadence = late_frames(end[keep], seq[keep], n_prev)
    count, first, step_ns, got = tally.late(prev if pos.size else [])
    if not pos.size:
        assert tally.first is None
        return
    assert got == cadence
    assert count == late.size
    if late.size:
        k = n_prev + int(late[0])
        assert (first, step_ns) == (int(pos[late[0]]) + 7, int(end[keep][k] - end[keep][k - 1]))
    else:
        assert first is None


def test_a_file_cut_short_while_written_is_planned_again(tmp_path, monkeypatch):
    """Cut short between two parts (a recording overwritten in place): the reader refuses to
    read its mapping past the new end (that would be SIGBUS, the watcher gone without a
    word), the transaction is dropped and the file as it is now is indexed."""
    path = tmp_path / "v.ser"
    write_ser(path, damaged_frames(400, np.random.default_rng(1), 0.0))
    monkeypatch.setattr(qhytime.decode, "DECODE_CHUNK_FRAMES", 64)
    monkeypatch.setattr(qhytime.decode, "WHOLE_FILE_FRAMES", 0)
    real = FrameIndex._insert_frames
    cut = []

    def insert_then_cut(self, s, part, file_id):
        n = real(self, s, part, file_id)
        if not cut:
            os.truncate(path, 178 + 100 * 256)  # 100 whole frames left
            cut.append(1)
        return n

    monkeypatch.setattr(FrameIndex, "_insert_frames", insert_then_cut)
    with FrameIndex(f"sqlite:///{tmp_path / 'i.sqlite'}") as index:
        add_calibration(index.store, path)
        r = index.ingest(path, exposure_ns=10_000_000, now_ns=NOW_NS)
        assert (r.action, r.frames, r.status) == ("indexed", 100, "partial")
        assert [f.frame for f in index.frames(file=str(path))] == list(range(100))


def test_a_full_disk_found_when_the_copy_is_flushed(tmp_path, monkeypatch):
    """The disk fills while the first pass's last bytes are flushed: a status naming TMPDIR
    (not "unreadable"), nothing recorded, so the next run tries the file again."""
    import io
    import tempfile

    from qhytime.decode import decode_paths

    path = tmp_path / "v.ser"
    write_ser(path, damaged_frames(650, np.random.default_rng(1), 0.0))
    monkeypatch.setattr(qhytime.decode, "DECODE_CHUNK_FRAMES", 200)
    monkeypatch.setattr(qhytime.decode, "WHOLE_FILE_FRAMES", 0)
    room = 3 * 200 * 44  # the first 3 chunks' block bytes; the last 50 frames stay buffered

    class FullDisk(io.FileIO):
        def write(self, b):
            if self.tell() + len(b) > room:
                raise OSError(28, "No space left on device")
            return super().write(b)

    def small_disk(*a, **kw):
        fd, name = tempfile.mkstemp(dir=tmp_path)
        os.unlink(name)
        return io.BufferedRandom(FullDisk(fd, "r+"))

    monkeypatch.setattr(tempfile, "TemporaryFile", small_disk)
    (rec,) = decode_paths([str(path)], chunk_frames=200)
    assert rec.status == "error" and rec.reasons[0].startswith("not decoded: ")
    assert "TMPDIR" in rec.reasons[0]
    with FrameIndex(f"sqlite:///{tmp_path / 'i.sqlite'}") as index:
        add_calibration(index.store, path)
        r = index.ingest(path, exposure_ns=10_000_000, now_ns=NOW_NS)
        assert r.action == "error" and "TMPDIR" in r.message
        assert index.files() == []  # not recorded: tried again next time
        monkeypatch.undo()
        r = index.ingest(path, exposure_ns=10_000_000, now_ns=NOW_NS)
        assert (r.action, r.frames) == ("indexed", 650)


def test_chunk_size_checked_before_any_file():
    from qhytime.decode import decode_paths

    with pytest.raises(ValueError, match="chunk_frames"):
        next(decode_paths(["tests/data/fits16_000.fits"], chunk_frames=0))

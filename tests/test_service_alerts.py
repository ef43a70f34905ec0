"""Alerts: receiver not locked, sequence gaps across files (and files indexed out of order), the
SDK's stale frame one period late in a live stream, and ``qhytime alerts``."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from qhytime.cli import main
from qhytime.gpsblock import embed_block
from qhytime.readers import write_ser
from qhytime.service.alerts import late_frames, list_alerts
from qhytime.service.index import FrameIndex
from qhytime.simulate import CameraSim


def test_receiver_not_locked_is_one_alert_per_file(db_url: str, tmp_path: Path) -> None:
    sim = CameraSim(width=64, height=16, exposure_us=5000.0, receiver_state=2)
    ser = sim.write_ser(tmp_path / "v.ser", 6)
    with FrameIndex(db_url) as index:
        res = index.ingest(ser, exposure_ns=5_000_000)
        (a,) = [x for x in list_alerts(index) if x.kind == "receiver_not_locked"]
        first = index.frames(file=str(ser), frame=0)[0]
        assert (a.frames, a.frame_id, a.file_id, a.severity) == (6, first.id, res.file_id, "error")
        assert "state 2" in a.message and a.t_ns == first.end_ns
        # re-indexing the file replaces its alerts, never duplicates them
        os.utime(ser, ns=(1, 1))
        assert index.ingest(ser, exposure_ns=5_000_000).action == "indexed"
        assert [x.kind for x in list_alerts(index)].count("receiver_not_locked") == 1


def test_sequence_gap_across_files_even_when_indexed_out_of_order(db_url: str, tmp_path: Path) -> None:
    sim = CameraSim(width=64, height=16, exposure_us=5000.0, frame_interval_us=6000.0)
    paths = sim.write_fits(tmp_path, 7)
    os.remove(paths[5])  # frame with sequence 6 never written
    order = [paths[i] for i in (0, 1, 2, 4, 3, 6)]  # 3 indexed after 4
    with FrameIndex(db_url) as index:
        for p in order[:4]:
            index.ingest(p)
        # frame_0004 arrived before frame_0003: for now a gap before it
        assert [a.message.split(":")[0] for a in list_alerts(index)] == ["frame_0004.fits"]
        index.ingest(order[4])  # frame_0003 fills it: cleared
        assert list_alerts(index) == []
        assert [a.kind for a in list_alerts(index, active_only=False)] == ["sequence_gap"]
        index.ingest(order[5])  # frame_0006 after 0004: one frame (sequence 6) missing
        (gap,) = list_alerts(index)
        assert gap.kind == "sequence_gap" and gap.source == "sequence"
        assert "1 frame(s) missing before sequence 7 (previous 5)" in gap.message


def stale_stream(sim: CameraSim, n: int, late_at: int) -> np.ndarray:
    """``n`` frames of a live stream whose frame ``late_at`` the SDK hands over one period
    late: its block has the next sequence number but the time of the frame after, and the
    stream goes on from there."""
    frames = []
    for i in range(n):
        shot = sim.frame(i if i < late_at else i + 1, noise=False)
        img = shot.image.copy()
        embed_block(img, dataclasses.replace(shot.block, sequence=sim.sequence0 + i))
        frames.append(img)
    return np.stack(frames)


def test_stale_frame_one_period_late_in_a_live_stream(db_url: str, tmp_path: Path) -> None:
    """Frames every 6 ms; the SDK hands over frame 5 one period late."""
    sim = CameraSim(width=64, height=16, exposure_us=5000.0, frame_interval_us=6000.0)
    write_ser(tmp_path / "stale.ser", stale_stream(sim, 12, 5))
    with FrameIndex(db_url) as index:
        index.ingest(tmp_path / "stale.ser", exposure_ns=5_000_000)
        (late,) = [a for a in list_alerts(index) if a.kind == "late_frame"]
        fifth = index.frames(file=str(tmp_path / "stale.ser"), frame=5)[0]
        assert late.frame_id == fifth.id and late.frames == 1
        assert "2.00 periods of 6.000 ms" in late.message


def test_late_frames_by_hand() -> None:
    ms = 1_000_000
    late, cadence = late_frames(np.array([0, 100, 200, 300, 500, 600]) * ms, np.arange(6))
    assert (late.tolist(), cadence) == ([4], 100 * ms)
    # a dropped frame (sequence jumps) is a gap, not a late frame
    late, _ = late_frames(np.array([0, 100, 200, 300, 500, 600]) * ms, np.array([0, 1, 2, 3, 5, 6]))
    assert late.tolist() == []
    # with context: only the new frames are reported
    late, _ = late_frames(np.array([0, 100, 200, 400, 500]) * ms, np.arange(5), n_previous=3)
    assert late.tolist() == [0]


def test_alerts_cli(tmp_path: Path) -> None:
    db = str(tmp_path / "i.sqlite")
    sim = CameraSim(width=64, height=16, exposure_us=5000.0, receiver_state=2)
    sim.write_fits(tmp_path / "cap", 2)
    runner = CliRunner()
    assert runner.invoke(main, ["index", str(tmp_path / "cap"), "--db", db]).exit_code == 0
    out = runner.invoke(main, ["alerts", "--json", "--db", db])
    objs = [json.loads(x) for x in out.stdout.splitlines()]
    assert [o["kind"] for o in objs] == ["receiver_not_locked"] * 2
    assert all(o["active"] and o["t"].startswith("2025-08-02T01:44:5") for o in objs)
    table = runner.invoke(main, ["alerts", "--db", db, "--kind", "late_frame"])
    assert (table.exit_code, table.stdout) == (0, "")

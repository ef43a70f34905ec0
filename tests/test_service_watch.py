"""Watch mode: files complete by size and time, growing SERs frame by frame, renames, errors
retried, stamping, the idle alert; and the Must-show: 200 FITS and 3 growing SERs written while
``qhytime watch`` runs, the watcher killed with SIGKILL halfway and restarted: every frame indexed
exactly once with the times ``qhytime decode`` gives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

from qhytime.atomic import TMP_MARK
from qhytime.calibration import Calibration
from qhytime.decode import decode_file
from qhytime.framerows import setting_from_reader
from qhytime.readers import open_frames
from qhytime.readers.serfile import _HEADER, SER_MAGIC, unix_ns_to_dotnet_ticks
from qhytime.service.alerts import list_alerts
from qhytime.service.index import FrameIndex, IndexFrame
from qhytime.service.watch import Watcher
from qhytime.simulate import CameraSim

EXPOSURE_NS = 5_000_000


def fits_bytes(sim: CameraSim, n: int, stage: Path, prefix: str = "f") -> list[bytes]:
    return [p.read_bytes() for p in sim.write_fits(stage, n, prefix=prefix)]


def ser_header(sim: CameraSim, count: int) -> bytes:
    return _HEADER.pack(SER_MAGIC, 0, 0, 1, sim.width, sim.height, 16, count, b"", b"QHY600PRO",
                        b"", 0, 0)  # fmt: skip


def ser_frame(sim: CameraSim, i: int) -> bytes:
    return sim.frame(i, noise=False).image.astype("<u2").tobytes()


def calibrate(db: str, path: Path) -> None:
    with FrameIndex(db) as index, open_frames(path) as r:
        index.store.add(Calibration(setting=setting_from_reader(r, 0), reference="end",
                                    offset0_us=1974.286, offset0_sigma_us=1.0,
                                    line_period_ns=43194.0, method="manual"))  # fmt: skip


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_watcher_rules(tmp_path: Path) -> None:
    """Settle, incomplete and unreadable files, renames, a recording SER, stamping, idle alert."""
    cap, stage, out = tmp_path / "cap", tmp_path / "stage", tmp_path / "stamped"
    cap.mkdir()
    db = str(tmp_path / "i.sqlite")
    sim = CameraSim(width=64, height=16, exposure_us=5000.0, frame_interval_us=6000.0)
    blobs = fits_bytes(sim, 3, stage)
    calibrate(db, stage / "f_0000.fits")
    clock = FakeClock()
    lines: list[str] = []
    with FrameIndex(db) as index:
        w = Watcher(index, cap, settle_s=2.0, stamp_dir=out, poll=True, rescan_s=0.0,
                    exposure_ns=EXPOSURE_NS, idle_alert_s=30.0, clock=clock, log=lines.append)  # fmt: skip
        w.rescan()

        def step(dt: float = 0.0) -> list[str]:
            clock.t += dt
            return [f"{r.action} {Path(r.path).name}" for r in w.step()]

        # a FITS written in two parts: nothing until its size has settled for 2 s
        (cap / "a.fits").write_bytes(blobs[0][:3000])
        assert step() == [] and step(1.5) == []
        with open(cap / "a.fits", "ab") as fh:
            fh.write(blobs[0][3000:])
        assert step(1.0) == [] and step(1.9) == []
        assert step(0.2) == ["indexed a.fits"]
        assert (out / "a.fits").exists()  # stamped
        # a FITS whose data stops short: incomplete, retried, never recorded as an error
        (cap / "b.fits").write_bytes(blobs[1][:4000])
        assert step() == [] and step(2.1) == ["incomplete b.fits"]
        assert index.file_state(cap / "b.fits") is None
        assert step(0.2) == []  # not before the next try
        with open(cap / "b.fits", "ab") as fh:
            fh.write(blobs[1][4000:])
        assert step(0.1) == [] and step(2.1) == ["indexed b.fits"]
        # not FITS at all: recorded as an error once stable, and re-indexed when it changes
        (cap / "c.fits").write_text("not a FITS file\n")
        assert step() == [] and step(2.1) == ["error c.fits"] and step(2.1) == []
        (cap / "c.fits").write_bytes(blobs[2])
        assert step(0.1) == [] and step(2.1) == ["indexed c.fits"]
        # renamed into the folder: a new file
        os.rename(stage / "f_0001.fits", cap / "renamed.fits")
        assert step() == [] and step(2.1) == ["indexed renamed.fits"]
        # a SER being recorded (header count 0): its frames as they come, no settle needed
        with open(cap / "rec.ser", "wb") as fh:
            fh.write(ser_header(sim, 0) + ser_frame(sim, 0) + ser_frame(sim, 1))
        assert step(0.1) == ["indexed rec.ser"]
        with open(cap / "rec.ser", "ab") as fh:
            fh.write(ser_frame(sim, 2) + ser_frame(sim, 3)[:100])
        assert step(0.6) == ["appended rec.ser"]
        assert len(index.frames(file=str(cap / "rec.ser"))) == 3
        # no new frame for 30 s: alert; the next frame clears it
        step(31.0)
        assert [a.kind for a in list_alerts(index)] == ["no_frames"] and w.stats.idle
        with open(cap / "rec.ser", "ab") as fh:
            fh.write(ser_frame(sim, 3)[100:])
        assert step(0.6) == ["appended rec.ser"]
        assert list_alerts(index) == [] and not w.stats.idle
        assert w.stats.files >= 4 and w.stats.errors == 1
    assert any(x.startswith("stamped") for x in lines)


# -- the Must-show: kill -9 halfway, restart --------------------------------------------------


def _watcher(db: str, cap: Path, out: Path, log: Path) -> subprocess.Popen[bytes]:
    code = "import sys; from qhytime.cli import main; sys.argv[0] = 'qhytime'; main()"
    cmd = [sys.executable, "-c", code, "watch", str(cap), "--db", db, "--settle", "0.5",
           "--stamp", str(out), "--exposure-s", "0.005"]  # fmt: skip
    with open(log, "ab") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)


def _frames_in(db: str) -> int:
    with FrameIndex(db) as index, index.session() as s:
        return int(s.scalar(select(func.count(IndexFrame.id))) or 0)


def test_kill_9_halfway_and_restart(tmp_path: Path) -> None:
    cap, stage, out = tmp_path / "cap", tmp_path / "stage", tmp_path / "stamped"
    cap.mkdir()
    stage.mkdir()
    db = str(tmp_path / "index.sqlite")
    sim = CameraSim(width=64, height=16, exposure_us=5000.0, frame_interval_us=6000.0)
    blobs = fits_bytes(sim, 200, stage / "src")
    calibrate(db, stage / "src" / "f_0000.fits")
    sers = [CameraSim(width=64 + 8 * k, height=16, exposure_us=5000.0, frame_interval_us=6000.0,
                      sequence0=10_000 * (k + 1), t0_unix_ns=sim.t0_unix_ns + k * 10**9)
            for k in range(3)]  # three cameras  # fmt: skip
    n_ser = 20
    halfway = threading.Event()
    failure: list[BaseException] = []

    def writer() -> None:
        try:
            heads = [ser_header(sers[0], 0), ser_header(sers[1], n_ser), ser_header(sers[2], 0)]
            for k, h in enumerate(heads):
                (cap / f"video{k}.ser").write_bytes(h)
            for i, blob in enumerate(blobs):
                name = f"frame_{i:04d}.fits"
                if i % 3 == 0:  # written in two parts, 0.05 s apart
                    with open(cap / name, "wb") as fh:
                        fh.write(blob[:2880])
                        fh.flush()
                        time.sleep(0.05)
                        fh.write(blob[2880:])
                elif i % 3 == 1:  # written elsewhere, renamed into the folder
                    (stage / name).write_bytes(blob)
                    os.rename(stage / name, cap / name)
                else:
                    (cap / name).write_bytes(blob)
                if i % 10 == 9:  # every SER grows by one frame
                    k = i // 10
                    for s, path in zip(sers, (cap / f"video{j}.ser" for j in range(3)), strict=True):
                        with open(path, "ab") as fh:
                            fh.write(ser_frame(s, k))
                if i == 100:
                    halfway.set()
                time.sleep(0.02)
            # video0 is finished by its writer: frame count and the time trailer
            with open(cap / "video0.ser", "r+b") as fh:
                fh.write(ser_header(sers[0], n_ser))
                fh.seek(0, 2)
                starts = np.array([sers[0].block_for(i)[1] - EXPOSURE_NS for i in range(n_ser)])
                fh.write(np.asarray(unix_ns_to_dotnet_ticks(starts), "<i8").tobytes())
        except BaseException as err:  # reported by the test
            failure.append(err)
            halfway.set()

    log = tmp_path / "watch.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(_watcher(db, cap, out, log))
        time.sleep(1.0)
        t = threading.Thread(target=writer)
        t.start()
        # the bounds below only stop a hang: a loaded machine may be slow, never wrong
        assert halfway.wait(180)
        deadline = time.monotonic() + 120
        while _frames_in(db) == 0 and time.monotonic() < deadline:  # a slow start: let it begin
            time.sleep(0.1)
        procs[0].send_signal(signal.SIGKILL)  # mid-write, maybe mid-transaction
        procs[0].wait(10)
        assert procs[0].returncode == -signal.SIGKILL
        killed_at = _frames_in(db)
        assert 0 < killed_at < 200 + 3 * n_ser
        procs.append(_watcher(db, cap, out, log))
        t.join(180)
        assert not failure, failure
        expected = 200 + 3 * n_ser
        deadline = time.monotonic() + 180
        while _frames_in(db) < expected and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1.5)  # anything more (a duplicate) would show now
        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(20) == 0, log.read_text()[-2000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    text = log.read_text()
    assert "Traceback" not in text and "internal error" not in text, text[-2000:]
    with FrameIndex(db) as index:
        files = {Path(f["path"]).name: f for f in index.files()}
        assert sorted(files) == sorted(p.name for p in cap.iterdir())
        assert all(f["status"] in ("ok", "partial") for f in files.values()), files
        assert files["video0.ser"]["status"] == "ok" and files["video1.ser"]["status"] == "ok"
        total = 0
        for path in sorted(cap.iterdir()):
            d = decode_file(path) if path.name != "video2.ser" else None
            frames = index.frames(file=str(path))
            total += len(frames)
            assert [f.frame for f in frames] == list(range(len(frames)))  # each exactly once
            if d is not None:
                assert len(frames) == len(d)
                for name in ("start", "end", "now"):
                    assert [getattr(f, f"{name}_ns") for f in frames] == d.unix_ns[name].tolist()
                assert [f.sequence for f in frames] == d.scan.blocks.sequence.tolist()
        assert total == 200 + 3 * n_ser
        # files indexed out of order raised no lasting sequence alert: the sequence is whole
        alerts = list_alerts(index)
        assert [a.kind for a in alerts] == [], [a.to_dict() for a in alerts]
        # video2 was never finished (count 0): read by size, every frame there
        v2 = index.frames(file=str(cap / "video2.ser"))
        assert [f.sequence for f in v2] == list(range(30_000, 30_000 + n_ser))
        with index.session() as s:
            n = s.scalar(select(func.count(IndexFrame.id)))
            distinct = len(s.execute(select(IndexFrame.file_id, IndexFrame.frame).distinct()).all())
        assert n == distinct == total
    # a kill -9 may leave a temporary file (never a partial output under the final name)
    leftovers = [p.name for p in out.iterdir() if p.name.endswith(TMP_MARK)]
    assert all(p.startswith(".") for p in leftovers), leftovers
    stamped = sorted(p.name for p in out.iterdir() if not p.name.endswith(TMP_MARK))
    assert stamped == [f"frame_{i:04d}.fits" for i in range(200)]
    summary: dict[str, Any] = {"killed_at_frames": killed_at, "total": total}
    print(summary)

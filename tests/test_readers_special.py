"""Readers and the service on special files, SER files still being recorded, whole SER writes.

- A FIFO, socket, character device or folder given to any reader (or to the index) is refused
  at once with a FrameReadError naming it: never opened, never a hang. Every call that could
  block runs under a guard that FAILS the test after a timeout instead of hanging the suite.
- Folders are expanded to their regular frame files only; the watcher skips special files and
  still stops on SIGTERM.
- ``SerReader(path, recording=True)``: frames counted by size, against the simulator's truth.
- ``write_ser`` is whole or not at all.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qhytime.decode import decode_file, decode_reader
from qhytime.errors import FrameReadError, OutputError
from qhytime.readers import (
    FitsReader,
    SerReader,
    expand_paths,
    open_frames,
    open_regular,
    require_regular_file,
    serfile,
    write_ser,
)
from qhytime.readers.fitsheader import FileSource, GzipSource, open_source
from qhytime.readers.serfile import _HEADER, HEADER_SIZE, SER_MAGIC, unix_ns_to_dotnet_ticks
from qhytime.service.index import FrameIndex, file_records, fingerprint, open_for_index
from qhytime.service.watch import Watcher
from qhytime.simulate import CameraSim

GUARD_S = 20.0
"""Seconds a call that must return at once gets before the test fails (a loaded machine is
slow, never that slow: a regression hangs forever)."""

SIM = {"width": 64, "height": 16, "exposure_us": 5000.0, "frame_interval_us": 6000.0}
FRAME_BYTES = 64 * 16 * 2


def _release(path: Path) -> None:
    """Unblock a reader stuck opening the FIFO ``path`` (a writer appears, then goes)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.close(fd)


def no_hang(fn: Callable[[], Any], fifo: Path | None = None) -> Any:
    """``fn()`` in a daemon thread: its result or exception, or a FAILED test after GUARD_S."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # handed to the test
            box["error"] = err

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(GUARD_S)
    if t.is_alive():
        if fifo is not None:
            _release(fifo)
            t.join(5.0)
        pytest.fail(f"blocked for more than {GUARD_S} s (a special file was opened)")
    if "error" in box:
        raise box["error"]
    return box.get("value")


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "stream.fits"
    os.mkfifo(path)
    yield path
    _release(path)


@pytest.fixture
def sock(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "live.ser"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(1)
    yield path
    s.close()


def sim_ser(path: Path, n: int, *, count: int | None = None, partial: int = 0,
            trailer: bool = False) -> CameraSim:  # fmt: skip
    """A SER of ``n`` simulated frames (+ ``partial`` bytes of the next), header count
    ``count`` (default ``n``), optionally the time trailer; as a capture program writes it."""
    sim = CameraSim(**SIM)  # type: ignore[arg-type]
    body = b"".join(sim.frame(i, noise=False).image.astype("<u2").tobytes() for i in range(n + 1))
    head = _HEADER.pack(SER_MAGIC, 0, 0, 1, sim.width, sim.height, 16, n if count is None else count,
                        b"", b"QHY600PRO", b"", 0, 0)  # fmt: skip
    data = head + body[: n * FRAME_BYTES + partial]
    if trailer:
        starts = np.array([sim.block_for(i)[1] - 5_000_000 for i in range(n)], dtype=np.int64)
        data += np.asarray(unix_ns_to_dotnet_ticks(starts), "<i8").tobytes()
    path.write_bytes(data)
    return sim


# -- 1. special files are refused at once ------------------------------------------------------

OPENERS: dict[str, Callable[[str], Any]] = {
    "open_frames": open_frames,
    "SerReader": SerReader,
    "SerReader(recording)": lambda p: SerReader(p, recording=True),
    "FitsReader": FitsReader,
    "open_source": open_source,
    "FileSource": FileSource,
    "GzipSource": GzipSource,
    "open_regular": open_regular,
    "require_regular_file": require_regular_file,
    "decode_file": decode_file,
    "open_for_index": open_for_index,
    "fingerprint": fingerprint,
}


@pytest.mark.parametrize("opener", sorted(OPENERS))
def test_fifo_is_refused_at_once(opener: str, fifo: Path) -> None:
    with pytest.raises(FrameReadError) as info:
        no_hang(lambda: OPENERS[opener](str(fifo)), fifo)
    err = info.value
    assert err.path == str(fifo) and str(fifo) in str(err)
    assert "is a FIFO (named pipe), not a regular file" in err.reason
    assert "cannot read file" not in err.reason  # said once, not wrapped again


@pytest.mark.parametrize("opener", ["open_frames", "SerReader", "FitsReader", "decode_file"])
def test_socket_device_and_folder_are_refused(opener: str, sock: Path, tmp_path: Path) -> None:
    cases = {str(sock): "a socket", "/dev/zero": "a character device", str(tmp_path): "a folder"}
    for path, kind in cases.items():
        with pytest.raises(FrameReadError, match="not a regular file") as info:
            no_hang(lambda p=path: OPENERS[opener](p))
        assert info.value.path == path and f"is {kind}, not a regular file" in info.value.reason


def test_symlinks_are_followed(tmp_path: Path, fifo: Path) -> None:
    real = tmp_path / "v.ser"
    sim_ser(real, 3)
    (tmp_path / "link.ser").symlink_to(real)
    with open_frames(tmp_path / "link.ser") as r:
        assert len(r) == 3
    (tmp_path / "pipe.ser").symlink_to(fifo)
    with pytest.raises(FrameReadError, match="is a FIFO"):
        no_hang(lambda: open_frames(tmp_path / "pipe.ser"), fifo)


def test_name_replaced_by_a_fifo_after_the_check(tmp_path: Path, monkeypatch: Any) -> None:
    """The opened descriptor is checked too: a name swapped for a FIFO between the look and
    the open is still refused, without blocking."""
    path = tmp_path / "swap.fits"
    os.mkfifo(path)
    from qhytime.readers import base

    real_stat = os.stat
    monkeypatch.setattr(base, "require_regular_file", lambda p: real_stat(__file__))
    with pytest.raises(FrameReadError, match="is a FIFO"):
        no_hang(lambda: open_regular(path), path)


def test_missing_file_still_says_so(tmp_path: Path) -> None:
    with pytest.raises(FrameReadError, match="cannot read file: No such file"):
        open_frames(tmp_path / "none.fits")


def test_stamp_refuses_a_fifo(tmp_path: Path, fifo: Path) -> None:
    from qhytime.rowmodel import RowModel
    from qhytime.stamp import stamp_fits

    model = RowModel.from_us(offset0_us=1974.286, line_period_ns=43194, reference="end")
    with pytest.raises(FrameReadError, match="is a FIFO"):
        no_hang(lambda: stamp_fits(fifo, tmp_path / "out.fits", model=model,
                                   exposure_ns=5_000_000), fifo)  # fmt: skip
    assert not (tmp_path / "out.fits").exists()


def test_index_records_a_fifo_as_an_error(tmp_path: Path, fifo: Path) -> None:
    with FrameIndex(str(tmp_path / "i.sqlite")) as index:
        res = no_hang(lambda: index.ingest(fifo), fifo)
        assert res.action == "error" and "is a FIFO (named pipe), not a regular file" in res.message
        with pytest.raises(FrameReadError, match="is a FIFO"):
            no_hang(lambda: file_records(fifo, index.store), fifo)


# -- folders and the watcher -------------------------------------------------------------------


def test_expand_paths_takes_regular_files_only(tmp_path: Path, fifo: Path, sock: Path) -> None:
    from qhytime.cli._common import expand_paths as cli_expand

    real = tmp_path / "a.ser"
    sim_ser(real, 2)
    (tmp_path / "link.fits").symlink_to(fifo)  # a link to a FIFO is not a regular file either
    for expand in (expand_paths, cli_expand):
        assert expand([str(tmp_path)]) == [str(real)]
        assert expand([str(fifo)]) == [str(fifo)]  # given explicitly: the reader says why


def test_watcher_skips_special_files(tmp_path: Path) -> None:
    cap = tmp_path / "cap"
    cap.mkdir()
    os.mkfifo(cap / "a.fits")
    sim = CameraSim(**SIM)  # type: ignore[arg-type]
    sim.write_ser(cap / "b.ser", 3)
    now = [0.0]
    with FrameIndex(str(tmp_path / "i.sqlite")) as index:
        w = Watcher(index, cap, settle_s=1.0, clock=lambda: now[0])
        no_hang(w.rescan)
        assert list(w._pending) == [str(cap / "b.ser")]
        now[0] += 2.0
        done = no_hang(w.step, cap / "a.fits")
        assert [(Path(r.path).name, r.action) for r in done] == [("b.ser", "indexed")]
        # a frame file replaced by a FIFO while pending: dropped, never opened
        (cap / "c.fits").write_bytes(b"SIMPLE  =")
        w._note(str(cap / "c.fits"))
        os.unlink(cap / "c.fits")
        os.mkfifo(cap / "c.fits")
        now[0] += 2.0
        assert no_hang(w.step, cap / "c.fits") == [] and w._pending == {}
        assert w.stats.errors == 0 and w.stats.files == 1
    _release(cap / "a.fits")


def test_watch_command_with_a_fifo_stops_on_sigterm(tmp_path: Path) -> None:
    cap = tmp_path / "cap"
    cap.mkdir()
    os.mkfifo(cap / "a.fits")
    os.mkfifo(cap / "b.ser")
    CameraSim(**SIM).write_ser(cap / "v.ser", 3)  # type: ignore[arg-type]
    db = str(tmp_path / "i.sqlite")
    code = "import sys; from qhytime.cli import main; sys.argv[0] = 'qhytime'; main()"
    cmd = [sys.executable, "-c", code, "watch", str(cap), "--db", db, "--settle", "0.2",
           "--exposure-s", "0.005"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        indexed = False
        while time.monotonic() < deadline and proc.poll() is None and not indexed:
            time.sleep(0.3)
            if Path(db).exists():
                with FrameIndex(db) as index:
                    indexed = any(Path(f["path"]).name == "v.ser" for f in index.files())
        assert indexed, "the watcher did not index v.ser"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        for name in ("a.fits", "b.ser"):
            _release(cap / name)
    text = err.decode()
    assert proc.returncode == 0, text[-2000:]
    assert "Traceback" not in text and "internal error" not in text
    assert "a.fits" not in text and "b.ser" not in text  # skipped: not even reported
    with FrameIndex(db) as index:
        assert sorted(Path(f["path"]).name for f in index.files()) == ["v.ser"]


# -- 2. SER files still being recorded -------------------------------------------------------


def test_recording_count_zero_reads_complete_frames(tmp_path: Path) -> None:
    path = tmp_path / "rec.ser"
    sim = sim_ser(path, 3, count=0, partial=700)
    with pytest.raises(FrameReadError, match=r"frame count is damaged.*recording=True"):
        SerReader(path)  # as a finished file: refused, and told how to read it
    with SerReader(path, recording=True) as r:
        assert (len(r), r.declared_frames, r.counted_by_size) == (3, 0, True)
        assert r.truncation is None and r.structure_problem() is None and not r.has_trailer
        assert r.timestamps_unix_ns is None
        for i in range(3):
            assert np.array_equal(r.image(i), sim.frame(i, noise=False).image)
        with pytest.raises(FrameReadError, match="out of range"):
            r.image(3)  # the partial frame is left out
        d = decode_reader(r)
        assert d.scan.blocks.sequence.tolist() == [sim.sequence0 + i for i in range(3)]
        assert d.unix_ns["end"].tolist() == [sim.block_for(i)[2] for i in range(3)]
    # the index reads it the same way, with the public reader (no subclass)
    with open_for_index(str(path)) as r:
        assert type(r) is SerReader and r.counted_by_size and len(r) == 3
    # it grows: a new look sees the new frames
    with open(path, "ab") as fh:
        fh.write(b"\0" * (2 * FRAME_BYTES))
    with SerReader(path, recording=True) as r:
        assert len(r) == 5


def test_recording_stale_or_early_counts(tmp_path: Path) -> None:
    low, high = tmp_path / "low.ser", tmp_path / "high.ser"
    sim_ser(low, 4, count=2)  # the count, updated now and then, lags behind
    sim_ser(high, 3, count=10, partial=100)  # announced up front
    with SerReader(low) as r:
        assert r.structure_problem() is not None  # as a finished file: suspect
    with SerReader(high) as r:
        assert len(r) == 3 and r.truncation is not None
    for path, n, declared in ((low, 4, 2), (high, 3, 10)):
        with SerReader(path, recording=True) as r:
            assert (len(r), r.declared_frames, r.counted_by_size) == (n, declared, True)
            assert r.truncation is None and r.structure_problem() is None
            assert decode_reader(r).reasons[n - 1] == []


def test_recording_a_finished_file_reads_it_as_usual(tmp_path: Path) -> None:
    path = tmp_path / "done.ser"
    sim = sim_ser(path, 4, trailer=True)
    with SerReader(path) as plain, SerReader(path, recording=True) as rec:
        assert not rec.counted_by_size and rec.has_trailer and len(rec) == len(plain) == 4
        want = [sim.block_for(i)[1] - 5_000_000 for i in range(4)]
        assert rec.timestamps_unix_ns.tolist() == want  # type: ignore[union-attr]
        assert np.array_equal(rec.block_bytes(), plain.block_bytes())


def test_recording_a_frame_as_far_in_as_a_trailer_is_not_taken_for_one(tmp_path: Path) -> None:
    """A stale count of 3 and the 4th frame written exactly 3 x 8 bytes in: the size is that of
    a finished file with its trailer, but those bytes are pixels, not times (the simulated
    frame's first pixels hold the GPS block): read by size, no trailer."""
    path = tmp_path / "rec.ser"
    sim = sim_ser(path, 3, count=3, partial=8 * 3)
    with SerReader(path, recording=True) as r:
        assert r.counted_by_size and not r.has_trailer and r.timestamps_unix_ns is None
        assert len(r) == 3
        assert decode_reader(r).unix_ns["end"].tolist() == [sim.block_for(i)[2] for i in range(3)]
    with SerReader(path) as r:  # as a finished file the size still reads as a trailer
        assert r.has_trailer


def test_recording_with_no_complete_frame_yet(tmp_path: Path) -> None:
    path = tmp_path / "new.ser"
    sim_ser(path, 0, count=0, partial=500)
    with SerReader(path, recording=True) as r:
        assert len(r) == 0 and r.counted_by_size and r.truncation is None
    path.write_bytes(b"LUCAM-RECORDER")  # the header not even whole: not (yet) a SER file
    with pytest.raises(FrameReadError, match="no LUCAM-RECORDER header"):
        SerReader(path, recording=True)


# -- 3. write_ser is whole or not at all ---------------------------------------------------------


def _failing_frames(exc: BaseException) -> Callable[..., None]:
    def write(fh: Any, frames: Any, big_endian_data: bool) -> None:
        fh.write(frames[0].astype("<u2").tobytes())  # the header and one frame are out
        fh.flush()
        raise exc

    return write


@pytest.mark.parametrize(
    "exc", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()],
    ids=["disk full", "interrupted"],
)
def test_write_ser_failure_leaves_nothing(tmp_path: Path, monkeypatch: Any, exc: BaseException) -> None:
    stack = np.arange(3 * 16 * 64, dtype=np.uint16).reshape(3, 16, 64)
    monkeypatch.setattr(serfile, "_write_frames", _failing_frames(exc))
    with pytest.raises(OutputError if isinstance(exc, OSError) else KeyboardInterrupt):
        write_ser(tmp_path / "v.ser", stack)
    assert os.listdir(tmp_path) == []
    # an old file under the name stays whole
    monkeypatch.undo()
    write_ser(tmp_path / "v.ser", stack[:1])
    old = (tmp_path / "v.ser").read_bytes()
    monkeypatch.setattr(serfile, "_write_frames", _failing_frames(exc))
    with pytest.raises(OutputError if isinstance(exc, OSError) else KeyboardInterrupt):
        write_ser(tmp_path / "v.ser", stack)
    assert os.listdir(tmp_path) == ["v.ser"] and (tmp_path / "v.ser").read_bytes() == old


def test_write_ser_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    stack = rng.integers(0, 65536, size=(3, 5, 24), dtype=np.uint16)
    ts = np.array([1_754_099_091_000_000_000 + 100 * k for k in range(3)], dtype=np.int64)
    ref = tmp_path / "ref"
    ref.write_bytes(b"")  # the mode a plain open() gives a new file here
    mode = stat.S_IMODE(ref.stat().st_mode)
    ref.unlink()
    for big in (False, True):
        path = tmp_path / f"v{int(big)}.ser"
        write_ser(path, stack, big_endian_data=big, timestamps_unix_ns=ts)
        assert path.stat().st_size == HEADER_SIZE + stack.nbytes + 8 * 3
        assert stat.S_IMODE(path.stat().st_mode) == mode  # not left private as mkstemp makes it
        with SerReader(path, little_endian=not big) as r:
            assert all(np.array_equal(r.image(i), stack[i]) for i in range(3))
            assert r.timestamps_unix_ns.tolist() == ts.tolist()  # type: ignore[union-attr]
    assert sorted(os.listdir(tmp_path)) == ["v0.ser", "v1.ser"]


def test_ser_rows_too_short_for_a_block(tmp_path: Path) -> None:
    """Rows of fewer than 44 bytes cannot hold a block: every frame says so (no crash)."""
    path = tmp_path / "narrow.ser"
    write_ser(path, np.zeros((3, 40, 8), dtype=np.uint16))
    d = decode_file(path)
    assert len(d) == 3 and not d.scan.present.any()
    assert all(any("too short to hold a GPS block" in r for r in rs) for rs in d.reasons)

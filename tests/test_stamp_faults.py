"""Faults while stamping: a kill -9 in the middle of a batch, and a full disk.

Outputs appear whole or not at all: a final name holds either nothing (or the old file) or
a complete stamped file; sources are never damaged, in place included. The full disk is made
real without root: the stamping process runs with ``RLIMIT_FSIZE`` below the size of some
outputs and ``SIGXFSZ`` ignored, so its writes fail with ``EFBIG`` as on a full disk.
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from qhytime.atomic import TMP_MARK
from qhytime.simulate import CameraSim

MODEL = ["--offset0-us", "1974.286", "--line-period-ns", "43194", "--reference", "end"]
CLI = [sys.executable, "-c", "from qhytime.cli import main; main()"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _complete_stamp(out: Path, source_pixels: np.ndarray) -> bool:
    """A whole stamped file: opens, same pixel bytes, a ROWTIMES table of every row."""
    with fits.open(out, do_not_scale_image_data=True) as hdul:
        pix = hdul[0].data
        tab = hdul["ROWTIMES"].data
        return bool(
            np.array_equal(pix, source_pixels)
            and len(tab) == pix.shape[0]
            and "QT_STAT" in hdul[0].header
        )


def _capture(tmp_path: Path, n: int, width: int, height: int) -> list[Path]:
    sim = CameraSim(width=width, height=height, exposure_us=1000.0, read_noise_adu=0.0)
    return sim.write_fits(tmp_path / "cap", n)


def _kill_when_writing(cmd: list[str], watch: Path, nth: int) -> int:
    """Run ``cmd``; SIGKILL it while its ``nth`` temporary output exists. Returns how many
    temporary files were seen before the kill (0: the run ended first)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: set[str] = set()
    try:
        while proc.poll() is None:
            if watch.is_dir():
                for e in os.scandir(watch):
                    if e.name.endswith(TMP_MARK):
                        seen.add(e.name)
                if len(seen) >= nth:
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.0005)
    finally:
        proc.wait()
    return len(seen) if proc.returncode == -signal.SIGKILL else 0


@pytest.mark.parametrize("in_place", [False, True])
def test_kill_9_during_a_batch_leaves_no_partial_fits(tmp_path: Path, in_place: bool) -> None:
    paths = _capture(tmp_path, 6, 2048, 1024)  # 4 MiB of pixels each
    originals = {p: p.read_bytes() for p in paths}
    before = {p: _digest(p) for p in paths}
    pixels = {p: fits.getdata(p, do_not_scale_image_data=True) for p in paths}
    out_dir = tmp_path / "out"
    watch = paths[0].parent if in_place else out_dir
    cmd = [*CLI, "stamp", "--quiet", *MODEL, *map(str, paths)]
    cmd += ["--in-place"] if in_place else ["--out", str(out_dir)]
    killed_at = 0
    for _ in range(5):  # the kill must land while an output is being written
        killed_at = _kill_when_writing(cmd, watch, nth=3)
        if killed_at:
            break
        for p in paths:  # the run ended first: start again from the sources
            p.write_bytes(originals[p])
            (out_dir / p.name).unlink(missing_ok=True)
    assert killed_at >= 3, "the batch was never caught writing"
    done = 0
    for p in paths:
        final = p if in_place else out_dir / p.name
        if in_place and _digest(p) == before[p]:
            continue  # untouched source: fine
        if not in_place and not final.exists():
            continue  # not written: fine
        assert _complete_stamp(final, pixels[p]), f"{final} is partial"
        done += 1
        if not in_place:
            assert _digest(p) == before[p]  # sources untouched
    assert 2 <= done < len(paths)
    # what a kill can leave: temporary files with the marker, never a final name
    leftovers = [e for e in os.listdir(watch) if not e.endswith((".fits", TMP_MARK))]
    assert leftovers == []


def _limit_file_size(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail with EFBIG instead


def test_full_disk_batch_goes_on_with_status_lines(tmp_path: Path) -> None:
    small = CameraSim(width=64, height=40, exposure_us=1000.0).write_fits(tmp_path / "s", 2)
    big = CameraSim(width=512, height=400, exposure_us=1000.0).write_fits(
        tmp_path / "b", 2, prefix="big"
    )
    batch = [small[0], big[0], small[1], big[1]]
    before = {p: _digest(p) for p in batch}
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    limit = 200_000  # the small outputs fit (~20 kB), the big ones (~420 kB) do not
    assert all(p.stat().st_size < limit for p in small)
    assert all(p.stat().st_size > limit for p in big)
    res = subprocess.run(
        [*CLI, "stamp", "--quiet", *MODEL, "--out", str(out_dir), *map(str, batch)],
        capture_output=True, text=True, preexec_fn=lambda: _limit_file_size(limit), timeout=120,
    )  # fmt: skip
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    errors = [line for line in res.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 2
    for line, p in zip(errors, big, strict=True):
        assert str(p) in line and "File too large" in line and "nothing was written" in line
    assert sorted(os.listdir(out_dir)) == sorted(p.name for p in small)  # no partial, no tmp
    for p in small:
        assert _complete_stamp(out_dir / p.name, fits.getdata(p, do_not_scale_image_data=True))
    assert all(_digest(p) == before[p] for p in batch)


def test_full_disk_in_place_leaves_the_source_whole(tmp_path: Path) -> None:
    (big,) = CameraSim(width=512, height=400, exposure_us=1000.0).write_fits(tmp_path / "b", 1)
    before = _digest(big)
    res = subprocess.run(
        [*CLI, "stamp", "--quiet", *MODEL, "--in-place", str(big)],
        capture_output=True, text=True, preexec_fn=lambda: _limit_file_size(200_000), timeout=120,
    )  # fmt: skip
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert str(big) in res.stderr and "the source is unchanged" in res.stderr
    assert _digest(big) == before
    assert os.listdir(big.parent) == [big.name]

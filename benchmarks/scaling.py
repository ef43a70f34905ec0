"""Time and peak memory of ``qhytime decode --json``, ``qhytime index`` and ``qhytime watch``
against the number of frames of one SER (9600x100, sparse), and the plot of the three."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._core import Context, Result
from benchmarks._timing import Measured, run_measured, run_until
from benchmarks.fig_service import calibration_for, new_index

SIZES = (1_000, 10_000, 25_000, 50_000, 100_000)
QUICK_SIZES = (200, 1_000, 2_000)
RSS_NOTE = "ru_maxrss of the command minus that of `qhytime --version`"
JOBS = ("decode", "index", "watch")
COLOURS = {"decode": "tab:blue", "index": "tab:orange", "watch": "tab:green"}
STYLES = {"decode": "o", "index": "o", "watch": "^"}  # watch's memory lies on index's
WATCH_TIMEOUT_S = 1800.0


def _commands(ctx: Context, ser: Path, db: Path, folder: Path) -> dict[str, list[str]]:
    return {
        "decode": [*ctx.qhytime, "decode", "--json", str(ser)],
        "index": [*ctx.qhytime, "index", str(ser), "--db", str(db), "--exposure-s", "0.001",
                  "--quiet"],
        "watch": [*ctx.qhytime, "watch", str(folder), "--db", str(db), "--exposure-s", "0.001",
                  "--quiet", "--settle", "0.2"],
    }  # fmt: skip


def _place(ser: Path, folder: Path) -> Path:
    """``ser`` as a regular file in ``folder``: a hard link (no copy), or a sparse copy when
    the two are on different file systems."""
    dest = folder / ser.name
    try:
        os.link(ser, dest)
    except OSError:
        subprocess.run(["cp", "--sparse=always", str(ser), str(dest)], check=True)
    return dest


def _indexed(db: Path, what: str = "frames, status") -> list[tuple[Any, ...]]:
    """Columns ``what`` of every file of the index ``db``, read on a read-only connection."""
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
    try:
        return con.execute(f"SELECT {what} FROM index_files").fetchall()
    finally:
        con.close()


def _watch(ctx: Context, ser: Path, db: Path, folder: Path, n: int, stderr: Path) -> Measured:
    """``qhytime watch`` of a folder holding the SER of ``n`` frames before it starts, until
    the index holds all ``n`` frames (or the file's error), then SIGTERM.

    The watcher indexes the files it finds at start (its first rescan); a SER is indexed at
    the first pass, the settle time only holds back a FITS file or a SER being written.
    """
    _place(ser, folder)

    def done() -> bool:
        return any(frames >= n or status == "error" for frames, status in _indexed(db))

    m = run_until(_commands(ctx, ser, db, folder)["watch"], done, env=ctx.env,
                  timeout=WATCH_TIMEOUT_S, stderr_path=stderr)  # fmt: skip
    rows = _indexed(db)
    if m.returncode == 0 and rows != [(n, "ok")]:
        m.returncode = -1
        m.stderr += (f"\nindex holds {_indexed(db, 'frames, status, message')} instead of one "
                     f"file of {n} frames, status ok")  # fmt: skip
    return m


def _measure(
    ctx: Context, n: int, repeats: int, cal: Any, jobs: Sequence[str] = JOBS
) -> dict[str, dict[str, float]]:
    """Best wall time and largest peak RSS of each command on a SER of ``n`` frames."""
    ser = ctx.sparse_ser(n)
    work = ctx.scratch(f"scaling_{n}")
    out: dict[str, dict[str, float]] = {}
    for job in jobs:
        walls, rss = [], []
        for k in range(repeats):
            # watch gets an index of its own: in index{k} the file is indexed already
            db = work / (f"watch{k}.sqlite" if job == "watch" else f"index{k}.sqlite")
            new_index(db, cal).close()
            if job == "watch":
                folder = work / f"watched{k}"
                folder.mkdir()
                m = _watch(ctx, ser, db, folder, n, work / f"{job}.stderr")
                shutil.rmtree(folder)
            else:
                m = run_measured(_commands(ctx, ser, db, work)[job], env=ctx.env,
                                 stderr_path=work / f"{job}.stderr")  # fmt: skip
            if m.returncode != 0:
                raise RuntimeError(f"qhytime {job} of {n} frames failed: {m.stderr.strip()[-300:]}")
            walls.append(m.wall_s)
            rss.append(m.maxrss_mib)
        out[job] = {"wall_s": min(walls), "maxrss_mib": max(rss)}
    return out


def scaling(ctx: Context) -> list[Result]:
    """Decode, index and watch of 1,000 to 100,000 frames: time linear in the frames, memory
    flat.

    Each command runs in its own process (``qhytime decode --json FILE > /dev/null``;
    ``qhytime index FILE`` into a fresh SQLite index holding the file's calibration;
    ``qhytime watch FOLDER`` into such an index, the file in a fresh folder before the watcher
    starts, stopped by SIGTERM once the index holds all its frames). Time is the command's
    wall time (watch: until its frames are in the index) less that of the same command on a
    3-frame file (its start-up); memory is its peak RSS less that of ``qhytime --version``.
    """
    sizes = QUICK_SIZES if ctx.quick else SIZES
    need = max(sizes) * 4096 * 2  # the sparse files' real bytes, twice over
    free = shutil.disk_usage(ctx.data).free
    notes = []
    if free < need + 2**30:
        sizes = tuple(s for s in sizes if s * 4096 * 2 + 2**30 < free)
        notes.append(f"only {free / 2**30:.1f} GiB free: sizes cut to {sizes}")
    repeats = ctx.reps(2, 1)
    cal = calibration_for(ctx.sparse_ser(3))
    interp = ctx.interpreter_mib()
    _measure(ctx, 3, 1, cal)  # warm: the page cache holds the interpreter and the modules
    startup = _measure(ctx, 3, max(repeats, 3), cal)
    points = {n: _measure(ctx, n, repeats, cal) for n in sizes}
    data: dict[str, Any] = {"sizes": list(sizes), "interpreter_mib": interp,
                            "startup": startup, "points": {str(n): v for n, v in points.items()}}  # fmt: skip
    lo, hi = min(sizes), max(sizes)
    results = []
    for job in JOBS:
        t = np.array([points[n][job]["wall_s"] - startup[job]["wall_s"] for n in sizes])
        slope, icpt = np.polyfit(np.array(sizes, dtype=float), t, 1)
        mem = {n: points[n][job]["maxrss_mib"] - interp for n in sizes}
        data[job] = {"us_per_frame": slope * 1e6, "intercept_s": icpt,
                     "time_s": t.tolist(), "memory_mib": [mem[n] for n in sizes]}  # fmt: skip
        results.append(Result(
            name=f"scaling_{job}", title=f"peak memory of `qhytime {job}`, {hi:,} frames",
            baseline_label=f"the same at {lo:,} frames", unit="MiB", baseline=mem[lo],
            qhytime=mem[hi], target=None, target_text="flat (O(1) in frames)", peak_mib=mem[hi],
            memory=RSS_NOTE, notes=[*notes, f"time {slope * 1e6:.1f} us/frame above start-up "
                                    f"({startup[job]['wall_s']:.2f} s)"],
            details=data,
        ))  # fmt: skip
    return results


def plot(data: dict[str, Any], path: str | Path, machine: dict[str, Any] | None = None) -> Path:
    """The scaling plot: time above start-up and peak memory against the number of frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = np.array(data["sizes"], dtype=float)
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    jobs = [job for job in JOBS if job in data]  # results of older runs have no watch
    for job in jobs:
        d, colour, marker = data[job], COLOURS[job], STYLES[job]
        ax_t.plot(sizes, d["time_s"], marker, color=colour,
                  label=f"{job}: {d['us_per_frame']:.1f} us/frame")  # fmt: skip
        ax_t.plot(
            sizes, d["intercept_s"] + d["us_per_frame"] * 1e-6 * sizes, "-", color=colour, alpha=0.6
        )
        ax_m.plot(sizes, d["memory_mib"], marker + ("--" if job == "watch" else "-"),
                  color=colour, label=job)  # fmt: skip
    ax_t.set(xlabel="frames (one SER, 9600x100)", ylabel="wall time above start-up (s)",
             title="time")  # fmt: skip
    ax_m.set(xlabel="frames (one SER, 9600x100)", ylabel="peak RSS above `qhytime --version` (MiB)",
             title="peak memory")  # fmt: skip
    ax_m.set_ylim(bottom=0, top=max(50.0, 1.3 * max(max(data[j]["memory_mib"]) for j in jobs)))
    for ax in (ax_t, ax_m):
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
        ax.ticklabel_format(axis="x", style="plain")
    if machine:
        fig.suptitle(f"qhytime {machine.get('qhytime')} on {machine.get('cpu')}, "
                     f"{machine.get('cores')} cores ({machine.get('date')})", fontsize=9)  # fmt: skip
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out

"""Time and peak memory of ``qhytime decode --json`` and ``qhytime index`` against the number
of frames of one SER (9600x100, sparse), and the plot of both."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._core import Context, Result
from benchmarks._timing import run_measured
from benchmarks.fig_service import calibration_for, new_index

SIZES = (1_000, 10_000, 25_000, 50_000, 100_000)
QUICK_SIZES = (200, 1_000, 2_000)
RSS_NOTE = "ru_maxrss of the command minus that of `qhytime --version`"


def _commands(ctx: Context, ser: Path, db: Path) -> dict[str, list[str]]:
    return {
        "decode": [*ctx.qhytime, "decode", "--json", str(ser)],
        "index": [*ctx.qhytime, "index", str(ser), "--db", str(db), "--exposure-s", "0.001",
                  "--quiet"],
    }  # fmt: skip


def _measure(ctx: Context, n: int, repeats: int, cal: Any) -> dict[str, dict[str, float]]:
    """Best wall time and largest peak RSS of each command on a SER of ``n`` frames."""
    ser = ctx.sparse_ser(n)
    work = ctx.scratch(f"scaling_{n}")
    out: dict[str, dict[str, float]] = {}
    for job in ("decode", "index"):
        walls, rss = [], []
        for k in range(repeats):
            db = work / f"index{k}.sqlite"
            new_index(db, cal).close()
            m = run_measured(_commands(ctx, ser, db)[job], env=ctx.env,
                             stderr_path=work / f"{job}.stderr")  # fmt: skip
            if m.returncode != 0:
                raise RuntimeError(f"qhytime {job} of {n} frames failed: {m.stderr.strip()[-300:]}")
            walls.append(m.wall_s)
            rss.append(m.maxrss_mib)
        out[job] = {"wall_s": min(walls), "maxrss_mib": max(rss)}
    return out


def scaling(ctx: Context) -> list[Result]:
    """Decode and index of 1,000 to 100,000 frames: time linear in the frames, memory flat.

    Each command runs in its own process (``qhytime decode --json FILE > /dev/null``;
    ``qhytime index FILE`` into a fresh SQLite index holding the file's calibration). Time is
    the command's wall time less that of the same command on a 3-frame file (its start-up);
    memory is its peak RSS less that of ``qhytime --version``.
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
    for job in ("decode", "index"):
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
    for job, colour in (("decode", "tab:blue"), ("index", "tab:orange")):
        d = data[job]
        ax_t.plot(
            sizes, d["time_s"], "o", color=colour, label=f"{job}: {d['us_per_frame']:.1f} us/frame"
        )
        ax_t.plot(
            sizes, d["intercept_s"] + d["us_per_frame"] * 1e-6 * sizes, "-", color=colour, alpha=0.6
        )
        ax_m.plot(sizes, d["memory_mib"], "o-", color=colour, label=job)
    ax_t.set(xlabel="frames (one SER, 9600x100)", ylabel="wall time above start-up (s)",
             title="time")  # fmt: skip
    ax_m.set(xlabel="frames (one SER, 9600x100)", ylabel="peak RSS above `qhytime --version` (MiB)",
             title="peak memory")  # fmt: skip
    ax_m.set_ylim(
        bottom=0, top=max(50.0, 1.3 * max(max(data[j]["memory_mib"]) for j in ("decode", "index")))
    )
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

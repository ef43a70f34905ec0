"""Stamping FITS files, and the peak memory of ``qhytime stamp`` and ``qhytime demo``."""

from __future__ import annotations

import os

from benchmarks._core import MIB, Context, Result
from benchmarks._data import FULL_HEIGHT, FULL_WIDTH
from benchmarks._timing import alternate, run_measured, traced_peak_mib
from qhytime.rowmodel import RowModel
from qhytime.stamp import stamp_files

#: The explicit row model of the stamp figures (the frames' setting needs no store).
MODEL_ARGS = {"offset0_us": 1974.286, "line_period_ns": 43194.0, "readout": "pairs",
              "reference": "now"}  # fmt: skip
RSS_NOTE = "ru_maxrss of the command minus that of `qhytime --version`"


def _full_size(ctx: Context) -> tuple[int, int]:
    return (1200, 800) if ctx.quick else (FULL_WIDTH, FULL_HEIGHT)


def stamp(ctx: Context) -> Result:
    """``stamp_files`` over 100 FITS files of 9600x100 and 2 full frames (9576x6388), with
    an explicit row model, against astropy opening each file and writing a copy of it."""
    from astropy.io import fits

    strips, full = ctx.size(100, 10), 2
    fw, fh = _full_size(ctx)
    paths = ctx.fits_strips(strips, 9600, 100) + ctx.full_frames(full, fw, fh)
    out_b, out_o = ctx.scratch("stamp_baseline"), ctx.scratch("stamp_qhytime")
    model = RowModel.from_us(**MODEL_ARGS)  # type: ignore[arg-type]

    def baseline() -> None:
        for p in paths:
            with fits.open(p) as hdul:
                hdul.writeto(out_b / p.name, overwrite=True)

    def ours() -> None:
        res = list(stamp_files(paths, out_o, model=model))
        bad = [r for r in res if r.status != "ok"]
        if bad:
            raise RuntimeError(f"stamp failed: {bad[0].message}")

    def durable() -> None:
        """The baseline with qhytime's durability: a temporary name, fsync, then rename."""
        for p in paths:
            tmp = out_b / (p.name + ".tmp")
            with fits.open(p) as hdul:
                hdul.writeto(tmp, overwrite=True)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, out_b / p.name)

    tb, to = alternate(baseline, ours, ctx.reps(3, 1))
    td, to2 = alternate(durable, ours, ctx.reps(3, 1))
    best = min(to, to2)
    return Result(
        name="stamp", title=f"stamp, {strips} files 9600x100 and {full} full frames",
        baseline_label="astropy open, copy, write", baseline=tb, qhytime=best, target=1.5,
        target_text="<= 1.5x", peak_mib=traced_peak_mib(ours),
        baseline_peak_mib=traced_peak_mib(baseline), memory="tracemalloc",
        details={"full_frame": f"{fw}x{fh}", "files": len(paths), "durable_baseline_s": td,
                 "ratio_to_durable_baseline": best / td},
        notes=[f"qhytime fsyncs each output before renaming it into place (whole or not at "
               f"all, even after a power cut); the baseline with the same temporary name, "
               f"fsync and rename takes {td:.3f} s: qhytime is {best / td:.2f}x that"],
    )  # fmt: skip


def stamp_memory(ctx: Context) -> Result:
    """Peak memory of ``qhytime stamp`` of one full frame above the interpreter's, against the
    frame's bytes (9576 x 6388 x 2 B = 117 MiB)."""
    fw, fh = _full_size(ctx)
    src = ctx.full_frames(2, fw, fh)[0]
    frame_mib = fw * fh * 2 / MIB
    interp = ctx.interpreter_mib()
    model = [f"--offset0-us={MODEL_ARGS['offset0_us']}", f"--line-period-ns={MODEL_ARGS['line_period_ns']}",
             f"--readout={MODEL_ARGS['readout']}", f"--reference={MODEL_ARGS['reference']}"]  # fmt: skip
    runs = []
    for k in range(ctx.reps(2, 1)):
        out = ctx.scratch(f"stamp_memory_{k}")
        m = run_measured([*ctx.qhytime, "stamp", str(src), "--out", str(out), "--quiet", *model],
                         env=ctx.env, stderr_path=out / "stderr.txt")  # fmt: skip
        if m.returncode != 0:
            raise RuntimeError(f"qhytime stamp failed ({m.returncode}): {m.stderr.strip()[-300:]}")
        runs.append(m)
    peak = max(r.maxrss_mib for r in runs) - interp
    return Result(
        name="stamp_memory", title=f"peak memory of `qhytime stamp`, full frame {fw}x{fh}",
        baseline_label=f"frame bytes ({frame_mib:.0f} MiB)", unit="MiB", baseline=frame_mib,
        qhytime=peak, target=2.5, target_text="<= 2.5x", peak_mib=peak, memory=RSS_NOTE,
        details={"interpreter_mib": interp, "maxrss_mib": [r.maxrss_mib for r in runs],
                 "wall_s": min(r.wall_s for r in runs)},
    )  # fmt: skip


def demo_memory(ctx: Context) -> Result:
    """Peak memory of ``qhytime demo`` (simulate 2 full frames, stamp them with the shipped
    calibration) above the interpreter's, against one frame's bytes."""
    frames = ctx.size(2, 1)
    frame_mib = FULL_WIDTH * FULL_HEIGHT * 2 / MIB
    interp = ctx.interpreter_mib()
    work = ctx.scratch("demo")
    m = run_measured(
        [*ctx.qhytime, "demo", "--dir", str(work / "out"), "--db", str(work / "demo.sqlite"),
         "--frames", str(frames)],
        env=ctx.env, stderr_path=work / "stderr.txt",
    )  # fmt: skip
    if m.returncode != 0:
        raise RuntimeError(f"qhytime demo failed ({m.returncode}): {m.stderr.strip()[-300:]}")
    peak = m.maxrss_mib - interp
    return Result(
        name="demo_memory", title=f"peak memory of `qhytime demo` ({frames} full frames)",
        baseline_label=f"frame bytes ({frame_mib:.0f} MiB)", unit="MiB", baseline=frame_mib,
        qhytime=peak, target=2.5, target_text="<= 2.5x", peak_mib=peak, memory=RSS_NOTE,
        details={"interpreter_mib": interp, "maxrss_mib": m.maxrss_mib, "wall_s": m.wall_s},
    )  # fmt: skip

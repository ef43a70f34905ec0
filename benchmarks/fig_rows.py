"""The row model and the calibration store, each against a bare numpy or sqlite3 baseline."""

from __future__ import annotations

import sqlite3

import numpy as np

from benchmarks._core import Context, Result
from benchmarks._timing import alternate, traced_peak_mib
from qhytime.calibration import Calibration, Setting
from qhytime.rowmodel import FrameGeometry, RowModel, pixel_times, row_times
from qhytime.store import CalibrationStore

MODEL = RowModel.from_us(offset0_us=1974.286, line_period_ns=43194.527, readout="pairs",
                         reference="now", offset0_sigma_us=0.05, line_period_sigma_ns=0.01)  # fmt: skip
EXPOSURE_NS = 250_000_000
T0_NS = 1_754_099_091_000_000_000


def row_times_fig(ctx: Context) -> Result:
    """Start, middle and end (int64 ns) and sigma of 10,000 frames x 6,388 rows, 1,000 frames
    per call, against a bare numpy broadcast ``ref[:, None] + rel[None, :]`` for the three."""
    n, h, chunk = ctx.size(10_000, 1000), 6388, 1000
    geom = FrameGeometry(height=h)
    refs = T0_NS + np.arange(n, dtype=np.int64) * 400_000_000
    rel = MODEL.relative_end_ps(np.arange(h)) // 1000

    def ours() -> None:
        for i in range(0, n, chunk):
            row_times(MODEL, geom, refs[i : i + chunk], EXPOSURE_NS)

    def baseline() -> None:
        for i in range(0, n, chunk):
            r = refs[i : i + chunk, None]
            _ = (
                r + rel[None, :],
                r + (rel - EXPOSURE_NS)[None, :],
                r + (rel - EXPOSURE_NS // 2)[None, :],
            )

    tb, to = alternate(baseline, ours, ctx.reps(5, 2))
    return Result(
        name="row_times", title=f"row times, {n:,} x {h:,}", baseline_label="numpy broadcast",
        baseline=tb, qhytime=to, target=1.0, target_text="<= 1.0x",
        peak_mib=traced_peak_mib(ours), baseline_peak_mib=traced_peak_mib(baseline),
        memory="tracemalloc", details={"rows_per_s": n * h / to, "chunk_frames": chunk},
    )  # fmt: skip


def pixel_times_fig(ctx: Context) -> Result:
    """Times of 100,000 pixels of one full frame per call against a bare gather of the
    frame's per-row time table at the pixels' rows."""
    k, h = 100_000, 6388
    calls = ctx.size(20, 5)
    geom = FrameGeometry(height=h)
    rng = np.random.default_rng(0)
    pix = np.column_stack([rng.uniform(0, 9575, k), rng.uniform(0, h - 1, k)])
    table = row_times(MODEL, geom, T0_NS, EXPOSURE_NS).mid_ns[0]

    def ours() -> None:
        for _ in range(calls):
            pixel_times(MODEL, geom, T0_NS, EXPOSURE_NS, pix)

    def baseline() -> None:
        for _ in range(calls):
            _ = table[np.floor(pix[:, 1] + 0.5).astype(np.int64)]

    tb, to = alternate(baseline, ours, ctx.reps(7, 3))
    return Result(
        name="pixel_times", title=f"pixel-time queries, {k:,} per call",
        baseline_label="gather from a row table", baseline=tb / calls, qhytime=to / calls,
        target=3.0, target_text="<= 3x", peak_mib=traced_peak_mib(ours),
        baseline_peak_mib=traced_peak_mib(baseline), memory="tracemalloc",
        details={"pixels_per_s": k * calls / to, "calls": calls},
        notes=["times are per call of 100,000 pixels"],
    )  # fmt: skip


def calib_lookup(ctx: Context) -> Result:
    """The same setting's calibration looked up 1,000 times in a SQLite store of 202
    calibrations (shipped + 200) against a bare sqlite3 SELECT by id as many times."""
    k = ctx.size(1000, 200)
    db = ctx.scratch("calib_lookup") / "bench.sqlite"
    with CalibrationStore(db) as store:
        for i in range(200):
            s = Setting(camera_model="QHY600PRO", readout_mode="Photographic DSO", roi_y=i * 10,
                        roi_width=9576, roi_height=200, serial=f"U{i % 5}")  # fmt: skip
            store.add(Calibration(setting=s, reference="end", offset0_us=1990 + i * 0.01,
                                  line_period_ns=43194.5, method="LED fit"))  # fmt: skip
        query = Setting(camera_model="QHY600PRO", readout_mode="Photographic DSO", roi_y=1000,
                        roi_width=9576, roi_height=200, serial="U0")  # fmt: skip
        cid = store.lookup(query).calibration.id
        con = sqlite3.connect(db)
        try:

            def ours() -> None:
                for _ in range(k):
                    store.lookup(query)

            def baseline() -> None:
                for _ in range(k):
                    con.execute("SELECT * FROM calibrations WHERE id = ?", (cid,)).fetchone()

            tb, to = alternate(baseline, ours, ctx.reps(5, 2))
            peak, bpeak = traced_peak_mib(ours), traced_peak_mib(baseline)
        finally:
            con.close()
    return Result(
        name="calib_lookup", title=f"calibration lookup, same setting x{k:,}",
        baseline_label="bare sqlite3 SELECT by id", baseline=tb, qhytime=to, target=2.0,
        target_text="<= 2x", peak_mib=peak, baseline_peak_mib=bpeak, memory="tracemalloc",
        details={"lookups_per_s": k / to, "baseline_per_s": k / tb, "calibrations": 202},
    )  # fmt: skip

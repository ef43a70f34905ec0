"""Benchmarks of the row model and the calibration store, each against a bare baseline.

1. Row times for 10,000 frames x 6,388 rows (start, mid, end as int64 ns), rows/s, against
   a bare numpy broadcast ``ref[:, None] + rel[None, :]`` of the same size, three times.
2. Pixel-time queries/s (100,000 pixels of one frame), against a bare numpy gather of a
   precomputed per-row time array.
3. Calibration lookups/s on a SQLite store with shipped + 200 user calibrations, against a
   bare ``sqlite3`` primary-key SELECT on the same file.

    python benchmarks/bench_rows.py [--frames 10000] [--rows 6388]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import warnings
from pathlib import Path

import numpy as np
from _timing import best_of

from qhytime.calibration import Calibration, Setting
from qhytime.rowmodel import FrameGeometry, RowModel, pixel_times, row_times
from qhytime.store import CalibrationStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--rows", type=int, default=6388)
    ap.add_argument("--chunk", type=int, default=1000, help="frames per call (memory bound)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    n, h, chunk = args.frames, args.rows, args.chunk
    model = RowModel.from_us(offset0_us=1974.286, line_period_ns=43194.527, readout="pairs", reference="now",
                             offset0_sigma_us=0.05, line_period_sigma_ns=0.01)  # fmt: skip
    geom = FrameGeometry(height=h)
    refs = 1_754_099_091_000_000_000 + np.arange(n, dtype=np.int64) * 400_000_000
    exp_ns = 250_000_000

    def ours() -> None:
        for i in range(0, n, chunk):
            row_times(model, geom, refs[i : i + chunk], exp_ns)

    rel = model.relative_end_ps(np.arange(h)) // 1000

    def baseline() -> None:
        for i in range(0, n, chunk):
            r = refs[i : i + chunk, None]
            _ = r + rel[None, :], r + (rel - exp_ns)[None, :], r + (rel - exp_ns // 2)[None, :]

    t_base, t_ours = best_of(baseline, args.repeats), best_of(ours, args.repeats)
    total = n * h
    print(f"row times, {n} frames x {h} rows = {total:,} rows (start/mid/end int64 ns + sigma)")
    print(f"  baseline numpy broadcast x3: {t_base:7.3f} s  {total / t_base:14,.0f} rows/s")
    print(
        f"  qhytime row_times:           {t_ours:7.3f} s  {total / t_ours:14,.0f} rows/s   ratio {t_ours / t_base:.2f}x"
    )

    rng = np.random.default_rng(0)
    pix = np.column_stack([rng.uniform(0, 9575, 100_000), rng.uniform(0, h - 1, 100_000)])
    table = row_times(model, geom, refs[0], exp_ns).mid_ns[0]

    def pix_ours() -> None:
        pixel_times(model, geom, int(refs[0]), exp_ns, pix)

    def pix_base() -> None:
        _ = table[np.floor(pix[:, 1] + 0.5).astype(np.int64)]

    tb, to = best_of(pix_base, 5), best_of(pix_ours, 5)
    print("pixel-time queries, 100,000 pixels per call")
    print(f"  baseline gather from a row table: {100_000 / tb:14,.0f} pixels/s")
    print(
        f"  qhytime pixel_times:              {100_000 / to:14,.0f} pixels/s   ratio {to / tb:.2f}x"
    )

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.sqlite"
        with CalibrationStore(db) as store:
            for i in range(200):
                s = Setting(camera_model="QHY600PRO", readout_mode="Photographic DSO", roi_y=i * 10,
                            roi_width=9576, roi_height=200, serial=f"U{i % 5}")  # fmt: skip
                store.add(Calibration(setting=s, reference="end", offset0_us=1990 + i * 0.01,
                                      line_period_ns=43194.5, method="LED fit"))  # fmt: skip
            query = Setting(camera_model="QHY600PRO", readout_mode="Photographic DSO", roi_y=1000,
                            roi_width=9576, roi_height=200, serial="U0")  # fmt: skip
            k = 300

            def look() -> None:
                for _ in range(k):
                    store.lookup(query)

            def look_fallback() -> None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for _ in range(k):
                        store.lookup(
                            query.__class__(**{**query.to_dict(), "roi_y": 5}), fallback=True
                        )

            con = sqlite3.connect(db)

            def bare() -> None:
                for i in range(k):
                    con.execute(
                        "SELECT * FROM calibrations WHERE id = ?", (100 + i % 100,)
                    ).fetchone()

            tb, tl, tf = best_of(bare, 3), best_of(look, 3), best_of(look_fallback, 3)
            con.close()
    print(f"calibration lookups ({store.url.split('/')[-1]}, 202 calibrations)")
    print(f"  baseline sqlite3 SELECT by id: {k / tb:10,.0f} /s")
    print(f"  qhytime lookup, exact:         {k / tl:10,.0f} /s   ratio {tl / tb:.1f}x")
    print(f"  qhytime lookup, fallback:      {k / tf:10,.0f} /s   ratio {tf / tb:.1f}x")


if __name__ == "__main__":
    main()

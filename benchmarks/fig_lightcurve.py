"""The light curve of a long SER against a bare sum over the same aperture boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks._core import Context, Result
from benchmarks._data import STARS, add_stars, cached, write_sparse_ser
from benchmarks._timing import alternate, best_of, traced_peak_mib
from qhytime.occultation import light_curve
from qhytime.readers.serfile import HEADER_SIZE
from qhytime.rowmodel import RowModel

HALF = 16  # half-size of qhytime's photometry box (annulus 15 px + 1): the baseline's boxes


def lightcurve(ctx: Context) -> Result:
    """``light_curve`` of a 5,000-frame SER of 9600x100 frames with 3 tracked apertures
    (photutils apertures, sigma-clipped annuli, centroids, each sample timed at its own row),
    against a numpy sum over the same 33x33 px boxes of the same memory-mapped frames. The
    SER is sparse: only the blocks and a 41x41 box of sky and star per aperture hold data."""
    n, w, h = ctx.size(5000, 300), 9600, 100
    path = ctx.data / f"stars_{n}x{w}x{h}.ser"

    def make(p: Path) -> None:
        write_sparse_ser(p, n, w, h)
        add_stars(p, n, w)

    cached(path, make)
    model = RowModel.from_us(offset0_us=1974.286, line_period_ns=43194, readout="pairs")
    targets = [(x, y) for x, y, _ in STARS]
    boxes = [(round(y) - HALF, round(y) + HALF + 1, round(x) - HALF, round(x) + HALF + 1)
             for x, y in targets]  # fmt: skip
    out: dict[str, object] = {}

    def baseline() -> None:
        mm = np.memmap(path, dtype="<u2", mode="r", offset=HEADER_SIZE, shape=(n, h, w))
        total = 0.0
        for i in range(n):
            img = mm[i]
            for y0, y1, x0, x1 in boxes:
                total += float(img[y0:y1, x0:x1].sum())

    def run(fixed: bool) -> None:
        lc = light_curve([path], targets[0], targets[1:], fixed=fixed, model=model,
                         exposure_ns=20_000_000)  # fmt: skip
        if not lc.timed.all():
            raise RuntimeError("the benchmark frames must all be timed")
        if not all(
            abs(a.signal.mean() / f - 1) < 0.05
            for a, (_, _, f) in zip(lc.apertures, STARS, strict=True)
        ):
            raise RuntimeError("the light curve's fluxes are off")
        out["lc"] = lc

    tb, to = alternate(baseline, lambda: run(False), ctx.reps(3, 1))
    t_fixed = None if ctx.quick else best_of(lambda: run(True), ctx.reps(2))
    return Result(
        name="lightcurve", title=f"light curve, {n:,} frames {w}x{h}, 3 tracked apertures",
        baseline_label="numpy sum of the 3 boxes", baseline=tb, qhytime=to, target=None,
        target_text="(no target)", peak_mib=traced_peak_mib(lambda: run(False)),
        baseline_peak_mib=traced_peak_mib(baseline), memory="tracemalloc",
        details={"frames_per_s": n / to, "fixed_s": t_fixed},
        notes=[] if t_fixed is None else [f"fixed apertures: {t_fixed / tb:.1f}x the baseline"],
    )  # fmt: skip

"""Benchmark: the light curve of a 5,000-frame SER of 9600x100 16-bit frames, 3 apertures.

Prints frames/s for qhytime's light curve (decode, per-frame tracking and photometry of 3
apertures with photutils masks and sigma-clipped annuli, per-aperture row times), tracked
and ``fixed``, against a bare numpy sum over the same aperture boxes (33x33 px) of the same
memory-mapped frames, measured in the same run, and their ratio; then the peak Python heap
(tracemalloc) and the process's peak RSS after the baseline and after qhytime. Not a test: run it by hand,

    python benchmarks/bench_lightcurve.py [--frames 5000] [--width 9600] [--height 100]

The SER is written sparse: only each frame's GPS block and a 41x41 box of sky and star
around each aperture hold data (bench_decode's blocks), so it takes little disk. Both
timings run on a warm page cache (best of several repeats). The RSS includes the file pages
the memory map touched (clean pages the kernel can drop), not only the heap.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import tracemalloc

import numpy as np
from _timing import best_of
from bench_decode import write_sparse_ser

from qhytime.occultation import light_curve
from qhytime.readers.serfile import HEADER_SIZE
from qhytime.rowmodel import RowModel

STARS = ((1000.3, 50.2, 40_000.0), (4800.7, 47.6, 60_000.0), (8000.1, 52.9, 25_000.0))
BOX = 20  # half-size of the written box around each star
HALF = 16  # half-size of qhytime's photometry box (annulus 15 px + 1): the baseline's boxes


def add_stars(path: str, n: int, width: int, seed: int = 1) -> None:
    """Write sky + a Gaussian star into a box around each aperture of every frame."""
    rng = np.random.default_rng(seed)
    size = 2 * BOX + 1
    frame_bytes = width * 100 * 2
    with open(path, "r+b") as fh:
        for x, y, flux in STARS:
            ix, iy = round(x), round(y)
            yy, xx = np.indices((size, size))
            psf = flux * np.exp(-((xx - BOX - (x - ix)) ** 2 + (yy - BOX - (y - iy)) ** 2) / 3.6)
            psf /= 2 * np.pi * 1.8
            variants = [
                np.clip(rng.normal(800 + psf, np.sqrt(800 + psf)), 0, 65535).astype("<u2")
                for _ in range(16)
            ]
            for i in range(n):
                box = variants[i % 16]
                base = HEADER_SIZE + i * frame_bytes + ((iy - BOX) * width + ix - BOX) * 2
                for r in range(size):
                    fh.seek(base + r * width * 2)
                    fh.write(box[r].tobytes())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=5000)
    ap.add_argument("--width", type=int, default=9600)
    ap.add_argument("--height", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    n, w, h = args.frames, args.width, args.height
    if h != 100:
        ap.error("the star boxes are laid out for 100-row frames")
    model = RowModel.from_us(offset0_us=1974.286, line_period_ns=43194, readout="pairs")
    targets = [(x, y) for x, y, _ in STARS]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.ser")
        write_sparse_ser(path, n, w, h)
        add_stars(path, n, w)

        def baseline() -> float:
            mm = np.memmap(path, dtype="<u2", mode="r", offset=HEADER_SIZE, shape=(n, h, w))
            total = 0.0
            boxes = [(round(y) - HALF, round(y) + HALF + 1, round(x) - HALF, round(x) + HALF + 1)
                     for x, y in targets]  # fmt: skip
            for i in range(n):
                img = mm[i]
                for y0, y1, x0, x1 in boxes:
                    total += float(img[y0:y1, x0:x1].sum())
            return total

        def run(fixed: bool) -> object:
            lc = light_curve([path], targets[0], targets[1:], fixed=fixed, model=model,
                             exposure_ns=20_000_000)  # fmt: skip
            assert lc.timed.all(), "benchmark frames must all be timed"
            assert all(abs(a.signal.mean() / f - 1) < 0.05 for a, (_, _, f) in zip(lc.apertures, STARS, strict=True))
            return lc

        baseline()  # warm the page cache
        t_base = best_of(baseline, args.repeats)
        rss_base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        run(False)  # warm the imports
        t_track = best_of(lambda: run(False), args.repeats)
        t_fixed = best_of(lambda: run(True), args.repeats)
        tracemalloc.start()
        run(False)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"frames: {n} of {w}x{h} 16-bit SER, 3 apertures (r 5 px, annulus 9-15 px)")
    print(f"baseline numpy sum of the 3 boxes (33x33 px):  {t_base * 1e3:8.1f} ms  {n / t_base:10,.0f} frames/s")
    print(f"qhytime light curve, tracked:                  {t_track * 1e3:8.1f} ms  {n / t_track:10,.0f} frames/s")
    print(f"qhytime light curve, fixed:                    {t_fixed * 1e3:8.1f} ms  {n / t_fixed:10,.0f} frames/s")
    print(f"ratio qhytime / baseline time: tracked {t_track / t_base:.1f}x, fixed {t_fixed / t_base:.1f}x")
    print(f"peak Python heap (tracemalloc, tracked run): {peak / 1e6:.1f} MB")
    print(f"peak RSS: {rss_base:.0f} MB after the baseline, {rss:.0f} MB after qhytime (both count "
          "the file pages their memory maps touched)")


if __name__ == "__main__":
    main()

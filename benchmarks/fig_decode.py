"""Block decode of a SER video and of a FITS sequence, each against the least I/O it needs."""

from __future__ import annotations

import numpy as np

from benchmarks._core import Context, Result
from benchmarks._timing import alternate, traced_peak_mib
from qhytime.decode import (
    DECODE_CHUNK_FRAMES,
    WHOLE_FILE_FRAMES,
    decode_chunks,
    decode_paths,
    decode_reader,
)
from qhytime.gpsblock import BLOCK_SIZE
from qhytime.readers import SerReader
from qhytime.readers.serfile import HEADER_SIZE


def ser_decode(ctx: Context) -> Result:
    """Every block of a 5,000-frame SER of 9600x100 16-bit frames: qhytime's full decode
    (fields, exact times of the three stamps, validity) against a numpy memmap gather of the
    same 44 bytes per frame."""
    n, w, h = ctx.size(5000, 500), 9600, 100
    path = str(ctx.sparse_ser(n, w, h))
    frame_bytes = w * h * 2

    def baseline() -> np.ndarray:
        mm = np.memmap(path, dtype=np.uint8, mode="r", offset=HEADER_SIZE, shape=(n, frame_bytes))
        return np.ascontiguousarray(mm[:, :BLOCK_SIZE])

    def ours() -> None:
        with SerReader(path) as r:
            d = decode_reader(r)
        if int(d.ok.sum()) != n:
            raise RuntimeError("the benchmark SER must decode as good frames")

    def chunked() -> None:
        with SerReader(path) as r:
            got = sum(int(c.ok.sum()) for c in decode_chunks(r, chunk_frames=DECODE_CHUNK_FRAMES))
        if got != n:
            raise RuntimeError("the chunked decode must give the same good frames")

    tb, to = alternate(baseline, ours, ctx.reps(7, 3))
    _, tc = alternate(baseline, chunked, ctx.reps(7, 3))
    chunked_peak = traced_peak_mib(chunked)
    return Result(
        name="ser_decode", title=f"SER block decode, {n:,} frames {w}x{h}",
        baseline_label="numpy memmap gather of the 44 B", baseline=tb, qhytime=to,
        target=1.1, target_text="<= 1.1x", peak_mib=traced_peak_mib(ours),
        baseline_peak_mib=traced_peak_mib(baseline), memory="tracemalloc",
        details={"frames": n, "frames_per_s": n / to, "baseline_frames_per_s": n / tb,
                 "apparent_gb": n * frame_bytes / 1e9, "chunked_s": tc,
                 "chunked_ratio": tc / tb, "chunked_peak_mib": chunked_peak},
        notes=[f"in chunks of {DECODE_CHUNK_FRAMES:,} frames (decode_chunks: what `qhytime "
               f"decode` and the index do above {WHOLE_FILE_FRAMES:,} frames) {tc / tb:.2f}x, "
               f"heap peak {chunked_peak:.1f} MiB"],
    )  # fmt: skip


def fits_decode(ctx: Context) -> Result:
    """The blocks of 400 single-frame FITS files of 9600x40 (one sequence, as ``qhytime
    decode`` checks it) against astropy opening each file (memmap, unscaled) and reading row 0."""
    from astropy.io import fits

    count, w, h = ctx.size(400, 40), 9600, 40
    paths = ctx.fits_strips(count, w, h)

    def baseline() -> None:
        for p in paths:
            with fits.open(p, memmap=True, do_not_scale_image_data=True) as hdul:
                np.array(hdul[0].data[0])

    def ours() -> None:
        recs = list(decode_paths(paths))
        if len(recs) != count or any(r.status != "ok" for r in recs):
            raise RuntimeError("the benchmark FITS files must decode as good frames")

    tb, to = alternate(baseline, ours, ctx.reps(5, 2))
    return Result(
        name="fits_decode", title=f"FITS block decode, {count} files {w}x{h}",
        baseline_label="astropy open (memmap, unscaled) + read row 0", baseline=tb, qhytime=to,
        target=1.0, target_text="<= 1.0x", peak_mib=traced_peak_mib(ours),
        baseline_peak_mib=traced_peak_mib(baseline), memory="tracemalloc",
        details={"files": count, "files_per_s": count / to, "baseline_files_per_s": count / tb},
        notes=["qhytime: decode_paths over the files (block, times, checks against the sequence)"],
    )  # fmt: skip

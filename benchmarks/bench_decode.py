"""Benchmark: decode every GPS block of a 5,000-frame SER of 9600x100 16-bit frames.

Prints frames/s for qhytime's full decode (block fields, exact times of the three stamps,
validity) and for a bare numpy memmap gather of the same 44 bytes per frame, measured in
the same run, and their ratio. Not a test: run it by hand,

    python benchmarks/bench_decode.py [--frames 5000] [--width 9600] [--height 100]

The SER is written sparse (only each frame's first pixels hold data), so it takes little
disk; the reads touch one page per frame either way. Both timings run on a warm page cache
(best of several repeats).
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
from _timing import best_of

from qhytime.decode import decode_reader
from qhytime.gpsblock import BLOCK_SIZE, GpsBlockArray, Stamp
from qhytime.readers import SerReader
from qhytime.readers.serfile import _HEADER, HEADER_SIZE, SER_MAGIC


def write_sparse_ser(path: str, n: int, width: int, height: int) -> None:
    frame_bytes = width * height * 2
    head = _HEADER.pack(SER_MAGIC, 0, 0, 1, width, height, 16, n, b"", b"QHY600PRO", b"", 0, 0)
    seq = np.arange(n, dtype=np.int64) + 1
    secs = 940815891 + seq // 5
    ticks = (seq % 5) * 2_000_000 + 1234
    fields = {
        "sequence": seq, "spare": np.zeros(n), "width": np.full(n, width),
        "height": np.full(n, height), "latitude_raw": np.full(n, 521290180),
        "longitude_raw": np.full(n, 1000523572), "pps_count": np.full(n, 9_999_612),
    }  # fmt: skip
    for name, dt in (("start", 0), ("end", 200_000), ("now", 210_000)):
        fields[f"{name}_flag"] = np.full(n, Stamp(0x33, 0, 0).flag)
        fields[f"{name}_seconds"] = secs
        fields[f"{name}_ticks"] = ticks + dt
    raw = GpsBlockArray({k: np.asarray(v, dtype=np.int64) for k, v in fields.items()}).to_bytes()
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(HEADER_SIZE + n * frame_bytes)
        for i in range(n):
            fh.seek(HEADER_SIZE + i * frame_bytes)
            fh.write(raw[i].tobytes())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=5000)
    ap.add_argument("--width", type=int, default=9600)
    ap.add_argument("--height", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    n, w, h = args.frames, args.width, args.height
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.ser")
        write_sparse_ser(path, n, w, h)
        frame_bytes = w * h * 2

        def baseline() -> np.ndarray:
            mm = np.memmap(
                path, dtype=np.uint8, mode="r", offset=HEADER_SIZE, shape=(n, frame_bytes)
            )
            return np.ascontiguousarray(mm[:, :BLOCK_SIZE])

        def qhytime_decode() -> object:
            with SerReader(path) as r:
                d = decode_reader(r)
            assert int(d.ok.sum()) == n, "benchmark data must decode as good frames"
            return d

        baseline(), qhytime_decode()  # warm the page cache
        t_base = best_of(baseline, args.repeats)
        t_q = best_of(qhytime_decode, args.repeats)
    print(f"frames: {n} of {w}x{h} 16-bit ({n * frame_bytes / 1e9:.1f} GB apparent SER)")
    print(
        f"baseline numpy memmap gather of 44 B/frame: {t_base * 1e3:8.1f} ms  {n / t_base:12,.0f} frames/s"
    )
    print(
        f"qhytime decode (fields, times, validity):   {t_q * 1e3:8.1f} ms  {n / t_q:12,.0f} frames/s"
    )
    print(f"ratio qhytime / baseline time: {t_q / t_base:.2f}x")


if __name__ == "__main__":
    main()

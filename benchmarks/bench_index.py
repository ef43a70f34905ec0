"""Benchmark: index a 5,000-frame SER (9600x100 16-bit frames) against decoding it alone.

Prints, measured in the same run, the time of ``decode_reader`` on the file (the bare
baseline: the work the index cannot avoid) and of ``FrameIndex.ingest`` (the same decode, the
file's setting, calibration lookup and exposure, and 5,000 frame rows written in bulk inserts
in one transaction into a fresh index), their ratio, and the peak memory (tracemalloc) of
each. Both on a warm page cache and on a cold one (the file's pages dropped with
``posix_fadvise(DONTNEED)`` before each run: that file only, nothing else is touched).
Then the peak memory of indexing an archive of 50 and of 200 files, which should not grow
with the number of frames indexed. Not a test: run it by hand,

    python benchmarks/bench_index.py [--frames 5000] [--db postgresql://...]

With ``--db`` (a server URL) the index goes to that database instead of a SQLite file; its
tables are emptied between runs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from bench_decode import write_sparse_ser
from sqlalchemy import text

from qhytime.calibration import Calibration
from qhytime.decode import decode_reader
from qhytime.framerows import setting_from_reader
from qhytime.readers import SerReader
from qhytime.service.index import FrameIndex
from qhytime.simulate import CameraSim


def drop_cache(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed(fn: Callable[[], object], prepare: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        prepare()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def peak_mb(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=5000)
    ap.add_argument("--width", type=int, default=9600)
    ap.add_argument("--height", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--db", default=None, help="A database URL (default: a fresh SQLite file)")
    args = ap.parse_args()
    n = args.frames
    with tempfile.TemporaryDirectory() as tmp:
        ser = os.path.join(tmp, "bench.ser")
        write_sparse_ser(ser, n, args.width, args.height)
        warm_up = os.path.join(tmp, "warm-up.ser")
        write_sparse_ser(warm_up, 3, args.width, args.height)
        with SerReader(ser) as r:
            setting = setting_from_reader(r, 0)
        cal = Calibration(setting=setting, reference="end", offset0_us=1974.286,
                          offset0_sigma_us=1.0, line_period_ns=43194.0, method="manual")  # fmt: skip
        counter = iter(range(10**9))
        state: dict[str, FrameIndex] = {}

        def fresh_index(cold: bool = False) -> None:
            """A new, empty index with the benchmark's calibration (outside the timing)."""
            if "index" in state:
                state["index"].close()
            index = FrameIndex(args.db or os.path.join(tmp, f"index{next(counter)}.sqlite"))
            if args.db:
                with index.session(write=True) as s:
                    for table in ("index_alerts", "index_frames", "index_files"):
                        s.execute(text(f"DELETE FROM {table}"))
            if not index.store.history(setting):
                index.store.add(cal)
            # a long-running index has compiled its statements: index a small file first
            assert index.ingest(warm_up, exposure_ns=1_000_000).action == "indexed"
            state["index"] = index
            if cold:
                drop_cache(ser)

        def decode() -> None:
            with SerReader(ser) as r:
                assert len(decode_reader(r)) == n

        def ingest() -> None:
            res = state["index"].ingest(ser, exposure_ns=1_000_000)
            assert res.action == "indexed" and res.frames == n and res.calibration_id, res

        decode()
        fresh_index()
        ingest()  # warm everything once
        rows = []
        for cold in (False, True):
            t_dec = timed(decode, (lambda: drop_cache(ser)) if cold else (lambda: None),
                          args.repeats)  # fmt: skip
            t_ing = timed(ingest, lambda c=cold: fresh_index(c), args.repeats)
            rows.append(("cold" if cold else "warm", t_dec, t_ing))
        fresh_index()
        mem_dec = peak_mb(decode)
        mem_ing = peak_mb(ingest)
        # an archive: the peak memory of indexing 50 and then 200 files (5 frames each)
        sim = CameraSim(width=64, height=16, exposure_us=5000.0, frame_interval_us=6000.0)
        (Path(tmp) / "arch").mkdir()
        files = [sim.write_ser(Path(tmp) / "arch" / f"v{k:03d}.ser", 5) for k in range(200)]
        arch = {}
        for count in (50, 200):
            fresh_index()
            index = state["index"]
            arch[count] = peak_mb(
                lambda c=count, ix=index: list(ix.ingest_paths(files[:c], exposure_ns=5_000_000))
            )
        state["index"].close()
    where = args.db or "a SQLite file (WAL)"
    print(f"frames: {n} of {args.width}x{args.height} 16-bit SER "
          f"({n * args.width * args.height * 2 / 1e9:.1f} GB apparent); index in {where}")  # fmt: skip
    for label, t_dec, t_ing in rows:
        print(f"{label} cache: decode_reader alone {t_dec * 1e3:7.1f} ms ({n / t_dec:9,.0f} frames/s)"
              f" | index ingest {t_ing * 1e3:7.1f} ms ({n / t_ing:9,.0f} frames/s)"
              f" | ratio ingest / decode {t_ing / t_dec:.2f}x")  # fmt: skip
    print(f"peak memory (tracemalloc): decode {mem_dec:.1f} MB, ingest {mem_ing:.1f} MB")
    print(f"peak memory indexing an archive: 50 files {arch[50]:.2f} MB, 200 files {arch[200]:.2f} MB")


if __name__ == "__main__":
    main()

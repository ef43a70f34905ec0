"""The frame timing index: ingest, the HTTP API under 50 clients, and dask.distributed."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._core import Context, Result, unavailable
from benchmarks._data import cached, write_sparse_ser
from benchmarks._timing import alternate, traced_peak_mib, vm_hwm_mib
from qhytime.calibration import Calibration
from qhytime.decode import decode_reader
from qhytime.framerows import setting_from_reader
from qhytime.readers import SerReader
from qhytime.service.index import FrameIndex

EXPOSURE_NS = 1_000_000  # the sparse SERs carry no exposure: given, as `--exposure-s 0.001`


def calibration_for(ser: str | os.PathLike[str]) -> Calibration:
    """A calibration of the sparse SERs' setting (their frames get row times)."""
    with SerReader(ser) as r:
        setting = setting_from_reader(r, 0)
    return Calibration(setting=setting, reference="end", offset0_us=1974.286,
                       offset0_sigma_us=1.0, line_period_ns=43194.0, method="manual")  # fmt: skip


def new_index(db: str | os.PathLike[str], cal: Calibration, *, empty: bool = False) -> FrameIndex:
    """An index holding ``cal`` (``empty``: its frames and files deleted first, for a server
    database reused between runs)."""
    from sqlalchemy import text

    index = FrameIndex(db)
    if empty:
        with index.session(write=True) as s:
            for table in ("index_alerts", "index_frames", "index_files"):
                s.execute(text(f"DELETE FROM {table}"))
    if not index.store.history(cal.setting):
        index.store.add(cal)
    return index


def index_fig(ctx: Context) -> Result:
    """``FrameIndex.ingest`` of a 5,000-frame SER (9600x100) into a fresh index, against
    ``decode_reader`` of the same file alone (the work the index cannot avoid)."""
    n = ctx.size(5000, 500)
    ser, warm_up = str(ctx.sparse_ser(n)), str(ctx.sparse_ser(3))
    work = ctx.scratch("index")
    cal = calibration_for(ser)
    counter = itertools.count()
    state: dict[str, FrameIndex] = {}

    def fresh() -> None:
        """A new index with the calibration, its statements compiled (outside the time)."""
        if "index" in state:
            state.pop("index").close()
        db = ctx.index_db or str(work / f"index{next(counter)}.sqlite")
        index = new_index(db, cal, empty=ctx.index_db is not None)
        if index.ingest(warm_up, exposure_ns=EXPOSURE_NS).action != "indexed":
            raise RuntimeError("warm-up file not indexed")
        state["index"] = index

    def baseline() -> None:
        with SerReader(ser) as r:
            if len(decode_reader(r)) != n:
                raise RuntimeError("decode lost frames")

    def ours() -> None:
        res = state["index"].ingest(ser, exposure_ns=EXPOSURE_NS)
        if res.action != "indexed" or res.frames != n or not res.calibration_id:
            raise RuntimeError(f"ingest did not index the file: {res}")

    try:
        tb, to = alternate(baseline, ours, ctx.reps(5, 2), prepare_ours=fresh)
        peak = traced_peak_mib(ours, prepare=fresh)
        last_db = None if ctx.index_db else work / f"index{next(counter) - 1}.sqlite"
    finally:
        if "index" in state:
            state.pop("index").close()
    where = "PostgreSQL" if ctx.index_db and ctx.index_db.startswith("postgres") else "SQLite"
    notes, details = [], {"frames": n, "frames_per_s": n / to,
                          "database": ctx.index_db or "a SQLite file (WAL)"}  # fmt: skip
    if last_db is not None:
        floor = _bare_write_s(last_db, work, ctx.reps(5, 2))
        details["bare_write_s"] = floor
        details["decode_plus_bare_write_ratio"] = (tb + floor) / tb
        notes.append(
            f"the floor: bare sqlite3 writing the same {n:,} rows into the same table (its DDL "
            f"and indexes, one transaction, WAL) takes {floor * 1e3:.1f} ms = {floor / tb:.2f}x "
            f"the decode alone, so decode + bare write is {(tb + floor) / tb:.2f}x; qhytime's "
            f"ingest is {to / (tb + floor):.2f}x that sum"
        )
    return Result(
        name="index", title=f"index ingest, SER blocks ({n:,} frames, {where})",
        baseline_label="decode alone", baseline=tb, qhytime=to, target=1.3, target_text="<= 1.3x",
        peak_mib=peak, baseline_peak_mib=traced_peak_mib(baseline), memory="tracemalloc",
        details=details, notes=notes,
    )  # fmt: skip


def _bare_write_s(db: Path, work: Path, reps: int) -> float:
    """Best time of plain ``sqlite3`` inserting the index's frame rows (read back from ``db``)
    into a fresh file with the same table and indexes, in one transaction (WAL, as the index)."""
    import sqlite3

    with sqlite3.connect(db) as src:
        ddl = [r[0] for r in src.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'index_frames' AND sql IS NOT NULL "
            "ORDER BY type DESC")]  # fmt: skip  # the table first, then its indexes
        rows = src.execute("SELECT * FROM index_frames").fetchall()
    marks = ",".join("?" * len(rows[0]))
    best = float("inf")
    for k in range(reps):
        target = work / f"bare{k}.sqlite"
        con = sqlite3.connect(target, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            for stmt in ddl:  # foreign keys are not enforced (no PRAGMA foreign_keys)
                con.execute(stmt)
            t0 = time.perf_counter()
            con.execute("BEGIN")
            con.executemany(f"INSERT INTO index_frames VALUES ({marks})", rows)
            con.execute("COMMIT")
            best = min(best, time.perf_counter() - t0)
        finally:
            con.close()
    return best


# -- HTTP ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _load(base: str, ids: Sequence[int], clients: int, per_client: int,
                params: dict[str, str]) -> tuple[list[float], int, float, Any]:  # fmt: skip
    """``clients`` concurrent clients, each with its own connection, each sending
    ``per_client`` requests one after another (after one untimed request each, all started
    together). Returns the latencies (s), the failures, the wall time and one answer."""
    import httpx

    latencies: list[float] = []
    failures = [0]
    sample: list[Any] = []
    ready = asyncio.Barrier(clients + 1)

    async def client(k: int) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(
            base_url=base, timeout=120, limits=limits, trust_env=False
        ) as c:
            await c.get(f"/frames/{ids[k % len(ids)]}/rows", params=params)
            await ready.wait()
            for j in range(per_client):
                fid = ids[(k * per_client + j) * 7919 % len(ids)]
                t0 = time.perf_counter()
                r = await c.get(f"/frames/{fid}/rows", params=params)
                dt = time.perf_counter() - t0
                if r.status_code == 200:
                    latencies.append(dt)
                    if not sample:
                        sample.append(r.json())
                else:
                    failures[0] += 1

    tasks = [asyncio.create_task(client(k)) for k in range(clients)]
    await ready.wait()
    t0 = time.perf_counter()
    await asyncio.gather(*tasks)
    return latencies, failures[0], time.perf_counter() - t0, sample[0] if sample else None


def _healthy(base: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> bool:
    """Whether the server answers ``/health`` before it exits or ``timeout`` passes."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{base}/health", timeout=2, trust_env=False).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _start_server(ctx: Context, db: Path, log: Any) -> tuple[subprocess.Popen[bytes], str]:
    """``qhytime serve`` on a free loopback port (another port if that one was taken meanwhile)."""
    for _ in range(3):
        port = free_port()
        proc = subprocess.Popen([*ctx.qhytime, "serve", "--db", str(db), "--port", str(port)],
                                env=ctx.env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        if _healthy(base, proc):
            return proc, base
        _stop(proc)
    raise RuntimeError("qhytime serve did not answer /health (see its log)")


def http(ctx: Context) -> Result:
    """The row times of 100 rows of a frame (``/frames/{id}/rows?rows=0:100``) asked by 50
    concurrent clients of ``qhytime serve`` on a loopback port, against the library call that
    answers it (``FrameIndex.row_times``) in this process: p50/p90/p99 latency."""
    title, label = "HTTP row-times query, 50 clients", "the library call"
    for mod in ("httpx", "fastapi", "uvicorn"):
        if importlib.util.find_spec(mod) is None:
            return unavailable("http", title, label, f"{mod} is not installed (extra service)")
    n, clients, per_client = ctx.size(1000, 200), 50, ctx.size(40, 4)
    rows = np.arange(100)
    ser = str(ctx.sparse_ser(n))
    work = ctx.scratch("http")
    db = work / "http.sqlite"
    with new_index(db, calibration_for(ser)) as index:
        index.ingest(ser, exposure_ns=EXPOSURE_NS)
        ids = [f.id for f in index.iter_frames() if f.timed]
    if len(ids) != n:
        raise RuntimeError(f"{len(ids)} of {n} frames have row times")
    order = [ids[(k * 7919) % len(ids)] for k in range(1000)]

    def library(index: FrameIndex) -> float:
        def run() -> None:
            for fid in order:
                index.row_times(fid, rows)

        return alternate(run, run, ctx.reps(3, 1))[0] / len(order)

    with FrameIndex(db) as index:
        lib_before = library(index)
    interp = ctx.interpreter_mib()
    with open(work / "serve.log", "wb") as log:
        proc, base = _start_server(ctx, db, log)
        try:
            lat, failures, wall, sample = asyncio.run(
                _load(base, ids, clients, per_client, {"rows": "0:100"}))  # fmt: skip
            server_peak = vm_hwm_mib(proc.pid)
        finally:
            _stop(proc)
    with FrameIndex(db) as index:
        lib = min(lib_before, library(index))
    if sample is None or len(sample["rows"]) != len(rows) or failures:
        raise RuntimeError(f"the server's answers are wrong or failed ({failures} failures)")
    p50, p90, p99 = (float(v) for v in np.percentile(lat, [50, 90, 99]))
    return Result(
        name="http", title=title, baseline_label=label, baseline=lib, qhytime=p99,
        target=None, target_text="p99 in the note",
        peak_mib=None if server_peak is None else server_peak - interp,
        memory="the server's peak RSS (VmHWM) minus that of `qhytime --version`",
        details={"p50_s": p50, "p90_s": p90, "p99_s": p99, "max_s": max(lat),
                 "requests": len(lat), "clients": clients, "requests_per_s": len(lat) / wall,
                 "library_s": lib, "rows_per_query": len(rows), "frames_indexed": n},
        notes=[f"p50 {p50 * 1e3:.1f} ms, p90 {p90 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms, "
               f"{len(lat) / wall:.0f} requests/s; ratio = p99 / library call; the clients "
               "(httpx, asyncio) share the machine's cores with the server"],
    )  # fmt: skip


# -- dask ------------------------------------------------------------------------------------
def _frames_of(db: Path) -> list[tuple[Any, ...]]:
    with FrameIndex(db) as index:
        return [(Path(f.file).name, f.frame, f.sequence, f.status, tuple(f.reasons), f.start_ns,
                 f.end_ns, f.now_ns, f.exposure_ns, f.calibration_id) for f in index.iter_frames()]  # fmt: skip


def dask_index(ctx: Context) -> Result:
    """``qhytime.cluster.index_files`` of an archive of 200 SER files (9600x100) on a dask
    ``LocalCluster`` of 2 workers against the same call in-process: the speedup, and the same
    index. The cluster is started before the timing (its start is reported apart)."""
    count, frames = ctx.size(200, 20), ctx.size(250, 50)
    title, label = f"dask index of {count} files, 2 workers", "local run"
    if importlib.util.find_spec("distributed") is None:
        return unavailable("dask", title, label, "dask.distributed is not installed (extra dask)")
    try:
        from qhytime.cluster import index_files, open_executor
    except ImportError as err:
        return unavailable(
            "dask", title, label, f"qhytime.cluster has no index_files/open_executor ({err})"
        )
    folder = ctx.data / f"archive_{count}x{frames}"

    def make(q: Path) -> None:
        q.mkdir(parents=True, exist_ok=True)
        for k in range(count):
            write_sparse_ser(q / f"night_{k:03d}.ser", frames, 9600, 100)

    cached(folder, make)
    paths = sorted(folder.glob("*.ser"))
    cal = calibration_for(paths[0])
    work = ctx.scratch("dask")
    counter = itertools.count()
    dbs: dict[str, Path] = {}

    def fresh(kind: str) -> None:
        dbs[kind] = work / f"{kind}{next(counter)}.sqlite"
        new_index(dbs[kind], cal).close()

    t0 = time.perf_counter()
    with open_executor(workers=2) as remote_ex:
        t_start = time.perf_counter() - t0
        with open_executor() as local_ex:

            def run(kind: str) -> None:
                ex = remote_ex if kind == "dask" else local_ex
                res = index_files(paths, dbs[kind], executor=ex, exposure_ns=EXPOSURE_NS)
                if len(res) != count or any(r.action != "indexed" for r in res):
                    raise RuntimeError(f"{kind}: not every file was indexed")

            tb, to = alternate(lambda: run("local"), lambda: run("dask"), ctx.reps(2, 1),
                               prepare_baseline=lambda: fresh("local"),
                               prepare_ours=lambda: fresh("dask"))  # fmt: skip
            same = _frames_of(dbs["local"]) == _frames_of(dbs["dask"])
            peak = traced_peak_mib(lambda: run("dask"), prepare=lambda: fresh("dask"))
    if not same:
        raise RuntimeError("the dask run's index differs from the local run's")
    return Result(
        name="dask", title=title, baseline_label=label, baseline=tb, qhytime=to, target=None,
        target_text="speedup in the note", peak_mib=peak,
        memory="tracemalloc of the client process (the workers are not counted)",
        details={"speedup": tb / to, "files": count, "frames_per_file": frames,
                 "identical_index": same, "cluster_start_s": t_start},
        notes=[f"speedup {tb / to:.2f}x with 2 workers on {os.cpu_count()} cores (the client "
               f"writes the index); the LocalCluster's start ({t_start:.1f} s) is not counted; "
               "the index is identical to the local run's"],
    )  # fmt: skip

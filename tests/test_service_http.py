"""The HTTP API on a real uvicorn server (a subprocess on a free loopback port) with a real HTTP
client (httpx): row times equal to the library's to the ns, paging, bounds, JSON errors with the
right codes, the token rules, and a bounded load test (50 clients x 200 requests)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from qhytime.calibration import Calibration
from qhytime.cli import main
from qhytime.framerows import exposure_window, file_timing, setting_from_reader
from qhytime.readers import open_frames
from qhytime.service.index import FrameIndex, parse_iso_ns
from qhytime.simulate import CameraSim

from conftest import need

TOKEN = "s3cret-token-for-the-tests-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``qhytime serve`` in a subprocess, stopped with SIGTERM."""

    def __init__(self, db: str, log: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        code = "import sys; from qhytime.cli import main; sys.argv[0] = 'qhytime'; main()"
        cmd = [sys.executable, "-c", code, "serve", "--port", str(self.port), "--db", db, *extra]
        full_env = {k: v for k, v in os.environ.items() if k != "QHYTIME_TOKEN"}
        full_env.update(env or {})
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=full_env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(self.base + "/docs", timeout=1.0)
                return
            except httpx.TransportError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.2)
        self.stop()
        need(False, f"a running qhytime server ({log.read_text()[-500:]})")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An index of a calibrated FITS, an uncalibrated one and a SER without exposure, served."""
    tmp = tmp_path_factory.mktemp("http")
    db = str(tmp / "i.sqlite")
    sim = CameraSim(width=64, height=96, exposure_us=5000.0, frame_interval_us=6000.0)
    fits = sim.write_fits(tmp / "cap", 3)
    other = CameraSim(width=32, height=16, exposure_us=1000.0).write_fits(tmp / "cap", 1, prefix="z")
    ser = sim.write_ser(tmp / "cap" / "v.ser", 5)
    with FrameIndex(db) as index, open_frames(fits[0]) as r:
        cal = index.store.add(Calibration(setting=setting_from_reader(r, 0), reference="end",
                                          offset0_us=1974.286, offset0_sigma_us=0.5,
                                          line_period_ns=43194.0, line_period_sigma_ns=0.01,
                                          method="manual"))  # fmt: skip
        for p in [*fits, *other, ser]:
            index.ingest(p)
        ids = {(Path(f.file).name, f.frame): f.id for f in index.frames()}
    server = Server(db, tmp / "server.log")
    yield {"base": server.base, "db": db, "fits": fits, "ser": ser, "ids": ids, "cal": cal,
           "server": server, "tmp": tmp}  # fmt: skip
    assert server.stop() == 0
    text = (tmp / "server.log").read_text()
    assert "Traceback" not in text, text[-3000:]
    # client errors are logged, one line each
    assert "INFO:     404 GET /frames/999999: " in text and "INFO:     422 GET /at: " in text


def get(site: dict[str, Any], path: str, **kw: Any) -> Any:
    return httpx.get(site["base"] + path, timeout=10.0, **kw)


def test_health_and_paging(site: dict[str, Any]) -> None:
    h = get(site, "/health").json()
    assert h["status"] == "ok" and h["frames"] == 9 and h["files"] == 5
    assert h["schema_revision"] == "0004" and h["last_frame"]["id"] == max(site["ids"].values())
    seen, offset = [], 0
    while offset is not None:
        page = get(site, f"/frames?limit=4&offset={offset}").json()
        assert page["total"] == 9 and len(page["items"]) <= 4
        seen += [(Path(f["file"]).name, f["frame"]) for f in page["items"]]
        offset = page["next"]
    assert sorted(seen) == sorted(site["ids"]) and len(seen) == 9
    two = get(site, "/frames?sequence=2").json()
    assert sorted((Path(f["file"]).name, f["frame"]) for f in two["items"]) == [
        ("frame_0001.fits", 0), ("v.ser", 1)]  # fmt: skip
    f2 = get(site, f"/frames/{site['ids'][('frame_0001.fits', 0)]}").json()
    rng = get(site, "/frames", params={"from": f2["end"] + "Z", "to": f2["now"]}).json()
    assert [(Path(f["file"]).name, f["frame"]) for f in rng["items"]] == [
        ("frame_0001.fits", 0), ("v.ser", 1)]  # fmt: skip
    assert parse_iso_ns(f2["start"]) == f2["start_ns"]
    docs = get(site, "/openapi.json").json()
    assert {"/frames/{frame_id}/rows", "/at", "/gnss", "/alerts"} <= set(docs["paths"])
    assert get(site, "/docs").status_code == 200
    cals = get(site, "/calibrations").json()["items"]
    assert site["cal"].id in [c["id"] for c in cals]
    assert get(site, "/alerts").json()["items"] == []
    assert get(site, "/gnss").json() == {"latest": None, "items": [], "alerts": []}


def test_row_and_pixel_times_equal_the_library(site: dict[str, Any]) -> None:
    path = site["fits"][1]
    fid = site["ids"][(path.name, 0)]
    with FrameIndex(site["db"]) as index:
        ft = file_timing(path, store=index.store)
        lib = ft.row_times(0, [0, 1, 2, 47, 95])
        r = get(site, f"/frames/{fid}/rows", params={"rows": "0:3,47,95"}).json()
        assert r["frame"]["id"] == fid and [x["row"] for x in r["rows"]] == [0, 1, 2, 47, 95]
        for name in ("start", "mid", "end"):
            assert [x[f"{name}_ns"] for x in r["rows"]] == getattr(lib, f"{name}_ns")[0].tolist()
        assert [x["sigma_ns"] for x in r["rows"]] == [round(float(s), 3) for s in lib.sigma_ns]
        assert [x["end"] for x in r["rows"]] == [x["end"] for x in lib.records(0)]
        only_end = get(site, f"/frames/{fid}/rows", params={"rows": "5", "moment": "end"}).json()
        assert set(only_end["rows"][0]) == {"row", "end", "end_ns", "sigma_ns"}
        every = get(site, f"/frames/{fid}/rows").json()["rows"]
        assert len(every) == 96
        assert [x["mid_ns"] for x in every] == ft.row_times(0).mid_ns[0].tolist()
        px = get(site, f"/frames/{fid}/pixels", params={"xy": "10,20.4;63,95"}).json()["pixels"]
        for x, y, got in ((10, 20.4, px[0]), (63, 95, px[1])):
            w = exposure_window(path, x=x, y=y, store=index.store)
            assert (got["row"], got["start_ns"], got["end_ns"]) == (
                int(w.rows[0]), int(w.start_ns[0]), int(w.end_ns[0]))  # fmt: skip
        t = int(lib.start_ns[0, 3]) + 1  # during row 47's exposure
        at = get(site, "/at", params={"time": str(np.datetime64(t, "ns")) + "Z"}).json()["items"]
        mine = [(x["id"], [r["row"] for r in x["rows"]]) for x in at]
        with_index = [(f.id, rt.rows.tolist()) for f, rt in index.at(t)]
        assert mine == with_index and fid in [m[0] for m in mine]


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        ("/frames/999999", 404, "no frame with id 999999"),
        ("/frames/0", 404, "no frame with id 0"),
        ("/frames/-3/rows", 404, "no frame with id -3"),
        ("/frames/99999999999999999999999", 404, "no frame with id 99999999999999999999999"),
        ("/frames/abc", 422, "frame_id"),
        ("/frames/1.5", 422, "frame_id"),
        ("/frames?limit=1001", 422, "limit"),
        ("/frames?limit=0", 422, "limit"),
        ("/frames?offset=-1", 422, "offset"),
        ("/frames?from=2025-01-01T00:00:00&to=2025-03-01T00:00:00", 422, "31 days"),
        ("/frames?from=yesterday", 422, "ISO"),
        ("/frames?status=lost", 422, "status"),
        ("/at", 422, "time"),
        ("/at?time=2025-13-01T00:00:00", 422, "month"),
        ("/at?time=2025-08-02T01:44:51&limit=5000", 422, "limit"),
        ("/nowhere", 404, "no such endpoint"),
        ("/frames?" + "x" * 5000, 414, "too long"),
    ],
)
def test_client_errors_are_json(site: dict[str, Any], url: str, status: int, words: str) -> None:
    r = get(site, url)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == status and words in body["message"], body
    assert "Traceback" not in r.text


def test_frame_errors(site: dict[str, Any]) -> None:
    fid = site["ids"][("frame_0000.fits", 0)]
    cases = [
        (f"/frames/{fid}/rows?rows=0,96", 422, "row 96 outside"),
        (f"/frames/{fid}/rows?rows=-1", 422, "row -1 outside"),
        (f"/frames/{fid}/rows?rows=a", 422, "not a row number"),
        (f"/frames/{fid}/rows?rows=0:20000", 422, "too many rows"),
        (f"/frames/{fid}/rows?moment=noon", 422, "moment"),
        (f"/frames/{fid}/pixels?xy=64,0", 422, "outside the 64x96 frame"),
        (f"/frames/{fid}/pixels?xy=nan,1", 422, "not finite"),
        (f"/frames/{fid}/pixels", 422, "xy"),
        (f"/frames/{site['ids'][('v.ser', 0)]}/rows", 409, "no_exposure"),
        (f"/frames/{site['ids'][('z_0000.fits', 0)]}/rows", 409, "no_calibration"),
    ]
    for url, status, words in cases:
        r = get(site, url)
        assert (r.status_code, r.json()["status"]) == (status, status), (url, r.text)
        assert words in r.json()["message"], (url, r.json())
    post = httpx.post(site["base"] + "/frames", timeout=10.0)
    assert post.status_code == 405 and post.json()["error"] == "method_not_allowed"


def test_token_rules(site: dict[str, Any], tmp_path: Path) -> None:
    server = Server(site["db"], tmp_path / "token.log", env={"QHYTIME_TOKEN": TOKEN})
    try:
        url = server.base + "/frames?limit=1"
        for headers in ({}, {"Authorization": "Basic " + TOKEN}, {"Authorization": "Bearer nope"},
                        {"Authorization": "Bearer " + TOKEN[:-1]}, {"Authorization": TOKEN}):  # fmt: skip
            r = httpx.get(url, headers=headers, timeout=10.0)
            assert r.status_code == 401 and r.json()["error"] == "unauthorized", headers
            assert r.headers["www-authenticate"].startswith("Bearer")
        ok = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10.0)
        assert ok.status_code == 200 and ok.json()["total"] == 9
        assert httpx.get(server.base + "/docs", timeout=10.0).status_code == 200  # no data
        schema = httpx.get(server.base + "/openapi.json", timeout=10.0).json()
        assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    finally:
        assert server.stop() == 0
    runner = CliRunner()
    for host in ("0.0.0.0", "192.168.1.10", "::"):
        r = runner.invoke(main, ["serve", "--host", host, "--db", site["db"]],
                          env={"QHYTIME_TOKEN": ""})  # fmt: skip
        assert r.exit_code == 2 and "give a token" in r.output, r.output
    short = runner.invoke(main, ["serve", "--token", "short", "--db", site["db"]])
    assert short.exit_code == 2 and "16 characters" in short.output


def test_load_50_clients_x_200_requests(site: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    ids = sorted(site["ids"].values())
    fits_ids = [site["ids"][(p.name, 0)] for p in site["fits"]]
    paths = [f"/frames/{i}" for i in ids] + [f"/frames/{i}/rows?rows=0,1,2,95" for i in fits_ids]
    paths += ["/health", "/frames?limit=5"]
    clients, per_client = 50, 200
    latencies: list[float] = []
    failures: list[str] = []

    async def client(k: int) -> None:
        async with httpx.AsyncClient(base_url=site["base"], timeout=30.0) as c:
            for j in range(per_client):
                path = paths[(k * 7 + j) % len(paths)]
                t0 = time.perf_counter()
                r = await c.get(path)
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    failures.append(f"{path}: {r.status_code} {r.text[:100]}")

    async def run() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        return time.perf_counter() - t0

    wall = asyncio.run(run())
    assert failures == [] and len(latencies) == clients * per_client
    ms = np.percentile(np.array(latencies) * 1e3, [50, 90, 99, 100])
    with capsys.disabled():
        print(f"\nload: {clients} clients x {per_client} requests in {wall:.1f} s "
              f"({len(latencies) / wall:.0f} req/s); latency p50 {ms[0]:.1f} ms, p90 {ms[1]:.1f} ms, "
              f"p99 {ms[2]:.1f} ms, max {ms[3]:.1f} ms")  # fmt: skip

"""Trail detection: ends to a fraction of a pixel, honest sigmas, stars and the GPS block left out.

The full 100-trail pull study is ``benchmarks/satellite_pulls.py``; here a smaller one on the
simulator and the shared reference sequences (``../shared/testdata/satellite/det_*``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from qhytime.rowmodel import RowModel
from qhytime.satellite.detect import detect_trails
from qhytime.satellite.sim import trail_truth, true_time_at
from qhytime.satellite.streak import measure_streak
from qhytime.satellite.timing import FrameClock, block_rectangle, time_streak
from qhytime.simulate import CameraSim, Mover, Star

from conftest import need

SAT_DATA = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "satellite"


def _proj(p: tuple[float, float], a: dict, b: dict) -> tuple[float, float]:
    dx, dy = b["x"] - a["x"], b["y"] - a["y"]
    L2 = dx * dx + dy * dy
    px, py = p[0] - a["x"], p[1] - a["y"]
    return (px * dx + py * dy) / L2, abs(px * dy - py * dx) / math.sqrt(L2)


def test_shared_detection_sequences() -> None:
    """det_* frames with --next: >= 95 % of ends within 0.5 px, >= 90 % of times within 2
    sigma of the object's true time at the reported point, edge ends flagged, no point off
    the true trails (stars, the GPS block)."""
    need((SAT_DATA / "truth.json").is_file(), f"the shared satellite reference set ({SAT_DATA})")
    frames = [f for f in json.loads((SAT_DATA / "truth.json").read_text())["frames"]
              if f["kind"] == "detect"]  # fmt: skip
    n = within = timed_ok = 0
    pulls = []
    for fr in frames:
        md = fr["model"]
        model = RowModel.from_us(offset0_us=md["offset0_us"], line_period_ns=md["line_period_ns"],
                                 readout=md["readout"], reference=md["reference"])  # fmt: skip
        res = measure_streak(SAT_DATA / fr["file"], model=model, detect=True,
                             next_path=SAT_DATA / fr["next"],
                             exposure_ns=round(md["exposure_s"] * 1e9))  # fmt: skip
        assert len(res.trails) == len(fr["trails"]), fr["file"]
        for p in res.points:  # every point lies on a true trail
            assert any(_proj((p.x, p.y), *t["ends"])[1] <= 2 for t in fr["trails"]), (fr["file"], p)
        for t in fr["trails"]:
            a, b = t["ends"]
            mine = [p for p in res.points if p.kind in ("first", "last") and _proj((p.x, p.y), a, b)[1] <= 2]
            for e in (a, b):
                p = next(q for q in mine if q.kind == ("first" if e["first"] else "last"))
                if e["edge"]:
                    assert not p.timing and "edge" in p.flags
                    continue
                n += 1
                within += math.hypot(p.x - e["x"], p.y - e["y"]) <= 0.5
                f, _ = _proj((p.x, p.y), a, b)
                t_true = a["unix_ns"] + f * (b["unix_ns"] - a["unix_ns"])
                pull = (p.unix_ns - t_true) / p.sigma_ns
                pulls.append(pull)
                timed_ok += abs(pull) <= 2
    assert n == 59
    assert within >= 0.95 * n and timed_ok >= 0.90 * n, (within, timed_ok, n)
    assert 0.7 < float(np.std(pulls)) < 1.3


def _trail_frame(k: int, rng: np.random.Generator, snr: float) -> tuple[CameraSim, Mover, np.ndarray]:
    readout = "pairs" if k % 2 == 0 else "2cms"
    binning = 1 if k % 4 < 2 else 2
    sim = CameraSim(width=200, height=150, readout=readout, binning=binning,
                    exposure_us=200_000.0, read_noise_adu=25.0, seed=100 + k)  # fmt: skip
    _, _, ref = sim.block_for(0)
    speed, ang = rng.uniform(120, 300), rng.uniform(0, 2 * math.pi)
    sig = 2.8 / 2.3548
    flux = snr * 25.0 * speed * math.sqrt(2 * math.pi) * sig  # peak per pixel = snr x noise
    mover = Mover(100 + rng.uniform(-10, 10), 75 + rng.uniform(-10, 10), speed * math.cos(ang),
                  speed * math.sin(ang), ref - 98_000_000, flux, 2.8)  # fmt: skip
    stars = [Star(float(rng.uniform(5, 195)), float(rng.uniform(5, 145)), 2e5, 2.8) for _ in range(6)]
    image = sim.frame(0, movers=[mover], stars=stars).image
    return sim, mover, image


def test_simulated_pull_study() -> None:
    """24 simulated trails, SNR 10-40 per pixel: end positions and end-time pulls against the
    object's true time at the reported point (the benchmark runs 100)."""
    rng = np.random.default_rng(2024)
    dist, pulls, blended = [], [], 0
    for k in range(24):
        sim, mover, image = _trail_frame(k, rng, snr=float(rng.uniform(10, 40)))
        truth = trail_truth(sim, 0, mover)
        assert truth is not None
        mask = np.zeros(image.shape, dtype=bool)
        x0, y0, x1, y1 = block_rectangle(sim.height, 16)
        mask[y0 : y1 + 1, x0 : x1 + 1] = True
        (trail,) = detect_trails(image, mask=mask)  # one trail; the stars are not trails
        # the time order from the truth (as --first would give it)
        d0 = math.hypot(trail.ends[0][0] - truth[0].x, trail.ends[0][1] - truth[0].y)
        d1 = math.hypot(trail.ends[1][0] - truth[0].x, trail.ends[1][1] - truth[0].y)
        sel = (0, 1) if d0 < d1 else (1, 0)
        _, _, ref = sim.block_for(0)
        model = RowModel.from_us(offset0_us=sim.offset0_us, line_period_ns=sim.line_period_ns,
                                 readout=sim.readout)  # fmt: skip
        from qhytime.rowmodel import FrameGeometry

        clock = FrameClock(model, FrameGeometry(height=sim.height, binning=sim.binning), ref,
                           round(sim.exposure_us * 1e3), width=sim.width)  # fmt: skip
        pts = time_streak(
            clock, trail.ends[sel[0]], trail.ends[sel[1]],
            sigma_along_px=(trail.sigma_along_px[sel[0]], trail.sigma_along_px[sel[1]]),
            flags=(trail.flags[sel[0]], trail.flags[sel[1]]),
        )  # fmt: skip
        for p, te in zip((pts[0], pts[-1]), truth, strict=True):
            if "blended" in p.flags:  # a star on the end: flagged, not a timing point
                blended += 1
                assert not p.timing
                continue
            dist.append(math.hypot(p.x - te.x, p.y - te.y))
            t_true = true_time_at(mover, p.x, p.y, te.unix_ns)
            pulls.append((p.unix_ns - t_true) / p.sigma_ns)
    dist_a, pulls_a = np.array(dist), np.array(pulls)
    assert blended <= 4 and len(pulls) + blended == 48  # 6 bright stars per small frame
    assert (dist_a <= 0.5).mean() >= 0.95
    assert (np.abs(pulls_a) <= 2).mean() >= 0.90
    assert 0.7 < pulls_a.std() < 1.3 and abs(pulls_a.mean()) < 0.5


def test_stars_and_the_gps_block_are_not_trails() -> None:
    rng = np.random.default_rng(7)
    sim = CameraSim(width=160, height=120, read_noise_adu=20.0, exposure_us=200_000.0)
    stars = [Star(float(rng.uniform(3, 157)), float(rng.uniform(3, 117)), float(rng.uniform(1e4, 3e6)))
             for _ in range(25)]  # fmt: skip
    stars.append(Star(40.0, 60.0, 2e5))  # a close pair: elongated, but not a trail
    stars.append(Star(42.5, 60.5, 2e5))
    image = sim.frame(0, stars=stars).image
    mask = np.zeros(image.shape, dtype=bool)
    mask[0, :22] = True
    assert detect_trails(image, mask=mask) == []
    assert detect_trails(np.full((50, 60), 100.0)) == []  # no noise, no trail


def test_trail_entering_through_the_edge_is_flagged(tmp_path: Path) -> None:
    sim = CameraSim(width=200, height=120, read_noise_adu=20.0, exposure_us=200_000.0, seed=5)
    _, _, ref = sim.block_for(0)
    mover = Mover(-20.0, 60.0, 300.0, 40.0, ref - 200_000_000, 4e5)
    paths = sim.write_fits(tmp_path, 2, movers=[mover])
    model = RowModel.from_us(offset0_us=sim.offset0_us, line_period_ns=sim.line_period_ns)
    res = measure_streak(paths[0], model=model, detect=True, next_path=paths[1])
    first, last = res.points[0], res.points[-1]
    assert first.kind == "first" and "edge" in first.flags and not first.timing
    assert first.x == pytest.approx(-0.5)
    assert last.timing and any("edge" in n for n in res.notes)


def test_unknown_order_is_flagged_not_timed(tmp_path: Path) -> None:
    sim = CameraSim(width=200, height=120, read_noise_adu=20.0, exposure_us=200_000.0, seed=6)
    _, _, ref = sim.block_for(0)
    paths = sim.write_fits(tmp_path, 1, movers=[Mover(80.0, 60.0, 200.0, 30.0, ref - 100_000_000, 4e5)])
    (empty,) = CameraSim(width=200, height=120, seed=7).write_fits(tmp_path / "n", 1)
    model = RowModel.from_us(offset0_us=sim.offset0_us, line_period_ns=sim.line_period_ns)
    res = measure_streak(paths[0], model=model, detect=True, next_path=empty, n_interior=2)
    assert len(res.points) == 4 and all(not p.timing and "order_unknown" in p.flags for p in res.points)
    assert {p.kind for p in res.points} == {"end", "interior"}

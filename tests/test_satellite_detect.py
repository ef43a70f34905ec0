"""Trail detection: ends to a fraction of a pixel, honest sigmas, stars and the GPS block left out.

The full 100-trail pull study is ``benchmarks/satellite_pulls.py``; here a smaller one on the
simulator, one at thousands of px/s (where a row's window closing 43 us after its neighbour's
moves the end by a tenth of a pixel), and the shared reference sequences
(``../shared/testdata/satellite/det_*``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from qhytime.rowmodel import FrameGeometry, RowModel, row_times
from qhytime.satellite.detect import detect_trails, refine_trail
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


def _shared_detect_frames() -> list[dict]:
    need((SAT_DATA / "truth.json").is_file(), f"the shared satellite reference set ({SAT_DATA})")
    return [f for f in json.loads((SAT_DATA / "truth.json").read_text())["frames"]
            if f["kind"] == "detect"]  # fmt: skip


def _model_of(fr: dict) -> RowModel:
    md = fr["model"]
    return RowModel.from_us(offset0_us=md["offset0_us"], line_period_ns=md["line_period_ns"],
                            readout=md["readout"], reference=md["reference"])  # fmt: skip


def test_shared_detection_sequences() -> None:
    """det_* frames with --next, as ``streak --detect`` runs them: >= 95 % of ends within
    0.5 px, edge ends flagged, no point off the true trails (stars, the GPS block), and the
    end times' pulls against the object's true time at the reported point: >= 90 % within 2
    sigma (the issue's bound), pull std near 1.

    The reported sigma is the fit's noise (:func:`test_shared_sigma_is_the_noise` shows it is
    right on these very frames) plus the stated systematic term
    (:data:`qhytime.satellite.streak.SYSTEMATIC_PX`, 0.05 px along the trail). These frames
    need it: their ends sit ~0.05 px from their truth along the trail, common to both halves
    of the pixels (no mean, no trend with angle, speed, readout, binning or which end); without
    it, 53 of 59 would fall within 2 sigma (std 1.2), with it 57 of 59 (std 1.0)."""
    frames = _shared_detect_frames()
    n = within = timed_ok = 0
    pulls = []
    for fr in frames:
        md = fr["model"]
        model = _model_of(fr)
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
    assert within >= 0.95 * n, (within, n)
    assert timed_ok >= 0.90 * n, (timed_ok, n)
    assert 0.8 < float(np.std(pulls)) < 1.2 and abs(float(np.mean(pulls))) < 0.3


def test_shared_sigma_is_the_noise() -> None:
    """The sigma of a detected end is its noise, on the reference frames themselves: each
    trail fitted through the rolling shutter twice, from the two checkerboard halves of its
    pixels (independent noise, the same rendering), the two fits of each end differ along
    the trail by 1.0 of their combined sigma (rms over the 58 ends of whole trails; 1 +-
    0.09 by chance)."""
    from astropy.io import fits

    from qhytime.framerows import file_timing

    frames = _shared_detect_frames()
    diffs = []
    for fr in frames:
        ft = file_timing(SAT_DATA / fr["file"], model=_model_of(fr),
                         exposure_ns=round(fr["model"]["exposure_s"] * 1e9))  # fmt: skip
        clock = FrameClock.from_file_timing(ft, 0, width=fr["width"])
        image = fits.getdata(SAT_DATA / fr["file"]).astype(float)
        mask = np.zeros(image.shape, dtype=bool)
        x0, y0, x1, y1 = clock.masked[0]
        mask[y0 : y1 + 1, x0 : x1 + 1] = True
        yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
        even = (xx + yy) % 2 == 0
        for t in detect_trails(image, mask=mask):
            near = [tr for tr in fr["trails"] if _proj(t.ends[0], *tr["ends"])[1] <= 2]
            if len(near) != 1 or any(e["edge"] for e in near[0]["ends"]):
                continue
            a = near[0]["ends"][0]  # the first in time (as --first would say)
            first = 0 if math.dist(t.ends[0], (a["x"], a["y"])) < math.dist(t.ends[1], (a["x"], a["y"])) else 1
            halves = [refine_trail(image, t, clock, first, mask=mask | half) for half in (even, ~even)]
            assert all(h.first == first for h in halves)
            u = np.subtract(t.ends[1], t.ends[0]) / t.length_px
            for i in (0, 1):
                d = float(np.subtract(halves[0].ends[i], halves[1].ends[i]) @ u)
                diffs.append(d / math.hypot(halves[0].sigma_along_px[i], halves[1].sigma_along_px[i]))
    assert len(diffs) == 58
    assert 0.85 < math.sqrt(float(np.mean(np.square(diffs)))) < 1.15


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
    """24 simulated trails, SNR 10-40 per pixel, detected and fitted through the rolling
    shutter: end positions and end-time pulls against the object's true time at the reported
    point (the benchmark runs 100)."""
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
        clock = FrameClock(model, FrameGeometry(height=sim.height, binning=sim.binning), ref,
                           round(sim.exposure_us * 1e3), width=sim.width)  # fmt: skip
        refined = refine_trail(image, trail, clock, sel[0], mask=mask)  # as streak --detect
        assert refined.first == sel[0] or "blended" in trail.flags[0] + trail.flags[1]
        trail = refined
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


def _fast_trail(k: int, rng: np.random.Generator) -> tuple[CameraSim, Mover, np.ndarray, int]:
    """A trail of 40-80 px at 2,000-8,000 px/s (a LEO at a long focal length): the exposure
    shortened to keep it on a small frame; pairs and 2CMS, binning 1 and 2, any direction."""
    readout = ("pairs", "2cms")[k % 2]
    binning = 1 if k % 4 < 2 else 2
    speed, ang = float(rng.uniform(2000, 8000)), float(rng.uniform(0, 2 * math.pi))
    exposure_us = float(rng.uniform(40, 80)) / speed * 1e6
    sim = CameraSim(width=160, height=140, readout=readout, binning=binning,
                    exposure_us=exposure_us, read_noise_adu=25.0, seed=300 + k)  # fmt: skip
    _, _, ref = sim.block_for(0)
    flux = float(rng.uniform(15, 40)) * 25.0 * speed * math.sqrt(2 * math.pi) * (2.8 / 2.3548)
    mid = ref + round(float(sim.row_end_rel_ns()[70].mean()) - exposure_us * 500)
    mover = Mover(80 + rng.uniform(-5, 5), 70 + rng.uniform(-5, 5), speed * math.cos(ang),
                  speed * math.sin(ang), mid, flux, 2.8)  # fmt: skip
    return sim, mover, sim.frame(0, movers=[mover]).image, ref


def test_fast_trails_need_the_rolling_shutter_model() -> None:
    """At thousands of px/s the PSF's rows near an end close 43 us (2CMS) or 86 us (pairs,
    binned rows) apart, a tenth of a pixel of motion each: the plain half-plateau ends are
    off the spec's by several of their sigmas (pull rms ~2), the rolling-shutter fit's are
    not (rms ~1, >= 85 % within 2 sigma). Ends whose truth is undefined (the object skips a
    row between two windows) are left out, as in the benchmark."""
    rng = np.random.default_rng(9)
    pulls: dict[str, list[float]] = {"static": [], "rolling": []}
    for k in range(16):
        sim, mover, image, ref = _fast_trail(k, rng)
        truth = trail_truth(sim, 0, mover)
        if truth is None:
            continue
        mask = np.zeros(image.shape, dtype=bool)
        x0, y0, x1, y1 = block_rectangle(sim.height, 16)
        mask[y0 : y1 + 1, x0 : x1 + 1] = True
        (t,) = detect_trails(image, mask=mask)
        a = (truth[0].x, truth[0].y)
        first = 0 if math.dist(t.ends[0], a) < math.dist(t.ends[1], a) else 1
        model = RowModel.from_us(offset0_us=sim.offset0_us, line_period_ns=sim.line_period_ns,
                                 readout=sim.readout)  # fmt: skip
        clock = FrameClock(model, FrameGeometry(height=sim.height, binning=sim.binning), ref,
                           round(sim.exposure_us * 1e3), width=sim.width)  # fmt: skip
        r = refine_trail(image, t, clock, first, mask=mask)
        assert r.first == first and r.velocity_px_s is not None
        assert math.hypot(*r.velocity_px_s) == pytest.approx(math.hypot(mover.vx_px_per_s, mover.vy_px_per_s), rel=0.01)
        for name, tr in (("static", t), ("rolling", r)):
            pts = time_streak(clock, tr.ends[first], tr.ends[1 - first],
                              sigma_along_px=(tr.sigma_along_px[first], tr.sigma_along_px[1 - first]))  # fmt: skip
            for p, te in zip((pts[0], pts[-1]), truth, strict=True):
                pulls[name].append((p.unix_ns - true_time_at(mover, p.x, p.y, te.unix_ns)) / p.sigma_ns)
    static, rolling = np.array(pulls["static"]), np.array(pulls["rolling"])
    assert len(rolling) >= 20
    assert math.sqrt(float(np.mean(static**2))) > 1.5
    assert 0.6 < math.sqrt(float(np.mean(rolling**2))) < 1.4 and abs(float(rolling.mean())) < 0.5
    assert (np.abs(rolling) <= 2).mean() >= 0.85


@pytest.mark.parametrize(("readout", "binning", "crop_y", "flipped", "global_reset"),
                         [("pairs", 1, 0, False, False), ("2cms", 2, 7, False, False),
                          ("pairs", 2, 3, True, False), ("2cms", 1, 0, False, True)])  # fmt: skip
def test_sensor_windows_make_the_row_windows(
    readout: str, binning: int, crop_y: int, flipped: bool, global_reset: bool
) -> None:
    """Every sensor row's window (what the rolling-shutter fit integrates over): a binned
    row's earliest start and latest end are the row model's start and end of that row."""
    model = RowModel.from_us(offset0_us=1961.797, line_period_ns=43194.122, readout=readout,  # type: ignore[arg-type]
                             global_reset=global_reset)  # fmt: skip
    geom = FrameGeometry(height=40, crop_y=crop_y, binning=binning, flipped=flipped)
    ref, exp = 1_777_600_860_274_899_851, 20_000_001
    clock = FrameClock(model, geom, ref, exp, width=10)
    rows = np.arange(40)
    s_ps, e_ps = clock.sensor_windows_ps(rows)
    assert s_ps.shape == e_ps.shape == (40, binning)
    rt = row_times(model, geom, ref, exp)
    # integers throughout (ns since 1970 in a float would be 256 ns coarse); ps round to ns
    assert np.abs(s_ps.min(axis=1) - (rt.start_ns[0] - ref) * 1000).max() <= 500
    assert np.abs(e_ps.max(axis=1) - (rt.end_ns[0] - ref) * 1000).max() <= 500
    starts, ends = clock.row_windows_ns()
    assert (starts == rt.start_ns[0]).all() and (ends == rt.end_ns[0]).all()


def test_refine_keeps_a_trail_it_cannot_fit() -> None:
    """A trail entering through the frame's edge: its length does not give its speed, so the
    rolling-shutter fit is not made (the plain detection is kept, ``first`` None); a bad
    ``first`` or a clock of another frame is refused."""
    sim = CameraSim(width=200, height=120, read_noise_adu=20.0, exposure_us=200_000.0, seed=5)
    _, _, ref = sim.block_for(0)
    image = sim.frame(0, movers=[Mover(-20.0, 60.0, 300.0, 40.0, ref - 200_000_000, 4e5)]).image
    (t,) = detect_trails(image)
    model = RowModel.from_us(offset0_us=sim.offset0_us, line_period_ns=sim.line_period_ns)
    clock = FrameClock(model, FrameGeometry(height=120), ref, 200_000_000, width=200)
    first = 0 if t.ends[0][0] < t.ends[1][0] else 1
    assert refine_trail(image, t, clock, first) is t
    with pytest.raises(ValueError, match="first"):
        refine_trail(image, t, clock, 2)
    other = FrameClock(model, FrameGeometry(height=100), ref, 200_000_000, width=200)
    with pytest.raises(ValueError, match="same frame"):
        refine_trail(image, t, other, first)


def test_bright_trail_on_a_quiet_sensor() -> None:
    """A bright trail (peak ~1,700 ADU) with 2 ADU of read noise: its noise is all shot
    noise, which the first, robust pass of the fit must expect (it once took the whole
    trail for outliers and found nothing)."""
    sim = CameraSim(width=120, height=100, readout="2cms", exposure_us=20_000.0,
                    read_noise_adu=2.0, seed=3)  # fmt: skip
    _, _, ref = sim.block_for(0)
    mover = Mover(60.0, 46.3, 400.0, 1960.0, ref - 10_000_000, 1e7)
    image = sim.frame(0, movers=[mover]).image
    mask = np.zeros(image.shape, dtype=bool)
    mask[0, :22] = True
    (t,) = detect_trails(image, mask=mask)
    a, b = trail_truth(sim, 0, mover)
    got = sorted(t.ends, key=lambda e: e[1])
    assert math.dist(got[0], (a.x, a.y)) < 0.2 and math.dist(got[1], (b.x, b.y)) < 0.2
    assert 0.9 < t.chi2_red < 1.2 and t.gain_adu > 0.5


def test_systematic_term_is_stated_and_can_be_switched_off() -> None:
    """The CLI default is the library's documented systematic term, and 0 leaves the fit's own
    statistical sigma (the term is a stated choice, never hidden)."""
    from qhytime.cli.streak import streak
    from qhytime.satellite.streak import SYSTEMATIC_PX

    opt = next(o for o in streak.params if o.name == "systematic_px")
    assert opt.default == SYSTEMATIC_PX == 0.05

"""Pull study of satellite trail detection and the orbit check (not a test; ~1-2 min).

Part 1: ``--trails`` simulated trails (SNR 10-40 per pixel, pairs and 2CMS, binning 1 and 2,
moving with and against the readout, random directions, field stars), each detected and its
ends timed: the fraction of ends within 0.5 px of the truth, of end times within 2 reported
sigmas of the object's true time at the reported point, and the distribution of those pulls.
Detection time per frame is printed against a bare baseline (the same frame's smoothing,
threshold and connected-component labelling alone).

Part 2: ``--passes`` simulated passes of the bundled TLE (tests/data/satellite/iss.tle), each
frame's trail detected, timed and checked against the orbit, with the right offset0 and with
offset0 5 ms too large: the mean time offset and its standard error.

    python benchmarks/satellite_pulls.py [--trails 100] [--passes 4]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _timing import best_of

from qhytime.rowmodel import FrameGeometry, RowModel
from qhytime.satellite.detect import detect_trails, refine_trail
from qhytime.satellite.orbit import Observer, load_tle
from qhytime.satellite.sim import simulate_pass, trail_truth, true_time_at
from qhytime.satellite.streak import measure_streak
from qhytime.satellite.timing import FrameClock, block_rectangle, time_streak
from qhytime.simulate import CameraSim, Mover, Star

TLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "satellite" / "iss.tle"


def trail_study(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    dist, pulls, snrs, flagged, missed = [], [], [], 0, 0
    t_detect, t_base = [], []
    for k in range(n):
        readout = ("pairs", "2cms")[k % 2]
        binning = 1 if k % 4 < 2 else 2
        sim = CameraSim(width=320, height=240, readout=readout, binning=binning,
                        exposure_us=200_000.0, read_noise_adu=25.0, seed=seed * 1000 + k)  # fmt: skip
        _, _, ref = sim.block_for(0)
        snr = float(rng.uniform(10, 40))
        speed, ang = float(rng.uniform(100, 400)), float(rng.uniform(0, 2 * math.pi))
        sig = 2.8 / 2.3548
        flux = snr * 25.0 * speed * math.sqrt(2 * math.pi) * sig
        mover = Mover(160 + rng.uniform(-20, 20), 120 + rng.uniform(-20, 20), speed * math.cos(ang),
                      speed * math.sin(ang), ref - 98_000_000, flux, 2.8)  # fmt: skip
        stars = [Star(float(rng.uniform(5, 315)), float(rng.uniform(5, 235)),
                      float(rng.uniform(2e4, 4e5)), 2.8) for _ in range(12)]  # fmt: skip
        image = sim.frame(0, movers=[mover], stars=stars).image
        truth = trail_truth(sim, 0, mover)
        if truth is None:
            continue
        mask = np.zeros(image.shape, dtype=bool)
        x0, y0, x1, y1 = block_rectangle(sim.height, 16)
        mask[y0 : y1 + 1, x0 : x1 + 1] = True
        t0 = time.perf_counter()
        found = detect_trails(image, mask=mask)
        t_detect.append(time.perf_counter() - t0)
        t_base.append(best_of(lambda im=image: _bare_labels(im), 1))
        if len(found) != 1:
            missed += 1
            continue
        tr = found[0]
        d0 = math.hypot(tr.ends[0][0] - truth[0].x, tr.ends[0][1] - truth[0].y)
        d1 = math.hypot(tr.ends[1][0] - truth[0].x, tr.ends[1][1] - truth[0].y)
        sel = (0, 1) if d0 < d1 else (1, 0)
        model = RowModel.from_us(offset0_us=sim.offset0_us, line_period_ns=sim.line_period_ns,
                                 readout=readout)  # type: ignore[arg-type]  # fmt: skip
        clock = FrameClock(model, FrameGeometry(height=sim.height, binning=binning), ref,
                           round(sim.exposure_us * 1e3), width=sim.width)  # fmt: skip
        t0 = time.perf_counter()  # the ends through the rolling shutter (as `streak --detect`)
        tr = refine_trail(image, tr, clock, sel[0], mask=mask)
        t_detect[-1] += time.perf_counter() - t0
        pts = time_streak(clock, tr.ends[sel[0]], tr.ends[sel[1]],
                          sigma_along_px=(tr.sigma_along_px[sel[0]], tr.sigma_along_px[sel[1]]),
                          flags=(tr.flags[sel[0]], tr.flags[sel[1]]))  # fmt: skip
        for p, te in zip((pts[0], pts[-1]), truth, strict=True):
            if not p.timing:
                flagged += 1
                continue
            dist.append(math.hypot(p.x - te.x, p.y - te.y))
            pulls.append((p.unix_ns - true_time_at(mover, p.x, p.y, te.unix_ns)) / p.sigma_ns)
            snrs.append(tr.snr)
    d, pl = np.array(dist), np.array(pulls)
    print(f"{n} simulated trails (SNR 10-40 per pixel): {len(pl)} timed ends, {flagged} flagged "
          f"(blended with a star), {missed} trail(s) not found")  # fmt: skip
    print(f"  ends within 0.5 px:        {(d <= 0.5).mean() * 100:.1f} %  (median {np.median(d):.3f} px, max {d.max():.3f} px)")
    print(f"  times within 2 sigma:      {(np.abs(pl) <= 2).mean() * 100:.1f} %")
    print(f"  pulls: mean {pl.mean():+.3f}, std {pl.std(ddof=1):.3f}, within 1 sigma {(np.abs(pl) <= 1).mean() * 100:.1f} %")
    lo_snr = np.array(snrs) < 20
    print(f"  pull std SNR<20: {pl[lo_snr].std(ddof=1):.3f} ({lo_snr.sum()}), SNR>=20: {pl[~lo_snr].std(ddof=1):.3f} ({(~lo_snr).sum()})")
    edges = np.arange(-4.0, 4.01, 0.5)
    hist, _ = np.histogram(np.clip(pl, -3.99, 3.99), edges)
    print("  pull distribution:")
    for a, c in zip(edges[:-1], hist, strict=True):
        print(f"    [{a:+.1f}, {a + 0.5:+.1f})  {c:3d}  {'#' * int(c)}")
    ratio = np.median(t_detect) / np.median(t_base)
    print(f"  detection {np.median(t_detect) * 1e3:.1f} ms per 320x240 frame, {ratio:.1f}x a bare "
          f"smooth + threshold + label ({np.median(t_base) * 1e3:.2f} ms)")  # fmt: skip


def _bare_labels(image: np.ndarray) -> int:
    from scipy import ndimage
    from skimage.measure import label

    sm = ndimage.gaussian_filter(image.astype(float) - np.median(image), 1.0)
    return int(label(sm > 5 * sm.std()).max())


def pass_study(n: int) -> None:
    tle = load_tle(TLE)
    obs = Observer(52.21503, -0.87262, 50.0)
    culm = 1777671368_000_000_000
    every: dict[float, list[float]] = {0.0: [], 5000.0: []}
    for k in range(n):
        sim = CameraSim(width=320, height=240, readout=("pairs", "2cms")[k % 2],
                        exposure_us=200_000.0, frame_interval_us=400_000.0,
                        t0_unix_ns=culm + (k - n // 2) * 15_000_000_000, read_noise_adu=20.0,
                        offset0_us=1990.0 + 7 * k, seed=50 + k)  # fmt: skip
        sp = simulate_pass(tle, obs, sim, 6, scale_arcsec=30.0, rotation_deg=15.0 * k,
                           flux_adu_per_s=3e5, n_stars=10, seed=k)  # fmt: skip
        with tempfile.TemporaryDirectory() as td:
            paths = sp.write_fits(td)
            line = []
            for extra in (0.0, 5000.0):
                model = RowModel.from_us(offset0_us=sp.sim.offset0_us + extra,
                                         line_period_ns=sp.sim.line_period_ns,
                                         readout=sp.sim.readout)  # fmt: skip
                offs = []
                for p in paths:
                    r = measure_streak(p, model=model, detect=True, tle=tle, height_m=obs.height_m)
                    if r.orbit is not None:
                        offs += [o.time_offset_s for o in r.orbit.points if o.kind in ("first", "last")]
                every[extra] += offs
                o = np.array(offs)
                sem = o.std(ddof=1) / math.sqrt(len(o))
                line.append(f"offset0 {'+5 ms' if extra else 'right'}: mean {o.mean() * 1e3:+.3f} ms "
                            f"+/- {sem * 1e3:.3f} ms ({o.mean() / sem:+.1f} sem, {len(o)} ends)")  # fmt: skip
        print(f"pass {k} ({sim.readout}, {(k - n // 2) * 15:+d} s from culmination): " + "; ".join(line))
    for extra, offs in every.items():
        o = np.array(offs)
        sem = o.std(ddof=1) / math.sqrt(len(o))
        print(f"all passes, offset0 {'+5 ms' if extra else 'right'}: mean {o.mean() * 1e3:+.3f} ms "
              f"+/- {sem * 1e3:.3f} ms ({o.mean() / sem:+.1f} sem), std {o.std(ddof=1) * 1e3:.3f} ms, {len(o)} ends")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trails", type=int, default=100)
    ap.add_argument("--passes", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    tracemalloc.start()
    t0 = time.perf_counter()
    trail_study(args.trails, args.seed)
    pass_study(args.passes)
    _, peak = tracemalloc.get_traced_memory()
    print(f"total {time.perf_counter() - t0:.0f} s, peak Python memory {peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()

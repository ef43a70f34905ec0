"""The simulator's moving objects: integrated over each row's own window (the sheared trail)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import erf

from qhytime.satellite.sim import trail_truth, true_time_at
from qhytime.simulate import CameraSim, Mover, TrackMover


def _row_windows_s(sim: CameraSim, ref_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """Row windows from the row model written out by hand (float s from the reference)."""
    y = sim.crop_y + sim.binning * np.arange(sim.height)[:, None] + np.arange(sim.binning)[None, :]
    units = 2 * (y // 2) if sim.readout == "pairs" else y
    end = (sim.offset0_us * 1e3 + units * sim.line_period_ns) * 1e-9
    return end - sim.exposure_us * 1e-6, end


@pytest.mark.parametrize("readout", ["pairs", "2cms"])
def test_a_row_records_the_object_only_inside_its_window(readout: str) -> None:
    """A horizontal mover on row 40: the row's profile along x is the analytic
    erf-smoothed segment from x(start(40)) to x(end(40)) times the Gaussian across."""
    sim = CameraSim(width=300, height=80, readout=readout, exposure_us=50_000.0, seed=1)
    _, _, ref = sim.block_for(0)
    v, flux, fwhm = 2000.0, 1e5, 2.5
    m = Mover(20.0, 40.0, v, 0.0, ref - 60_000_000, flux, fwhm)
    img = sim.frame(0, movers=[m], noise=False).image.astype(float) - sim.bias_adu
    start, end = _row_windows_s(sim, ref)
    sig = fwhm / 2.3548
    x_a = 20.0 + v * (start[40, 0] + 0.060)
    x_b = 20.0 + v * (end[40, 0] + 0.060)
    xs = np.arange(300.0)
    k = 1 / (math.sqrt(2) * sig)
    expect = flux / v * 0.5 * (erf((xs - x_a) * k) - erf((xs - x_b) * k)) / (math.sqrt(2 * math.pi) * sig)
    assert np.abs(img[40] - expect).max() <= 0.5 + 1e-6 * expect.max()  # integer rounding only
    # rows 39 and 41 see the same motion through their own (shifted) windows
    assert img[39].sum() == pytest.approx(img[41].sum(), rel=0.01)


def test_flux_is_conserved_and_track_mover_matches_mover() -> None:
    sim = CameraSim(width=200, height=120, readout="2cms", exposure_us=100_000.0, seed=2)
    _, _, ref = sim.block_for(0)
    m = Mover(60.0, 50.0, 300.0, 120.0, ref - 50_000_000, 2e5)
    a = sim.frame(0, movers=[m], noise=False).image.astype(float) - sim.bias_adu
    a[0] = 0  # the GPS block
    # the same motion as a sampled track (exactly linear, so the images must agree)
    ts = (ref - 300_000_000, ref - 100_000_000, ref + 200_000_000)
    xy = [m.position(t) for t in ts]
    tm = TrackMover(ts, tuple(float(p[0]) for p in xy), tuple(float(p[1]) for p in xy), 2e5)
    b = sim.frame(0, movers=[tm], noise=False).image.astype(float) - sim.bias_adu
    b[0] = 0
    assert np.abs(a - b).max() <= 1.0
    # total: flux x the span of the trail's times (exposure + readout between its rows)
    ends = trail_truth(sim, 0, m)
    assert ends is not None
    span_s = (ends[1].unix_ns - ends[0].unix_ns) * 1e-9
    assert a.sum() == pytest.approx(2e5 * span_s, rel=0.01)


@pytest.mark.parametrize("readout,binning,vy", [("pairs", 1, 150.0), ("2cms", 1, -150.0),
                                                ("pairs", 2, 80.0), ("2cms", 2, -80.0)])
def test_trail_truth_ends_are_window_boundaries(readout: str, binning: int, vy: float) -> None:
    sim = CameraSim(width=256, height=120, readout=readout, binning=binning, crop_y=37,
                    exposure_us=150_000.0)  # fmt: skip
    _, _, ref = sim.block_for(0)
    m = Mover(100.0, 60.0, 200.0, vy, ref - 70_000_000, 1e5)
    a, b = trail_truth(sim, 0, m)
    start, end = _row_windows_s(sim, ref)
    assert a.row == math.floor(a.y + 0.5) and b.row == math.floor(b.y + 0.5)
    assert abs(a.unix_ns - (ref + start[a.row].min() * 1e9)) < 1.0
    assert abs(b.unix_ns - (ref + end[b.row].max() * 1e9)) < 1.0
    # the object is where it should be at those instants
    xa, ya = m.position(round(a.unix_ns))
    assert (xa, ya) == pytest.approx((a.x, a.y), abs=1e-6)
    # and the inverse: its time at a point on the track
    assert true_time_at(m, a.x, a.y, a.unix_ns) == pytest.approx(a.unix_ns, abs=2.0)


def test_trail_cut_by_the_edge_has_no_true_ends() -> None:
    sim = CameraSim(width=100, height=60, exposure_us=200_000.0)
    _, _, ref = sim.block_for(0)
    m = Mover(-5.0, 30.0, 200.0, 0.0, ref - 190_000_000, 1e5)  # enters through the left edge
    assert trail_truth(sim, 0, m) is None


def test_track_mover_rejects_bad_tracks() -> None:
    with pytest.raises(ValueError, match="increasing"):
        TrackMover((2, 1), (0.0, 1.0), (0.0, 1.0), 1.0)

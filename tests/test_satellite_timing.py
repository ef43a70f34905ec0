"""Streak times (../shared/spec/streak-timing.md) against the spec written out by hand, the
simulator's truth and the shared reference frames: exact to 1 ns."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given
from hypothesis import strategies as st

from qhytime.errors import RowModelError
from qhytime.rowmodel import FrameGeometry, RowModel
from qhytime.satellite.sim import trail_truth
from qhytime.satellite.streak import measure_streak
from qhytime.satellite.timing import (
    FrameClock,
    block_rectangle,
    interior_time_ns,
    order_ends,
    time_point,
    time_streak,
)
from qhytime.simulate import CameraSim, Mover

from conftest import need

SAT_DATA = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "satellite"


def _half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def spec_window(offset0_us: str, lp_ns: str, readout: str, crop_y: int, binning: int,
                ref_ns: int, exposure_ns: int, row: int) -> tuple[int, int, int]:  # fmt: skip
    """start, end, mid of image row ``row`` from row-timing.md, in exact fractions: a binned
    row's earliest start, latest end and mean middle."""
    ends = []
    for j in range(binning):
        y = crop_y + binning * row + j
        step = 2 * (y // 2) if readout == "pairs" else y
        ends.append(Fraction(offset0_us) * 1000 + step * Fraction(lp_ns))
    start = min(ends) - exposure_ns
    mid = sum(e - Fraction(exposure_ns, 2) for e in ends) / binning
    return ref_ns + _half_up(start), ref_ns + _half_up(max(ends)), ref_ns + _half_up(mid)


CASES = [  # readout, vy (+ with the readout, - against), binning, crop
    ("pairs", 140.0, 1, 0), ("pairs", -140.0, 1, 137), ("pairs", 90.0, 2, 37), ("pairs", -90.0, 2, 0),
    ("2cms", 140.0, 1, 1000), ("2cms", -140.0, 1, 0), ("2cms", 90.0, 2, 0), ("2cms", -90.0, 2, 301),
]  # fmt: skip


@pytest.mark.parametrize("readout,vy,binning,crop", CASES)
def test_true_ends_give_the_spec_times(tmp_path: Path, readout: str, vy: float, binning: int,
                                       crop: int) -> None:  # fmt: skip
    offset0, lp = "1987.654", "43194.371"
    sim = CameraSim(width=240, height=160, readout=readout, binning=binning, crop_y=crop,
                    offset0_us=float(offset0), line_period_ns=float(lp), exposure_us=120_000.0,
                    seed=3)  # fmt: skip
    _, _, ref = sim.block_for(0)
    mover = Mover(120.0, 80.0, 260.0, vy, ref - 60_000_000, 3e5)
    (path,) = sim.write_fits(tmp_path, 1, movers=[mover])
    a, b = trail_truth(sim, 0, mover)
    model = RowModel.from_us(offset0_us=float(offset0), line_period_ns=float(lp), readout=readout)  # type: ignore[arg-type]
    n = 3
    res = measure_streak(path, model=model, ends=(a.x, a.y, b.x, b.y), first=1, n_interior=n)
    pts = res.points
    assert [p.kind for p in pts] == ["first"] + ["interior"] * n + ["last"]
    exp_ns = round(sim.exposure_us * 1e3)
    t_a = spec_window(offset0, lp, readout, crop, binning, ref, exp_ns, a.row)[0]
    t_b = spec_window(offset0, lp, readout, crop, binning, ref, exp_ns, b.row)[1]
    assert (pts[0].unix_ns, pts[-1].unix_ns) == (t_a, t_b)  # the spec, exactly
    assert abs(pts[0].unix_ns - a.unix_ns) <= 1 and abs(pts[-1].unix_ns - b.unix_ns) <= 1  # the simulator
    for k, p in enumerate(pts[1:-1], start=1):
        assert p.unix_ns == t_a + _half_up(Fraction(k * (t_b - t_a), n + 1))
        assert p.fraction == pytest.approx(k / (n + 1))
        assert (p.x, p.y) == pytest.approx((a.x + k / (n + 1) * (b.x - a.x), a.y + k / (n + 1) * (b.y - a.y)))
    assert all(p.timing and p.sigma_ns and p.sigma_ns > 0 for p in pts)
    # the same ends given the other way round, with --first 2
    res2 = measure_streak(path, model=model, ends=(b.x, b.y, a.x, a.y), first=2, n_interior=n)
    assert [p.unix_ns for p in res2.points] == [p.unix_ns for p in pts]


def _ref_frames() -> list[dict[str, Any]]:
    need((SAT_DATA / "truth.json").is_file(), f"the shared satellite reference set ({SAT_DATA})")
    return [f for f in json.loads((SAT_DATA / "truth.json").read_text())["frames"] if f["kind"] == "ends"]


def _sep_arcsec(ra1: float, de1: float, ra2: float, de2: float) -> float:
    dra = (ra1 - ra2 + 180) % 360 - 180
    return 3600 * math.hypot(dra * math.cos(math.radians(de2)), de1 - de2)


def test_shared_reference_ends_to_the_ns() -> None:
    """Every `end_*` frame of ../shared/testdata/satellite: both orders, interior points."""
    checked = 0
    for fr in _ref_frames():
        md = fr["model"]
        model = RowModel.from_us(offset0_us=md["offset0_us"], line_period_ns=md["line_period_ns"],
                                 readout=md["readout"], reference=md["reference"])  # fmt: skip
        a, b = fr["trails"][0]["ends"]
        for first, coords in ((1, (a, b)), (2, (b, a))):
            res = measure_streak(SAT_DATA / fr["file"], model=model, first=first, n_interior=3,
                                 ends=[v for e in coords for v in (e["x"], e["y"])],
                                 exposure_ns=round(md["exposure_s"] * 1e9))  # fmt: skip
            got = {p.kind: p for p in res.points if p.kind in ("first", "last")}
            for e in (a, b):
                p = got["first" if e["first"] else "last"]
                assert (p.x, p.y) == (e["x"], e["y"])
                if e["edge"]:
                    assert not p.timing and "edge" in p.flags and p.unix_ns is None
                    continue
                assert p.unix_ns == e["unix_ns"] and p.utc == e["utc"], fr["file"]
                checked += 1
                if fr["wcs"]:
                    assert _sep_arcsec(p.ra_deg, p.dec_deg, e["ra_deg"], e["dec_deg"]) < 0.01
                else:
                    assert p.ra_deg is None and any("WCS" in n for n in res.notes)
            if not (a["edge"] or b["edge"]):
                inner = [p for p in res.points if p.kind == "interior"]
                for p, t in zip(inner, fr["trails"][0]["interior"], strict=True):
                    assert p.fraction == t["f"] and p.unix_ns == t["unix_ns"]
                    if fr["wcs"]:
                        assert _sep_arcsec(p.ra_deg, p.dec_deg, t["ra_deg"], t["dec_deg"]) < 0.01
            else:
                assert all("untimed_end" in p.flags for p in res.points if p.kind == "interior")
    assert checked == 2 * sum(1 for f in _ref_frames() for e in f["trails"][0]["ends"] if not e["edge"])


@given(t_a=st.integers(-(10**18), 10**18), span=st.integers(1, 10**12), n=st.integers(1, 50),
       data=st.data())  # fmt: skip
def test_interior_times_are_exact_fractions(t_a: int, span: int, n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(1, n))
    assert interior_time_ns(t_a, t_a + span, k, n) == t_a + _half_up(Fraction(k * span, n + 1))


def _clock(readout: str = "2cms", height: int = 100, width: int = 120, binning: int = 1) -> FrameClock:
    m = RowModel.from_us(offset0_us=1000, line_period_ns=10_000, readout=readout)  # type: ignore[arg-type]
    return FrameClock(m, FrameGeometry(height=height, binning=binning), 0, 5_000_000, width=width,
                      masked=(block_rectangle(height, 16),))  # fmt: skip


def test_sigma_combines_row_model_and_position_over_speed() -> None:
    clock = _clock()
    pts = time_streak(clock, (20.0, 10.0), (60.0, 30.0), sigma_along_px=(0.3, 0.6), n_interior=1)
    speed_px_ns = math.hypot(40, 20) / 5_200_000  # 5.2 ms between the two window edges
    for p, s_px in zip(pts, (0.3, math.hypot(0.15, 0.3), 0.6), strict=True):
        assert p.sigma_ns == pytest.approx(math.hypot(clock.sigma_ns(p.row), s_px / speed_px_ns))


def test_edge_and_block_ends_are_not_timing_points() -> None:
    clock = _clock()
    pts = time_streak(clock, (20.0, 10.0), (119.0, 30.0), n_interior=2)  # last end 0.5 px from the edge
    assert pts[0].timing and pts[0].unix_ns is not None
    assert not pts[-1].timing and "edge" in pts[-1].flags and pts[-1].unix_ns is None
    assert all(not p.timing and "untimed_end" in p.flags for p in pts[1:-1])
    pts = time_streak(clock, (10.0, 1.2), (40.0, 20.0))  # first end touches the GPS block (row 0)
    assert "masked" in pts[0].flags and not pts[0].timing and pts[-1].timing
    assert time_streak(clock, (2.0, 50.0), (40.0, 60.0))[0].timing  # 2.5 px from the edge


def test_point_source_at_its_row_middle() -> None:
    clock = _clock(readout="pairs", binning=2, height=50)
    p = time_point(clock, (60.0, 20.4))
    # binned row 20 = sensor rows 40, 41 (one pair): end 1 ms + 40 LP, middle half an exposure before
    assert p.kind == "point" and p.row == 20 and p.unix_ns == 1_000_000 + 400_000 - 2_500_000
    assert not time_point(clock, (60.0, 49.2)).timing


def test_bad_ends_are_refused_with_reasons() -> None:
    clock = _clock()
    with pytest.raises(RowModelError, match="outside the frame's rows"):
        time_streak(clock, (20.0, 10.0), (60.0, 130.0))
    with pytest.raises(RowModelError, match="same point"):
        time_streak(clock, (20.0, 10.0), (20.0, 10.0))
    with pytest.raises(RowModelError, match="not finite"):
        time_streak(clock, (float("nan"), 10.0), (20.0, 10.0))
    # a trail whose last end's row closes before its first end's row opens: wrong order
    short = FrameClock(clock.model, clock.geometry, 0, 100_000, width=120)
    with pytest.raises(RowModelError, match="which end came first"):
        time_streak(short, (20.0, 90.0), (60.0, 10.0))


def test_order_from_the_next_frame() -> None:
    ends = ((10.0, 10.0), (40.0, 20.0))
    assert order_ends(ends, [((55.0, 25.0), (85.0, 35.0))]) == 0
    assert order_ends(ends, [((-35.0, -5.0), (-5.0, 5.0))]) == 1
    assert order_ends(ends, [((10.0, 50.0), (10.0, 90.0))]) is None  # not the same object
    assert order_ends(ends, []) is None


def test_frame_clock_from_a_file_masks_the_block(tmp_path: Path) -> None:
    sim = CameraSim(width=64, height=40, bit_depth=8)
    (path,) = sim.write_fits(tmp_path, 1)
    model = RowModel.from_us(offset0_us=1974.286, line_period_ns=43194)
    res = measure_streak(path, model=model, point_sources=[(30.0, 0.4), (30.0, 20.0)])
    assert res.clock.masked == ((0, 0, 43, 0),)
    assert [p.timing for p in res.points] == [False, True]
    assert fits.getheader(path)["XBINNING"] == 1 and np.isfinite(res.points[1].sigma_ns)

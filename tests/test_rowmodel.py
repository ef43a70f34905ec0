"""Row model against hand-computed times (plain Python ints, written from the spec)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from qhytime.errors import RowModelError
from qhytime.framerows import frame_row_times
from qhytime.rowmodel import FrameGeometry, RowModel, pixel_times, polyline_times, row_times

OFF0_NS, LP_NS = 1_974_286, 43_194  # SDK figures, whole ns: hand values are exact integers


def hand_end(t_ref: int, y: int, readout: str, off0: int = OFF0_NS, lp: int = LP_NS) -> int:
    """end(y) = T_ref + offset0 + step(y), straight from row-timing.md."""
    step = 2 * lp * (y // 2) if readout == "pairs" else lp * y
    return t_ref + off0 + step


@pytest.mark.parametrize("readout", ["pairs", "2cms"])
@pytest.mark.parametrize("reference", ["start", "end", "now"])
@pytest.mark.parametrize(
    ("crop", "binning"), [(0, 1), (36, 1), (37, 1), (0, 2), (37, 2), (36, 3), (1, 3)]
)
def test_reference_frames_match_hand_model(
    truth: dict[str, Any], data_dir: Path, readout: str, reference: str, crop: int, binning: int
) -> None:
    t = next(f for f in truth["frames"] if f["file"] == "fits16_002.fits")
    exp = 250_000_000
    model = RowModel.from_us(
        offset0_us=OFF0_NS / 1000, line_period_ns=LP_NS, readout=readout, reference=reference
    )
    frt = frame_row_times(
        data_dir / t["file"], model=model, exposure_ns=exp, crop_y=crop, binning=binning
    )
    ref = t[reference]["unix_ns"]  # independent truth for the stamp
    for r in range(t["height"]):
        ys = [crop + binning * r + k for k in range(binning)]
        ends = [hand_end(ref, y, readout) for y in ys]
        assert frt.times.end_ns[0, r] == max(ends)  # tolerance 0 ns
        assert frt.times.start_ns[0, r] == min(ends) - exp
        # mean of the rows' middles; these inputs make it a whole or half ns
        mid = Fraction(sum(e - Fraction(exp, 2) for e in ends), binning)
        assert abs(frt.times.mid_ns[0, r] - mid) <= Fraction(1, 2)


def test_exposure_crossing_a_second(truth: dict[str, Any], data_dir: Path) -> None:
    # edge_second.fits: end stamp 0.0000017 s after a whole second
    t = next(f for f in truth["frames"] if f["file"] == "edge_second.fits")
    model = RowModel.from_us(offset0_us=OFF0_NS / 1000, line_period_ns=LP_NS, readout="pairs")
    exp = 700_000_123
    frt = frame_row_times(data_dir / "edge_second.fits", model=model, exposure_ns=exp)
    end0 = t["end"]["unix_ns"] + OFF0_NS
    assert frt.times.end_ns[0, 0] == end0
    assert frt.times.start_ns[0, 0] == end0 - exp
    assert frt.times.mid_ns[0, 0] == end0 - 350_000_061  # 350000061.5 rounds half up -> -61
    rec = frt.times.records(0)[0]
    # by hand: end = 21.000001700 + 0.001974286 = 21.001975986 s; start = end - 0.700000123
    assert rec["end"] == "2025-11-16T08:53:21.001975986"
    assert rec["start"] == "2025-11-16T08:53:20.301975863"


def test_flipped_frame_rows_reverse() -> None:
    m = RowModel.from_us(offset0_us=100.0, line_period_ns=1000, readout="2cms")
    g = FrameGeometry(height=5, flipped=True)
    t = row_times(m, g, 0, 10_000)
    # stored row 0 is the last read out (sensor row 4)
    assert t.end_ns[0].tolist() == [104_000, 103_000, 102_000, 101_000, 100_000]


def test_many_frames_vectorised() -> None:
    m = RowModel.from_us(offset0_us=1.0, line_period_ns=10, readout="pairs")
    refs = np.array([0, 10**9, 2 * 10**9], dtype=np.int64)
    t = row_times(m, FrameGeometry(height=4), refs, 1000)
    assert t.end_ns.shape == (3, 4)
    assert t.end_ns[:, 2].tolist() == [1020, 10**9 + 1020, 2 * 10**9 + 1020]


def test_sigma_per_row() -> None:
    m = RowModel.from_us(offset0_us=0, line_period_ns=1000, readout="2cms", offset0_sigma_us=0.1,
                         line_period_sigma_ns=0.01)  # fmt: skip
    t = row_times(m, FrameGeometry(height=1001), 0, 1000)
    tick = 100 / np.sqrt(12)
    assert t.sigma_ns[0] == pytest.approx(np.hypot(tick, 100.0))
    assert t.sigma_ns[1000] == pytest.approx(np.sqrt(tick**2 + 100.0**2 + 10.0**2))


def test_global_reset_rows_share_start() -> None:
    m = RowModel.from_us(offset0_us=10, line_period_ns=1000, readout="2cms", global_reset=True)
    t = row_times(m, FrameGeometry(height=3, crop_y=2), 0, 5000)
    assert t.start_ns[0].tolist() == [12_000 - 5000] * 3
    assert t.end_ns[0].tolist() == [12_000, 13_000, 14_000]
    assert t.exposure_ns[0].tolist() == [5000, 6000, 7000]


def test_pixels_and_polyline() -> None:
    m = RowModel.from_us(offset0_us=0, line_period_ns=1000, readout="pairs")
    g = FrameGeometry(height=10)
    t = pixel_times(m, g, 0, 100, [(1, 2.6), (3, 0)])
    assert t.rows.tolist() == [3, 0] and t.end_ns[0].tolist() == [2000, 0]
    pts, tt = polyline_times(m, g, 0, 100, [(0, 5), (10, 5), (10, 2)])
    assert pts.tolist() == [[0, 5], [10, 5], [10, 4], [10, 3], [10, 2]]
    assert tt.end_ns[0].tolist() == [4000, 4000, 4000, 2000, 2000]


def test_bad_inputs() -> None:
    m = RowModel.from_us(offset0_us=0, line_period_ns=1000)
    with pytest.raises(RowModelError, match="outside"):
        row_times(m, FrameGeometry(height=4), 0, 10, [4])
    with pytest.raises(RowModelError, match="exposure"):
        row_times(m, FrameGeometry(height=4), 0, 0)
    with pytest.raises(RowModelError):
        RowModel.from_us(offset0_us=0, line_period_ns=1000, readout="quad")  # type: ignore[arg-type]


@example(  # pinned: the mean of binned rows' middles was rounded twice (ps, then ns)
    off0_ps=-858639, lp_ps=249999, exp_ns=1, crop=320, binning=4, readout="2cms", ref=0, row=10
)
@given(
    off0_ps=st.integers(-(10**12), 10**12),
    lp_ps=st.integers(1, 10**8),
    exp_ns=st.integers(1, 10**11),
    crop=st.integers(0, 7000),
    binning=st.integers(1, 4),
    readout=st.sampled_from(["pairs", "2cms"]),
    ref=st.integers(0, 2**62),
    row=st.integers(0, 50),
)
def test_model_equals_exact_rational_reference(
    off0_ps: int, lp_ps: int, exp_ns: int, crop: int, binning: int, readout: str, ref: int, row: int
) -> None:
    m = RowModel(offset0_ps=off0_ps, line_period_ps=lp_ps, readout=readout)  # type: ignore[arg-type]
    t = row_times(m, FrameGeometry(height=51, crop_y=crop, binning=binning), ref, exp_ns, [row])
    ys = [crop + binning * row + k for k in range(binning)]
    ends = [
        Fraction(off0_ps + (2 * (y // 2) if readout == "pairs" else y) * lp_ps, 1000) for y in ys
    ]
    # each output is the exact rational rounded to the nearest ns (1 ns tolerance, halves up)
    assert abs(t.end_ns[0, 0] - (ref + max(ends))) <= Fraction(1, 2)
    assert abs(t.start_ns[0, 0] - (ref + min(ends) - exp_ns)) <= Fraction(1, 2)
    mid = ref + sum(ends) / binning - Fraction(exp_ns, 2)
    assert abs(t.mid_ns[0, 0] - mid) <= Fraction(1, 2)


def test_flipped_fits_file_matches_hand_model(
    tmp_path: Path, truth: dict[str, Any], data_dir: Path
) -> None:
    from astropy.io import fits

    t = next(f for f in truth["frames"] if f["file"] == "fits16_004.fits")
    with fits.open(data_dir / "fits16_004.fits") as hdul:
        img = hdul[0].data[::-1].copy()  # stored top-down: the block is in the last row
    hdu = fits.PrimaryHDU(img)
    hdu.header["ROWORDER"] = "TOP-DOWN"
    hdu.writeto(tmp_path / "td.fits")
    model = RowModel.from_us(
        offset0_us=OFF0_NS / 1000, line_period_ns=LP_NS, readout="2cms", reference="end"
    )
    frt = frame_row_times(tmp_path / "td.fits", model=model, exposure_ns=1_000_000, crop_y=5)
    h = t["height"]
    for r in range(h):
        y = 5 + (h - 1 - r)  # stored row r was read out as row h-1-r
        assert frt.times.end_ns[0, r] == hand_end(t["end"]["unix_ns"], y, "2cms")


@pytest.mark.parametrize("readout", ["pairs", "2cms"])
@pytest.mark.parametrize("flipped", [False, True])
def test_many_pixels_match_hand_model(readout: str, flipped: bool) -> None:
    """100,000 pixels (the gather from the frame's row table) against the spec by hand."""
    h, crop, ref, exp = 6388, 0 if flipped else 37, 1_754_099_091_000_000_000, 250_000_000
    m = RowModel.from_us(offset0_us=OFF0_NS / 1000, line_period_ns=LP_NS, readout=readout)
    rng = np.random.default_rng(5)
    ys = rng.uniform(-0.5, h - 0.5, 100_000)
    pix = np.column_stack([rng.uniform(0, 9575, ys.size), ys])
    t = pixel_times(m, FrameGeometry(height=h, crop_y=crop, flipped=flipped), ref, exp, pix)
    rows = [int(np.floor(y + 0.5)) for y in ys]
    assert t.rows.tolist() == rows
    for k in range(0, ys.size, 997):
        r = rows[k]
        end = hand_end(ref, crop + ((h - 1 - r) if flipped else r), readout)
        assert (t.start_ns[0, k], t.mid_ns[0, k], t.end_ns[0, k]) == (end - exp, end - exp // 2, end)


@given(
    off0_ps=st.integers(-(10**12), 10**12),
    lp_ps=st.integers(1, 10**8),
    exp=st.one_of(st.integers(1, 10**11), st.floats(0.5, 1e11)),
    crop=st.integers(0, 7000),
    binning=st.integers(1, 4),
    readout=st.sampled_from(["pairs", "2cms"]),
    flipped=st.booleans(),
    global_reset=st.booleans(),
    ref=st.integers(0, 2**62),
    seed=st.integers(0, 2**32 - 1),
)
def test_pixel_gather_equals_the_row_model(
    off0_ps: int, lp_ps: int, exp: float, crop: int, binning: int, readout: str, flipped: bool,
    global_reset: bool, ref: int, seed: int,
) -> None:  # fmt: skip
    """The gather from the cached row table gives the row model's integers and sigmas."""
    m = RowModel(offset0_ps=off0_ps, line_period_ps=lp_ps, readout=readout,  # type: ignore[arg-type]
                 offset0_sigma_ps=3e5, line_period_sigma_ps=17.0, global_reset=global_reset)  # fmt: skip
    g = FrameGeometry(height=40, crop_y=crop, binning=binning, flipped=flipped)
    pix = np.random.default_rng(seed).uniform(-0.5, 39.49, (25, 2))  # > height / 4: the gather
    t = pixel_times(m, g, ref, exp, pix)  # type: ignore[arg-type]
    rows = np.floor(pix[:, 1] + 0.5).astype(np.int64)
    want = row_times(m, g, ref, exp, rows)  # type: ignore[arg-type]
    assert np.array_equal(t.rows, rows)
    for name in ("start_ns", "mid_ns", "end_ns", "sigma_ns"):
        got, exp_arr = getattr(t, name), getattr(want, name)
        assert got.shape == exp_arr.shape and got.dtype == exp_arr.dtype, name
        assert np.array_equal(got, exp_arr), name


def test_pixel_table_cache_is_never_handed_out() -> None:
    m = RowModel.from_us(offset0_us=10, line_period_ns=1000, readout="2cms")
    g = FrameGeometry(height=8)
    pix = [(0.0, float(y)) for y in range(8)]
    a = pixel_times(m, g, 0, 5000, pix)
    a.end_ns[...] = -1  # the caller's arrays are its own
    a.sigma_ns[...] = 0.0
    b = pixel_times(m, g, 0, 5000, pix)
    assert b.end_ns[0].tolist() == [10_000 + 1000 * y for y in range(8)]
    assert b.sigma_ns.min() > 0
    c = pixel_times(m, g, 1_000_000, 5000, pix)  # another frame of the same setting
    assert c.end_ns[0].tolist() == [1_010_000 + 1000 * y for y in range(8)]
    with pytest.raises(RowModelError, match="exposure"):
        pixel_times(m, g, 0, 0, pix)
    with pytest.raises(RowModelError, match="outside"):
        pixel_times(m, g, 0, 5000, [*pix, (0.0, 7.6)])
    with pytest.raises(RowModelError, match="row -1 outside"):
        pixel_times(m, g, 0, 5000, [*pix, (0.0, -0.6)])
    edges = pixel_times(m, g, 0, 5000, [*pix, (0.0, -0.5), (0.0, 7.49), (0.0, 2.5)])
    assert edges.rows[-3:].tolist() == [0, 7, 3]  # halves round up


def test_row_times_of_every_row_cached_or_not_give_the_same_integers():
    """Every row's offsets are cached by setting and exposure; an exposure that cannot be a
    cache key (a 0-d array) is computed, and both equal the rows asked for one by one."""
    m = RowModel.from_us(offset0_us=1974.286, line_period_ns=43194.527, readout="pairs")
    g = FrameGeometry(height=50, crop_y=3, binning=2)
    ref = np.array([1_754_099_091_000_000_000, 1_754_099_091_400_000_000])
    for exposure in (250_000_000, np.int64(250_000_000), np.array(250_000_000)):
        every = row_times(m, g, ref, exposure)
        rows = row_times(m, g, ref, exposure, rows=np.arange(50))
        for name in ("start_ns", "mid_ns", "end_ns", "sigma_ns"):
            np.testing.assert_array_equal(getattr(every, name), getattr(rows, name))
        every.end_ns[0, 0] += 1  # the caller's own arrays: the cache is untouched
    again = row_times(m, g, ref, 250_000_000)
    np.testing.assert_array_equal(again.end_ns, row_times(m, g, ref, 250_000_000, rows=np.arange(50)).end_ns)

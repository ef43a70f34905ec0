"""The pieces of occultation timing against independent truth: the square-well fit (exact
model values, pulls over many noise draws, hypothesis), timeInfo rounding (exact decimals),
photometry (photutils' own aperture_photometry / ApertureStats on the whole image), centroids,
cut-outs at the frame edges and over the GPS block."""

from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from qhytime.errors import OccultationError
from qhytime.occultation import Aperture, PhotometryOptions, fit_square_well, time_info
from qhytime.occultation.events import _coarse
from qhytime.occultation.photometry import (
    Tracker,
    annulus_mask,
    aperture_weights,
    cutout,
    find_centroid,
    measure_chunk,
)
from qhytime.occultation.pymovie import utc_date

T0 = 1_770_779_872_000_000_000


# -- timeInfo -----------------------------------------------------------------------------------


def reference_time_info(unix_ns: int) -> tuple[str, str]:
    """[HH:MM:SS.fffffff] and the date, by exact decimal rounding (independent of qhytime)."""
    secs = (Decimal(unix_ns) / Decimal(10**9)).quantize(Decimal("1e-7"), rounding=ROUND_HALF_UP)
    whole = int(secs.to_integral_value(rounding="ROUND_FLOOR"))
    frac = int((secs - whole) * 10**7)
    t = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=whole)
    return f"[{t:%H:%M:%S}.{frac:07d}]", t.date().isoformat()


@given(st.integers(min_value=0, max_value=4_102_444_800 * 10**9))
@example(1_770_779_872_255_319_850)  # a half: rounds up
@example(1_770_779_872_255_319_849)
@example(86_400 * 10**9 - 50)  # rounds into the next day
@example(86_400 * 10**9 - 51)
@example(1_770_767_999_999_999_999)
def test_time_info_rounds_exact_ns(ns: int) -> None:
    text, day = reference_time_info(ns)
    assert time_info(ns) == text
    assert utc_date(ns) == day


# -- the square-well fit ------------------------------------------------------------------------


def windows(n: int, exposure_ns: int, interval_ns: int, t0: int = T0) -> tuple[np.ndarray, np.ndarray]:
    s = t0 + np.arange(n, dtype=np.int64) * interval_ns
    return s, s + exposure_ns


def model_values(s: np.ndarray, e: np.ndarray, d: int, r: int, base: float, level: float) -> np.ndarray:
    """Exact expected values, by hand: the hidden part of each window, in integers."""
    hidden = np.clip(np.minimum(e, r) - np.maximum(s, d), 0, None)
    frac = hidden / (e - s)
    return base * (1 - frac) + level * frac


def test_hand_worked_square_well() -> None:
    s, e = windows(10, 10_000_000, 20_000_000, t0=0)
    w = fit_square_well(s, e, [1000, 1000, 500, 0, 0, 700, 1000, 1000, 1000, 1000])
    assert (w.D.unix_ns, w.R.unix_ns) == (45_000_000, 103_000_000)
    assert (w.D.sample, w.R.sample) == (2, 5)
    assert w.duration_ns == 58_000_000 and w.event_samples == 3
    assert w.model(s, e).round(6).tolist() == [1000, 1000, 500, 0, 0, 700, 1000, 1000, 1000, 1000]


@settings(max_examples=60, deadline=None)
@given(
    exposure_ms=st.floats(10, 100),
    dead=st.floats(0.0, 0.7),
    d_pos=st.floats(0.02, 0.98),
    length=st.integers(2, 12),
    r_pos=st.floats(0.02, 0.98),
    level=st.floats(-50, 3000),
)
def test_noise_free_events_are_recovered(
    exposure_ms: float, dead: float, d_pos: float, length: int, r_pos: float, level: float
) -> None:
    """Edges anywhere (inside windows or in the dead time): the truth is within the sigma."""
    exp = round(exposure_ms * 1e6)
    interval = round(exp * (1 + dead))
    s, e = windows(40, exp, interval)
    d = int(s[10] + d_pos * interval)  # position along the frame cycle: window, then dead time
    r = int(s[10 + length] + r_pos * interval)
    v = model_values(s, e, d, r, 35_000.0, level)
    w = fit_square_well(s, e, v, row_sigma_ns=28.9)
    for got, true in ((w.D, d), (w.R, r)):
        assert abs(got.unix_ns - true) <= max(math.sqrt(3) * got.sigma_ns, 3), (got, true)
        in_window = bool(((s < true) & (e > true)).any())
        if in_window:  # a partial frame pins it
            assert got.fit_sigma_ns < 2 and got.sample >= 0
        else:  # the dead time: uniform over the gap
            assert got.sample == -1
    assert abs(w.baseline - 35_000) < 0.05 and abs(w.level - level) < 0.05  # edges to ~1 ns


def test_pulls_over_noise_draws() -> None:
    """120 noisy light curves (pairs-like: 35 ms every 36.7 ms; 2CMS-like: 82 ms every 140 ms):
    the reported sigma describes the scatter of D and R."""
    rng = np.random.default_rng(2025)
    pulls = []
    for k in range(120):
        exp, interval = ((35_400_000, 36_734_000), (82_200_000, 139_551_000))[k % 2]
        s, e = windows(60, exp, interval)
        d = int(s[20] + rng.uniform(0.0, 1.0) * interval)
        r = int(s[20 + rng.integers(3, 15)] + rng.uniform(0.0, 1.0) * interval)
        base, level = 35_000.0, rng.uniform(0, 2000)
        truth = model_values(s, e, d, r, base, level)
        v = truth + rng.normal(0, np.sqrt(truth + 150.0**2))  # photon + background noise
        w = fit_square_well(s, e, v)
        pulls += [(w.D.unix_ns - d) / w.D.sigma_ns, (w.R.unix_ns - r) / w.R.sigma_ns]
    p = np.array(pulls)
    assert np.abs(p).max() < 4.5
    assert np.mean(np.abs(p) > 3) < 0.015
    assert 0.75 < p.std() < 1.25
    assert abs(p.mean()) < 0.15


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(-100, 100), min_size=3, max_size=14))
def test_coarse_square_well_is_the_least_squares_one(v: list[float]) -> None:
    arr = np.array(v)
    n = len(arr)
    best = math.inf
    for a in range(1, n - 1):
        for b in range(a, n - 1):
            inside = np.zeros(n, bool)
            inside[a : b + 1] = True
            gap = arr[~inside].mean() - arr[inside].mean()
            assume(abs(gap) > 1e-9)  # a tie of the means is decided by rounding
            if gap > 0:
                ssr = ((arr[inside] - arr[inside].mean()) ** 2).sum() + (
                    (arr[~inside] - arr[~inside].mean()) ** 2).sum()  # fmt: skip
                best = min(best, ssr)
    if best == math.inf:
        with pytest.raises(OccultationError):
            _coarse(arr)
    else:
        assert _coarse(arr)[2] == pytest.approx(best, abs=1e-6 * (1 + abs(best)))


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ([1.0] * 4, "at least 5"),
        ([1.0, 1.0, 1.01, 1.0, 0.99, 1.0, 1.0, 1.01, 0.99, 1.0], "no significant event"),
        ([1.0, np.nan, 0, 0, 1, 1], "non-finite"),
    ],
)
def test_fit_refuses(values: list[float], words: str) -> None:
    s, e = windows(len(values), 10, 20)
    with pytest.raises(OccultationError, match=words):
        fit_square_well(s, e, values)


def test_fit_refuses_unordered_windows() -> None:
    s, e = windows(8, 10, 20)
    with pytest.raises(OccultationError, match="time order"):
        fit_square_well(s[::-1], e[::-1], [1, 1, 0, 0, 0, 1, 1, 1])
    with pytest.raises(OccultationError, match="same length"):
        fit_square_well(s, e, [1, 1])


# -- photometry ---------------------------------------------------------------------------------


def star_image(x: float, y: float, flux: float = 50_000.0, shape: tuple[int, int] = (80, 90),
               sky: float = 500.0, seed: int = 0) -> np.ndarray:  # fmt: skip
    rng = np.random.default_rng(seed)
    yy, xx = np.indices(shape)
    sig = 1.3
    img = sky + flux * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sig**2)) / (2 * np.pi * sig**2)
    return rng.normal(img, np.sqrt(img))


@pytest.mark.parametrize(("x", "y"), [(40.0, 30.0), (41.37, 29.62), (45.5, 33.5)])
def test_measure_chunk_matches_photutils_on_the_whole_image(x: float, y: float) -> None:
    from astropy.stats import SigmaClip
    from photutils.aperture import (
        ApertureStats,
        CircularAnnulus,
        CircularAperture,
        aperture_photometry,
    )

    img = star_image(x, y)
    half = 16
    ix, iy = math.floor(x + 0.5), math.floor(y + 0.5)
    box = cutout(img, ix, iy, half)[None]
    w = aperture_weights(x - ix, y - iy, 5.0, half)
    ann = annulus_mask(x - ix, y - iy, 9.0, 15.0, half)
    r = measure_chunk(box, w, ann, 3.0)
    appsum = aperture_photometry(img, CircularAperture((x, y), 5.0), method="exact")["aperture_sum"][0]
    stats = ApertureStats(img, CircularAnnulus((x, y), 9.0, 15.0),
                          sigma_clip=SigmaClip(sigma=3.0, maxiters=5), sum_method="center")  # fmt: skip
    assert r.appsum[0] == pytest.approx(float(appsum), rel=1e-12)
    assert r.area[0] == pytest.approx(math.pi * 25, rel=1e-12)
    assert r.background[0] == pytest.approx(float(stats.median), rel=1e-9)
    assert r.background_std[0] == pytest.approx(float(stats.std), rel=1e-9)
    assert r.signal[0] == pytest.approx(float(appsum) - float(stats.median) * math.pi * 25, rel=1e-9)
    assert r.signal[0] == pytest.approx(50_000, rel=0.03)


def test_cutout_edges_and_block() -> None:
    img = np.arange(100, dtype=np.uint16).reshape(10, 10)
    b = cutout(img, 0, 0, 2, blank=(0, 3))
    assert b.shape == (5, 5) and np.isnan(b[:2]).all() and np.isnan(b[:, :2]).all()
    assert np.isnan(b[2, 2:5]).all() and b[3, 2:].tolist() == [10, 11, 12]  # block pixels blanked
    assert np.isnan(cutout(img, 50, 50, 2)).all()  # wholly outside
    f = img.astype(np.float64)
    b2 = cutout(f, 3, 2, 2, blank=(0, 5))
    assert np.isnan(b2[0, :3]).all() and (f == img).all()  # the source is never modified


def test_aperture_over_the_gps_block_uses_only_image_pixels() -> None:
    boxes = np.full((1, 21, 21), 100.0)
    boxes[0, :10, :] = np.nan  # outside the frame above row 0
    boxes[0, 10, :11] = np.nan  # the block's pixels in row 0, up to the centre column
    w = aperture_weights(0, 0, 3.0, 10)
    r = measure_chunk(boxes, w, annulus_mask(0, 0, 5, 9, 10), 3.0)
    expect = float((w * np.isfinite(boxes[0])).sum())
    boxes[0, 10, :11] = 100.0
    without_block = measure_chunk(boxes, w, annulus_mask(0, 0, 5, 9, 10), 3.0).area[0]
    assert r.area[0] == pytest.approx(expect) and expect < without_block - 0.5 < math.pi * 9
    assert r.signal[0] == pytest.approx(0.0, abs=1e-9) and r.background[0] == 100.0


@settings(max_examples=40, deadline=None)
@given(x=st.floats(20, 60), y=st.floats(20, 50), seed=st.integers(0, 2**16))
def test_centroid_is_sub_pixel(x: float, y: float, seed: int) -> None:
    img = star_image(x, y, seed=seed)
    xc, yc, snr = find_centroid(img, x + 1.7, y - 1.2, radius=5, search=5, min_snr=5)
    assert abs(xc - x) < 0.08 and abs(yc - y) < 0.08 and snr > 50


def test_centroid_of_nothing() -> None:
    rng = np.random.default_rng(1)
    img = rng.normal(500, 20, (60, 60))
    _xc, _yc, snr = find_centroid(img, 30, 30, radius=5, search=5, min_snr=5)
    assert snr < 5  # noise is not a star
    assert math.isnan(find_centroid(np.zeros((2, 2)), 30, 30, radius=5, search=5, min_snr=5)[0])


def test_tracker_prediction() -> None:
    t = Tracker(0.0, 0.0)
    assert t.predict(5) == (0.0, 0.0)
    for k in (0, 1, 2, 4):  # a gap in the capture index (a dropped frame)
        t.good(k, 1.0 + 0.5 * k, 2.0 - 0.25 * k)
    assert t.predict(10) == pytest.approx((6.0, -0.5))


def test_aperture_and_option_checks() -> None:
    with pytest.raises(OccultationError, match="PyOTE cuts"):
        Aperture("comp-1", 1, 2)
    with pytest.raises(OccultationError, match="not finite"):
        Aperture("target", math.nan, 2)
    with pytest.raises(OccultationError, match="inner radius"):
        PhotometryOptions(radius=5, annulus=(4, 9))
    with pytest.raises(OccultationError, match="positive"):
        PhotometryOptions(radius=-1)


def test_import_stays_light() -> None:
    code = ("import sys, qhytime.api, qhytime.occultation, qhytime.cli; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'photutils', 'matplotlib', 'astropy'}))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

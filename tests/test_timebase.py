"""Time base: exact integer arithmetic, astropy at the edge, leap-second flags."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from qhytime.timebase import (
    GPS_EPOCH_UNIX_S,
    fraction_ns,
    iso_to_unix_ns,
    near_leap_second,
    stamp_unix_ns,
    time_to_unix_ns,
    unix_ns_to_iso,
    unix_ns_to_time,
)


def test_gps_epoch_is_jd_2450000_5() -> None:
    from astropy.time import Time

    assert GPS_EPOCH_UNIX_S == round(Time(2450000.5, format="jd", scale="utc").unix)
    assert unix_ns_to_iso(GPS_EPOCH_UNIX_S * 10**9) == "1995-10-10T00:00:00.000000000"


def test_hand_worked_fractions() -> None:
    # 7_300_584 / 9_999_612 s = 0.730086727 37... s -> 730086727 ns
    assert fraction_ns(7_300_584, 9_999_612) == 730_086_727
    # 1 tick at pps 10_000_000 is 100 ns exactly
    assert fraction_ns(1, 10_000_000) == 100
    # 1 tick at pps 9_999_999 = 100.00001 ns -> 100
    assert fraction_ns(1, 9_999_999) == 100
    # 5 ticks at 9_999_000 = 500.050005 ns -> 500
    assert fraction_ns(5, 9_999_000) == 500
    # an exact half rounds up: 1953 ticks at pps 9_999_360 = 195312.5 ns
    assert fraction_ns(1953, 9_999_360) == 195_313
    # 1 tick at 10_000_400 counts = 99.996 ns -> 100
    assert fraction_ns(1, 10_000_400) == 100
    assert fraction_ns(9_999_999, 9_999_999) == 1_000_000_000
    assert fraction_ns(123, 0) == 12_300  # unusable pps count: nominal scaling
    assert fraction_ns(123, 10_000_500) == 12_300  # PPS lost: nominal scaling


def test_nominal_differs_by_up_to_100_us() -> None:
    # pps 9_999_000: nominal scaling is 100 us short at the end of the second
    end = 9_998_999
    diff = fraction_ns(end, 9_999_000, nominal_clock=True) - fraction_ns(end, 9_999_000)
    assert diff == pytest.approx(-100_000, abs=100)


@given(
    seconds=st.integers(0, 2**32 - 1),
    pps=st.integers(9_999_000, 10_001_000).filter(lambda p: p != 10_000_500),
    data=st.data(),
)
@example(seconds=0, pps=9_999_000, data=None)
def test_stamp_time_ns_round_trip(seconds: int, pps: int, data: st.DataObject | None) -> None:
    ticks = 0 if data is None else data.draw(st.integers(0, pps - 1))
    ns = stamp_unix_ns(seconds, ticks, pps)
    # exact: integer reference with Python's unbounded ints, halves up
    frac = (2 * ticks * 10**9 + pps) // (2 * pps)
    assert ns == (seconds + GPS_EPOCH_UNIX_S) * 10**9 + frac
    assert 0 <= frac < 10**9
    if not near_leap_second(ns):
        t = unix_ns_to_time(ns)
        assert time_to_unix_ns(t) == ns  # tolerance 0 ns
        assert t.isot == unix_ns_to_iso(ns)


@given(st.lists(st.integers(0, 4_000_000_000 * 10**9), min_size=1, max_size=50))
def test_vector_time_round_trip(values: list[int]) -> None:
    ns = np.array(values, dtype=np.int64)
    ns = ns[~np.asarray(near_leap_second(ns), dtype=bool)]
    if ns.size:
        back = time_to_unix_ns(unix_ns_to_time(ns))
        assert np.array_equal(back, ns)
        assert np.array_equal(iso_to_unix_ns(unix_ns_to_iso(ns)), ns)


@given(st.integers(0, 16_777_215), st.integers(1, 16_777_215))
def test_vectorised_equals_scalar(ticks: int, pps: int) -> None:
    v = fraction_ns(np.array([ticks]), np.array([pps]))
    assert v.dtype == np.int64 and int(v[0]) == fraction_ns(ticks, pps)


def test_astropy_agrees_with_independent_iso() -> None:
    from astropy.time import Time

    t = unix_ns_to_time(1_754_099_091_730_086_727)
    ref = Time("2025-08-02T01:44:51.730086727", scale="utc", precision=9)
    assert abs((t - ref).to_value("ns")) < 1e-3  # 1 ps
    assert t.scale == "utc"


@pytest.mark.parametrize(
    ("iso", "near"),
    [
        ("2016-12-31T23:59:59.500", True),
        ("2017-01-01T00:00:00.900", True),
        ("2017-01-01T00:00:01.100", False),
        ("2015-06-30T23:59:59.001", True),
        ("2015-06-30T23:59:58.999", False),
        ("2025-08-02T01:44:51", False),
        ("1990-01-01T00:00:00.3", True),
    ],
)
def test_leap_second_vicinity(iso: str, near: bool) -> None:
    assert near_leap_second(iso_to_unix_ns(iso)) is near


def test_astropy_settings_untouched() -> None:
    """Offline tables inside our conversions only (see test_core_api for the network guard)."""
    from astropy.utils import iers

    before = (iers.conf.auto_download, iers.conf.auto_max_age)
    unix_ns_to_time(0)
    assert (iers.conf.auto_download, iers.conf.auto_max_age) == before

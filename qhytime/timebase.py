"""From a GPS stamp to exact time: integers all the way, int64 ns inside, astropy at the edge.

A stamp is whole seconds since 1995-10-10T00:00:00 UTC, counted with 86400-second days
(leap seconds are not counted, as every decoder does), plus oscillator ticks since the last
PPS edge. Inside qhytime a time is an ``int64`` count of nanoseconds since
1970-01-01T00:00:00 UTC with 86400-second days, the POSIX convention ("unix ns"). That
integer is exact; it is turned into :class:`astropy.time.Time` (scale ``utc``) only when
handed to a user, through ``datetime64[ns]``, which astropy converts without loss.

The fraction of a second is ``ticks / pps_count`` (the measured oscillator rate, default)
or ``ticks x 100 ns`` (``nominal_clock=True``, what other decoders do), rounded to the
nearest nanosecond (halves up). When the pps count is outside
:data:`PPS_COUNT_MIN`..:data:`PPS_COUNT_MAX` the measured rate means nothing and the
nominal scaling is used; :mod:`qhytime.validity` flags such stamps.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import warnings
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:  # astropy is imported lazily: importing qhytime stays light
    from astropy.time import Time

GPS_EPOCH_UNIX_S = 813_283_200
"""1995-10-10T00:00:00 UTC (JD 2450000.5) in POSIX seconds."""

NS_PER_S = 1_000_000_000
NOMINAL_TICK_NS = 100
"""Nominal oscillator tick: 10 MHz."""

PPS_COUNT_NOMINAL = 10_000_000
PPS_COUNT_MIN = 9_999_000
"""Smallest pps count of a disciplined oscillator."""
PPS_COUNT_MAX = 10_001_000
"""Largest pps count of a disciplined oscillator."""
PPS_COUNT_LOST = 10_000_500
"""What the GPS box writes when it has lost the PPS signal."""

LEAP_WINDOW_NS = NS_PER_S
"""Stamps closer than this to a leap second are ambiguous."""


def pps_count_usable(pps_count: ArrayLike) -> Any:
    """True where the pps count can scale ticks (inside the disciplined range, not PPS-lost).

    Examples
    --------
    >>> pps_count_usable(9_999_612), pps_count_usable(0), pps_count_usable(10_000_500)
    (True, False, False)
    """
    p = np.asarray(pps_count, dtype=np.int64)
    ok = (p >= PPS_COUNT_MIN) & (p <= PPS_COUNT_MAX) & (p != PPS_COUNT_LOST)
    return bool(ok) if ok.ndim == 0 else ok


@overload
def fraction_ns(ticks: int, pps_count: int, *, nominal_clock: bool = ...) -> int: ...
@overload
def fraction_ns(
    ticks: NDArray[Any], pps_count: ArrayLike, *, nominal_clock: bool = ...
) -> NDArray[np.int64]: ...
def fraction_ns(ticks: Any, pps_count: Any, *, nominal_clock: bool = False) -> Any:
    """Nanoseconds since the last PPS edge for ``ticks`` oscillator counts.

    Parameters
    ----------
    ticks : int or array of int
    pps_count : int or array of int
        Oscillator counts between the last two PPS edges.
    nominal_clock : bool
        Scale by exactly 100 ns per tick instead of ``1 s / pps_count``.

    Returns
    -------
    int or numpy.ndarray of int64
        Rounded to the nearest ns, halves up. Where the pps count is not usable
        (see :func:`pps_count_usable`) the nominal scaling is used.

    Examples
    --------
    >>> fraction_ns(7_300_584, 9_999_612)
    730086727
    >>> fraction_ns(7_300_584, 9_999_612, nominal_clock=True)
    730058400
    """
    scalar = np.ndim(ticks) == 0 and np.ndim(pps_count) == 0
    t = np.asarray(ticks, dtype=np.int64)
    p = np.asarray(pps_count, dtype=np.int64)
    nominal = t * NOMINAL_TICK_NS
    if nominal_clock:
        out = nominal
    else:
        usable = np.asarray(pps_count_usable(p))
        safe_p = np.where(usable, p, 1)
        # ticks < 2**24 and pps <= 2**24: 2 * ticks * 1e9 < 3.4e16 fits int64.
        measured = (2 * t * NS_PER_S + safe_p) // (2 * safe_p)
        out = np.where(usable, measured, nominal)
    return int(out) if scalar else np.asarray(out, dtype=np.int64)


def stamp_unix_ns(seconds: Any, ticks: Any, pps_count: Any, *, nominal_clock: bool = False) -> Any:
    """Exact time of a stamp in unix ns (int64 ns since 1970, 86400-second days).

    Examples
    --------
    >>> stamp_unix_ns(940815891, 7300584, 9999612)
    1754099091730086727
    >>> import numpy as np
    >>> stamp_unix_ns(np.array([940815891]), np.array([0]), 9999612).tolist()
    [1754099091000000000]
    """
    scalar = np.ndim(seconds) == 0 and np.ndim(ticks) == 0 and np.ndim(pps_count) == 0
    s = np.asarray(seconds, dtype=np.int64)
    out = (s + GPS_EPOCH_UNIX_S) * NS_PER_S + fraction_ns(
        np.asarray(ticks, dtype=np.int64), pps_count, nominal_clock=nominal_clock
    )
    return int(out) if scalar else np.asarray(out, dtype=np.int64)


def stamp_unix_ns_pairs(
    stamps: Iterable[tuple[NDArray[np.int64], NDArray[np.int64]]], pps_count: NDArray[np.int64]
) -> list[tuple[NDArray[np.int64], NDArray[np.int64]]]:
    """:func:`stamp_unix_ns` of several stamps of the same frames, measured and nominal.

    The same integers as ``stamp_unix_ns(seconds, ticks, pps_count)`` and
    ``stamp_unix_ns(seconds, ticks, pps_count, nominal_clock=True)`` for each
    ``(seconds, ticks)`` pair of int64 arrays, with the pps count looked at once.

    Examples
    --------
    >>> import numpy as np
    >>> [(m.tolist(), n.tolist()) for m, n in stamp_unix_ns_pairs(
    ...     [(np.array([940815891]), np.array([7300584]))], np.array([9999612]))]
    [([1754099091730086727], [1754099091730058400])]
    """
    p = np.asarray(pps_count, dtype=np.int64)
    usable = (p >= PPS_COUNT_MIN) & (p <= PPS_COUNT_MAX) & (p != PPS_COUNT_LOST)
    every = bool(usable.all())
    safe_p = p if every else np.where(usable, p, 1)
    two_p = 2 * safe_p
    out = []
    for seconds, ticks in stamps:
        t = np.asarray(ticks, dtype=np.int64)
        whole = (np.asarray(seconds, dtype=np.int64) + GPS_EPOCH_UNIX_S) * NS_PER_S
        nominal = t * NOMINAL_TICK_NS
        measured = (2 * t * NS_PER_S + safe_p) // two_p
        if not every:
            measured = np.where(usable, measured, nominal)
        out.append((whole + measured, whole + nominal))
    return out


def unix_ns_to_iso(unix_ns: Any) -> Any:
    """ISO 8601 UTC with 9 decimals, ``YYYY-MM-DDTHH:MM:SS.fffffffff``.

    Examples
    --------
    >>> unix_ns_to_iso(1754099091730086727)
    '2025-08-02T01:44:51.730086727'
    >>> unix_ns_to_iso(-1)
    '1969-12-31T23:59:59.999999999'
    """
    arr = np.asarray(unix_ns, dtype=np.int64).astype("datetime64[ns]")
    out = np.datetime_as_string(arr, unit="ns")
    return str(out) if out.ndim == 0 else out


def iso_to_unix_ns(iso: Any) -> Any:
    """Inverse of :func:`unix_ns_to_iso` (any ISO string numpy reads, taken as UTC).

    Examples
    --------
    >>> iso_to_unix_ns('2025-08-02T01:44:51.730086727')
    1754099091730086727
    """
    out = np.asarray(iso, dtype="datetime64[ns]").astype(np.int64)
    return int(out) if out.ndim == 0 else out


@contextlib.contextmanager
def astropy_offline() -> Iterator[None]:
    """Inside: astropy never downloads IERS or leap-second tables (the bundled ones serve).

    Scoped to qhytime's own conversions with ``iers.conf.set_temp``: the user's astropy
    settings are the same before and after.

    Examples
    --------
    >>> from astropy.utils import iers
    >>> before = iers.conf.auto_download
    >>> with astropy_offline():
    ...     iers.conf.auto_download
    False
    >>> iers.conf.auto_download == before
    True
    """
    from astropy.utils import iers

    with iers.conf.set_temp("auto_download", False), iers.conf.set_temp("auto_max_age", None):
        yield


def unix_ns_to_time(unix_ns: Any) -> Time:
    """astropy :class:`~astropy.time.Time` (scale utc, precision 9) for unix ns, exactly.

    Examples
    --------
    >>> t = unix_ns_to_time(1754099091730086727)
    >>> t.isot
    '2025-08-02T01:44:51.730086727'
    >>> time_to_unix_ns(t)
    1754099091730086727
    """
    from astropy.time import Time

    arr = np.asarray(unix_ns, dtype=np.int64).astype("datetime64[ns]")
    with astropy_offline(), warnings.catch_warnings():
        # ERFA calls years past the leap-second table "dubious"; the ns are exact anyway.
        warnings.simplefilter("ignore", _erfa_warning())
        return Time(arr, scale="utc", precision=9)


def time_to_unix_ns(time: Time) -> Any:
    """Unix ns of an astropy :class:`~astropy.time.Time`, rounded to the nearest ns.

    A time inside a leap second (``23:59:60``) has no unix ns and raises ``ValueError``.
    """
    with astropy_offline(), warnings.catch_warnings():
        warnings.simplefilter("ignore", _erfa_warning())
        t = time.utc
        t.precision = 9
        iso = np.asarray(t.isot)
    return iso_to_unix_ns(iso)


def _erfa_warning() -> type[Warning]:
    import erfa

    return erfa.ErfaWarning


@functools.cache
def leap_second_unix_ns() -> NDArray[np.int64]:
    """Unix ns of the instants at which UTC stepped by a leap second (bundled table).

    Read from the leap-second table that ships with astropy, never from the network.
    """
    from astropy.utils import iers

    table = iers.LeapSeconds.from_iers_leap_seconds(iers.IERS_LEAP_SECOND_FILE)
    mjd = np.asarray(table["mjd"], dtype=np.int64)
    tai_utc = np.asarray(table["tai_utc"], dtype=np.int64)
    steps = mjd[1:][np.diff(tai_utc) != 0]
    return (steps - 40587) * 86400 * NS_PER_S


@functools.cache
def _leap_list() -> list[int]:
    return [int(v) for v in leap_second_unix_ns()]


@functools.cache
def leap_table_expiry() -> str:
    """Expiry date of the bundled leap-second table (ISO date)."""
    from astropy.utils import iers

    table = iers.LeapSeconds.from_iers_leap_seconds(iers.IERS_LEAP_SECOND_FILE)
    return str(table.expires.isot)[:10]


def near_leap_second(unix_ns: Any, window_ns: int = LEAP_WINDOW_NS) -> Any:
    """True where a time lies within ``window_ns`` of a leap second of the bundled table.

    Examples
    --------
    >>> near_leap_second(iso_to_unix_ns('2016-12-31T23:59:59.5'))
    True
    >>> near_leap_second(iso_to_unix_ns('2025-08-02T01:44:51'))
    False
    """
    t = np.asarray(unix_ns, dtype=np.int64)
    leaps = leap_second_unix_ns()
    if t.size > 1:  # most sets of times lie far from every leap second: one look decides
        lo, hi = int(t.min()) - window_ns, int(t.max()) + window_ns
        within = _leap_list()
        if bisect.bisect_right(within, lo) == bisect.bisect_left(within, hi):
            return np.zeros(t.shape, dtype=bool)
    idx = np.clip(np.searchsorted(leaps, t), 1, len(leaps) - 1)
    dist = np.minimum(np.abs(t - leaps[idx - 1]), np.abs(t - leaps[idx]))
    out = dist < window_ns
    return bool(out) if out.ndim == 0 else out

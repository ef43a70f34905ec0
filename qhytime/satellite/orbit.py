"""Orbit check: the measured points against a TLE's prediction (sgp4 through skyfield, offline).

For each timed point the satellite's topocentric position is predicted at the point's time
for the observer (the GPS block's latitude and longitude, a height): skyfield's
``EarthSatellite`` (sgp4) and ``wgs84`` positions in the GCRS, the light time from the
satellite to the observer taken out (the satellite is seen where it was ``range / c``
earlier: 3-7 ms for a LEO), and the direction expressed as a plate solution measures it:
the stars of the solution are displaced by the annual aberration and the satellite is not,
so the direction is taken from the GCRS to ICRS as an apparent direction (astropy, with the
bundled ERFA ephemeris; ~20 arcsec, i.e. ~10 ms along a LEO track, if ignored).

The offset of the measured position from the predicted one is split along the predicted
motion and across it (arcsec); the along-track offset divided by the angular rate is the
implied time offset, ``time_offset_s = reported time - the orbit's time at the measured
position``: a calibration whose offset0 is 5 ms too large shows +5 ms.

A TLE's own along-track error (about 1 km at its epoch, growing by a few km per day) is
0.1-1 s of time for a LEO: the check catches gross errors (a wrong second, a wrong end
order, a missing rolling-shutter correction larger than it) with a fresh TLE, and reaches
the millisecond only with a precise orbit (simulated passes, or a TLE fitted to the same
pass). The summary states the TLE's age and that indicative error.

sgp4 and skyfield are the ``sat`` extra: they are imported inside the functions here.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qhytime.errors import OrbitError

C_KM_S = 299_792.458
TLE_ERROR_KM_AT_EPOCH = 1.0
TLE_ERROR_KM_PER_DAY = 2.0
"""Indicative along-track error of a TLE: ~1 km at epoch + ~2 km per day of age (LEO)."""


@dataclass(frozen=True)
class Tle:
    """A two-line element set (with its optional name line)."""

    line1: str
    line2: str
    name: str = ""

    @property
    def norad(self) -> int:
        return int(self.line1[2:7])

    @property
    def cospar(self) -> str:
        """International designator as written in columns 10-17 of line 1 (``98067A``)."""
        return self.line1[9:17].strip()

    def epoch_unix_ns(self) -> int:
        """The element set's epoch (unix ns, UTC)."""
        yy = int(self.line1[18:20])
        year = 1900 + yy if yy >= 57 else 2000 + yy
        day = float(self.line1[20:32])
        import datetime as dt

        start = dt.datetime(year, 1, 1, tzinfo=dt.UTC)
        return int(start.timestamp()) * 1_000_000_000 + round((day - 1.0) * 86400e9)


def tle_checksum(line: str) -> int:
    """The modulo-10 checksum of a TLE line's first 68 characters (minus signs count 1).

    Examples
    --------
    >>> tle_checksum("1 25544U 98067A   24142.35003124  .00025335  00000-0  42455-3 0  999")
    2
    """
    return sum(int(c) if c.isdigit() else (1 if c == "-" else 0) for c in line[:68]) % 10


def load_tle(source: str | os.PathLike[str]) -> Tle:
    """A TLE from a file or from its text (two lines, or three with a name line first).

    Raises
    ------
    OrbitError
        Not two TLE lines, a bad checksum, or elements sgp4 rejects (``path``: the file, when
        ``source`` is one).

    Examples
    --------
    >>> tle = load_tle("tests/data/satellite/iss.tle")
    >>> tle.norad, tle.cospar
    (25544, '98067A')
    """
    text = str(source)
    path: str | None = None
    if "\n" not in text.strip():
        p = Path(os.fspath(source))
        try:
            text = p.read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            raise OrbitError(
                f"cannot read the TLE file: {exc.strerror or exc}", path=str(p)
            ) from exc
        path = str(p)
    where = "" if path is not None else "the TLE text: "
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    l1 = [i for i, ln in enumerate(lines) if ln.startswith("1 ")]
    if not l1 or l1[0] + 1 >= len(lines) or not lines[l1[0] + 1].startswith("2 "):
        raise OrbitError(
            f"{where}no TLE (a line starting '1 ' followed by one starting '2 ')", path=path
        )
    i = l1[0]
    line1, line2 = lines[i], lines[i + 1]
    name = lines[i - 1].removeprefix("0 ").strip() if i > 0 else ""
    for n, ln in ((1, line1), (2, line2)):
        if len(ln) < 69:
            raise OrbitError(f"{where}TLE line {n} has {len(ln)} characters, not 69", path=path)
        if not ln[68].isdigit() or int(ln[68]) != tle_checksum(ln):
            raise OrbitError(
                f"{where}TLE line {n} checksum is {ln[68]!r}, the line sums to "
                f"{tle_checksum(ln)}: the line is damaged",
                path=path,
            )
    if line1[2:7] != line2[2:7]:
        raise OrbitError(f"{where}lines 1 and 2 are of different satellites", path=path)
    tle = Tle(line1[:69], line2[:69], name)
    try:
        _satellite(tle)  # sgp4 parses it
    except OrbitError as exc:
        raise OrbitError(f"{where}{exc.reason}", path=path) from exc.__cause__
    return tle


def _require_sat() -> Any:
    try:
        import sgp4  # noqa: F401
        import skyfield.api as sf
    except ImportError as exc:  # pragma: no cover - the sat extra is installed in tests
        raise OrbitError("the orbit check needs sgp4 and skyfield: pip install 'qhytime[sat]'") from exc
    return sf


def _timescale() -> Any:
    sf = _require_sat()
    return sf.load.timescale(builtin=True)


def _satellite(tle: Tle) -> Any:
    sf = _require_sat()
    try:
        sat = sf.EarthSatellite(tle.line1, tle.line2, tle.name or None, _timescale())
    except Exception as exc:
        raise OrbitError(f"sgp4 cannot use this TLE: {exc}") from exc
    return sat


@contextmanager
def _quiet_erfa() -> Iterator[None]:
    import erfa

    from qhytime.timebase import astropy_offline

    with astropy_offline(), warnings.catch_warnings():
        warnings.simplefilter("ignore", erfa.ErfaWarning)
        yield


def skyfield_times(unix_ns: ArrayLike, shift_s: ArrayLike | float = 0.0) -> Any:
    """skyfield ``Time`` of unix ns (exact: astropy's two-part TT), shifted by ``shift_s``."""
    from qhytime.timebase import unix_ns_to_time

    t = unix_ns_to_time(np.atleast_1d(np.asarray(unix_ns, dtype=np.int64)))
    with _quiet_erfa():
        tt = t.tt
        jd1, jd2 = np.asarray(tt.jd1, dtype=np.float64), np.asarray(tt.jd2, dtype=np.float64)
    return _timescale().tt_jd(jd1, jd2 + np.asarray(shift_s, dtype=np.float64) / 86400.0)


@dataclass(frozen=True)
class Observer:
    """Where the camera is: geodetic latitude, longitude (degrees, east positive), height (m)."""

    latitude_deg: float
    longitude_deg: float
    height_m: float = 0.0


@dataclass
class Prediction:
    """Predicted topocentric positions, as a plate solution would measure them.

    Attributes
    ----------
    ra_deg, dec_deg : float arrays
    range_km : float array
    rate_arcsec_s : float array
        Angular speed on the sky.
    pa_rad : float array
        Direction of motion (position angle from north through east).
    elevation_deg : float array
    """

    ra_deg: NDArray[np.float64]
    dec_deg: NDArray[np.float64]
    range_km: NDArray[np.float64]
    rate_arcsec_s: NDArray[np.float64]
    pa_rad: NDArray[np.float64]
    elevation_deg: NDArray[np.float64]


def _radec(sat: Any, topos: Any, unix_ns: NDArray[np.int64]) -> tuple[Any, Any, Any, Any]:
    """Light-time-corrected, aberration-as-measured topocentric RA/Dec, range, elevation."""
    from astropy.coordinates import GCRS, ICRS, SkyCoord
    from astropy.time import Time

    t = skyfield_times(unix_ns)
    r_obs = topos.at(t).position.km
    tau = np.zeros(len(unix_ns))
    for _ in range(3):
        r_sat = sat.at(skyfield_times(unix_ns, -tau)).position.km
        rel = r_sat - r_obs
        rng = np.sqrt((rel**2).sum(axis=0))
        tau = rng / C_KM_S
    ra_geo = np.degrees(np.arctan2(rel[1], rel[0])) % 360.0
    dec_geo = np.degrees(np.arcsin(rel[2] / rng))
    alt = (sat - topos).at(t).altaz()[0].degrees
    with _quiet_erfa():
        tt = Time(np.asarray(t.whole), np.asarray(t.tt_fraction), format="jd", scale="tt")
        c = SkyCoord(ra_geo, dec_geo, unit="deg", frame=GCRS(obstime=tt)).transform_to(ICRS())
        ra, dec = np.asarray(c.ra.deg), np.asarray(c.dec.deg)
    return ra, dec, rng, np.asarray(alt)


def predict(tle: Tle, observer: Observer, unix_ns: ArrayLike, *, dt_s: float = 0.05) -> Prediction:
    """The satellite's position as measured from ``observer`` at ``unix_ns``.

    Examples
    --------
    >>> tle = load_tle("tests/data/satellite/iss.tle")
    >>> p = predict(tle, Observer(52.2, -0.87, 50.0), [tle.epoch_unix_ns()])
    >>> p.ra_deg.shape, bool(p.range_km[0] > 6000)      # below the horizon here
    ((1,), True)
    """
    sf = _require_sat()
    ns = np.atleast_1d(np.asarray(unix_ns, dtype=np.int64))
    sat = _satellite(tle)
    topos = sf.wgs84.latlon(observer.latitude_deg, observer.longitude_deg, elevation_m=observer.height_m)
    step = round(dt_s * 1e9)
    all_ns = np.concatenate([ns, ns - step, ns + step])
    ra, dec, rng, alt = _radec(sat, topos, all_ns)
    n = len(ns)
    ra0, dec0 = ra[:n], dec[:n]
    east_a, north_a = _tangent(ra0, dec0, ra[n : 2 * n], dec[n : 2 * n])
    east_b, north_b = _tangent(ra0, dec0, ra[2 * n :], dec[2 * n :])
    ve, vn = (east_b - east_a) / (2 * dt_s), (north_b - north_a) / (2 * dt_s)
    return Prediction(
        ra_deg=ra0, dec_deg=dec0, range_km=rng[:n],
        rate_arcsec_s=np.hypot(ve, vn), pa_rad=np.arctan2(ve, vn), elevation_deg=alt[:n],
    )  # fmt: skip


def _tangent(ra0: Any, dec0: Any, ra: Any, dec: Any) -> tuple[Any, Any]:
    """Gnomonic offsets (east, north; arcsec) of (ra, dec) from (ra0, dec0)."""
    a0, d0, a, d = (np.radians(np.asarray(v, dtype=np.float64)) for v in (ra0, dec0, ra, dec))
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cosc
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc
    k = math.degrees(1.0) * 3600.0
    return xi * k, eta * k


@dataclass
class OrbitPoint:
    """One point against the prediction: offsets (arcsec) and the implied time offset (s)."""

    index: int
    kind: str
    unix_ns: int
    sigma_s: float
    along_arcsec: float
    cross_arcsec: float
    time_offset_s: float
    rate_arcsec_s: float
    predicted_ra_deg: float
    predicted_dec_deg: float
    range_km: float
    elevation_deg: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "along_arcsec": round(self.along_arcsec, 4),
            "cross_arcsec": round(self.cross_arcsec, 4),
            "time_offset_s": round(self.time_offset_s, 9),
            "rate_arcsec_per_s": round(self.rate_arcsec_s, 4),
            "predicted_ra": round(self.predicted_ra_deg, 8),
            "predicted_dec": round(self.predicted_dec_deg, 8),
            "range_km": round(self.range_km, 3),
            "elevation": round(self.elevation_deg, 3),
        }


@dataclass
class OrbitCheck:
    """The points against a TLE and their summary.

    Attributes
    ----------
    points : list of OrbitPoint
    tle : Tle
    observer : Observer
    tle_age_days : float
        From the TLE's epoch to the first point.
    tle_time_error_s : float
        Indicative along-track error of the TLE as time (see the module notes).
    """

    points: list[OrbitPoint]
    tle: Tle
    observer: Observer
    tle_age_days: float
    tle_time_error_s: float
    independent_kinds: tuple[str, ...] = field(default=("first", "last", "point"))

    def summary(self, kinds: Sequence[str] | None = None) -> dict[str, Any]:
        """Mean, standard deviation, count and standard error of the mean of the time offsets
        of independent points (ends and point sources; interior points are interpolations of
        the ends and add no information), with the TLE's own indicative error."""
        use = set(kinds or self.independent_kinds)
        v = np.array([p.time_offset_s for p in self.points if p.kind in use], dtype=float)
        a = np.array([p.along_arcsec for p in self.points if p.kind in use], dtype=float)
        c = np.array([p.cross_arcsec for p in self.points if p.kind in use], dtype=float)
        n = int(v.size)
        mean = float(v.mean()) if n else float("nan")
        std = float(v.std(ddof=1)) if n > 1 else float("nan")
        return {
            "count": n,
            "time_offset_mean_s": mean,
            "time_offset_std_s": std,
            "time_offset_sem_s": std / math.sqrt(n) if n > 1 else float("nan"),
            "along_mean_arcsec": float(a.mean()) if n else float("nan"),
            "cross_mean_arcsec": float(c.mean()) if n else float("nan"),
            "cross_std_arcsec": float(c.std(ddof=1)) if n > 1 else float("nan"),
            "tle_age_days": self.tle_age_days,
            "tle_time_error_s": self.tle_time_error_s,
        }


def orbit_check(
    tle: Tle,
    observer: Observer,
    measured: Sequence[tuple[int, str, int, float, float, float]],
) -> OrbitCheck:
    """Compare measured points with the TLE's prediction.

    Parameters
    ----------
    tle : Tle
    observer : Observer
    measured : sequence of (index, kind, unix_ns, sigma_s, ra_deg, dec_deg)

    Returns
    -------
    OrbitCheck

    Examples
    --------
    A point reported at ``t`` exactly where the orbit puts the satellite 5 ms earlier: its time
    is 5 ms late (``reported - orbit`` = +5 ms). The pass culminates at 46 degrees at 21:36:08.

    >>> tle = load_tle("tests/data/satellite/iss.tle")
    >>> obs = Observer(52.21503, -0.87262, 50.0)
    >>> t = 1777671368_000_000_000                       # 2026-05-01T21:36:08 UTC
    >>> p = predict(tle, obs, [t - 5_000_000])
    >>> chk = orbit_check(tle, obs, [(0, "first", t, 1e-4, p.ra_deg[0], p.dec_deg[0])])
    >>> round(chk.points[0].time_offset_s * 1e3, 3), round(chk.points[0].elevation_deg)
    (5.0, 47)
    """
    if not measured:
        raise OrbitError("no timed points with sky positions to check against the orbit")
    ns = np.array([m[2] for m in measured], dtype=np.int64)
    pred = predict(tle, observer, ns)
    out = []
    for k, m in enumerate(measured):
        e, n = _tangent(pred.ra_deg[k], pred.dec_deg[k], m[4], m[5])
        ue, un = math.sin(pred.pa_rad[k]), math.cos(pred.pa_rad[k])
        along = float(e * ue + n * un)
        cross = float(-e * un + n * ue)
        rate = float(pred.rate_arcsec_s[k])
        out.append(OrbitPoint(
            index=int(m[0]), kind=str(m[1]), unix_ns=int(m[2]), sigma_s=float(m[3]),
            along_arcsec=along, cross_arcsec=cross,
            time_offset_s=-along / rate if rate > 0 else float("nan"), rate_arcsec_s=rate,
            predicted_ra_deg=float(pred.ra_deg[k]), predicted_dec_deg=float(pred.dec_deg[k]),
            range_km=float(pred.range_km[k]), elevation_deg=float(pred.elevation_deg[k]),
        ))  # fmt: skip
    age = abs(int(ns.min()) - tle.epoch_unix_ns()) / 86400e9
    speed_km_s = _orbital_speed_km_s(tle)
    err = (TLE_ERROR_KM_AT_EPOCH + TLE_ERROR_KM_PER_DAY * age) / speed_km_s
    return OrbitCheck(out, tle, observer, tle_age_days=age, tle_time_error_s=err)


def _orbital_speed_km_s(tle: Tle) -> float:
    """Mean orbital speed from the mean motion (revolutions per day) of line 2."""
    n_rev_day = float(tle.line2[52:63])
    mu = 398_600.4418
    n_rad_s = n_rev_day * 2 * math.pi / 86400.0
    a = (mu / n_rad_s**2) ** (1 / 3)
    return math.sqrt(mu / a)


def first_end_by_orbit(
    tle: Tle,
    observer: Observer,
    wcs: Any,
    ends: tuple[tuple[float, float], tuple[float, float]],
    unix_ns: int,
) -> int:
    """Which end came first (0 or 1): the one behind along the predicted motion on the image.

    Raises
    ------
    OrbitError
        Without a WCS (the motion on the image is unknown).
    """
    from qhytime.satellite.sky import icrs_to_pixel

    if wcs is None:
        raise OrbitError("the TLE can tell which end came first only with a WCS: give wcs= (a plate solution)")
    ns = np.array([unix_ns - 50_000_000, unix_ns + 50_000_000], dtype=np.int64)
    ra, dec, _, _ = _radec(_satellite(tle), _topos(observer), ns)
    x, y = icrs_to_pixel(wcs, ra, dec)
    v = np.array([x[1] - x[0], y[1] - y[0]])
    d = np.asarray(ends[1], dtype=float) - np.asarray(ends[0], dtype=float)
    return 0 if float(v @ d) >= 0 else 1


def observed_radec(
    tle: Tle, observer: Observer, unix_ns: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The satellite's RA/Dec at ``unix_ns`` as a plate solution measures it (see the module
    notes: light time out, annual aberration as for the stars)."""
    ns = np.atleast_1d(np.asarray(unix_ns, dtype=np.int64))
    ra, dec, _, _ = _radec(_satellite(tle), _topos(observer), ns)
    return ra, dec


def _topos(observer: Observer) -> Any:
    sf = _require_sat()
    return sf.wgs84.latlon(observer.latitude_deg, observer.longitude_deg, elevation_m=observer.height_m)


def predicted_pixels(
    tle: Tle, observer: Observer, wcs: Any, unix_ns: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Pixels of the predicted track at ``unix_ns`` (for plots)."""
    from qhytime.satellite.sky import icrs_to_pixel

    ns = np.atleast_1d(np.asarray(unix_ns, dtype=np.int64))
    ra, dec, _, _ = _radec(_satellite(tle), _topos(observer), ns)
    return icrs_to_pixel(wcs, ra, dec)

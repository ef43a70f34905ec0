"""The orbit check on simulated passes of the bundled TLE: offsets consistent with zero when
the calibration is right, and an offset0 error of 5 ms recovered."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from qhytime.errors import OrbitError
from qhytime.rowmodel import RowModel
from qhytime.satellite.orbit import (
    Observer,
    load_tle,
    observed_radec,
    orbit_check,
    predict,
    skyfield_times,
)
from qhytime.satellite.sim import simulate_pass
from qhytime.satellite.streak import measure_streak
from qhytime.simulate import CameraSim

TLE_PATH = Path(__file__).parent / "data" / "satellite" / "iss.tle"
OBSERVER = Observer(52.21503, -0.87262, 50.0)
CULMINATION_NS = 1777671368_000_000_000  # 2026-05-01T21:36:08Z, 46.5 degrees


@pytest.fixture(scope="module")
def pass_frames(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], CameraSim, object]:
    tle = load_tle(TLE_PATH)
    sim = CameraSim(width=320, height=240, readout="2cms", exposure_us=200_000.0,
                    frame_interval_us=400_000.0, t0_unix_ns=CULMINATION_NS - 1_000_000_000,
                    read_noise_adu=20.0, offset0_us=1991.337, seed=11)  # fmt: skip
    sp = simulate_pass(tle, OBSERVER, sim, 5, scale_arcsec=30.0, rotation_deg=20.0,
                       flux_adu_per_s=3e5, n_stars=8, seed=2)  # fmt: skip
    assert all(t is not None for t in sp.truth)  # every trail inside the frame
    return sp.write_fits(tmp_path_factory.mktemp("pass")), sp.sim, sp


def _offsets(paths: list[Path], sim: CameraSim, extra_us: float, sp: object) -> np.ndarray:
    model = RowModel.from_us(offset0_us=sim.offset0_us + extra_us, line_period_ns=sim.line_period_ns,
                             readout=sim.readout, reference=sim.reference)  # fmt: skip
    tle = load_tle(TLE_PATH)
    out = []
    for i, path in enumerate(paths):
        res = measure_streak(path, model=model, detect=True, tle=tle, height_m=OBSERVER.height_m)
        assert res.orbit is not None and len(res.trails) == 1
        first = next(p for p in res.points if p.kind == "first")
        true_first = sp.truth[i][0]  # type: ignore[attr-defined]
        assert math.hypot(first.x - true_first.x, first.y - true_first.y) < 0.5  # the TLE ordered them
        out += [o.time_offset_s for o in res.orbit.points if o.kind in ("first", "last")]
    return np.array(out)


def test_offsets_consistent_with_zero_and_5ms_recovered(pass_frames: tuple) -> None:
    paths, sim, sp = pass_frames
    right = _offsets(paths, sim, 0.0, sp)
    sem = right.std(ddof=1) / math.sqrt(len(right))
    assert len(right) == 10 and abs(right.mean()) < 2 * sem, (right.mean(), sem)
    late = _offsets(paths, sim, 5000.0, sp)  # offset0 5 ms too large: times 5 ms late
    sem5 = late.std(ddof=1) / math.sqrt(len(late))
    assert abs(late.mean() - 5e-3) < 3 * sem5 and late.mean() > 10 * sem5, (late.mean(), sem5)
    np.testing.assert_allclose(late - right, 5e-3, atol=1e-6)  # the same points, 5 ms later


def test_cross_and_along_track_split() -> None:
    tle = load_tle(TLE_PATH)
    p = predict(tle, OBSERVER, [CULMINATION_NS])
    pa, ra, dec = p.pa_rad[0], p.ra_deg[0], p.dec_deg[0]
    # 10 arcsec across the motion (90 degrees left of it): all cross-track, no time offset
    d = 10 / 3600
    ra_x = ra + d * math.sin(pa - math.pi / 2) / math.cos(math.radians(dec))
    dec_x = dec + d * math.cos(pa - math.pi / 2)
    (o,) = orbit_check(tle, OBSERVER, [(0, "first", CULMINATION_NS, 1e-4, ra_x, dec_x)]).points
    assert abs(abs(o.cross_arcsec) - 10) < 0.01 and abs(o.along_arcsec) < 0.01
    assert abs(o.time_offset_s) < 1e-5 and 40 < o.elevation_deg < 50


def test_light_time_and_aberration_as_a_plate_solution_sees_them() -> None:
    """The measured direction is the satellite's light-time-delayed one with the annual
    aberration of the stars taken out: against skyfield's geometric position at the same
    instant, the difference is ~rate x range/c along the track plus <= 20.5 arcsec."""
    from skyfield.api import wgs84

    from qhytime.satellite.orbit import _satellite

    tle = load_tle(TLE_PATH)
    t = CULMINATION_NS
    ra, dec = observed_radec(tle, OBSERVER, [t])
    topos = wgs84.latlon(OBSERVER.latitude_deg, OBSERVER.longitude_deg, elevation_m=OBSERVER.height_m)
    geo = (_satellite(tle) - topos).at(skyfield_times([t]))
    g_ra, g_dec, dist = geo.radec()
    tau = float(dist.km[0]) / 299_792.458
    p = predict(tle, OBSERVER, [t])
    dra = (ra[0] - 15 * g_ra.hours[0] + 180) % 360 - 180
    sep = 3600 * math.hypot(dra * math.cos(math.radians(dec[0])), dec[0] - g_dec.degrees[0])
    assert 2 * 0.5 < p.rate_arcsec_s[0] * tau < 10  # ~5 arcsec of light time at ~560 km
    assert abs(sep - p.rate_arcsec_s[0] * tau) <= 20.6


def test_bad_tles_are_refused(tmp_path: Path) -> None:
    lines = TLE_PATH.read_text().splitlines()
    damaged = lines[1][:-1] + str((int(lines[1][-1]) + 1) % 10)
    with pytest.raises(OrbitError, match="checksum"):
        load_tle("\n".join([damaged, lines[2]]))
    with pytest.raises(OrbitError, match="no TLE"):
        load_tle("hello\nworld")
    with pytest.raises(OrbitError, match="cannot read"):
        load_tle(tmp_path / "missing.tle")
    other = lines[2].replace("25544", "25545")
    other = other[:-1] + str(sum(int(c) if c.isdigit() else c == "-" for c in other[:68]) % 10)
    with pytest.raises(OrbitError, match="different satellites"):
        load_tle("\n".join([lines[1], other]))
    tle = load_tle(TLE_PATH)
    assert tle.name.startswith("ISS") and tle.epoch_unix_ns() == 1777636800_000_000_000

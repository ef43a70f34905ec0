"""Simulated satellite frames with their truth: true trail ends, and passes driven by a TLE.

:func:`trail_truth` finds where a simulated object's trail really ends in a frame, from the
simulator's own (float) row windows: the first end is the object's position at the instant
``t_a`` that is the start of the window of the row it is on, the last end at the ``t_b`` that
is the end of its row's window. :func:`simulate_pass` drives a
:class:`~qhytime.simulate.TrackMover` from a TLE (sgp4 through skyfield, the ``sat`` extra)
for the GPS block's observer, with a TAN WCS centred on the pass.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from qhytime.simulate import CameraSim, Mover, Shot, Star, TrackMover


@dataclass(frozen=True)
class TrueEnd:
    """A true trail end: position, time (unix ns, rounded to the ns from the simulator's
    float windows) and image row."""

    x: float
    y: float
    unix_ns: int
    row: int


def _windows(sim: CameraSim, index: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Absolute (float ns) start and end of every image row of frame ``index``."""
    _, _, ref = sim.block_for(index)
    end_rel = sim.row_end_rel_ns()
    exp = sim.exposure_us * 1e3
    return end_rel.min(axis=1) - exp, end_rel.max(axis=1), ref


def trail_truth(sim: CameraSim, index: int, mover: Mover | TrackMover) -> tuple[TrueEnd, TrueEnd] | None:
    """The true first and last ends of ``mover``'s trail in frame ``index``.

    Returns None when the object is not on the frame at the start or at the end of its
    trail (it enters or leaves through an edge: those ends are not timing points).

    Examples
    --------
    >>> sim = CameraSim(width=200, height=100, readout="2cms", exposure_us=100_000.0)
    >>> _, _, ref = sim.block_for(0)
    >>> m = Mover(50.0, 40.0, 300.0, 100.0, ref - 50_000_000, 1e5)
    >>> a, b = trail_truth(sim, 0, m)
    >>> (a.row, b.row), round(b.x - a.x, 2)
    ((35, 45), 30.13)
    """
    start_rel, end_rel, ref = _windows(sim, index)
    h = sim.height
    rows = np.arange(h)

    def solve(times_rel: np.ndarray, pick_last: bool) -> TrueEnd | None:
        t_abs = ref + np.round(times_rel).astype(np.int64)  # exact ints, no float epoch
        x, y = mover.position(t_abs)
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        ok = np.isfinite(y) & (np.floor(y + 0.5) == rows)
        ok &= (x >= -0.5) & (x <= sim.width - 0.5)
        idx = np.flatnonzero(ok)
        if not idx.size:
            return None
        i = int(idx[np.argmax(t_abs[idx])] if pick_last else idx[np.argmin(t_abs[idx])])
        return TrueEnd(float(x[i]), float(y[i]), int(t_abs[i]), i)

    a = solve(start_rel, pick_last=False)
    b = solve(end_rel, pick_last=True)
    if a is None or b is None:
        return None
    return a, b


def true_time_at(mover: Mover | TrackMover, x: float, y: float, near_ns: int) -> int:
    """The instant (unix ns) the object was nearest to pixel ``(x, y)``: its time at the
    projection of the point on its track (the piece nearest to ``near_ns`` on a tie)."""
    if isinstance(mover, Mover):
        v = np.array([mover.vx_px_per_s, mover.vy_px_per_s])
        d = np.array([x - mover.x, y - mover.y])
        return int(mover.t0_unix_ns + round(float(d @ v / (v @ v)) * 1e9))
    t = np.asarray(mover.t_unix_ns, dtype=np.int64)
    xs, ys = np.asarray(mover.x), np.asarray(mover.y)
    best: tuple[float, int] = (math.inf, int(near_ns))
    for i in range(len(t) - 1):
        p0, p1 = np.array([xs[i], ys[i]]), np.array([xs[i + 1], ys[i + 1]])
        w = p1 - p0
        f = float(np.clip((np.array([x, y]) - p0) @ w / (w @ w), 0.0, 1.0))
        dist = float(np.hypot(*(p0 + f * w - np.array([x, y]))))
        tt = int(t[i] + round(f * int(t[i + 1] - t[i])))
        if dist < best[0] - 1e-9 or (abs(dist - best[0]) < 1e-9 and abs(tt - near_ns) < abs(best[1] - near_ns)):
            best = (dist, tt)
    return best[1]


@dataclass
class SimulatedPass:
    """Frames of a simulated pass and what made them.

    Attributes
    ----------
    sim : CameraSim
        With the observer's latitude and longitude in its GPS block.
    wcs : astropy.wcs.WCS
        The TAN solution of every frame (the telescope does not move).
    movers : list of TrackMover
        The satellite's track in each frame (pixels).
    stars : list of Star
    truth : list of (TrueEnd, TrueEnd) or None
        Each frame's true trail ends.
    tle, observer
    """

    sim: CameraSim
    wcs: Any
    movers: list[TrackMover]
    stars: list[Star]
    truth: list[tuple[TrueEnd, TrueEnd] | None]
    tle: Any
    observer: Any

    def shot(self, index: int, *, noise: bool = True) -> Shot:
        """Simulate frame ``index``."""
        return self.sim.frame(index, stars=self.stars, movers=[self.movers[index]], noise=noise)

    def write_fits(self, directory: Any, *, prefix: str = "pass") -> list[Any]:
        """Write the frames as FITS files with the WCS in their headers; returns the paths."""
        from pathlib import Path

        from astropy.io import fits

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        cards = dict(self.wcs.to_header(relax=True))
        paths = []
        for i in range(len(self.movers)):
            hdu = fits.PrimaryHDU(self.shot(i).image)
            for k, v in {**self.sim.fits_header(), **cards}.items():
                hdu.header[k] = v
            path = out / f"{prefix}_{i:04d}.fits"
            hdu.writeto(path, overwrite=True)
            paths.append(path)
        return paths


def simulate_pass(
    tle: Any,
    observer: Any,
    sim: CameraSim,
    n_frames: int,
    *,
    scale_arcsec: float,
    centre_frame: float | None = None,
    rotation_deg: float = 0.0,
    flux_adu_per_s: float = 2e6,
    fwhm_px: float = 2.5,
    sample_ms: float = 10.0,
    n_stars: int = 0,
    star_flux_adu_per_s: float = 3e5,
    seed: int = 0,
) -> SimulatedPass:
    """Frames of a satellite crossing the field of a fixed camera, from a TLE.

    The camera (``sim``, whose ``t0_unix_ns`` places frame 0) gets the observer's position in
    its GPS block; the field is centred where the satellite is at the middle of frame
    ``centre_frame`` (default the middle frame). The track is sampled every ``sample_ms``
    through sgp4 (:func:`~qhytime.satellite.orbit.observed_radec`) and the WCS, and rendered
    linear between samples.

    Parameters
    ----------
    tle : Tle
    observer : Observer
    sim : CameraSim
    n_frames : int
    scale_arcsec : float
        Pixel scale of the TAN WCS.
    n_stars : int
        Random field stars (not trails).
    """
    from qhytime.satellite.orbit import observed_radec
    from qhytime.satellite.sky import icrs_to_pixel, tan_wcs

    sim = dataclasses.replace(
        sim, latitude_deg=observer.latitude_deg, longitude_deg=observer.longitude_deg
    )
    spans = []
    for i in range(n_frames):
        start, end, ref = _windows(sim, i)
        spans.append((ref + float(start.min()), ref + float(end.max())))
    c = (n_frames - 1) / 2 if centre_frame is None else centre_frame
    lo_c, hi_c = spans[math.floor(c)]
    t_centre = round((lo_c + hi_c) / 2)
    ra0, dec0 = observed_radec(tle, observer, [t_centre])
    wcs = tan_wcs(float(ra0[0]), float(dec0[0]), width=sim.width, height=sim.height,
                  scale_arcsec=scale_arcsec, rotation_deg=rotation_deg)  # fmt: skip
    step = round(sample_ms * 1e6)
    grids = []
    for lo, hi in spans:
        a = math.floor(lo) - 2 * step
        n = math.ceil((hi - a) / step) + 3
        grids.append(a + step * np.arange(n, dtype=np.int64))
    all_t = np.concatenate(grids)
    ra, dec = observed_radec(tle, observer, all_t)
    x, y = icrs_to_pixel(wcs, ra, dec)
    movers, truth = [], []
    k = 0
    for i, g in enumerate(grids):
        sl = slice(k, k + len(g))
        k += len(g)
        m = TrackMover(tuple(int(v) for v in g), tuple(float(v) for v in x[sl]),
                       tuple(float(v) for v in y[sl]), flux_adu_per_s, fwhm_px)  # fmt: skip
        movers.append(m)
        truth.append(trail_truth(sim, i, m))
    rng = np.random.default_rng([seed, 99])
    stars = [
        Star(float(rng.uniform(5, sim.width - 5)), float(rng.uniform(5, sim.height - 5)),
             float(star_flux_adu_per_s * rng.uniform(0.2, 1.0)), fwhm_px)
        for _ in range(n_stars)
    ]  # fmt: skip
    return SimulatedPass(sim, wcs, movers, stars, truth, tle, observer)

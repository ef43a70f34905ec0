"""One frame with a streak (or point sources) to timed points with sky positions.

:func:`measure_streak` is what ``qhytime streak`` runs: it decodes the frame's GPS block, finds
its timing (a calibration or an explicit model, crop and binning from the file), takes the
trail ends given (and which came first) or detects the trails, decides the time order of
each trail's ends (given, from the object's trail in the next frame, or from a TLE), fits a
detected trail whose order is known through the rolling shutter
(:func:`~qhytime.satellite.detect.refine_trail`: its ends as the spec defines them), times
the ends and interior points (:mod:`qhytime.satellite.timing`), puts them on the sky with the
frame's WCS (or a separate one), and checks them against a TLE when one is given.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from qhytime.errors import RowModelError
from qhytime.satellite.timing import (
    FrameClock,
    StreakPoint,
    order_ends,
    time_point,
    time_streak,
)

if TYPE_CHECKING:
    from qhytime.rowmodel import RowModel
    from qhytime.satellite.detect import Trail
    from qhytime.satellite.orbit import OrbitCheck, Tle
    from qhytime.store import CalibrationStore, LookupResult

SYSTEMATIC_PX = 0.05
"""Systematic 1-sigma (px) added in quadrature to the along-track position of a detected end.

The fitted sigma of an end counts photon and read noise only. Real frames add errors the
model does not see (PSF mismatch, guiding, a sky that moves between rows); on the shared
reference frames the ends scatter 0.047 px (0.031-0.062 px) along the track beyond their
fitted sigma, an excess common to both checkerboard halves of each end's pixels, so it is in
the frames, not in the noise model. This default states that term; ``systematic_px=0`` (CLI
``--systematic-px 0``) leaves only the statistical sigma."""


@dataclass
class StreakResult:
    """Everything :func:`measure_streak` found about one frame.

    Attributes
    ----------
    path : str
    frame : int
    points : list of StreakPoint
        Per trail: first end, interior points, last end; then point sources.
    trails : list of Trail
        The detected trails (empty when the ends were given).
    clock : FrameClock
    wcs : astropy.wcs.WCS or None
    wcs_source : str
        ``header``, the ``--wcs`` file, or ``none``.
    observer : (latitude_deg, longitude_deg)
        From the GPS block.
    notes : list of str
        Warnings for the user (no WCS, an end on the edge, an unknown order, ...).
    orbit : OrbitCheck or None
    lookup : LookupResult or None
        How the calibration was found.
    reasons : list of str
        The frame's time flags (only with ``allow_invalid``).
    """

    path: str
    frame: int
    points: list[StreakPoint]
    trails: list[Trail]
    clock: FrameClock
    wcs: Any
    wcs_source: str
    observer: tuple[float, float]
    notes: list[str] = field(default_factory=list)
    orbit: OrbitCheck | None = None
    lookup: LookupResult | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def timed(self) -> list[StreakPoint]:
        """The timing points (unflagged, with a time)."""
        return [p for p in self.points if p.timing]

    def records(self) -> list[dict[str, Any]]:
        """One ``--json`` object per point (with the orbit check's offsets when done)."""
        by_index = {} if self.orbit is None else {o.index: o for o in self.orbit.points}
        out = []
        for i, p in enumerate(self.points):
            d = {"file": self.path, "frame": self.frame, **p.to_dict()}
            if i in by_index:
                d["orbit"] = by_index[i].to_dict()
            out.append(d)
        return out


def _parse_pair(xy: Sequence[float], what: str) -> tuple[float, float]:
    if len(xy) != 2 or not all(math.isfinite(float(v)) for v in xy):
        raise RowModelError(f"{what} must be two finite numbers x, y")
    return float(xy[0]), float(xy[1])


def _naming_the_frame(fn: Callable[..., StreakResult]) -> Callable[..., StreakResult]:
    """A row-timing error about the frame (an end or a point outside it, ends in an order no
    object makes) raised without a file names the file and frame it concerns."""

    @functools.wraps(fn)
    def wrapper(path: str | os.PathLike[str], frame: int = 0, **kwargs: Any) -> StreakResult:
        try:
            return fn(path, frame, **kwargs)
        except RowModelError as exc:
            if exc.path is not None:
                raise
            named = RowModelError(exc.reason, path=os.fspath(path), frame=frame)
            raise named.with_traceback(exc.__traceback__) from None

    return wrapper


@_naming_the_frame
def measure_streak(
    path: str | os.PathLike[str],
    frame: int = 0,
    *,
    ends: Sequence[float] | None = None,
    first: int | None = None,
    detect: bool = False,
    point_sources: Sequence[Sequence[float]] = (),
    next_path: str | os.PathLike[str] | None = None,
    next_frame: int = 0,
    model: RowModel | None = None,
    store: CalibrationStore | None = None,
    calibration_id: int | None = None,
    fallback: bool = False,
    exposure_ns: int | None = None,
    crop_y: int | None = None,
    binning: int | None = None,
    allow_invalid: bool = False,
    wcs: Any = None,
    n_interior: int = 0,
    position_sigma_px: float = 0.5,
    systematic_px: float = SYSTEMATIC_PX,
    tle: Tle | str | os.PathLike[str] | None = None,
    height_m: float = 0.0,
) -> StreakResult:
    """Time the streak(s) or point sources of one frame.

    Parameters
    ----------
    path : path
        A FITS or SER file.
    frame : int
        0-based frame index in the file.
    ends : (x1, y1, x2, y2), optional
        The trail's two ends (0-based pixels).
    first : {1, 2}, optional
        Which of the two ``ends`` came first in time; otherwise from ``next_path`` or ``tle``.
    detect : bool
        Find the trails in the frame instead.
    point_sources : sequence of (x, y)
        Point sources to time at their row's middle.
    next_path, next_frame : path, int
        The next frame (its trails tell which end of each trail came last).
    model, store, calibration_id, fallback, exposure_ns, crop_y, binning
        As for :func:`qhytime.framerows.file_timing`.
    allow_invalid : bool
        Time a frame whose GPS time is flagged (the flags are kept in ``reasons``).
    wcs : astropy WCS or path, optional
        A plate solution; default the frame's header's.
    n_interior : int
        Interior points per trail (fractions ``k / (n + 1)``).
    position_sigma_px : float
        1-sigma of user-given ends and point sources.
    systematic_px : float
        Added in quadrature to the along-track sigma of detected ends (see
        :data:`SYSTEMATIC_PX`).
    tle : Tle or path or text, optional
        Check the points against this orbit (and order the ends by it if needed).
    height_m : float
        Observer's height for the orbit check (the GPS block has latitude and longitude).

    Returns
    -------
    StreakResult

    Raises
    ------
    QhytimeError
        Unreadable file or WCS, no calibration, a flagged frame, ends outside the frame,
        no way to tell which end came first, a bad TLE. The message names the file and frame
        it concerns (``path``, ``frame``) and the argument to give (``first=1|2``,
        ``next_path=``, ``tle=``, ``wcs=``).

    Examples
    --------
    A reference frame of ``../shared/testdata/satellite`` with its true ends, the first given
    first, and one interior point:

    >>> from qhytime.rowmodel import RowModel
    >>> m = RowModel.from_us(offset0_us=1978.906, line_period_ns=43193.414)
    >>> r = measure_streak("../shared/testdata/satellite/end_00.fits", model=m, first=1,
    ...                    ends=(363.9319, 342.0402, 433.5022, 395.1642), n_interior=1)
    >>> [(p.kind, p.utc) for p in r.points]         # doctest: +NORMALIZE_WHITESPACE
    [('first', '2026-05-01T01:59:59.866751054'), ('interior', '2026-05-01T01:59:59.967874083'),
     ('last', '2026-05-01T02:00:00.068997111')]
    >>> round(r.points[0].ra_deg, 6), round(r.points[0].dec_deg, 6)
    (132.509543, -32.088344)
    """
    from qhytime.framerows import file_timing
    from qhytime.readers import open_frames
    from qhytime.satellite.sky import celestial_wcs, pixel_scale_arcsec, pixel_to_icrs, read_wcs

    modes = (ends is not None) + bool(detect) + bool(point_sources)
    if modes != 1:
        raise RowModelError("give exactly one of: the trail's ends, detect=True, point sources")
    if not 0.0 < position_sigma_px < 1e4:
        raise RowModelError(f"position sigma {position_sigma_px} px must be positive")
    if not 0.0 <= systematic_px < 1e4:
        raise RowModelError(f"systematic_px = {systematic_px} must be >= 0")
    if n_interior < 0:
        raise RowModelError(f"interior points: {n_interior} must be >= 0")
    notes: list[str] = []
    with open_frames(path) as reader:
        ft = file_timing(reader, model=model, store=store, calibration_id=calibration_id,
                         fallback=fallback, exposure_ns=exposure_ns, crop_y=crop_y,
                         binning=binning)  # fmt: skip
        rec = ft.record(frame, allow_invalid=allow_invalid)
        clock = FrameClock.from_file_timing(ft, frame, allow_invalid=allow_invalid, width=reader.width)
        image = reader.image(frame) if (detect or ends is not None) else None
        header = getattr(reader, "header", None)
        width, height = reader.width, reader.height
    assert rec.block is not None
    observer = (rec.block.latitude_deg, rec.block.longitude_deg)
    # the WCS
    if wcs is not None and not hasattr(wcs, "all_pix2world"):
        wcs_obj, wcs_source = read_wcs(wcs), os.fspath(wcs)
    elif wcs is not None:
        wcs_obj, wcs_source = wcs, "given"
    else:
        wcs_obj = celestial_wcs(header) if header is not None else None
        wcs_source = "header" if wcs_obj is not None else "none"
    if wcs_obj is None:
        notes.append(
            f"{os.fspath(path)} has no celestial WCS: pixel positions and times only "
            "(plate-solve the frame or give wcs=, a plate solution)"
        )
    tle_obj = None
    if tle is not None:
        from qhytime.satellite.orbit import Tle as _Tle
        from qhytime.satellite.orbit import load_tle

        tle_obj = tle if isinstance(tle, _Tle) else load_tle(tle)
    mid_ns = clock.mid_ns(height // 2)

    def order_by_tle(pair: tuple[tuple[float, float], tuple[float, float]]) -> int:
        from qhytime.satellite.orbit import Observer, first_end_by_orbit

        assert tle_obj is not None
        if wcs_obj is None:
            raise RowModelError(
                "the TLE tells which end came first only through a plate solution, and the "
                "frame has none: give wcs= (a plate solution) or first=1|2",
                path=os.fspath(path), frame=frame,
            )  # fmt: skip
        return first_end_by_orbit(tle_obj, Observer(observer[0], observer[1], height_m),
                                  wcs_obj, pair, mid_ns)  # fmt: skip

    next_segments: list[tuple[tuple[float, float], tuple[float, float]]] | None = None

    def next_trails() -> list[tuple[tuple[float, float], tuple[float, float]]]:
        nonlocal next_segments
        if next_segments is None:
            assert next_path is not None
            next_segments = [t.ends for t in _detect_in(next_path, next_frame)]
            if not next_segments:
                notes.append(f"no trail found in the next frame {os.fspath(next_path)}")
        return next_segments

    points: list[StreakPoint] = []
    trails: list[Trail] = []
    if ends is not None:
        if len(ends) != 4:
            raise RowModelError("ends must be four numbers x1, y1, x2, y2")
        e1, e2 = _parse_pair(ends[:2], "the first pair of ends"), _parse_pair(ends[2:], "the second pair")
        if first is not None:
            if first not in (1, 2):
                raise RowModelError(f"first must be 1 or 2, not {first}")
            k: int | None = first - 1
        elif next_path is not None:
            k = order_ends((e1, e2), next_trails())
            if k is None:
                raise RowModelError(
                    f"which end came first: no trail in the next frame ({os.fspath(next_path)}, "
                    f"frame {next_frame}) continues this one; give first=1|2 (which of the ends "
                    "came first)",
                    path=os.fspath(path), frame=frame,
                )  # fmt: skip
        elif tle_obj is not None:
            k = order_by_tle((e1, e2))
        else:
            raise RowModelError(
                "which end came first cannot be seen in one frame: give first=1|2 (which of the "
                "ends came first), next_path= (the next frame, where the trail goes on) or tle= "
                "(the object's TLE)",
                path=os.fspath(path), frame=frame,
            )  # fmt: skip
        a, b = (e1, e2) if k == 0 else (e2, e1)
        points += time_streak(clock, a, b, n_interior=n_interior,
                              sigma_along_px=(position_sigma_px, position_sigma_px))  # fmt: skip
    elif detect:
        from qhytime.satellite.detect import detect_trails, refine_trail

        assert image is not None
        mask = _mask(clock, width, height)
        trails = detect_trails(image, mask=mask)
        if not trails:
            notes.append(f"{os.fspath(path)}, frame {frame}: no trail found")
        if trails and next_path is None and tle_obj is None:
            raise RowModelError(
                f"{len(trails)} trail(s) found; which end of each came first cannot be seen in one "
                "frame: give next_path= (the next frame, where the trail goes on) or tle= (the "
                "object's TLE)",
                path=os.fspath(path), frame=frame,
            )  # fmt: skip
        for i, tr in enumerate(trails):
            k = None
            if next_path is not None:
                k = order_ends(tr.ends, next_trails())
            if k is None and tle_obj is not None:
                k = order_by_tle(tr.ends)
            if k is None:
                notes.append(
                    f"trail {i} ({tr.ends[0][0]:.1f}, {tr.ends[0][1]:.1f})-({tr.ends[1][0]:.1f}, "
                    f"{tr.ends[1][1]:.1f}): no continuation in the next frame, its time order is "
                    "unknown: not timed"
                )
                pts = _untimed_trail(clock, tr, i, n_interior)
            else:
                # the ends through the rolling shutter, now that the time order is known
                tr = trails[i] = refine_trail(image, tr, clock, k, mask=mask)
                sel = (0, 1) if k == 0 else (1, 0)
                pts = time_streak(
                    clock, tr.ends[sel[0]], tr.ends[sel[1]], n_interior=n_interior, trail=i,
                    sigma_along_px=(math.hypot(tr.sigma_along_px[sel[0]], systematic_px),
                                    math.hypot(tr.sigma_along_px[sel[1]], systematic_px)),
                    sigma_cross_px=(tr.sigma_cross_px[sel[0]], tr.sigma_cross_px[sel[1]]),
                    flags=(tr.flags[sel[0]], tr.flags[sel[1]]),
                )
            for p in pts:
                p.extra["snr_per_px"] = round(tr.snr, 2)
            points += pts
    else:
        for i, xy in enumerate(point_sources):
            points.append(time_point(clock, _parse_pair(xy, "a point"), sigma_px=position_sigma_px,
                                     index=i))  # fmt: skip
    for p in points:
        if "blended" in p.flags:
            notes.append(
                f"the {p.kind} end ({p.x:.2f}, {p.y:.2f}) of trail {p.trail} has a star or another "
                "source on it: its position cannot be trusted, not a timing point"
            )
        if "edge" in p.flags and p.kind in ("first", "last"):
            notes.append(
                f"the {p.kind} end ({p.x:.2f}, {p.y:.2f}) of trail {p.trail} is within 1 px of "
                "the frame's edge: it is where the object crossed the edge, not a timing point"
            )
        elif "masked" in p.flags:
            notes.append(f"the point ({p.x:.2f}, {p.y:.2f}) touches the GPS block: not timed")
    # sky positions
    if wcs_obj is not None and points:
        ra, dec = pixel_to_icrs(wcs_obj, [p.x for p in points], [p.y for p in points])
        new = []
        for p, r, d in zip(points, ra, dec, strict=True):
            scale = pixel_scale_arcsec(wcs_obj, p.x, p.y)
            new.append(replace(p, ra_deg=float(r), dec_deg=float(d),
                               sigma_sky_arcsec=p.sigma_cross_px * scale))  # fmt: skip
        points = new
    result = StreakResult(
        path=os.fspath(path), frame=frame, points=points, trails=trails, clock=clock,
        wcs=wcs_obj, wcs_source=wcs_source, observer=observer, notes=notes,
        lookup=ft.lookup, reasons=list(rec.reasons),
    )  # fmt: skip
    if tle_obj is not None:
        from qhytime.satellite.orbit import Observer, orbit_check

        if observer == (0.0, 0.0):
            notes.append("the GPS block's position is 0, 0 (no fix?): the orbit check assumes it")

        measured = [(i, p.kind, p.unix_ns, p.sigma_ns / 1e9, p.ra_deg, p.dec_deg)
                    for i, p in enumerate(points)
                    if p.timing and p.ra_deg is not None and p.sigma_ns is not None]  # fmt: skip
        if wcs_obj is None:
            notes.append("the orbit check needs sky positions: no WCS, no check")
        elif not measured:
            notes.append("the orbit check found no timed point to check")
        else:
            result.orbit = orbit_check(tle_obj, Observer(observer[0], observer[1], height_m), measured)  # type: ignore[arg-type]
    return result


def _untimed_trail(clock: FrameClock, tr: Trail, index: int, n_interior: int) -> list[StreakPoint]:
    """The points of a trail whose time order is unknown: kind ``end``, flagged, no times."""
    (xa, ya), (xb, yb) = tr.ends
    out = [StreakPoint(x=xa, y=ya, kind="end", trail=index, row=clock.row_of(ya),
                       sigma_along_px=tr.sigma_along_px[0], sigma_cross_px=tr.sigma_cross_px[0],
                       flags=(*clock.boundary_flags(xa, ya), *tr.flags[0], "order_unknown"))]  # fmt: skip
    for k in range(1, n_interior + 1):
        f = k / (n_interior + 1)
        x, y = xa + f * (xb - xa), ya + f * (yb - ya)
        out.append(StreakPoint(x=x, y=y, kind="interior", trail=index, row=clock.row_of(y),
                               flags=("order_unknown",)))  # fmt: skip
    out.append(StreakPoint(x=xb, y=yb, kind="end", trail=index, row=clock.row_of(yb),
                           sigma_along_px=tr.sigma_along_px[1], sigma_cross_px=tr.sigma_cross_px[1],
                           flags=(*clock.boundary_flags(xb, yb), *tr.flags[1], "order_unknown")))  # fmt: skip
    return out


def _mask(clock: FrameClock, width: int, height: int) -> np.ndarray:
    m = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in clock.masked:
        m[y0 : y1 + 1, x0 : x1 + 1] = True
    return m


def _detect_in(path: str | os.PathLike[str], frame: int) -> list[Trail]:
    """Trails of another frame (the next one); its GPS block masked."""
    from qhytime.readers import open_frames
    from qhytime.satellite.detect import detect_trails
    from qhytime.satellite.timing import block_rectangle

    with open_frames(path) as reader:
        if not 0 <= frame < len(reader):
            raise RowModelError(
                f"next_frame={frame} is out of range: the file has {len(reader)} frame(s)"
                + (f" (0..{len(reader) - 1})" if len(reader) else ""),
                path=reader.path,
            )
        image = reader.image(frame)
        scan = reader.scan_blocks()
        flipped = bool(scan.flipped[frame]) if len(scan) > frame else False
        x0, y0, x1, y1 = block_rectangle(reader.height, reader.bit_depth, flipped)
        mask = np.zeros(image.shape, dtype=bool)
        mask[y0 : y1 + 1, x0 : x1 + 1] = True
    return detect_trails(image, mask=mask)

"""Times of the points of a streak on a rolling shutter (``../shared/spec/streak-timing.md``).

A moving object records the straight trail ``p(t)``, ``t`` in ``[t_a, t_b]``, with

    t_a = start(y_a)    the first end in time, on its row y_a
    t_b = end(y_b)      the last end in time, on its row y_b

and a point a fraction ``f`` of the way from the first end to the last at
``t_a + f (t_b - t_a)``. Rows are image rows as stored (0-based pixel centres, a position's row
is ``floor(y + 0.5)``); a binned row is an interval (earliest start, latest end). Everything is
integer ns: ``f = k / (N + 1)`` for the ``N`` interior points, rounded once, halves up.

The 1-sigma of a time combines the row model's sigma at that row with the position sigma
along the trail divided by the apparent speed ``|v| = L / (t_b - t_a)``. An end within 1 px
of the frame's edge (or of a masked area such as the GPS block) is flagged: its time is when
the object crossed that boundary, not a window boundary, so it is not a timing point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from qhytime.errors import RowModelError
from qhytime.rowmodel import FrameGeometry, RowModel, row_times
from qhytime.timebase import unix_ns_to_iso

if TYPE_CHECKING:
    from qhytime.framerows import FileTiming

EDGE_PX = 1.0
"""An end closer than this (px) to the frame's edge or a masked pixel is not a timing point."""

KINDS = ("first", "last", "interior", "point", "end")
"""Point kinds; ``end`` is an end of a trail whose time order is unknown (not timed)."""
UNTIMED_FLAGS = frozenset({"edge", "masked", "blended", "order_unknown", "untimed_end"})
"""Flags that make a point not a timing point (its time is absent)."""


@dataclass(frozen=True)
class FrameClock:
    """What times the rows of one frame: row model, geometry, reference stamp, exposure.

    Parameters
    ----------
    model : RowModel
    geometry : FrameGeometry
    reference_ns : int
        Unix ns of the frame's reference stamp (the model's ``reference``).
    exposure_ns : int
    width : int
        Image columns (for edge flags).
    masked : sequence of (x0, y0, x1, y1)
        Inclusive pixel rectangles that hold no sky (the GPS block).

    Examples
    --------
    >>> m = RowModel.from_us(offset0_us=1000, line_period_ns=10_000, readout="2cms")
    >>> clock = FrameClock(m, FrameGeometry(height=100), 0, 5_000_000, width=100)
    >>> int(clock.start_ns(10)), int(clock.end_ns(10))
    (-3900000, 1100000)
    """

    model: RowModel
    geometry: FrameGeometry
    reference_ns: int
    exposure_ns: int
    width: int
    masked: tuple[tuple[int, int, int, int], ...] = ()

    @classmethod
    def from_file_timing(
        cls, ft: FileTiming, frame: int = 0, *, allow_invalid: bool = False, width: int | None = None
    ) -> FrameClock:
        """The clock of frame ``frame`` of a :class:`~qhytime.framerows.FileTiming` (checked:
        a frame whose time is flagged raises unless ``allow_invalid``)."""
        rec = ft.record(frame, allow_invalid=allow_invalid)
        geom = ft.geometry(frame)
        w = int(width if width is not None else rec.block.width if rec.block is not None else 0)
        return cls(
            model=ft.model,
            geometry=geom,
            reference_ns=int(rec.stamps[ft.model.reference].unix_ns),
            exposure_ns=ft.require_exposure(frame),
            width=w,
            masked=(block_rectangle(geom.height, ft.setting.bit_depth, geom.flipped),),
        )

    @property
    def height(self) -> int:
        return self.geometry.height

    def _times(self, rows: Any) -> Any:
        return row_times(self.model, self.geometry, self.reference_ns, self.exposure_ns, rows)

    def start_ns(self, row: int) -> int:
        """Earliest start of exposure of image row ``row``."""
        return int(self._times([row]).start_ns[0, 0])

    def end_ns(self, row: int) -> int:
        """Latest end of exposure of image row ``row``."""
        return int(self._times([row]).end_ns[0, 0])

    def mid_ns(self, row: int) -> int:
        """Middle of exposure of image row ``row`` (mean of a binned row's middles)."""
        return int(self._times([row]).mid_ns[0, 0])

    def sigma_ns(self, row: int) -> float:
        """The row model's 1-sigma at image row ``row``."""
        return float(self._times([row]).sigma_ns[0])

    def row_windows_ns(self, rows: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Earliest start and latest end of image rows (all rows by default), int64 unix ns
        (the spec's ``start(y)``, ``end(y)``)."""
        t = self._times(None if rows is None else np.asarray(rows, dtype=np.int64))
        return t.start_ns[0], t.end_ns[0]

    def sensor_windows_ps(self, rows: Any) -> tuple[np.ndarray, np.ndarray]:
        """The exposure window of every sensor row of image rows ``rows``: start and end in
        integer ps after the reference stamp, each of shape ``(len(rows), binning)``.

        A binned row's own window (:meth:`start_ns`, :meth:`end_ns`) is their earliest start
        and latest end; the light of a moving object in a binned pixel is the sum over its
        sensor rows, each through its own window.

        Examples
        --------
        2CMS, binning 2, LP 10 us, exposure 5 ms: image row 3 is sensor rows 6 and 7.

        >>> m = RowModel.from_us(offset0_us=1000, line_period_ns=10_000, readout="2cms")
        >>> clock = FrameClock(m, FrameGeometry(height=50, binning=2), 0, 5_000_000, width=100)
        >>> s, e = clock.sensor_windows_ps([3])
        >>> (e // 1000).tolist(), ((e - s) // 1000).tolist()
        ([[1060000, 1070000]], [[5000000, 5000000]])
        >>> int(clock.end_ns(3)), int(clock.start_ns(3))
        (1070000, -3940000)
        """
        model, geom = self.model, self.geometry
        sensor = geom.sensor_rows(np.asarray(rows, dtype=np.int64))
        end = model.relative_end_ps(sensor)
        exposure_ps = round(self.exposure_ns * 1000 * model.exposure_scale)
        if model.global_reset:  # all rows start with the frame's first readout row
            start = np.full_like(end, int(model.relative_end_ps([geom.crop_y])[0]) - exposure_ps)
        else:
            start = end - exposure_ps
        return start, end

    def boundary_flags(self, x: float, y: float, margin_px: float = EDGE_PX) -> tuple[str, ...]:
        """``("edge",)`` within ``margin_px`` of the frame's edge, ``("masked",)`` within it
        of a masked rectangle, else ``()``. Pixel centres are integers: the frame's edge is at
        -0.5 and width - 0.5 (height - 0.5)."""
        flags: list[str] = []
        h, w = self.height, self.width
        if min(x + 0.5, y + 0.5, (w - 0.5 - x) if w else math.inf, h - 0.5 - y) <= margin_px:
            flags.append("edge")
        for x0, y0, x1, y1 in self.masked:
            dx = max(x0 - 0.5 - x, 0.0, x - x1 - 0.5)
            dy = max(y0 - 0.5 - y, 0.0, y - y1 - 0.5)
            if math.hypot(dx, dy) <= margin_px:
                flags.append("masked")
                break
        return tuple(flags)

    def row_of(self, y: float) -> int:
        """The image row of position ``y`` (``floor(y + 0.5)``), checked to be in the frame."""
        if not math.isfinite(y):
            raise RowModelError(f"position y={y} is not finite")
        r = math.floor(y + 0.5)
        if not 0 <= r < self.height:
            raise RowModelError(
                f"position y={y:.3f} is outside the frame's rows 0..{self.height - 1} "
                "(0-based pixel centres)"
            )
        return r


def block_rectangle(height: int, bit_depth: int, flipped: bool = False) -> tuple[int, int, int, int]:
    """The pixels of the 44-byte GPS block: the first 22 (16-bit) or 44 (8-bit) pixels of the
    first readout row (the last stored row of a flipped frame), as ``(x0, y0, x1, y1)``.

    Examples
    --------
    >>> block_rectangle(100, 16)
    (0, 0, 21, 0)
    >>> block_rectangle(100, 8, flipped=True)
    (0, 99, 43, 99)
    """
    n = 44 if bit_depth == 8 else 22
    row = height - 1 if flipped else 0
    return (0, row, n - 1, row)


@dataclass(frozen=True)
class StreakPoint:
    """One point of a streak (or a point source) with its time and where it is.

    Attributes
    ----------
    x, y : float
        Image pixel (0-based pixel centres, ``origin=0``): column and row as stored.
    kind : {"first", "last", "interior", "point"}
    trail : int
        Which trail of the frame (0-based).
    row : int
        Image row of the point.
    unix_ns : int or None
        Exact time (ns since 1970, UTC); None for a point that is not a timing point.
    sigma_ns : float or None
        1-sigma of the time.
    fraction : float or None
        Position along the trail from the first end (0) to the last (1).
    sigma_along_px, sigma_cross_px : float
        1-sigma of the position along and across the trail (px).
    speed_px_s : float or None
        Apparent speed on the image.
    flags : tuple of str
        ``edge``, ``masked`` (an end on the frame's edge or the GPS block), ``blended`` (a
        detected end with a star or another source on it), ``untimed_end`` (an interior point
        of a trail with an untimed end), ``order_unknown`` (which end came first is not
        known); any of these makes the point not a timing point.
    ra_deg, dec_deg : float or None
        ICRS position from the frame's celestial WCS.
    sigma_sky_arcsec : float or None
        1-sigma of the sky position (cross-track position sigma x pixel scale).
    """

    x: float
    y: float
    kind: str
    trail: int = 0
    row: int = 0
    unix_ns: int | None = None
    sigma_ns: float | None = None
    fraction: float | None = None
    sigma_along_px: float = 0.0
    sigma_cross_px: float = 0.0
    speed_px_s: float | None = None
    flags: tuple[str, ...] = ()
    ra_deg: float | None = None
    dec_deg: float | None = None
    sigma_sky_arcsec: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def timing(self) -> bool:
        """True when the point's time is a timing point (no flag forbids it)."""
        return self.unix_ns is not None and not (UNTIMED_FLAGS & set(self.flags))

    @property
    def utc(self) -> str | None:
        """ISO UTC with 9 decimals (None without a time)."""
        return None if self.unix_ns is None else str(unix_ns_to_iso(self.unix_ns))

    @property
    def sigma_s(self) -> float | None:
        return None if self.sigma_ns is None else self.sigma_ns / 1e9

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` record: ``x, y, kind, trail, row, unix_ns, utc, sigma_s, ra_deg,
        dec_deg`` (absent without a WCS), ``flags``, ``timing`` and details."""
        d: dict[str, Any] = {
            "x": self.x,
            "y": self.y,
            "kind": self.kind,
            "trail": self.trail,
            "row": self.row,
            "unix_ns": self.unix_ns,
            "utc": self.utc,
            "sigma_s": None if self.sigma_ns is None else round(self.sigma_ns / 1e9, 12),
        }
        if self.ra_deg is not None and self.dec_deg is not None:
            d["ra_deg"] = self.ra_deg
            d["dec_deg"] = self.dec_deg
            if self.sigma_sky_arcsec is not None:
                d["position_sigma_arcsec"] = round(self.sigma_sky_arcsec, 4)
        d["flags"] = list(self.flags)
        d["timing"] = self.timing
        if self.fraction is not None:
            d["fraction"] = self.fraction
        d["position_sigma_px"] = {
            "along": round(self.sigma_along_px, 4),
            "across": round(self.sigma_cross_px, 4),
        }
        if self.speed_px_s is not None:
            d["speed_px_per_s"] = round(self.speed_px_s, 4)
        d.update(self.extra)
        return d


def _half_up_div(num: int, den: int) -> int:
    """``num / den`` rounded to the nearest integer, halves up (exact integers)."""
    return (2 * num + den) // (2 * den)


def interior_time_ns(t_a: int, t_b: int, k: int, n: int) -> int:
    """``t_a + f (t_b - t_a)`` for ``f = k / (n + 1)``, in integer ns (halves up).

    Examples
    --------
    >>> interior_time_ns(0, 101, 1, 1)        # 50.5 -> 51
    51
    >>> interior_time_ns(1_000, 2_000, 1, 3)  # a quarter of the way
    1250
    """
    return int(t_a) + _half_up_div(k * (int(t_b) - int(t_a)), n + 1)


def time_streak(
    clock: FrameClock,
    first: tuple[float, float],
    last: tuple[float, float],
    *,
    n_interior: int = 0,
    sigma_along_px: tuple[float, float] = (0.5, 0.5),
    sigma_cross_px: tuple[float, float] | None = None,
    trail: int = 0,
    flags: tuple[Sequence[str], Sequence[str]] = ((), ()),
) -> list[StreakPoint]:
    """Times of the two ends of a trail and of ``n_interior`` points between.

    Parameters
    ----------
    clock : FrameClock
        The frame's row timing.
    first, last : (x, y)
        The end that came first in time and the one that came last (image pixels).
    n_interior : int
        Points at fractions ``k / (n_interior + 1)`` from the first end.
    sigma_along_px : (float, float)
        1-sigma of each end's position along the trail.
    sigma_cross_px : (float, float), optional
        Across the trail (default: as along).
    trail : int
        Index written into the points.
    flags : (sequence of str, sequence of str)
        Extra flags of the first and last end (e.g. from detection).

    Returns
    -------
    list of StreakPoint
        First end, the interior points in order, last end. An end on the edge or the GPS
        block is flagged and has no time; then the interior points are flagged ``untimed_end``
        and have none either.

    Raises
    ------
    RowModelError
        An end outside the frame, ends at the same place, or ``t_b <= t_a`` (the object
        cannot have recorded this trail with that end first).

    Examples
    --------
    2CMS, LP 10 us, exposure 5 ms, offset0 1 ms after a reference at t = 0: the first end on
    row 10 starts at 1 ms + 100 us - 5 ms; the last on row 30 ends at 1 ms + 300 us.

    >>> m = RowModel.from_us(offset0_us=1000, line_period_ns=10_000, readout="2cms")
    >>> clock = FrameClock(m, FrameGeometry(height=100), 0, 5_000_000, width=100)
    >>> pts = time_streak(clock, (20.0, 10.0), (60.0, 30.0), n_interior=1)
    >>> [(p.kind, p.unix_ns) for p in pts]
    [('first', -3900000), ('interior', -1300000), ('last', 1300000)]
    >>> round(pts[0].speed_px_s, 3)          # 44.72 px in 5.2 ms
    8600.261
    """
    cross = sigma_cross_px if sigma_cross_px is not None else sigma_along_px
    for (x, y), name in ((first, "first"), (last, "last")):
        if not (math.isfinite(x) and math.isfinite(y)):
            raise RowModelError(f"the {name} end ({x}, {y}) is not finite")
        if clock.width and not -0.5 <= x <= clock.width - 0.5:
            raise RowModelError(
                f"the {name} end x={x:.3f} is outside the frame's columns 0..{clock.width - 1}"
            )
    xa, ya = float(first[0]), float(first[1])
    xb, yb = float(last[0]), float(last[1])
    ra, rb = clock.row_of(ya), clock.row_of(yb)
    length = math.hypot(xb - xa, yb - ya)
    if length < 1e-6:
        raise RowModelError(f"the two ends ({xa}, {ya}) and ({xb}, {yb}) are the same point")
    t_a, t_b = clock.start_ns(ra), clock.end_ns(rb)
    span = t_b - t_a
    if span <= 0:
        raise RowModelError(
            f"the last end's row {rb} ends ({t_b} ns) before the first end's row {ra} starts "
            f"({t_a} ns): no object records such a trail; check which end came first"
        )
    fa = tuple(clock.boundary_flags(xa, ya)) + tuple(flags[0])
    fb = tuple(clock.boundary_flags(xb, yb)) + tuple(flags[1])
    speed_ns = length / span  # px per ns: a lower bound when an end is cut by the edge
    speed = speed_ns * 1e9
    sa, sb = float(sigma_along_px[0]), float(sigma_along_px[1])

    def tsig(row_sigma: float, pos_sigma_px: float) -> float:
        return math.sqrt(row_sigma**2 + (pos_sigma_px / speed_ns) ** 2)

    end_a = StreakPoint(
        x=xa, y=ya, kind="first", trail=trail, row=ra, unix_ns=t_a,
        sigma_ns=tsig(clock.sigma_ns(ra), sa), fraction=0.0, sigma_along_px=sa,
        sigma_cross_px=float(cross[0]), speed_px_s=speed, flags=fa,
    )  # fmt: skip
    end_b = StreakPoint(
        x=xb, y=yb, kind="last", trail=trail, row=rb, unix_ns=t_b,
        sigma_ns=tsig(clock.sigma_ns(rb), sb), fraction=1.0, sigma_along_px=sb,
        sigma_cross_px=float(cross[1]), speed_px_s=speed, flags=fb,
    )  # fmt: skip
    cut = bool(UNTIMED_FLAGS & set(fa + fb))
    out = [_untime(end_a) if UNTIMED_FLAGS & set(fa) else end_a]
    for k in range(1, n_interior + 1):
        f = k / (n_interior + 1)
        x, y = xa + f * (xb - xa), ya + f * (yb - ya)
        r = clock.row_of(y)
        pos_sig = math.sqrt(((1 - f) * sa) ** 2 + (f * sb) ** 2)
        pt = StreakPoint(
            x=x, y=y, kind="interior", trail=trail, row=r,
            unix_ns=interior_time_ns(t_a, t_b, k, n_interior),
            sigma_ns=tsig(clock.sigma_ns(r), pos_sig), fraction=f, sigma_along_px=pos_sig,
            sigma_cross_px=math.sqrt(((1 - f) * cross[0]) ** 2 + (f * cross[1]) ** 2),
            speed_px_s=speed,
        )  # fmt: skip
        out.append(_untime(replace(pt, flags=("untimed_end",))) if cut else pt)
    out.append(_untime(end_b) if UNTIMED_FLAGS & set(fb) else end_b)
    return out


def _untime(p: StreakPoint) -> StreakPoint:
    return replace(p, unix_ns=None, sigma_ns=None)


def time_point(
    clock: FrameClock,
    xy: tuple[float, float],
    *,
    sigma_px: float = 0.5,
    index: int = 0,
) -> StreakPoint:
    """Time of a point source (asteroid, comet, slow satellite): its row's middle.

    A point source's centroid is its mean position over its row's window, which for uniform
    motion is its position at the window's middle; the 1-sigma is the row model's.

    Examples
    --------
    >>> m = RowModel.from_us(offset0_us=1000, line_period_ns=10_000, readout="2cms")
    >>> clock = FrameClock(m, FrameGeometry(height=100), 0, 5_000_000, width=100)
    >>> p = time_point(clock, (50.2, 20.4))
    >>> p.kind, p.row, p.unix_ns
    ('point', 20, -1300000)
    """
    x, y = float(xy[0]), float(xy[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise RowModelError(f"point ({x}, {y}) is not finite")
    if clock.width and not -0.5 <= x <= clock.width - 0.5:
        raise RowModelError(f"point x={x:.3f} is outside the frame's columns 0..{clock.width - 1}")
    r = clock.row_of(y)
    flags = clock.boundary_flags(x, y)
    p = StreakPoint(
        x=x, y=y, kind="point", trail=index, row=r, unix_ns=clock.mid_ns(r),
        sigma_ns=clock.sigma_ns(r), sigma_along_px=sigma_px, sigma_cross_px=sigma_px, flags=flags,
    )  # fmt: skip
    return _untime(p) if UNTIMED_FLAGS & set(flags) else p


def order_ends(
    ends: tuple[tuple[float, float], tuple[float, float]],
    next_segments: Sequence[tuple[tuple[float, float], tuple[float, float]]],
    *,
    max_angle_deg: float = 30.0,
) -> int | None:
    """Which end came first, from the object's trail in the next frame.

    The end nearer the next frame's trail came last. The next trail is the one (roughly
    parallel, within ``max_angle_deg``) nearest to either end.

    Returns
    -------
    int or None
        0 when ``ends[0]`` came first, 1 when ``ends[1]`` did, None when no next trail fits.

    Examples
    --------
    >>> order_ends(((0.0, 0.0), (10.0, 0.0)), [((14.0, 0.0), (24.0, 0.0))])
    0
    >>> order_ends(((0.0, 0.0), (10.0, 0.0)), [((-14.0, 0.5), (-4.0, 0.5))])
    1
    """
    a = np.asarray(ends[0], dtype=float)
    b = np.asarray(ends[1], dtype=float)
    u = (b - a) / max(np.hypot(*(b - a)), 1e-12)
    best: tuple[float, int] | None = None
    for seg in next_segments:
        p, q = np.asarray(seg[0], dtype=float), np.asarray(seg[1], dtype=float)
        w = q - p
        lw = float(np.hypot(*w))
        if lw > 0:
            cosang = abs(float(np.dot(u, w / lw)))
            if cosang < math.cos(math.radians(max_angle_deg)):
                continue
        da, db = _point_segment(a, p, q), _point_segment(b, p, q)
        cand = (min(da, db), 0 if db < da else 1)
        if best is None or cand[0] < best[0]:
            best = cand
    return None if best is None else best[1]


def _point_segment(c: Any, p: Any, q: Any) -> float:
    w = q - p
    l2 = float(np.dot(w, w))
    t = 0.0 if l2 == 0 else min(1.0, max(0.0, float(np.dot(c - p, w)) / l2))
    return float(np.hypot(*(c - (p + t * w))))

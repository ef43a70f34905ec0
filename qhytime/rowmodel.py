"""Row timing of a rolling-shutter frame: start, middle and end of every row, exactly.

The model (``../shared/spec/row-timing.md``)::

    end(y)   = T_ref + offset0 + step(y)
    start(y) = end(y) - exposure
    mid(y)   = end(y) - exposure / 2
    step(y)  = 2 * LP * floor(y / 2)     rows read in pairs (normal modes)
             = LP * y                    one row at a time (2CMS modes)

with ``y`` the physical sensor row. All arithmetic is integer: ``T_ref`` in unix ns (see
:mod:`qhytime.timebase`), offsets, line period and exposure in picoseconds, rounded once
to ns (halves up) when added to ``T_ref``. Vectorised over frames and rows.

Image rows map to sensor rows through the crop origin, binning and flips (see
:class:`FrameGeometry`); a binned row is an interval: its earliest start, its latest end
and the mean of its rows' middles.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qhytime.errors import RowModelError
from qhytime.gpsblock import STAMP_NAMES
from qhytime.timebase import unix_ns_to_iso, unix_ns_to_time

if TYPE_CHECKING:
    from astropy.time import Time

Readout = Literal["pairs", "2cms"]
Reference = Literal["start", "end", "now"]
READOUTS: tuple[str, str] = ("pairs", "2cms")

MAX_OFFSET0_PS = 10**20
"""Largest |offset0| (1e8 us): beyond any real camera, and far inside int64 arithmetic."""
MAX_LINE_PERIOD_PS = 10**9
"""Largest line period (1 ms per row)."""

TICK_SIGMA_NS = 100.0 / np.sqrt(12.0)
"""1-sigma of the 100 ns tick quantisation of a stamp (uniform): ~28.9 ns."""


def _round_ps_to_ns(ps: NDArray[np.int64]) -> NDArray[np.int64]:
    """Round integer picoseconds to ns, halves up (floor division keeps negatives right)."""
    return (ps + 500) // 1000


def us_to_ps(us: float) -> int:
    """Microseconds (float) to integer picoseconds, rounded.

    Examples
    --------
    >>> us_to_ps(1974.286)
    1974286000
    """
    return round(us * 1_000_000)


def ns_to_ps(ns: float) -> int:
    """Nanoseconds (float) to integer picoseconds, rounded.

    Examples
    --------
    >>> ns_to_ps(43194.52697)
    43194527
    """
    return round(ns * 1000)


@dataclass(frozen=True)
class RowModel:
    """Timing parameters of one camera setting.

    Parameters
    ----------
    offset0_ps : int
        From the reference stamp to the end of exposure of the first readout unit.
    line_period_ps : int
        Line period per sensor row.
    readout : {"pairs", "2cms"}
    reference : {"start", "end", "now"}
        Which stamp of the GPS block ``offset0`` is measured from.
    offset0_sigma_ps, line_period_sigma_ps : float
        1-sigma uncertainties.
    exposure_scale : float
        Multiplies the nominal exposure (1.0 unless measured).
    global_reset : bool
        All rows start together (``CONTROL_GlobalReset``) and still end row by row.

    Examples
    --------
    >>> m = RowModel.from_us(offset0_us=1974.286, line_period_ns=43194, readout="pairs")
    >>> m.relative_end_ps([0, 1, 2, 3]).tolist()
    [1974286000, 1974286000, 2060674000, 2060674000]
    """

    offset0_ps: int
    line_period_ps: int
    readout: Readout = "pairs"
    reference: Reference = "end"
    offset0_sigma_ps: float = 0.0
    line_period_sigma_ps: float = 0.0
    exposure_scale: float = 1.0
    global_reset: bool = False

    def __post_init__(self) -> None:
        if self.readout not in READOUTS:
            raise RowModelError(f"readout must be one of {READOUTS}, not {self.readout!r}")
        if self.reference not in STAMP_NAMES:
            raise RowModelError(f"reference must be one of {STAMP_NAMES}, not {self.reference!r}")
        for name, lo, hi in (("offset0_ps", -MAX_OFFSET0_PS, MAX_OFFSET0_PS),
                             ("line_period_ps", 1, MAX_LINE_PERIOD_PS)):  # fmt: skip
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or not lo <= v <= hi:
                raise RowModelError(f"{name} = {v!r} must be a whole number from {lo} to {hi}")
        for name in ("offset0_sigma_ps", "line_period_sigma_ps"):
            v = getattr(self, name)
            if not (isinstance(v, int | float | np.number) and math.isfinite(v) and v >= 0):
                raise RowModelError(f"{name} = {v!r} must be a finite number >= 0")
        e = self.exposure_scale
        if not (isinstance(e, int | float | np.number) and math.isfinite(e) and 0 < e <= 10):
            raise RowModelError(f"exposure_scale = {e!r} must be a finite number in (0, 10]")

    @classmethod
    def from_us(
        cls,
        *,
        offset0_us: float,
        line_period_ns: float,
        readout: Readout = "pairs",
        reference: Reference = "end",
        offset0_sigma_us: float = 0.0,
        line_period_sigma_ns: float = 0.0,
        exposure_scale: float = 1.0,
        global_reset: bool = False,
    ) -> RowModel:
        """Build from the units calibrations use (offset0 in us, line period in ns).

        Raises
        ------
        RowModelError
            For a value that is not finite or out of range (offset0 within +-1e8 us, line
            period in (0, 1e6] ns, sigmas >= 0).

        Examples
        --------
        >>> RowModel.from_us(offset0_us=float("nan"), line_period_ns=43194)
        Traceback (most recent call last):
        ...
        qhytime.errors.RowModelError: offset0_us = nan must be a finite number within +-1e+08
        """
        for name, v, bound in (("offset0_us", offset0_us, 1e8), ("line_period_ns", line_period_ns, 1e6),
                               ("offset0_sigma_us", offset0_sigma_us, 1e8),
                               ("line_period_sigma_ns", line_period_sigma_ns, 1e6)):  # fmt: skip
            if isinstance(v, bool) or not isinstance(v, int | float | np.number) or not (
                math.isfinite(v) and abs(v) <= bound
            ):
                raise RowModelError(f"{name} = {v!r} must be a finite number within +-{bound:g}")
        return cls(
            offset0_ps=us_to_ps(offset0_us),
            line_period_ps=ns_to_ps(line_period_ns),
            readout=readout,
            reference=reference,
            offset0_sigma_ps=offset0_sigma_us * 1e6,
            line_period_sigma_ps=line_period_sigma_ns * 1e3,
            exposure_scale=exposure_scale,
            global_reset=global_reset,
        )

    @property
    def offset0_us(self) -> float:
        return self.offset0_ps / 1e6

    @property
    def line_period_ns(self) -> float:
        return self.line_period_ps / 1e3

    def step_units(self, sensor_rows: ArrayLike) -> NDArray[np.int64]:
        """Line periods from the first readout unit to the readout of ``sensor_rows``."""
        y = np.asarray(sensor_rows, dtype=np.int64)
        if (y < 0).any():
            raise RowModelError("sensor rows must be >= 0")
        return 2 * (y // 2) if self.readout == "pairs" else y

    def relative_end_ps(self, sensor_rows: ArrayLike) -> NDArray[np.int64]:
        """End of exposure of ``sensor_rows`` after the reference stamp, in ps."""
        return self.offset0_ps + self.step_units(sensor_rows) * self.line_period_ps

    def sigma_ns(self, sensor_rows: ArrayLike) -> NDArray[np.float64]:
        """1-sigma of a row's times: tick quantisation, offset0 and step x sigma(LP)."""
        units = self.step_units(sensor_rows).astype(np.float64)
        return np.sqrt(
            TICK_SIGMA_NS**2
            + (self.offset0_sigma_ps / 1e3) ** 2
            + (units * self.line_period_sigma_ps / 1e3) ** 2
        )


@dataclass(frozen=True)
class FrameGeometry:
    """How the rows of a stored image map to sensor rows.

    Parameters
    ----------
    height : int
        Rows of the stored image.
    crop_y : int
        Sensor row (unbinned) of the first readout row of the image: the ROI start /
        ``CROPOFFY``.
    binning : int
        Software or hardware binning: one image row spans ``binning`` sensor rows.
    flipped : bool
        Rows stored top-down: stored row ``r`` is readout row ``height - 1 - r``.

    Examples
    --------
    >>> FrameGeometry(height=4, crop_y=10, binning=2).sensor_rows([0, 3]).tolist()
    [[10, 11], [16, 17]]
    >>> FrameGeometry(height=4, flipped=True).sensor_rows([0]).tolist()
    [[3]]
    """

    height: int
    crop_y: int = 0
    binning: int = 1
    flipped: bool = False

    def __post_init__(self) -> None:
        if self.binning < 1 or self.height < 1 or self.crop_y < 0:
            raise RowModelError(
                f"bad geometry: height {self.height}, crop_y {self.crop_y}, binning {self.binning}"
            )

    def check_rows(self, image_rows: ArrayLike) -> NDArray[np.int64]:
        r = np.asarray(image_rows, dtype=np.int64).reshape(-1)
        bad = (r < 0) | (r >= self.height)
        if bad.any():
            raise RowModelError(f"image row {int(r[bad][0])} outside 0..{self.height - 1}")
        return r

    def sensor_rows(self, image_rows: ArrayLike) -> NDArray[np.int64]:
        """Sensor rows of each image row, shape ``(R, binning)``."""
        r = self.check_rows(image_rows)
        readout_row = (self.height - 1 - r) if self.flipped else r
        first = self.crop_y + self.binning * readout_row
        return first[:, None] + np.arange(self.binning, dtype=np.int64)[None, :]


@dataclass
class RowTimes:
    """Start, middle and end of rows of one or more frames, int64 unix ns.

    Attributes
    ----------
    rows : int64 array (R,)
        Image rows.
    start_ns, mid_ns, end_ns : int64 arrays (N, R)
        Exact times (ns since 1970, UTC); N frames.
    sigma_ns : float array (R,)
        1-sigma per row.
    """

    rows: NDArray[np.int64]
    start_ns: NDArray[np.int64]
    mid_ns: NDArray[np.int64]
    end_ns: NDArray[np.int64]
    sigma_ns: NDArray[np.float64]

    @property
    def exposure_ns(self) -> NDArray[np.int64]:
        """Exposure of each row (end - start)."""
        return self.end_ns - self.start_ns

    def time(self, which: str = "mid", frame: int = 0) -> Time:
        """astropy ``Time`` of ``start``, ``mid`` or ``end`` for every row of one frame."""
        arr = {"start": self.start_ns, "mid": self.mid_ns, "end": self.end_ns}[which]
        return unix_ns_to_time(arr[frame])

    def records(self, frame: int = 0) -> list[dict[str, Any]]:
        """JSON records of one frame: ``row``, ``start``, ``mid``, ``end`` (ISO UTC, 9
        decimals), ``start_ns``, ``mid_ns``, ``end_ns`` (int unix ns) and ``sigma_ns``.

        Examples
        --------
        >>> m = RowModel.from_us(offset0_us=1000, line_period_ns=10_000, readout="pairs")
        >>> row_times(m, FrameGeometry(height=2), 0, 5_000_000).records()[0]["end"]
        '1970-01-01T00:00:00.001000000'
        """
        starts = unix_ns_to_iso(self.start_ns[frame])
        mids = unix_ns_to_iso(self.mid_ns[frame])
        ends = unix_ns_to_iso(self.end_ns[frame])
        return [
            {
                "row": int(r),
                "start": str(s),
                "mid": str(m),
                "end": str(e),
                "start_ns": int(s_ns),
                "mid_ns": int(m_ns),
                "end_ns": int(e_ns),
                "sigma_ns": round(float(sig), 3),
            }
            for r, s, m, e, s_ns, m_ns, e_ns, sig in zip(
                self.rows, starts, mids, ends, self.start_ns[frame], self.mid_ns[frame],
                self.end_ns[frame], self.sigma_ns, strict=True,
            )
        ]


def row_times(
    model: RowModel,
    geometry: FrameGeometry,
    reference_ns: ArrayLike,
    exposure_ns: int,
    rows: ArrayLike | None = None,
) -> RowTimes:
    """Start, middle and end of image rows for one or many frames.

    Parameters
    ----------
    model : RowModel
    geometry : FrameGeometry
    reference_ns : int or int64 array (N,)
        Unix ns of each frame's reference stamp (the model's ``reference``).
    exposure_ns : int
        Nominal exposure (the SDK's actual exposure when known); scaled by
        ``model.exposure_scale``.
    rows : array of int, optional
        Image rows; all rows by default.

    Returns
    -------
    RowTimes

    Examples
    --------
    Hand-worked: end stamp at t = 0, offset0 1000 us, LP 10 us, rows in pairs, 5 ms exposure.

    >>> m = RowModel.from_us(offset0_us=1000, line_period_ns=10_000, readout="pairs")
    >>> t = row_times(m, FrameGeometry(height=4), 0, 5_000_000)
    >>> t.end_ns[0].tolist()        # rows 0,1 at 1000 us; rows 2,3 two LPs later
    [1000000, 1000000, 1020000, 1020000]
    >>> t.start_ns[0].tolist()
    [-4000000, -4000000, -3980000, -3980000]
    >>> t.mid_ns[0].tolist()
    [-1500000, -1500000, -1480000, -1480000]
    """
    ref = np.atleast_1d(np.asarray(reference_ns, dtype=np.int64))
    if rows is None:  # every row: the offsets from the reference are cached by setting
        try:
            start_rel, mid_rel, end_rel, sigma = _relative_rows(
                model, geometry, exposure_ns, type(exposure_ns)
            )
        except TypeError:  # an exposure that cannot be a key (a 0-d array): computed
            return _row_times(model, geometry, ref, exposure_ns,
                              np.arange(geometry.height, dtype=np.int64))  # fmt: skip
        return RowTimes(rows=np.arange(geometry.height, dtype=np.int64),
                        start_ns=ref[:, None] + start_rel[None, :],
                        mid_ns=ref[:, None] + mid_rel[None, :],
                        end_ns=ref[:, None] + end_rel[None, :], sigma_ns=sigma.copy())  # fmt: skip
    return _row_times(model, geometry, ref, exposure_ns, geometry.check_rows(rows))


@functools.lru_cache(maxsize=32)
def _relative_rows(
    model: RowModel, geometry: FrameGeometry, exposure_ns: Any, _type: type
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Start, mid and end of every row relative to the reference stamp (ns) and the sigmas:
    :func:`row_times` of reference 0, whose integers are exactly ``time - reference`` (the
    reference is only ever added to them). Cached by setting and exposure (its type is part
    of the key); read-only, never handed out."""
    t = _row_times(model, geometry, np.zeros(1, dtype=np.int64), exposure_ns,
                   np.arange(geometry.height, dtype=np.int64))  # fmt: skip
    out = (t.start_ns[0].copy(), t.mid_ns[0].copy(), t.end_ns[0].copy(), t.sigma_ns.copy())
    for a in out:
        a.flags.writeable = False
    return out


def _row_times(
    model: RowModel,
    geometry: FrameGeometry,
    ref: NDArray[np.int64],
    exposure_ns: Any,
    image_rows: NDArray[np.int64],
) -> RowTimes:
    """:func:`row_times` of checked image rows, computed."""
    if exposure_ns is None or exposure_ns <= 0:
        raise RowModelError(f"exposure must be positive, got {exposure_ns} ns")
    sensor = geometry.sensor_rows(image_rows)  # (R, b)
    exposure_ps = round(exposure_ns * 1000 * model.exposure_scale)
    end_each = model.relative_end_ps(sensor)  # (R, b)
    b = geometry.binning
    end_rel = end_each.max(axis=1)
    if model.global_reset:
        # All rows start together; the exposure is that of the frame's first readout row.
        common_start = int(model.relative_end_ps([geometry.crop_y])[0]) - exposure_ps
        start_rel = np.full(len(image_rows), common_start, dtype=np.int64)
        mid_sum = end_each.sum(axis=1) + b * common_start  # 2 * sum of mids
        mid_rel_num, mid_den = mid_sum, 2 * b
    else:
        start_rel = end_each.min(axis=1) - exposure_ps
        # mean of (end - exposure / 2) over the binned rows, kept as a fraction of integers
        mid_rel_num = 2 * end_each.sum(axis=1) - b * exposure_ps
        mid_den = 2 * b
    # one rounding, straight from the exact fraction to ns (ps first would round twice)
    mid_rel_ns = _div_round(mid_rel_num, mid_den * 1000)
    start = ref[:, None] + _round_ps_to_ns(start_rel)[None, :]
    end = ref[:, None] + _round_ps_to_ns(end_rel)[None, :]
    mid = ref[:, None] + mid_rel_ns[None, :]
    sigma = model.sigma_ns(sensor.max(axis=1))
    return RowTimes(rows=image_rows, start_ns=start, mid_ns=mid, end_ns=end, sigma_ns=sigma)


def _div_round(num: NDArray[np.int64], den: int) -> NDArray[np.int64]:
    """Integer division rounded to nearest, halves up."""
    return (2 * num + den) // (2 * den)


@functools.lru_cache(maxsize=32)
def _relative_table(
    model: RowModel, geometry: FrameGeometry, exposure_ns: Any, _type: type
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Every row's times relative to the reference stamp, ``(height, 4)``: start, mid and end
    in ns and the sigma's float64 bits, one row per line so one gather fetches all four;
    and the flat mask ``1, 1, 1, 0, 1, 1, 1, 0, ...`` that adds a reference to the times
    only (one contiguous pass).

    :func:`row_times` with reference 0 gives exactly ``time - reference`` (the reference is
    only ever added to these integers), so ``reference + table`` is :func:`row_times`'s
    answer. Cached by setting and exposure (the type is part of the key: ``row_times``
    treats an int and a float exposure each its own way); never handed out, only read.
    """
    start, mid, end, sigma = _relative_rows(model, geometry, exposure_ns, _type)
    t = RowTimes(rows=np.arange(geometry.height), start_ns=start[None, :], mid_ns=mid[None, :],
                 end_ns=end[None, :], sigma_ns=sigma)  # fmt: skip
    table = np.empty((geometry.height, 4), dtype=np.int64)
    table[:, 0], table[:, 1], table[:, 2] = t.start_ns[0], t.mid_ns[0], t.end_ns[0]
    table[:, 3] = t.sigma_ns.view(np.int64)
    mask = np.tile(np.array([1, 1, 1, 0], dtype=np.int64), geometry.height)
    table.flags.writeable = mask.flags.writeable = False
    return table, mask


def pixel_times(
    model: RowModel,
    geometry: FrameGeometry,
    reference_ns: int,
    exposure_ns: int,
    pixels: Sequence[tuple[float, float]] | NDArray[Any],
) -> RowTimes:
    """Times of a list of pixels ``(x, y)``: on a rolling shutter only the row matters.

    ``y`` is rounded to the nearest image row. The returned ``rows`` follow the order of
    ``pixels`` (duplicates kept). For many pixels the frame's row table (cached by model,
    geometry and exposure) is gathered from in one take, so the time columns may be
    strided views of one ``(N, 4)`` array: the same integers as :func:`row_times`.

    Examples
    --------
    >>> m = RowModel.from_us(offset0_us=0, line_period_ns=1000, readout="2cms")
    >>> t = pixel_times(m, FrameGeometry(height=100), 0, 2000, [(5, 10), (900, 10.4), (0, 99)])
    >>> t.end_ns[0].tolist()
    [10000, 10000, 99000]
    """
    pts = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
    half_up = pts[:, 1] + 0.5
    plain = half_up.size > 0 and bool(half_up.min() >= 0)  # False for a NaN too
    # floor(y + 0.5): of a number >= 0 the cast's truncation is the floor (one pass less)
    rows = half_up.astype(np.int64) if plain else np.floor(half_up).astype(np.int64)
    if rows.size <= geometry.height // 4:
        return row_times(model, geometry, reference_ns, exposure_ns, rows)
    # Many pixels: the frame's rows once (relative to the reference, cached), the reference
    # added to that small table, then one gather of all four columns: the same integers as
    # a row model per pixel.
    if not plain:
        geometry.check_rows(rows)  # raises, naming the row (below 0, or not a number)
    rel, mask = _relative_table(model, geometry, exposure_ns, type(exposure_ns))  # checks exposure
    table = np.multiply(mask, np.asarray(reference_ns, dtype=np.int64).reshape(-1)[0])
    table += rel.reshape(-1)
    table = table.reshape(rel.shape)
    try:
        got = np.take(table, rows, axis=0)  # (N, 4); rows >= 0 here, so take checks the top
    except IndexError:
        geometry.check_rows(rows)  # raises, naming the row
        raise
    return RowTimes(
        rows=rows,
        start_ns=got[None, :, 0],
        mid_ns=got[None, :, 1],
        end_ns=got[None, :, 2],
        sigma_ns=got[:, 3].view(np.float64),
    )


def polyline_times(
    model: RowModel,
    geometry: FrameGeometry,
    reference_ns: int,
    exposure_ns: int,
    vertices: Sequence[tuple[float, float]] | NDArray[Any],
) -> tuple[NDArray[np.float64], RowTimes]:
    """Times along a polyline (a satellite streak), one point per image row it crosses.

    Parameters
    ----------
    vertices : sequence of (x, y)
        The polyline in image pixels.

    Returns
    -------
    points : float array (M, 2)
        ``(x, y)`` where the polyline crosses each integer row ``y`` (horizontal
        segments contribute their end points).
    times : RowTimes
        The times of those rows, in the same order.

    Examples
    --------
    >>> m = RowModel.from_us(offset0_us=0, line_period_ns=1000, readout="2cms")
    >>> pts, t = polyline_times(m, FrameGeometry(height=10), 0, 5000, [(0, 0), (30, 3)])
    >>> pts.tolist()
    [[0.0, 0.0], [10.0, 1.0], [20.0, 2.0], [30.0, 3.0]]
    >>> t.end_ns[0].tolist()
    [0, 1000, 2000, 3000]
    """
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 2)
    if len(v) < 2:
        raise RowModelError("a polyline needs at least two vertices")
    points: list[NDArray[np.float64]] = []
    for (x0, y0), (x1, y1) in itertools.pairwise(v):
        if y0 == y1:
            seg = np.array([[x0, y0], [x1, y1]])
        else:
            lo, hi = sorted((y0, y1))
            ys = np.arange(np.ceil(lo), np.floor(hi) + 1)
            if y1 < y0:
                ys = ys[::-1]
            xs = x0 + (ys - y0) * (x1 - x0) / (y1 - y0)
            seg = np.column_stack([xs, ys])
        if points and len(seg) and np.allclose(points[-1][-1], seg[0]):
            seg = seg[1:]
        points.append(seg)
    pts = np.concatenate(points) if points else np.zeros((0, 2))
    return pts, pixel_times(model, geometry, reference_ns, exposure_ns, pts)

"""Row times of real frames: decoded stamp + calibration (or explicit model) + geometry.

This ties the data path together: decode a file's blocks (:mod:`qhytime.decode`), find its
setting from the file's keywords, look up the calibration (:mod:`qhytime.store`) or take an
explicit :class:`~qhytime.rowmodel.RowModel`, map image rows to sensor rows, and compute
each row's start, middle and end.

- :func:`file_timing` does the per-file work once (decode, setting, calibration, exposure)
  and returns a :class:`FileTiming` that answers row times for any of the file's frames:
  what light curves, indexes and streak timing use over thousands of frames.
- :func:`frame_row_times` is the one-frame shortcut.
- :func:`exposure_window` is the one call for the question users ask: when was pixel
  (x, y), or these rows, of frame N of this file exposed? It opens the default calibration
  store exactly as the command line does and returns astropy ``Time``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qhytime.calibration import Setting
from qhytime.decode import DecodedFile, DecodedFrame, decode_reader
from qhytime.errors import CalibrationError, RowModelError
from qhytime.readers import FrameReader, open_frames
from qhytime.rowmodel import FrameGeometry, RowModel, RowTimes, row_times

if TYPE_CHECKING:
    from astropy.time import Time

    from qhytime.store import CalibrationStore, LookupResult

MAX_EXPOSURE_NS = 86_400 * 1_000_000_000
"""Longest exposure accepted (one day): a longer one is a header error."""

NOW_SPREAD_WARN_NS = 1_000_000
"""A now stamp that wanders against the end stamp by more than this within a file is warned
about when a calibration is measured from it (:class:`ReferenceStampWarning`)."""


class ReferenceStampWarning(UserWarning):
    """The calibration's reference stamp varies against the file's other stamps by more than a
    millisecond: its times carry that variation, and damage of that size cannot be caught."""


def _warn_if_now_wanders(decoded: DecodedFile, reference: str, path: str) -> None:
    if reference != "now" or len(decoded) < 3:
        return
    ok = np.array([not r for r in decoded.reasons], dtype=bool) & decoded.scan.present
    if ok.sum() < 3:
        return
    delay = (decoded.unix_ns["now"] - decoded.unix_ns["end"])[ok]
    text = now_wander_text(int(delay.min()), int(delay.max()), path)
    if text is not None:
        warnings.warn(ReferenceStampWarning(text), stacklevel=3)


def now_wander_text(delay_min_ns: int, delay_max_ns: int, path: str) -> str | None:
    """The :class:`ReferenceStampWarning` text for a file whose good frames' now stamps follow
    their end stamps by ``delay_min_ns..delay_max_ns``, or None when they spread by at most
    :data:`NOW_SPREAD_WARN_NS`.

    Examples
    --------
    >>> now_wander_text(1_000_000, 1_500_000, "a.ser") is None
    True
    >>> now_wander_text(60_000, 5_000_000, "a.ser")[:60]
    'a.ser: the calibration measures offset0 from the now stamp, '
    """
    if delay_max_ns - delay_min_ns <= NOW_SPREAD_WARN_NS:
        return None
    return (
        f"{path}: the calibration measures offset0 from the now stamp, which follows the "
        f"end stamp by {delay_min_ns / 1e6:.3f}..{delay_max_ns / 1e6:.3f} ms in this file "
        "(it varies from frame to frame): the row times carry that variation, and a "
        "damaged now stamp cannot be caught below ~10 ms. For sub-millisecond work, "
        "calibrate from the end stamp (qhytime ledcal --reference end)"
    )


def _int_key(meta: Mapping[str, Any], *keys: str) -> int | None:
    for k in keys:
        v = meta.get(k)
        if v is None or isinstance(v, str | bool):
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f) and f == int(f) and f >= 0:
            return int(f)
    return None


def own_int_key(meta: Mapping[str, Any], own: str | None, standard: str) -> int | None:
    """A whole number >= 0 from qhytime's own keyword ``own`` when the file has it (a stamped
    file keeps there what its source said; ``'unknown'`` gives None), else from ``standard``.

    Examples
    --------
    >>> own_int_key({"QT_CROPY": 37, "CROPOFFY": 19}, "QT_CROPY", "CROPOFFY")
    37
    >>> own_int_key({"QT_CROPY": "unknown", "CROPOFFY": 19}, "QT_CROPY", "CROPOFFY") is None
    True
    >>> own_int_key({"CROPOFFY": 19}, "QT_CROPY", "CROPOFFY")
    19
    """
    if own is not None and own in meta:
        return _int_key(meta, own)
    return _int_key(meta, standard)


def exposure_ns_from_metadata(meta: Mapping[str, Any]) -> int | None:
    """Exposure in ns from ``QHY_EXP`` (the SDK's actual exposure), else ``EXPTIME``/``EXPOSURE``.

    A stamped file's ``QT_EXPNS`` (the exact exposure its source gave, ``'unknown'`` when
    none) comes first. Values that are not finite, not positive or longer than a day are
    ignored (the next keyword is tried).

    Examples
    --------
    >>> exposure_ns_from_metadata({"EXPTIME": 0.25})
    250000000
    >>> exposure_ns_from_metadata({"QHY_EXP": 0.0003455604, "EXPTIME": 0.0003})
    345560
    >>> exposure_ns_from_metadata({"QHY_EXP": float("nan"), "EXPTIME": 1e30}) is None
    True
    >>> exposure_ns_from_metadata({"QT_EXPNS": 250000001, "QHY_EXP": 0.3})
    250000001
    >>> exposure_ns_from_metadata({"QT_EXPNS": "unknown", "QHY_EXP": 0.3}) is None
    True
    """
    own = meta.get("QT_EXPNS")
    if isinstance(own, str) and own.strip().lower() == "unknown":
        return None
    ns_own = _int_key(meta, "QT_EXPNS")
    if ns_own is not None and 0 < ns_own <= MAX_EXPOSURE_NS:
        return ns_own
    for key in ("QHY_EXP", "EXPTIME", "EXPOSURE"):
        v = meta.get(key)
        if v is None or isinstance(v, str | bool):
            continue
        try:
            ns = float(v) * 1e9
        except (TypeError, ValueError):
            continue
        if math.isfinite(ns) and 0 < ns <= MAX_EXPOSURE_NS:
            return round(ns)
    return None


def setting_from_reader(reader: FrameReader, index: int = 0) -> Setting:
    """The camera setting a frame was taken with, from the file's keywords.

    Missing keywords take defaults: ``INSTRUME`` unknown, readout mode unknown, crop 0,
    binning 1, USB_TRAFFIC 0; stream mode ``single`` for FITS and ``live`` for SER. In a
    stamped file, qhytime's own ``QT_MODE``, ``QT_CROPX``, ``QT_CROPY`` and ``QT_BIN`` (what
    its source said) come before ``READOUTM``, ``CROPOFFX``/``CROPOFFY`` (written in the
    binned units Siril reads) and ``XBINNING``, so a stamped file has its source's setting.
    """
    meta = reader.metadata(index)
    binning = own_int_key(meta, "QT_BIN", "XBINNING") or 1
    mode_key = "QT_MODE" if "QT_MODE" in meta else "READOUTM"
    mode = str(meta.get(mode_key) or "unknown").strip() or "unknown"
    stream = str(meta.get("QHYSTRM") or ("live" if reader.kind == "ser" else "single")).lower()
    camera = str(meta.get("INSTRUME") or getattr(reader, "instrument", "") or "unknown").strip()
    return Setting(
        camera_model=camera or "unknown",
        readout_mode=mode,
        is_2cms="2CMS" in mode.upper(),
        roi_x=own_int_key(meta, "QT_CROPX", "CROPOFFX") or 0,
        roi_y=own_int_key(meta, "QT_CROPY", "CROPOFFY") or 0,
        roi_width=reader.width * binning,
        roi_height=reader.height * binning,
        binning=binning,
        bit_depth=reader.bit_depth if reader.bit_depth in (8, 16) else 16,
        usb_traffic=_int_key(meta, "USBTRAFF", "USB_TRAF") or 0,
        stream_mode=stream if stream in ("single", "live") else "single",
    )


@dataclass
class FrameRowTimes:
    """Row times of one frame and everything they were computed from."""

    record: DecodedFrame
    times: RowTimes
    model: RowModel
    geometry: FrameGeometry
    exposure_ns: int
    setting: Setting
    lookup: LookupResult | None

    @property
    def calibration_id(self) -> int | None:
        return None if self.lookup is None else self.lookup.calibration.id


@dataclass
class FileTiming:
    """Everything needed to time any row of any frame of one file, worked out once.

    Build it with :func:`file_timing`. ``exposure_ns`` is None when the file names none
    and none was given: row times then raise, naming the argument to give.

    Attributes
    ----------
    path : str
    decoded : DecodedFile
        Every complete frame's block, exact stamps and reasons.
    setting : Setting
        From the file's keywords.
    model : RowModel
    lookup : LookupResult or None
        How the calibration was found (None for an explicit model).
    exposure_ns : int or None
    crop_y, binning, height : int
    """

    path: str
    decoded: DecodedFile
    setting: Setting
    model: RowModel
    lookup: LookupResult | None
    exposure_ns: int | None
    crop_y: int
    binning: int
    height: int

    def __len__(self) -> int:
        return len(self.decoded)

    @property
    def calibration_id(self) -> int | None:
        """Id of the calibration used (None for an explicit model)."""
        return None if self.lookup is None else self.lookup.calibration.id

    @property
    def reference_ns(self) -> NDArray[np.int64]:
        """Unix ns of every frame's reference stamp (meaningless where a frame has no block)."""
        return self.decoded.unix_ns[self.model.reference]

    def geometry(self, frame: int) -> FrameGeometry:
        """Row mapping of one frame (flips are per frame)."""
        return FrameGeometry(
            height=self.height,
            crop_y=self.crop_y,
            binning=self.binning,
            flipped=bool(self.decoded.scan.flipped[frame]),
        )

    def record(self, frame: int, *, allow_invalid: bool = False) -> DecodedFrame:
        """The decoded frame, checked: in range, with a block, trusted unless allowed.

        Raises
        ------
        RowModelError
            Naming the file and frame and why.
        """
        n = len(self.decoded)
        if isinstance(frame, bool) or not 0 <= int(frame) < n:
            raise RowModelError(
                f"frame {frame} out of range: the file has {n} complete frame(s) (0..{n - 1})",
                path=self.path,
                frame=int(frame),
            )
        rec = self.decoded.frame(int(frame))
        if rec.block is None:
            raise RowModelError("; ".join(rec.reasons), path=self.path, frame=int(frame))
        if rec.reasons and not allow_invalid:
            raise RowModelError(
                "the frame's time cannot be trusted: "
                + "; ".join(rec.reasons)
                + " (allow_invalid=True to compute it anyway)",
                path=self.path,
                frame=int(frame),
            )
        return rec

    def require_exposure(self, frame: int | None = None) -> int:
        """The exposure in ns, or a :class:`RowModelError` saying how to give it."""
        if self.exposure_ns is None:
            what = (
                "SER files carry no exposure"
                if self.decoded.path.lower().endswith(".ser")
                else "the file has no QHY_EXP/EXPTIME/EXPOSURE keyword"
            )
            raise RowModelError(f"no exposure: {what}; give exposure_ns", path=self.path, frame=frame)
        return self.exposure_ns

    def row_times(
        self, frame: int, rows: ArrayLike | None = None, *, allow_invalid: bool = False
    ) -> RowTimes:
        """Start, middle and end of image ``rows`` (all by default) of one frame."""
        rec = self.record(frame, allow_invalid=allow_invalid)
        exp = self.require_exposure(frame)
        ref = rec.stamps[self.model.reference].unix_ns
        return row_times(self.model, self.geometry(frame), ref, exp, rows)

    def frame_row_times(
        self, frame: int, rows: ArrayLike | None = None, *, allow_invalid: bool = False
    ) -> FrameRowTimes:
        """:meth:`row_times` with the record, model, geometry and setting they came from."""
        rec = self.record(frame, allow_invalid=allow_invalid)
        exp = self.require_exposure(frame)
        geom = self.geometry(frame)
        ref = rec.stamps[self.model.reference].unix_ns
        times = row_times(self.model, geom, ref, exp, rows)
        return FrameRowTimes(rec, times, self.model, geom, exp, self.setting, self.lookup)


def file_timing(
    path: str | os.PathLike[str] | FrameReader,
    *,
    model: RowModel | None = None,
    store: CalibrationStore | None = None,
    calibration_id: int | None = None,
    fallback: bool = False,
    exposure_ns: int | None = None,
    crop_y: int | None = None,
    binning: int | None = None,
    decoded: DecodedFile | None = None,
) -> FileTiming:
    """Decode a file and find its timing (setting, calibration or model, exposure) once.

    Parameters
    ----------
    path : path or FrameReader
    model : RowModel, optional
        Explicit timing; otherwise a calibration from ``store``, pinned by
        ``calibration_id`` or looked up by the file's setting.
    store : CalibrationStore, optional
    calibration_id : int, optional
        Use this calibration whatever its setting (warned when it differs from the file's).
    fallback : bool
        Allow a warned fallback calibration (see :meth:`CalibrationStore.lookup`).
    exposure_ns : int, optional
        Default: the file's ``QHY_EXP``, ``EXPTIME`` or ``EXPOSURE``.
    crop_y, binning : int, optional
        Default: the file's ``CROPOFFY`` and ``XBINNING`` (else 0 and 1).
    decoded : DecodedFile, optional
        The file's decoding when already done (e.g. with sequence context).

    Raises
    ------
    CalibrationError
        No calibration for the file's setting (or neither a model nor a store given).
    RowModelError
        Bad crop, binning or exposure.

    Examples
    --------
    >>> from qhytime.rowmodel import RowModel
    >>> m = RowModel.from_us(offset0_us=1974.286, line_period_ns=43194, readout="pairs")
    >>> ft = file_timing("tests/data/video16.ser", model=m, exposure_ns=250_000_000)
    >>> len(ft), ft.row_times(3, rows=[0]).end_ns.shape
    (25, (1, 1))
    """
    where = path.path if isinstance(path, FrameReader) else os.fspath(path)
    if exposure_ns is not None and (
        isinstance(exposure_ns, bool)
        or not isinstance(exposure_ns, int | np.integer)
        or not 0 < exposure_ns <= MAX_EXPOSURE_NS
    ):
        raise RowModelError(
            f"exposure_ns = {exposure_ns!r} is not a whole number of ns between 0 and one day",
            path=where,
        )
    reader = path if isinstance(path, FrameReader) else open_frames(path)
    try:
        if decoded is None:  # the stamps are checked against the exposure given, if any
            decoded = decode_reader(reader, exposure_ns=exposure_ns)
        setting = setting_from_reader(reader, 0) if len(reader) else setting_from_reader(reader)
        exp = exposure_ns
        if exp is None and len(reader):
            exp = exposure_ns_from_metadata(reader.metadata(0))
        lookup: LookupResult | None = None
        if model is None:
            if store is None:
                raise CalibrationError(
                    "give a row model (model) or a calibration store (store)", path=reader.path
                )
            try:
                if calibration_id is not None:
                    lookup = store.pinned(calibration_id, setting)
                else:
                    lookup = store.lookup(setting, fallback=fallback)
            except CalibrationError as exc:  # the store does not know the file: say which
                if exc.path is not None:
                    raise
                raise CalibrationError(exc.reason, path=reader.path) from exc
            model = lookup.row_model()
        _warn_if_now_wanders(decoded, model.reference, reader.path)
        cy = crop_y if crop_y is not None else setting.roi_y
        b = binning if binning is not None else setting.binning
        # FrameGeometry checks the values; check here so the error names the file.
        if cy < 0 or not 1 <= b <= 64:
            raise RowModelError(
                f"crop_y {cy} / binning {b}: the crop origin must be >= 0 and binning 1..64",
                path=reader.path,
            )
        return FileTiming(
            path=reader.path,
            decoded=decoded,
            setting=setting,
            model=model,
            lookup=lookup,
            exposure_ns=exp,
            crop_y=int(cy),
            binning=int(b),
            height=reader.height,
        )
    finally:
        if not isinstance(path, FrameReader):
            reader.close()


def frame_row_times(
    path: str | os.PathLike[str] | FrameReader,
    frame: int = 0,
    *,
    model: RowModel | None = None,
    store: CalibrationStore | None = None,
    calibration_id: int | None = None,
    fallback: bool = False,
    exposure_ns: int | None = None,
    crop_y: int | None = None,
    binning: int | None = None,
    rows: ArrayLike | None = None,
    allow_invalid: bool = False,
) -> FrameRowTimes:
    """Start, middle and end of the rows of one frame of a FITS or SER file.

    The arguments are those of :func:`file_timing`, plus:

    Parameters
    ----------
    frame : int
        0-based frame index.
    rows : array of int, optional
        Image rows; all by default.
    allow_invalid : bool
        Compute times for a frame whose status is ``invalid`` (reasons are kept in
        ``record.reasons``); by default such a frame raises.

    Raises
    ------
    RowModelError
        No exposure, frame without a block, or an invalid frame (unless allowed).
    CalibrationError
        No calibration for the setting.
    """
    ft = file_timing(
        path, model=model, store=store, calibration_id=calibration_id, fallback=fallback,
        exposure_ns=exposure_ns, crop_y=crop_y, binning=binning,
    )  # fmt: skip
    return ft.frame_row_times(frame, rows, allow_invalid=allow_invalid)


def _whole_rows(rows: ArrayLike, path: str, frame: int) -> NDArray[np.int64]:
    """Image rows as int64, refusing an empty list and rows that are not whole numbers."""
    arr = np.asarray(rows)
    if arr.size == 0:
        raise RowModelError("rows is empty: give at least one image row", path=path, frame=frame)
    if arr.dtype.kind not in "iu":
        as_float = arr.astype(np.float64, copy=False) if arr.dtype.kind in "fb" else None
        if as_float is None or not np.all(np.isfinite(as_float)) or np.any(as_float != np.floor(as_float)):
            raise RowModelError(
                f"rows must be whole image row numbers, got {arr.ravel()[:5].tolist()}",
                path=path,
                frame=frame,
            )
    return arr.astype(np.int64).reshape(-1)


@dataclass
class ExposureWindow:
    """When pixels or rows of one frame were exposed: the answer of :func:`exposure_window`.

    Attributes
    ----------
    rows : int64 array (R,)
        The image rows asked for (the pixel's row for a pixel).
    start, mid, end : astropy.time.Time
        Scalar for a pixel, shape (R,) for rows; scale utc, exact to the ns.
    start_ns, mid_ns, end_ns : int64 arrays (R,)
        The same as unix ns.
    sigma_ns : float array (R,)
        1-sigma of each row's times.
    status : str
        ``ok`` or ``invalid`` (only with ``allow_invalid``).
    reasons : list of str
    calibration : str
        How the timing was found (``calibration #3 (...): exact match`` or ``explicit model``).
    """

    rows: NDArray[np.int64]
    start: Time
    mid: Time
    end: Time
    start_ns: NDArray[np.int64]
    mid_ns: NDArray[np.int64]
    end_ns: NDArray[np.int64]
    sigma_ns: NDArray[np.float64]
    status: str
    reasons: list[str]
    calibration: str

    @property
    def sigma_s(self) -> Any:
        """1-sigma in seconds (a float for a pixel)."""
        s = self.sigma_ns / 1e9
        return float(s[0]) if self.start.isscalar else s


def exposure_window(
    path: str | os.PathLike[str],
    frame: int = 0,
    *,
    x: float | None = None,
    y: float | None = None,
    rows: ArrayLike | None = None,
    db: str | os.PathLike[str] | None = None,
    store: CalibrationStore | None = None,
    model: RowModel | None = None,
    calibration_id: int | None = None,
    fallback: bool = False,
    exposure_ns: int | None = None,
    crop_y: int | None = None,
    binning: int | None = None,
    allow_invalid: bool = False,
) -> ExposureWindow:
    """When was pixel (x, y) (or these rows, or every row) of frame N of a file exposed?

    The file's own keywords give the setting, the exposure, the crop and the binning; the
    calibration comes from the default calibration store (``$QHYTIME_DB`` or the user data
    directory, or ``db``/``store``) exactly as ``qhytime rows`` finds it. On a rolling
    shutter only the row matters: ``y`` is rounded to the nearest image row (pixel centres
    are integers, 0-based, as numpy and astropy with ``origin=0``); ``x`` is checked to lie in
    the frame.

    Parameters
    ----------
    path : path
        A FITS or SER file.
    frame : int
        0-based frame index in the file.
    x, y : float, optional
        A pixel; gives scalar times.
    rows : array of int, optional
        Image rows (instead of a pixel); all rows when neither is given.
    db, store, model, calibration_id, fallback, exposure_ns, crop_y, binning
        As for :func:`file_timing`. SER files carry no exposure: give ``exposure_ns``.
    allow_invalid : bool
        Answer for a frame whose time is flagged (its reasons are returned).

    Returns
    -------
    ExposureWindow

    Raises
    ------
    QhytimeError
        A :class:`~qhytime.errors.RowModelError` (pixel outside the frame, no exposure,
        flagged frame), :class:`~qhytime.errors.CalibrationError` (no calibration),
        :class:`~qhytime.errors.FrameReadError` (unreadable file).

    Examples
    --------
    >>> from qhytime.rowmodel import RowModel
    >>> m = RowModel.from_us(offset0_us=1974.286, line_period_ns=43194, reference="end")
    >>> w = exposure_window("tests/data/fits16_000.fits", x=100, y=95, model=m)
    >>> w.end.isot, w.rows.tolist()
    ('2025-08-02T01:44:51.986121049', [95])
    >>> round(w.sigma_s * 1e9, 1)
    28.9
    """
    from qhytime.timebase import unix_ns_to_time

    if (x is None) != (y is None):
        raise RowModelError("give both x and y for a pixel (or rows)", path=os.fspath(path))
    if x is not None and rows is not None:
        raise RowModelError("give a pixel (x, y) or rows, not both", path=os.fspath(path))
    if rows is not None:
        rows = _whole_rows(rows, os.fspath(path), frame)
    own_store = None
    if model is None and store is None:
        from qhytime.store import CalibrationStore

        own_store = store = CalibrationStore(db)
    try:
        with open_frames(path) as reader:
            ft = file_timing(
                reader, model=model, store=store, calibration_id=calibration_id,
                fallback=fallback, exposure_ns=exposure_ns, crop_y=crop_y, binning=binning,
            )  # fmt: skip
            if x is not None and y is not None:
                fx, fy = float(x), float(y)
                if not (math.isfinite(fx) and math.isfinite(fy)):
                    raise RowModelError(f"pixel ({x}, {y}) is not finite", path=ft.path, frame=frame)
                if not (-0.5 <= fx < reader.width - 0.5 and -0.5 <= fy < reader.height - 0.5):
                    raise RowModelError(
                        f"pixel ({x}, {y}) is outside the {reader.width}x{reader.height} frame "
                        "(0-based pixel centres)",
                        path=ft.path,
                        frame=frame,
                    )
                rows = [math.floor(fy + 0.5)]
        frt = ft.frame_row_times(frame, rows, allow_invalid=allow_invalid)
    finally:
        if own_store is not None:
            own_store.close()
    t = frt.times
    pick = (lambda a: a[0, 0]) if x is not None else (lambda a: a[0])
    return ExposureWindow(
        rows=t.rows,
        start=unix_ns_to_time(pick(t.start_ns)),
        mid=unix_ns_to_time(pick(t.mid_ns)),
        end=unix_ns_to_time(pick(t.end_ns)),
        start_ns=t.start_ns[0],
        mid_ns=t.mid_ns[0],
        end_ns=t.end_ns[0],
        sigma_ns=t.sigma_ns,
        status=frt.record.status,
        reasons=list(frt.record.reasons),
        calibration=frt.lookup.describe() if frt.lookup is not None else "explicit model",
    )

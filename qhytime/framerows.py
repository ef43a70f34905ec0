"""Row times of real frames: decoded stamp + calibration (or explicit model) + geometry.

This ties the data path together for one frame: decode its block (:mod:`qhytime.decode`),
find its setting from the file's keywords, look up the calibration
(:mod:`qhytime.store`) or take an explicit :class:`~qhytime.rowmodel.RowModel`, map image
rows to sensor rows, and compute every row's start, middle and end.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from numpy.typing import ArrayLike

from qhytime.calibration import Setting
from qhytime.decode import DecodedFrame, decode_reader
from qhytime.errors import CalibrationError, RowModelError
from qhytime.readers import FrameReader, open_frames
from qhytime.rowmodel import FrameGeometry, RowModel, RowTimes, row_times
from qhytime.store import CalibrationStore, LookupResult


def _int_key(meta: Mapping[str, Any], *keys: str) -> int | None:
    for k in keys:
        v = meta.get(k)
        if v is not None and not isinstance(v, str | bool):
            return int(v)
    return None


def exposure_ns_from_metadata(meta: Mapping[str, Any]) -> int | None:
    """Exposure in ns from ``QHY_EXP`` (the SDK's actual exposure), else ``EXPTIME``/``EXPOSURE``.

    Examples
    --------
    >>> exposure_ns_from_metadata({"EXPTIME": 0.25})
    250000000
    >>> exposure_ns_from_metadata({"QHY_EXP": 0.0003455604, "EXPTIME": 0.0003})
    345560
    """
    for key in ("QHY_EXP", "EXPTIME", "EXPOSURE"):
        v = meta.get(key)
        if v is not None and not isinstance(v, str | bool) and float(v) > 0:
            return round(float(v) * 1e9)
    return None


def setting_from_reader(reader: FrameReader, index: int = 0) -> Setting:
    """The camera setting a frame was taken with, from the file's keywords.

    Missing keywords take defaults: ``INSTRUME`` unknown, readout mode unknown, crop 0,
    binning 1, USB_TRAFFIC 0; stream mode ``single`` for FITS and ``live`` for SER.
    """
    meta = reader.metadata(index)
    binning = _int_key(meta, "XBINNING") or 1
    mode = str(meta.get("READOUTM") or "unknown")
    stream = str(meta.get("QHYSTRM") or ("live" if reader.kind == "ser" else "single")).lower()
    return Setting(
        camera_model=str(
            meta.get("INSTRUME") or getattr(reader, "instrument", "") or "unknown"
        ).strip(),
        readout_mode=mode.strip(),
        is_2cms="2CMS" in mode.upper(),
        roi_x=_int_key(meta, "CROPOFFX") or 0,
        roi_y=_int_key(meta, "CROPOFFY") or 0,
        roi_width=reader.width * binning,
        roi_height=reader.height * binning,
        binning=binning,
        bit_depth=reader.bit_depth,
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

    Parameters
    ----------
    path : path or FrameReader
    frame : int
        0-based frame index.
    model : RowModel, optional
        Explicit timing; otherwise a calibration from ``store`` (pinned by
        ``calibration_id`` or looked up by the frame's setting).
    fallback : bool
        Allow a warned fallback calibration (see :meth:`CalibrationStore.lookup`).
    exposure_ns : int, optional
        Default: the file's ``QHY_EXP``, ``EXPTIME`` or ``EXPOSURE``.
    crop_y, binning : int, optional
        Default: the file's ``CROPOFFY`` and ``XBINNING`` (else 0 and 1).
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
    reader = path if isinstance(path, FrameReader) else open_frames(path)
    try:
        decoded = decode_reader(reader)
        if not 0 <= frame < len(decoded):
            raise RowModelError(
                f"frame {frame} out of range: the file has {len(decoded)} complete frame(s)",
                path=reader.path,
                frame=frame,
            )
        rec = decoded.frame(frame)
        if rec.block is None:
            raise RowModelError("; ".join(rec.reasons), path=reader.path, frame=frame)
        if rec.reasons and not allow_invalid:
            raise RowModelError(
                "the frame's time cannot be trusted: "
                + "; ".join(rec.reasons)
                + " (allow_invalid=True / --allow-invalid to compute it anyway)",
                path=reader.path,
                frame=frame,
            )
        meta = reader.metadata(frame)
        exp = exposure_ns if exposure_ns is not None else exposure_ns_from_metadata(meta)
        if exp is None:
            raise RowModelError(
                "no exposure: the file has no QHY_EXP/EXPTIME/EXPOSURE; give --exposure-s",
                path=reader.path,
                frame=frame,
            )
        # The frame's setting is a fact of the file, whether or not a calibration is looked up.
        setting = setting_from_reader(reader, frame)
        lookup: LookupResult | None = None
        if model is None:
            if store is None:
                raise CalibrationError("give a row model or a calibration store", path=reader.path)
            if calibration_id is not None:
                lookup = LookupResult(calibration=store.get(calibration_id), exact=True)
            else:
                lookup = store.lookup(setting, fallback=fallback)
            model = lookup.row_model()
        cy = crop_y if crop_y is not None else setting.roi_y
        b = binning if binning is not None else setting.binning
        geometry = FrameGeometry(height=reader.height, crop_y=cy, binning=b, flipped=rec.flipped)
        ref_ns = rec.stamps[model.reference].unix_ns
        times = row_times(model, geometry, ref_ns, exp, rows)
        return FrameRowTimes(rec, times, model, geometry, exp, setting, lookup)
    finally:
        if not isinstance(path, FrameReader):
            reader.close()

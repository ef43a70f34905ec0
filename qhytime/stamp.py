"""Write row times into FITS files, readable by N.I.N.A.-aware tools and Siril.

The primary header gets the keywords N.I.N.A. writes and Siril 1.5 reads, so that Siril's
own formula ``end(y) = GPS_EUTC + QHY_OFF0 + (2*QHY_LP*floor(y/2) or QHY_LP*y)`` (y in
unbinned sensor rows) gives the same times as qhytime:

========  =================================================================
GPS_EUTC  the end stamp, ISO UTC with 9 decimals
GPS_EFLG  receiver state of the end stamp (0..3)
QHY_EXP   exposure used (s)
QHY_LP    line period (ns)
QHY_OFF0  offset0 from the *end* stamp (us): a calibration measured from another
          stamp is shifted by the difference between the two stamps of this frame
READOUTM  readout mode name (``2CMS`` in it for single-row modes)
CROPOFFX  crop origin on the sensor, unbinned
CROPOFFY
DATE-OBS  start of exposure of the frame's first readout row (UTC, 9 decimals)
DATE-END  end of exposure of that row
QT_CALID  id of the calibration in the store (-1 for an explicit model)
QT_SIGMA  1-sigma of the first row's times (ns)
QT_REF    stamp the calibration is measured from
QT_STAT   decode status (``ok`` / ``invalid``) and QT_WHY the reasons
========  =================================================================

and a binary table extension ``ROWTIMES`` with, for every image row: ``ROW``,
``START_NS``/``MID_NS``/``END_NS`` (int64 ns since 1970 UTC, 86400-s days), ``SIGMA_NS``
and the same three times as ISO strings. Pixels are never modified: the output is a byte
copy of the input with a new header and the table appended.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qhytime import __version__
from qhytime.errors import FrameReadError, QhytimeError
from qhytime.framerows import FrameRowTimes, frame_row_times
from qhytime.readers import FitsReader
from qhytime.rowmodel import RowModel
from qhytime.store import CalibrationStore
from qhytime.timebase import unix_ns_to_iso

TABLE_NAME = "ROWTIMES"


@dataclass
class StampResult:
    """What happened to one file: ``status`` ``ok``, ``invalid`` (stamped, flagged) or ``error``."""

    source: str
    output: str | None
    status: str
    message: str
    calibration_id: int | None = None


def first_readout_index(frt: FrameRowTimes) -> int:
    """Index (into ``frt.times.rows``) of the row read out first (earliest end)."""
    return int(np.argmin(frt.times.end_ns[0]))


def header_cards(frt: FrameRowTimes) -> dict[str, tuple[Any, str]]:
    """The keywords to write for one frame, ``{key: (value, comment)}``."""
    rec, t, m = frt.record, frt.times, frt.model
    end_stamp = rec.stamps["end"]
    ref_stamp = rec.stamps[m.reference]
    # offset0 expressed from the end stamp, as Siril expects
    off0_from_end_ps = m.offset0_ps + (ref_stamp.unix_ns - end_stamp.unix_ns) * 1000
    i0 = first_readout_index(frt)
    cards: dict[str, tuple[Any, str]] = {
        "GPS_EUTC": (end_stamp.utc, "GPS end stamp (UTC)"),
        "GPS_EFLG": (end_stamp.stamp.state, "GPS state at end stamp (0..3)"),
        "QHY_EXP": (frt.exposure_ns / 1e9, "[s] exposure used for row times"),
        "QHY_LP": (m.line_period_ps / 1e3, "[ns] line period per sensor row"),
        "QHY_OFF0": (off0_from_end_ps / 1e6, "[us] end stamp to end of first readout unit"),
        "READOUTM": (_readout_name(frt), "readout mode"),
        "CROPOFFX": (frt.setting.roi_x, "crop origin x on sensor"),
        "CROPOFFY": (frt.geometry.crop_y, "crop origin y on sensor (unbinned)"),
        "DATE-OBS": (str(unix_ns_to_iso(t.start_ns[0, i0])), "UTC start of first readout row"),
        "DATE-END": (str(unix_ns_to_iso(t.end_ns[0, i0])), "UTC end of first readout row"),
        "QT_CALID": (
            frt.calibration_id if frt.calibration_id is not None else -1,
            "qhytime calibration id",
        ),
        "QT_SIGMA": (round(float(t.sigma_ns[i0]), 3), "[ns] 1-sigma of first row times"),
        "QT_REF": (m.reference, "stamp the calibration is measured from"),
        "QT_STAT": (rec.status, "qhytime decode status"),
        "QT_VERS": (__version__, "qhytime version"),
    }
    if rec.reasons:
        cards["QT_WHY"] = ("; ".join(rec.reasons)[:68], "why the time is flagged")
    if frt.lookup is not None and not frt.lookup.exact:
        cards["QT_FALLB"] = (",".join(frt.lookup.differences), "calibration is a fallback")
    return cards


def _readout_name(frt: FrameRowTimes) -> str:
    name = "" if frt.setting.readout_mode == "unknown" else frt.setting.readout_mode
    if frt.model.readout == "2cms" and "2CMS" not in name.upper():
        name = (name + " 2CMS").strip()
    return name or ("2CMS" if frt.model.readout == "2cms" else "normal")


def row_table(frt: FrameRowTimes) -> Any:
    """The ``ROWTIMES`` binary table HDU of one frame."""
    from astropy.io import fits

    t = frt.times
    cols = [
        fits.Column(name="ROW", format="J", array=t.rows.astype(np.int32)),
        fits.Column(name="START_NS", format="K", array=t.start_ns[0], unit="ns"),
        fits.Column(name="MID_NS", format="K", array=t.mid_ns[0], unit="ns"),
        fits.Column(name="END_NS", format="K", array=t.end_ns[0], unit="ns"),
        fits.Column(name="SIGMA_NS", format="D", array=t.sigma_ns, unit="ns"),
        fits.Column(name="START", format="29A", array=unix_ns_to_iso(t.start_ns[0])),
        fits.Column(name="MID", format="29A", array=unix_ns_to_iso(t.mid_ns[0])),
        fits.Column(name="END", format="29A", array=unix_ns_to_iso(t.end_ns[0])),
    ]
    hdu = fits.BinTableHDU.from_columns(cols, name=TABLE_NAME)
    hdu.header["TIMESYS"] = ("UTC", "times are UTC")
    hdu.header["TIMEUNIT"] = ("ns", "*_NS columns: ns since 1970-01-01 UTC")
    hdu.header["COMMENT"] = "*_NS count 86400-second days (POSIX convention); exact integers."
    return hdu


def stamp_fits(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    in_place: bool = False,
    model: RowModel | None = None,
    store: CalibrationStore | None = None,
    calibration_id: int | None = None,
    fallback: bool = False,
    exposure_ns: int | None = None,
    crop_y: int | None = None,
    binning: int | None = None,
    allow_invalid: bool = False,
) -> StampResult:
    """Write the row times of a FITS frame into a new file (or in place when asked).

    Parameters
    ----------
    source : path
        A FITS file with one frame.
    output : path, optional
        Where to write; required unless ``in_place``.
    in_place : bool
        Modify ``source`` itself (its pixels are still untouched).

    Returns
    -------
    StampResult

    Raises
    ------
    QhytimeError
        On any problem (unreadable file, no calibration, invalid frame).
    """
    from astropy.io import fits

    src = os.fspath(source)
    if not in_place and output is None:
        raise QhytimeError("give an output path, or in_place=True")
    with FitsReader(src) as reader:
        if reader.declared_frames != 1:
            raise FrameReadError("stamping needs one frame per FITS file (got a cube)", path=src)
        frt = frame_row_times(
            reader,
            0,
            model=model,
            store=store,
            calibration_id=calibration_id,
            fallback=fallback,
            exposure_ns=exposure_ns,
            crop_y=crop_y,
            binning=binning,
            allow_invalid=allow_invalid,
        )
    dst = src if in_place else os.fspath(output)  # type: ignore[arg-type]
    if not in_place:
        if Path(dst).resolve() == Path(src).resolve():
            raise QhytimeError(
                "output is the source file: use in_place=True to modify it", path=src
            )
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    cards = header_cards(frt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)  # long strings -> CONTINUE
        with fits.open(dst, mode="update", do_not_scale_image_data=True) as hdul:
            hdr = hdul[0].header
            for key, (value, comment) in cards.items():
                hdr[key] = (value, comment)
            for i in range(len(hdul) - 1, 0, -1):
                if hdul[i].name == TABLE_NAME:
                    del hdul[i]
            hdul.append(row_table(frt))
    return StampResult(
        source=src,
        output=dst,
        status=frt.record.status,
        message="; ".join(frt.record.reasons)
        or (frt.lookup.describe() if frt.lookup else "explicit model"),
        calibration_id=frt.calibration_id,
    )


def stamp_files(
    sources: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    in_place: bool = False,
    suffix: str = ".stamped",
    **kw: Any,
) -> Iterator[StampResult]:
    """Stamp many files; one :class:`StampResult` per file, never stopping on a bad one.

    Outputs go to ``out_dir`` (same names) or next to each source as ``NAME.stamped.fits``.
    """
    for s in sources:
        src = Path(s)
        if in_place:
            dst = None
        elif out_dir is not None:
            dst = Path(out_dir) / src.name
        else:
            dst = src.with_name(src.stem + suffix + src.suffix)
        try:
            yield stamp_fits(src, dst, in_place=in_place, **kw)
        except QhytimeError as exc:
            yield StampResult(source=str(src), output=None, status="error", message=str(exc))

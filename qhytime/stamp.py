"""Write row times into FITS files, readable by qhytime, astropy, N.I.N.A.-aware tools and Siril.

A stamped file is the source file with a few header keywords added and a ``ROWTIMES`` binary
table appended. Its pixels are the source's bytes, copied verbatim; everything is written to a
temporary file beside the output and renamed onto it in one step, so an output appears whole
or not at all (a full disk, an error or a kill leaves no partial FITS under a final name).
The temporary file is fsynced before the rename (:func:`qhytime.atomic.atomic_path`): without
it a power cut can leave the renamed file empty (ext4 forces the data out first only when
the rename replaces a file and ``auto_da_alloc`` is on; XFS and others make no such promise),
and stamping in place would then lose the capture itself.

A plain capture (one 2-D image and nothing after it) is stamped without astropy reading the
file's structure again: its pixels are copied in the kernel (``copy_file_range``) and the
``ROWTIMES`` extension is written from a cached header and one record array, byte for byte
what astropy writes for :func:`row_table` (tested). In other files astropy finds the HDUs
(extensions after the image are copied, an earlier stamp's table replaced), and an image in
an extension, a tile-compressed or a gzip file is rewritten by astropy.

**Stamping changes no fact of the file.** qhytime reads back from a stamped file exactly the
setting, exposure and times it read from the source: keywords the source lacked are not
invented, and where a keyword other programs read must say something else, the source's
value is kept in a ``QT_`` keyword that qhytime reads first. Stamping a stamped file gives the
same times (idempotent).

Keywords for Siril 1.5 and N.I.N.A.-aware tools (Siril's ``read_qhy_gps_data`` needs all of
the first six; its per-row formula is ``GPS_EUTC + QHY_OFF0 + 2*QHY_LP*floor(y/2)`` or
``QHY_LP*y`` for 2CMS, with ``y = (image row + CROPOFFY) * XBINNING``):

========  ===============================================================================
GPS_EUTC  the end stamp, ISO UTC with 9 decimals (Siril keeps whole microseconds of it)
GPS_EFLG  receiver state of the end stamp (Siril times states 2 and 3)
QHY_EXP   [s] exposure the row times use (the source's exposure x the calibration's scale)
QHY_LP    [ns] the line period as the integer Siril reads (N.I.N.A. writes the SDK's
          integer LinePeriod): the floor or ceiling of ``QT_LP``, whichever keeps Siril's
          times closest to ``ROWTIMES`` over the frame's rows
QHY_OFF0  [us] offset0 from the *end* stamp, exact (a calibration measured from another
          stamp is shifted by the difference between the two stamps of this frame)
READOUTM  the source's readout mode; written only when absent (``unknown``) or when Siril
          would read it wrongly (Siril takes a mode for 2CMS when it contains ``2CMS``)
CROPOFFX  crop origin in *binned* pixels, as Siril applies it (it adds CROPOFFY before
CROPOFFY  multiplying by the binning); a crop that is not a whole number of bins has no
          right value: CROPOFFY is then rounded up, inside the bin. Written when the source
          had a crop or a crop was given; absent otherwise (Siril then uses 0)
XBINNING  written only when the binning given differs from the file's
ROWORDER  written only when the GPS block shows the rows stored in the other order
DATE-OBS  start of exposure of the first readout row (UTC, 9 decimals), and its end; only
DATE-END  when the source had no DATE-OBS (a capture program's own DATE-OBS is kept)
========  ===============================================================================

qhytime's own keywords:

========  ===============================================================================
QT_MODE   readout mode of the source (``unknown`` when it had none)
QT_CROPX  crop origin of the source, *unbinned* sensor pixels (``unknown`` when none)
QT_CROPY
QT_BIN    binning of the source (``unknown`` when none)
QT_EXPNS  [ns] exposure the source's keywords give (``unknown`` when none)
QT_LP     [ns] exact line period of the row times
QT_SIRIL  [ns] largest difference between Siril 1.5's reading of the keywords above and
          ``ROWTIMES`` over the frame's rows (start, middle and end)
QT_CALID  id of the calibration in the store (-1 for an explicit model)
QT_CALK   how it was found: ``exact``, ``fallback``, ``pinned`` or ``explicit``
QT_DIFF   setting fields in which a fallback or pinned calibration differs
QT_REF    stamp the calibration is measured from
QT_SIGMA  [ns] 1-sigma of the first readout row's times
QT_STAT   decode status (``ok`` / ``invalid``) and QT_WHY the reasons
QT_VERS   qhytime version
========  ===============================================================================

The ``ROWTIMES`` table follows the FITS time standard: ``START``, ``MID``, ``END`` are ISO
strings with 9 decimals declared as UTC time columns (``TCTYPn = 'UTC'``, ``TIMESYS =
'UTC'``), which astropy reads as :class:`~astropy.time.Time` columns with
``Table.read(path, hdu="ROWTIMES", astropy_native=True)``; ``START_NS``, ``MID_NS``,
``END_NS`` are the same times as exact int64 ns since 1970-01-01 UTC counted with 86400-second
days (the POSIX convention), deliberately *not* declared as FITS time (FITS elapsed time
counts leap seconds); ``ROW`` is the image row and ``SIGMA_NS`` the 1-sigma of each row.
"""

from __future__ import annotations

import calendar
import contextlib
import errno
import functools
import gzip
import io
import os
import re
import shutil
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from qhytime import __version__
from qhytime.atomic import atomic_path
from qhytime.errors import FrameReadError, OutputError, QhytimeError
from qhytime.framerows import (
    FrameRowTimes,
    exposure_ns_from_metadata,
    frame_row_times,
    own_int_key,
)
from qhytime.readers import FitsReader, open_regular
from qhytime.readers.serfile import SER_MAGIC
from qhytime.timebase import unix_ns_to_iso

if TYPE_CHECKING:
    from qhytime.cluster import Executor
    from qhytime.rowmodel import RowModel
    from qhytime.store import CalibrationStore

TABLE_NAME = "ROWTIMES"

UNKNOWN = "unknown"
"""What a ``QT_`` keyword says when the source had no value for it."""

SIRIL_BOUND_NS = 2000
"""Siril keeps whole microseconds: it truncates the end stamp and the row offset each to a
microsecond (start and middle may also round up, toward zero), so its times differ from
``ROWTIMES`` by less than this, plus ``|QHY_LP - QT_LP|`` per line period after the first
readout unit and, for binned rows, the spread of the bin's rows."""

# Our keywords, rewritten or removed on every stamp so that a re-stamp leaves none stale.
_OWN_KEYS = (
    "QT_MODE", "QT_CROPX", "QT_CROPY", "QT_BIN", "QT_EXPNS", "QT_LP", "QT_SIRIL", "QT_CALID",
    "QT_CALK", "QT_DIFF", "QT_REF", "QT_SIGMA", "QT_STAT", "QT_WHY", "QT_VERS", "QT_FALLB",
)  # fmt: skip
_COPY_CHUNK = 8 << 20
_DATE_OBS_COMMENT = "UTC start of first readout row"
_DATE_END_COMMENT = "UTC end of first readout row"


@dataclass
class StampResult:
    """What happened to one file.

    Attributes
    ----------
    source : str
    output : str or None
        The stamped file (None when nothing was written).
    status : str
        ``ok``, ``invalid`` (stamped, its time flagged: ``QT_STAT``/``QT_WHY`` say why) or
        ``error`` (nothing written; ``message`` says why).
    message : str
    calibration_id : int or None
    """

    source: str
    output: str | None
    status: str
    message: str
    calibration_id: int | None = None


def _first_readout_index(frt: FrameRowTimes) -> int:
    """Index (into ``frt.times.rows``) of the row read out first (earliest end)."""
    return int(np.argmin(frt.times.end_ns[0]))


# -- Siril 1.5's reading of the keywords ---------------------------------------------------


def _glib_datetime_us(iso: str) -> int:
    """Unix microseconds of an ISO date as Siril's ``FITS_date_to_date_time`` makes it.

    ``sscanf("%lf")`` of the seconds, then GLib's ``g_date_time_new``: whole microseconds,
    truncated (with GLib's guard against ``x.999999...`` representation error).
    """
    date, _, clock = iso.partition("T")
    y, mo, d = (int(x) for x in date.split("-"))
    hh, mm, ss = clock.split(":")
    seconds = float(ss)
    usec = int(seconds * 1_000_000)
    if (usec + 1) * 1e-6 <= seconds:
        usec += 1
    whole = calendar.timegm((y, mo, d, int(hh), int(mm), 0)) + int(seconds)
    return whole * 1_000_000 + usec % 1_000_000


def siril_row_times_us(
    *,
    eutc: str,
    offset0_us: float,
    line_period_ns: int,
    exposure_s: float,
    two_cms: bool,
    crop_y: int,
    binning: int,
    top_down: bool,
    height: int,
    rows: NDArray[np.int64] | None = None,
) -> dict[str, NDArray[np.int64]]:
    """Start, middle and end of image rows as Siril 1.5 computes them from the keywords.

    Siril (``read_qhy_gps_data`` and ``get_timestamp_for_pixel``) reads ``QHY_LP`` as an
    integer, keeps times in whole microseconds (a GLib ``GDateTime``), and for image row
    ``r`` takes the sensor row ``((height - 1 - r) if top_down else r) + CROPOFFY`` times
    the binning. The arithmetic is done in the same order, in doubles, as its C code.

    Returns
    -------
    dict
        ``start``, ``mid``, ``end``: int64 unix microseconds per row.

    Examples
    --------
    >>> t = siril_row_times_us(eutc="2025-08-02T01:44:51.980086527", offset0_us=2000.5,
    ...     line_period_ns=43195, exposure_s=0.25, two_cms=False, crop_y=0, binning=1,
    ...     top_down=False, height=4)
    >>> (t["end"] - t["end"][0]).tolist()      # rows 2, 3 end 2 x 43.195 us later, truncated
    [0, 0, 86, 86]
    """
    base = _glib_datetime_us(eutc)
    r = np.arange(height, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    y = (height - r - 1) if top_down else r
    y = (y + crop_y) * binning
    if two_cms:
        y_offset = (line_period_ns * y) * 1e-3
    else:
        y_offset = 2.0 * line_period_ns * (y // 2) * 1e-3
    offset_s = (y_offset + offset0_us) * 1e-6
    usec_per_s = 1_000_000.0
    return {
        "end": base + np.trunc(offset_s * usec_per_s).astype(np.int64),
        "start": base + np.trunc((offset_s - exposure_s) * usec_per_s).astype(np.int64),
        "mid": base + np.trunc((offset_s - exposure_s * 0.5) * usec_per_s).astype(np.int64),
    }


def _siril_max_diff_ns(frt: FrameRowTimes, lp_int: int, siril: dict[str, Any]) -> int:
    t = siril_row_times_us(line_period_ns=lp_int, height=frt.geometry.height, **siril)
    worst = 0
    for name, ours in (("start", frt.times.start_ns[0]), ("mid", frt.times.mid_ns[0]),
                       ("end", frt.times.end_ns[0])):  # fmt: skip
        worst = max(worst, int(np.max(np.abs(t[name] * 1000 - ours))))
    return worst


# -- the keywords ------------------------------------------------------------------------


def _header_str(header: Any, key: str) -> str | None:
    """A keyword's text, stripped; None when absent, blank or not text."""
    v = header.get(key)
    return v.strip() or None if isinstance(v, str) else None


def header_cards(
    frt: FrameRowTimes, header: Any, source_exposure_ns: int | None
) -> tuple[dict[str, tuple[Any, str]], list[str]]:
    """The keywords to write for one frame, and those of ours to remove.

    Parameters
    ----------
    frt : FrameRowTimes
        The frame's row times and everything they came from.
    header : astropy.io.fits.Header
        The source's header (what it had decides what is written).
    source_exposure_ns : int or None
        The exposure the source's keywords give (None when they give none).

    Returns
    -------
    set : dict
        ``{key: (value, comment)}``.
    remove : list of str
        Keywords of ours (from an earlier stamp) that no longer apply.

    Examples
    --------
    >>> from astropy.io import fits
    >>> from qhytime.framerows import frame_row_times
    >>> from qhytime.rowmodel import RowModel
    >>> m = RowModel.from_us(offset0_us=1998.92, line_period_ns=43194.53)
    >>> frt = frame_row_times("tests/data/fits16_000.fits", model=m)
    >>> cards, remove = header_cards(frt, fits.getheader("tests/data/fits16_000.fits"), 250_000_000)
    >>> cards["QHY_LP"][0], cards["QT_LP"][0], cards["READOUTM"][0], "CROPOFFY" in cards
    (43195, 43194.53, 'unknown', False)
    >>> cards["QT_SIRIL"][0] < 2000 + 94 * 0.47    # Siril's largest difference over the rows (ns)
    True
    """
    rec, t, m, g, s = frt.record, frt.times, frt.model, frt.geometry, frt.setting
    end_stamp = rec.stamps["end"]
    ref_stamp = rec.stamps[m.reference]
    off0_end_ps = m.offset0_ps + (ref_stamp.unix_ns - end_stamp.unix_ns) * 1000
    exposure_ps = round(frt.exposure_ns * 1000 * m.exposure_scale)
    i0 = _first_readout_index(frt)
    cards: dict[str, tuple[Any, str]] = {}

    # What the source said (None: it had no value); qhytime reads these back first.
    src_mode = _header_str(header, "QT_MODE") if "QT_MODE" in header else _header_str(
        header, "READOUTM"
    )
    if src_mode is not None and src_mode.lower() == UNKNOWN:
        src_mode = None
    src_cx = own_int_key(header, "QT_CROPX", "CROPOFFX")
    src_cy = own_int_key(header, "QT_CROPY", "CROPOFFY")
    src_bin = own_int_key(header, "QT_BIN", "XBINNING")

    def known(v: Any) -> Any:
        return UNKNOWN if v is None else v

    # Siril's readout: pairs unless READOUTM contains "2CMS" (case-sensitive).
    two_cms = m.readout == "2cms"
    readoutm = _header_str(header, "READOUTM")
    if readoutm is None or (("2CMS" in readoutm) != two_cms):
        name = readoutm or src_mode or UNKNOWN
        if two_cms:
            name = re.sub("2cms", "2CMS", name, flags=re.IGNORECASE)
            if "2CMS" not in name:
                name = f"{name} 2CMS"
        else:
            name = " ".join(name.replace("2CMS", " ").split()) or UNKNOWN
        cards["READOUTM"] = (name, "readout as Siril reads it; source: QT_MODE")

    # Siril's binning is XBINNING (1 when absent); its crop is in binned rows.
    b, cy = g.binning, g.crop_y
    file_bin = own_int_key(header, None, "XBINNING") or 1
    if b != file_bin:
        cards["XBINNING"] = (b, "binning of the row times; source: QT_BIN")
        cards["YBINNING"] = (b, "binning of the row times; source: QT_BIN")
    siril_cy = -(-cy // b)  # a whole bin: rounded up, so Siril's row is inside the bin
    if src_cy is not None or "CROPOFFY" in header or cy != 0:
        exact = siril_cy * b == cy
        cards["CROPOFFY"] = (
            siril_cy,
            "[binned px] crop y for Siril; QT_CROPY unbinned"
            if exact
            else "[binned px] rounded up; QT_CROPY unbinned",
        )
        roi_x = s.roi_x
        cards["CROPOFFX"] = (
            roi_x // b,
            "[binned px] crop x for Siril; QT_CROPX unbinned"
            if src_cx is not None
            else "unknown, 0 assumed (Siril needs it for CROPOFFY)",
        )
    elif src_cx is not None or "CROPOFFX" in header:
        cards["CROPOFFX"] = (s.roi_x // b, "[binned px] crop x for Siril; QT_CROPX unbinned")

    # Siril's row order: TOP-DOWN exactly; qhytime's comes from where the block is.
    roworder = _header_str(header, "ROWORDER")
    if g.flipped != (roworder == "TOP-DOWN"):
        if g.flipped or roworder is not None:
            cards["ROWORDER"] = (
                "TOP-DOWN" if g.flipped else "BOTTOM-UP",
                "row order shown by the GPS block",
            )

    # The exact integer LP that keeps Siril closest to our times over the frame's rows.
    lp_ps = m.line_period_ps
    candidates = sorted({lp_ps // 1000, -(-lp_ps // 1000)}, key=lambda c: abs(c * 1000 - lp_ps))
    siril = dict(
        eutc=end_stamp.utc,
        offset0_us=off0_end_ps / 1e6,
        exposure_s=exposure_ps / 1e12,
        two_cms=two_cms,
        crop_y=siril_cy,
        binning=b,
        top_down=g.flipped,
    )
    scored = [(_siril_max_diff_ns(frt, c, siril), c) for c in candidates if c > 0]
    siril_diff, lp_int = min(scored, key=lambda sc: sc[0])

    cards.update({
        "GPS_EUTC": (end_stamp.utc, "GPS end stamp (UTC)"),
        "GPS_EFLG": (end_stamp.stamp.state, "GPS state at end stamp (0..3)"),
        "QHY_EXP": (exposure_ps / 1e12, "[s] exposure of the row times"),
        "QHY_LP": (lp_int, "[ns] line period, integer (exact: QT_LP)"),
        "QHY_OFF0": (off0_end_ps / 1e6, "[us] end stamp to end of first readout unit"),
    })  # fmt: skip
    # DATE-OBS/DATE-END: ours when the source had none (or an earlier stamp wrote them)
    ours = "DATE-OBS" not in header or header.comments["DATE-OBS"] == _DATE_OBS_COMMENT
    if ours:
        cards["DATE-OBS"] = (str(unix_ns_to_iso(t.start_ns[0, i0])), _DATE_OBS_COMMENT)
        if "DATE-END" not in header or header.comments["DATE-END"] == _DATE_END_COMMENT:
            cards["DATE-END"] = (str(unix_ns_to_iso(t.end_ns[0, i0])), _DATE_END_COMMENT)
    cards.update({
        "QT_MODE": (src_mode or UNKNOWN, "qhytime: readout mode of the source"),
        "QT_CROPX": (known(src_cx), "qhytime: crop x of the source, unbinned"),
        "QT_CROPY": (known(src_cy), "qhytime: crop y of the source, unbinned"),
        "QT_BIN": (known(src_bin), "qhytime: binning of the source"),
        "QT_EXPNS": (known(source_exposure_ns), "[ns] qhytime: exposure of the source"),
        "QT_LP": (lp_ps / 1e3, "[ns] exact line period of the row times"),
        "QT_SIRIL": (siril_diff, "[ns] max |Siril 1.5 row time - ROWTIMES|"),
        "QT_CALID": (
            frt.calibration_id if frt.calibration_id is not None else -1,
            "qhytime calibration id (-1: explicit model)",
        ),
        "QT_CALK": (frt.lookup.kind if frt.lookup is not None else "explicit",
                    "how the calibration was found"),
        "QT_REF": (m.reference, "stamp the calibration is measured from"),
        "QT_SIGMA": (round(float(t.sigma_ns[i0]), 3), "[ns] 1-sigma of first readout row times"),
        "QT_STAT": (rec.status, "qhytime decode status"),
        "QT_VERS": (__version__, "qhytime version"),
    })  # fmt: skip
    if frt.lookup is not None and frt.lookup.differences:
        cards["QT_DIFF"] = ("; ".join(frt.lookup.differences), "calibration setting differs")
    if rec.reasons:
        cards["QT_WHY"] = ("; ".join(rec.reasons), "why the time is flagged")
    if "LONGSTRN" not in header and any(
        isinstance(v, str) and len(v) > 68 for v, _ in cards.values()
    ):
        cards["LONGSTRN"] = ("OGIP 1.0", "long strings continue on CONTINUE cards")
    remove = [k for k in _OWN_KEYS if k not in cards]
    return cards, remove


def row_table(frt: FrameRowTimes) -> Any:
    """The ``ROWTIMES`` binary table HDU of one frame (FITS time standard, see the module).

    Examples
    --------
    >>> from qhytime.framerows import frame_row_times
    >>> from qhytime.rowmodel import RowModel
    >>> m = RowModel.from_us(offset0_us=1998.92, line_period_ns=43194.53)
    >>> hdu = row_table(frame_row_times("tests/data/fits16_000.fits", model=m))
    >>> hdu.name, hdu.columns.names[:4], hdu.header["TCTYP8"], hdu.data["END"][0]
    ('ROWTIMES', ['ROW', 'START_NS', 'MID_NS', 'END_NS'], 'UTC', '2025-08-02T01:44:51.982085447')
    """
    t = frt.times
    return _table_hdu(t.rows, t.start_ns[0], t.mid_ns[0], t.end_ns[0], t.sigma_ns)


_DATE_BEG_COMMENT = "earliest row start (UTC)"
_DATE_END_TABLE_COMMENT = "latest row end (UTC)"


def _table_hdu(
    rows: NDArray[np.int64], start: NDArray[np.int64], mid: NDArray[np.int64],
    end: NDArray[np.int64], sigma: NDArray[np.float64],
) -> Any:  # fmt: skip
    """The ``ROWTIMES`` table HDU as astropy builds it (the reference for
    :func:`_row_table_bytes`)."""
    from astropy.io import fits

    iso = {k: unix_ns_to_iso(a) for k, a in (("START", start), ("MID", mid), ("END", end))}
    width = max(int(np.max(np.char.str_len(np.asarray(a, dtype=str)))) for a in iso.values())
    cols = [
        fits.Column(name="ROW", format="J", array=rows.astype(np.int32)),
        fits.Column(name="START_NS", format="K", array=start, unit="ns"),
        fits.Column(name="MID_NS", format="K", array=mid, unit="ns"),
        fits.Column(name="END_NS", format="K", array=end, unit="ns"),
        fits.Column(name="SIGMA_NS", format="D", array=sigma, unit="ns"),
        fits.Column(name="START", format=f"{width}A", array=iso["START"]),
        fits.Column(name="MID", format=f"{width}A", array=iso["MID"]),
        fits.Column(name="END", format=f"{width}A", array=iso["END"]),
    ]
    hdu = fits.BinTableHDU.from_columns(cols, name=TABLE_NAME)
    h = hdu.header
    h.comments["TTYPE1"] = "image row (0 = first stored row)"
    for i, what in ((2, "start"), (3, "middle"), (4, "end")):
        h.comments[f"TTYPE{i}"] = f"{what}: ns since 1970 UTC, 86400-s days"
    h.comments["TTYPE5"] = "1-sigma of the row's times"
    for i, what in ((6, "start"), (7, "middle"), (8, "end")):
        h.comments[f"TTYPE{i}"] = f"{what} of exposure, ISO UTC"
        h[f"TCTYP{i}"] = ("UTC", "time column, scale UTC")
    h["TIMESYS"] = ("UTC", "time scale of the time columns")
    h["DATE-BEG"] = (str(unix_ns_to_iso(int(start.min()))), _DATE_BEG_COMMENT)
    h["DATE-END"] = (str(unix_ns_to_iso(int(end.max()))), _DATE_END_TABLE_COMMENT)
    h["COMMENT"] = "START, MID, END: FITS time columns (UTC, ISO-8601, 9 decimals)."
    h["COMMENT"] = "START_NS, MID_NS, END_NS: the same times, exact int64 ns since"
    h["COMMENT"] = "1970-01-01T00:00:00 UTC counted in 86400-s days (POSIX), so not"
    h["COMMENT"] = "FITS elapsed time (which counts leap seconds)."
    return hdu


# -- the table's bytes, without astropy's per-card and per-column work ---------------------

_ISO_WIDTH = 29  # YYYY-MM-DDTHH:MM:SS.fffffffff: every int64 ns is in years 1677..2262
_NS_PER_DAY = 86_400 * 1_000_000_000
_TABLE_DTYPE = np.dtype([
    ("ROW", ">i4"), ("START_NS", ">i8"), ("MID_NS", ">i8"), ("END_NS", ">i8"),
    ("SIGMA_NS", ">f8"), ("START", f"S{_ISO_WIDTH}"), ("MID", f"S{_ISO_WIDTH}"),
    ("END", f"S{_ISO_WIDTH}"),
])  # fmt: skip


def _iso_bytes(unix_ns: NDArray[np.int64]) -> NDArray[Any] | None:
    """:func:`~qhytime.timebase.unix_ns_to_iso` as ``S29`` bytes, by integer arithmetic.

    The date of each distinct day comes from numpy (a frame spans one or two days), the
    clock digits from the integers; None (use numpy for every value) when the times span
    more than a few days or a date is not ``YYYY-MM-DD``.
    """
    a = np.asarray(unix_ns, dtype=np.int64).reshape(-1)
    if a.size == 0 or int(a.min()) == np.iinfo(np.int64).min:  # NaT
        return None
    days, tod = np.divmod(a, _NS_PER_DAY)
    d0, d1 = int(days.min()), int(days.max())
    if d1 - d0 > 4:
        return None
    dates = np.datetime_as_string(np.arange(d0, d1 + 1).astype("datetime64[D]"), unit="D")
    if any(len(d) != 10 for d in dates.tolist()):
        return None
    out = np.empty((a.size, _ISO_WIDTH), dtype=np.uint8)
    out[:, :10] = np.frombuffer("".join(dates.tolist()).encode("ascii"), np.uint8).reshape(-1, 10)[
        days - d0
    ]
    out[:, 10], out[:, 13], out[:, 16], out[:, 19] = ord("T"), ord(":"), ord(":"), ord(".")
    secs, frac = np.divmod(tod, 1_000_000_000)
    hh, rest = np.divmod(secs, 3600)
    mm, ss = np.divmod(rest, 60)
    zero = ord("0")
    for col, v in ((11, hh), (14, mm), (17, ss)):
        tens, ones = np.divmod(v, 10)
        out[:, col] = tens + zero
        out[:, col + 1] = ones + zero
    for col in range(28, 19, -1):
        frac, digit = np.divmod(frac, 10)
        out[:, col] = digit + zero
    return out.view(f"S{_ISO_WIDTH}").reshape(-1)


def _string_card(key: str, value: str, comment: str) -> bytes:
    """One header card with a short string value, as astropy formats it."""
    card = f"{key:<8}= {_quoted(value):<20} / {comment}"
    if len(card) > 80:
        raise ValueError(card)
    return card.ljust(80).encode("ascii")


def _quoted(value: str) -> str:
    """A FITS string value: quoted, quotes doubled, padded to at least 8 characters."""
    return "'" + value.replace("'", "''").ljust(8) + "'"


@functools.lru_cache(maxsize=8)
def _table_header_template(n_rows: int) -> tuple[bytes, int, int]:
    """The ``ROWTIMES`` header of a table of ``n_rows`` (as astropy writes it for
    :func:`_table_hdu`), with the byte offsets of its ``DATE-BEG`` and ``DATE-END`` cards:
    only those two cards depend on the frame."""
    zeros = np.zeros(n_rows, dtype=np.int64)
    hdu = _table_hdu(zeros, zeros, zeros, zeros, np.zeros(n_rows))
    text = hdu.header.tostring(padding=True).encode("ascii")
    beg, end = text.index(b"DATE-BEG= "), text.index(b"DATE-END= ")
    if beg % 80 or end % 80:
        raise AssertionError("ROWTIMES header cards are not where FITS puts cards")
    return text, beg, end


def _row_table_bytes(frt: FrameRowTimes) -> bytes:
    """The ``ROWTIMES`` extension (header and padded data) of one frame, byte for byte what
    astropy writes for :func:`row_table`, built from a cached header and one record array.

    Examples
    --------
    >>> from qhytime.framerows import frame_row_times
    >>> from qhytime.rowmodel import RowModel
    >>> m = RowModel.from_us(offset0_us=1998.92, line_period_ns=43194.53)
    >>> frt = frame_row_times("tests/data/fits16_000.fits", model=m)
    >>> _row_table_bytes(frt) == _table_bytes(row_table(frt))
    True
    """
    t = frt.times
    start, mid, end = t.start_ns[0], t.mid_ns[0], t.end_ns[0]
    n = len(t.rows)
    isos = [_iso_bytes(a) for a in (start, mid, end)]
    if n == 0 or any(x is None for x in isos):
        return _table_bytes(row_table(frt))  # odd times: astropy's own path
    text, beg, fin = _table_header_template(n)
    head = bytearray(text)
    head[beg : beg + 80] = _string_card(
        "DATE-BEG", str(unix_ns_to_iso(int(start.min()))), _DATE_BEG_COMMENT
    )
    head[fin : fin + 80] = _string_card(
        "DATE-END", str(unix_ns_to_iso(int(end.max()))), _DATE_END_TABLE_COMMENT
    )
    rec = np.empty(n, dtype=_TABLE_DTYPE)
    rec["ROW"] = t.rows
    rec["START_NS"], rec["MID_NS"], rec["END_NS"] = start, mid, end
    rec["SIGMA_NS"] = t.sigma_ns
    rec["START"], rec["MID"], rec["END"] = isos
    data = rec.tobytes()
    pad = -len(data) % 2880
    return bytes(head) + data + b"\0" * pad


# -- writing ---------------------------------------------------------------------------------


def _copy_range(src: io.BufferedReader, dst: Any, start: int, length: int, path: str) -> None:
    """Copy ``length`` bytes from ``start`` (in the kernel where it can). A file may end
    without the last block's fill (zeros are written for it); more missing than that is a
    truncated file."""
    left = length
    dst.flush()
    fin, fout = src.fileno(), dst.fileno()
    pos = start
    copy = getattr(os, "copy_file_range", None)
    while left > 0 and copy is not None:
        try:
            n = copy(fin, fout, min(left, 1 << 30), pos)
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                copy = None  # not between these files: copy through user space
                break
            raise
        if n == 0:
            break
        pos += n
        left -= n
    if copy is None:
        src.seek(pos)
        while left > 0:
            chunk = src.read(min(left, _COPY_CHUNK))
            if not chunk:
                break
            dst.write(chunk)
            left -= len(chunk)
    if left >= 2880:
        raise FrameReadError(
            f"truncated: {left} bytes missing after offset {start + length - left}", path=path
        )
    dst.write(b"\0" * left)
    dst.flush()


def _table_bytes(table: Any) -> bytes:
    """The bytes of one extension HDU (header and padded data), as astropy writes them."""
    from astropy.io import fits

    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(buf)
    raw = buf.getvalue()
    first = len(fits.PrimaryHDU().header.tostring())  # the dummy primary: one header block
    return raw[first:]


def _layout(src: str) -> tuple[Any, list[tuple[str, int, int, int]], int]:
    """The primary header, every HDU's (name, hdrLoc, datLoc, datSpan), and the index of the
    image HDU (the first 2-D or 3-D image, or tile-compressed image, as the reader finds)."""
    from astropy.io import fits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(src, mode="readonly", memmap=False, lazy_load_hdus=False) as hdul:
            header = hdul[0].header.copy()
            spans, image = [], -1
            for i, hdu in enumerate(hdul):
                info = hdu.fileinfo()
                spans.append((hdu.name, info["hdrLoc"], info["datLoc"], info["datSpan"]))
                naxis = int(hdu.header.get("NAXIS", 0))
                is_image = isinstance(hdu, fits.CompImageHDU) or (
                    hdu.is_image and naxis in (2, 3) and hdu.header.get("NAXIS1", 0)
                )
                if image < 0 and is_image:
                    image = i
    return header, spans, image


def _plain_layout(src: str, header: Any) -> list[tuple[str, int, int, int]] | None:
    """The one span of a plain file that holds only its primary 2-D image (the usual
    capture), found from the header the reader parsed, without astropy's walk of the file;
    None for anything else (extensions, an earlier stamp's table, groups, trailing bytes,
    a header that is not plain ASCII): :func:`_layout` then.
    """
    try:
        naxis, bitpix = header.get("NAXIS"), header.get("BITPIX")
        n1, n2 = header.get("NAXIS1"), header.get("NAXIS2")
    except Exception:  # an unparsable card: astropy's layout reports it
        return None
    if naxis != 2 or bitpix not in (8, 16, 32, 64, -32, -64) or "GROUPS" in header:
        return None
    if not (isinstance(n1, int) and isinstance(n2, int) and n1 > 0 and n2 > 0):
        return None
    span = abs(bitpix) // 8 * n1 * n2
    with open(src, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        raw = b""
        while True:  # the header blocks, up to the one holding END
            block = fh.read(2880)
            if len(block) < 2880 or not block.isascii():
                return None
            raw += block
            if any(block[i : i + 8] == b"END     " for i in range(0, 2880, 80)):
                break
            if len(raw) > 2880 * 1000:
                return None
    data_loc, padded = len(raw), -(-span // 2880) * 2880
    if not data_loc + span <= size <= data_loc + padded:
        return None  # more than the image (an extension, a table) or a short file
    return [("PRIMARY", 0, data_loc, padded)]  # spans as astropy's fileinfo: padded


def _apply(header: Any, cards: dict[str, tuple[Any, str]], remove: Iterable[str]) -> None:
    for key in remove:
        with contextlib.suppress(KeyError):
            del header[key]
    for key, (value, comment) in cards.items():
        header[key] = (value, comment)


def _write_streamed(
    src: str, tmp: Path, header: Any, spans: list[tuple[str, int, int, int]], table: bytes
) -> None:
    """Primary header rewritten, data and other extensions byte-copied, table appended."""
    if "EXTEND" not in header:
        header.set("EXTEND", True, "FITS file may contain extensions", after=f"NAXIS{int(header['NAXIS'])}")
    _, _, dat0, span0 = spans[0]
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        fout.write(header.tostring(padding=True).encode("ascii"))
        _copy_range(fin, fout, dat0, span0, src)
        for name, hdr_loc, dat_loc, dat_span in spans[1:]:
            if name == TABLE_NAME:
                continue
            _copy_range(fin, fout, hdr_loc, dat_loc + dat_span - hdr_loc, src)
        fout.write(table)
        fout.flush()


def _write_astropy(
    src: str, tmp: Path, final: str, image_index: int, cards: dict[str, tuple[Any, str]],
    remove: list[str], table: Any,
) -> None:  # fmt: skip
    """Files whose image is not the primary HDU of a plain file (an image extension, a
    tile-compressed image, gzip): astropy rewrites them; the image data is not touched."""
    from astropy.io import fits

    with fits.open(src, mode="readonly", do_not_scale_image_data=True) as hdul:
        _apply(hdul[image_index].header, cards, remove)
        keep = [h for i, h in enumerate(hdul) if i == 0 or h.name != TABLE_NAME]
        out = fits.HDUList([*keep, table])
        if final.lower().endswith(".gz"):
            name = os.path.basename(final)  # gzip's FNAME: the final name, less ".gz"
            with open(tmp, "wb") as raw, gzip.GzipFile(name, "wb", fileobj=raw) as gz:
                out.writeto(gz, output_verify="silentfix")
        else:
            out.writeto(tmp, overwrite=True, output_verify="silentfix")


def _write_failed(dst: str, src: str, in_place: bool, exc: OSError) -> OutputError:
    what = exc.strerror or str(exc)
    return OutputError(
        f"cannot write {dst}: {what}; nothing was written"
        + (" and the source is unchanged" if in_place else "")
        + " (free disk space or choose another output folder)",
        path=src,
    )


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
    """Write the row times of a one-frame FITS file into a new file (or in place when asked).

    The output is the source's bytes with the keywords and the ``ROWTIMES`` table described
    in :mod:`qhytime.stamp`; it is written to a temporary file beside ``output`` and renamed
    onto it, so it appears whole or not at all (in place too: the source is replaced in one
    step). The timing arguments are those of :func:`~qhytime.framerows.file_timing`.

    Parameters
    ----------
    source : path
        A FITS file with one frame (a cube is refused).
    output : path, optional
        Where to write; required unless ``in_place``. Its folder is created.
    in_place : bool
        Replace ``source`` itself (its pixels are still the same bytes).
    model, store, calibration_id, fallback, exposure_ns, crop_y, binning
        An explicit :class:`~qhytime.rowmodel.RowModel`, or a calibration from ``store``
        (looked up by the file's setting, pinned by ``calibration_id``, or a ``fallback``);
        the exposure (default the file's), crop origin (unbinned) and binning.
    allow_invalid : bool
        Stamp a frame whose time is flagged (``QT_STAT = 'invalid'``, ``QT_WHY`` the reasons).

    Returns
    -------
    StampResult

    Raises
    ------
    QhytimeError
        :class:`~qhytime.errors.FrameReadError` (not FITS, a cube, damaged),
        :class:`~qhytime.errors.CalibrationError`, :class:`~qhytime.errors.RowModelError`
        (no exposure, flagged frame), :class:`~qhytime.errors.OutputError` (output is the
        source, cannot be written: disk full, permissions).

    Examples
    --------
    >>> import tempfile, os
    >>> from astropy.io import fits
    >>> from qhytime.rowmodel import RowModel
    >>> m = RowModel.from_us(offset0_us=1998.92, line_period_ns=43194.53, reference="end")
    >>> out = os.path.join(tempfile.mkdtemp(), "s.fits")
    >>> stamp_fits("tests/data/fits16_000.fits", out, model=m).status
    'ok'
    >>> with fits.open(out) as hdul:
    ...     h = hdul[0].header
    ...     print(h["QHY_LP"], h["QT_LP"], h["QT_MODE"], "READOUTM" in h, hdul["ROWTIMES"].data["END"][0])
    43195 43194.53 unknown True 2025-08-02T01:44:51.982085447
    """
    src = os.fspath(source)
    if in_place and output is not None:
        raise OutputError("give an output path or in_place=True, not both", path=src)
    if not in_place and output is None:
        raise OutputError("give an output path, or in_place=True to modify the file", path=src)
    dst = src if in_place else os.fspath(output)  # type: ignore[arg-type]
    if not in_place and os.path.exists(dst) and os.path.samefile(dst, src):
        raise OutputError(
            f"the output {dst} is the source file itself: choose another output "
            "(or in_place=True to modify it)",
            path=src,
        )
    head = b""
    with contextlib.suppress(OSError), open_regular(src) as fh:  # a FIFO: FitsReader says so
        head = fh.read(len(SER_MAGIC))
    if head == SER_MAGIC:
        raise FrameReadError(
            "a SER file: stamp writes FITS files only (row times of SER frames: "
            "frame_row_times, or `qhytime rows`)",
            path=src,
        )
    with FitsReader(src) as reader:
        if reader.declared_frames != 1:
            raise FrameReadError(
                f"a cube of {reader.declared_frames} frames: stamping needs one frame per "
                "FITS file (split the cube into single-frame files first)",
                path=src,
            )
        frt = frame_row_times(
            reader, 0, model=model, store=store, calibration_id=calibration_id,
            fallback=fallback, exposure_ns=exposure_ns, crop_y=crop_y, binning=binning,
            allow_invalid=allow_invalid,
        )  # fmt: skip
        src_header = reader.header.copy()
        plain = getattr(reader, "compression", None) is None
    source_exposure = exposure_ns_from_metadata(src_header)
    spans = _plain_layout(src, src_header) if plain else None
    if spans is not None:  # the usual capture: its header as the reader parsed it
        header, image_index = src_header, 0  # (changed only after header_cards read it)
    else:
        try:
            header, spans, image_index = _layout(src)
        except Exception as exc:  # astropy's errors on odd files
            raise FrameReadError(f"cannot read the FITS structure: {exc}", path=src) from exc
        if image_index < 0:
            raise FrameReadError("astropy finds no image HDU in the file", path=src)
    streamed = plain and image_index == 0 and int(header.get("NAXIS", 0)) == 2
    cards, remove = header_cards(frt, src_header, source_exposure)
    try:
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # astropy's notes on long strings (CONTINUE cards)
            with atomic_path(dst) as tmp:
                if streamed:
                    _apply(header, cards, remove)
                    _write_streamed(src, tmp, header, spans, _row_table_bytes(frt))
                else:
                    _write_astropy(src, tmp, dst, image_index, cards, remove, row_table(frt))
                shutil.copymode(src, tmp)
    except QhytimeError as exc:
        # atomic_path names a failed write (full disk, permissions) as an OutputError: say
        # it as stamp says it, with the source's state
        if isinstance(exc, OutputError) and isinstance(exc.__cause__, OSError):
            raise _write_failed(dst, src, in_place, exc.__cause__) from exc.__cause__
        raise
    except OSError as exc:
        raise _write_failed(dst, src, in_place, exc) from exc
    except Exception as exc:  # astropy refusing to write a header it read
        raise FrameReadError(f"cannot write the stamped header: {exc}", path=src) from exc
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
    executor: Executor | None = None,
    **kw: Any,
) -> Iterator[StampResult]:
    """Stamp many files; one :class:`StampResult` per file, never stopping on a bad one.

    Outputs go to ``out_dir`` (same names), or next to each source as ``NAME.stamped.fits``,
    or replace the sources (``in_place``). Two sources of the same name for one ``out_dir``:
    the second is refused rather than overwriting the first's output. The other arguments
    are those of :func:`stamp_fits`.

    With an ``executor`` (:mod:`qhytime.cluster`) each file is stamped there (on a dask
    cluster: by a worker, into the output folder, which must then be storage the workers
    share, with the same atomic write); the results come back in input order, the same.

    Examples
    --------
    >>> import tempfile
    >>> from qhytime.rowmodel import RowModel
    >>> m = RowModel.from_us(offset0_us=1998.92, line_period_ns=43194.53, reference="end")
    >>> res = list(stamp_files(["tests/data/fits16_000.fits", "tests/data/bad_text.fits"],
    ...                        tempfile.mkdtemp(), model=m))
    >>> [r.status for r in res]
    ['ok', 'error']
    """
    from functools import partial

    from qhytime.cluster import LocalExecutor, for_workers, task_failure

    def jobs() -> Iterator[tuple[Path, Path | None, StampResult | None]]:
        seen: dict[str, str] = {}
        for s in sources:
            src = Path(s)
            if in_place:
                dst = None
            elif out_dir is not None:
                dst = Path(out_dir) / src.name
            else:
                name = src.name
                stem, ext = (name[: -len(".fits.gz")], ".fits.gz") if name.lower().endswith(
                    ".fits.gz"
                ) else (src.stem, src.suffix)
                dst = src.with_name(stem + suffix + ext)
            if dst is not None:
                key = os.path.normcase(os.path.abspath(dst))
                if key in seen:
                    yield src, dst, StampResult(
                        source=str(src), output=None, status="error",
                        message=f"{src}: its output {dst} is also that of {seen[key]}: "
                        "stamp files of the same name into different folders",
                    )  # fmt: skip
                    continue
                seen[key] = str(src)
            yield src, dst, None

    def lost(job: tuple[Path, Path | None, StampResult | None], exc: BaseException) -> StampResult:
        src = job[0]
        return StampResult(source=str(src), output=None, status="error",
                           message=f"{src}: {task_failure(exc)}")  # fmt: skip

    if "store" in kw:
        kw = {**kw, "store": for_workers(executor, kw["store"])}
    work = partial(_stamp_job, in_place=in_place, kw=kw)
    yield from (executor or LocalExecutor()).map(work, jobs(), on_error=lost)


def _stamp_job(
    job: tuple[Path, Path | None, StampResult | None], *, in_place: bool, kw: dict[str, Any]
) -> StampResult:
    """One file of :func:`stamp_files` (the per-file work an executor runs)."""
    src, dst, refused = job
    if refused is not None:
        return refused
    try:
        return stamp_fits(src, dst, in_place=in_place, **kw)
    except QhytimeError as exc:
        return StampResult(source=str(src), output=None, status="error", message=str(exc))
    except Exception as exc:  # a bug: reported for this file, the batch goes on
        return StampResult(
            source=str(src), output=None, status="error",
            message=f"{src}: internal error ({type(exc).__name__}: {exc}); this is a bug "
            "in qhytime, please report it",
        )  # fmt: skip


__all__ = [
    "SIRIL_BOUND_NS", "TABLE_NAME", "StampResult", "header_cards", "row_table",
    "siril_row_times_us", "stamp_files", "stamp_fits",
]  # fmt: skip

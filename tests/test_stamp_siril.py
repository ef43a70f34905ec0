"""Siril 1.5 reads the stamped keywords right: an exact reimplementation of its reading.

Siril's code (lock042/siril): ``src/io/fits_keywords.c`` ``read_qhy_gps_data`` reads
``QHY_EXP`` (double), ``QHY_LP`` (TINT: an integer), ``QHY_OFF0`` (double), ``READOUTM``,
``GPS_EUTC`` (``FITS_date_to_date_time``: sscanf ``%lf`` seconds, GLib ``g_date_time_new``,
whole microseconds), ``GPS_EFLG`` (all required), then ``CROPOFFX`` and ``CROPOFFY`` (cfitsio
stops at the first missing one), ``XBINNING`` and ``ROWORDER``. ``src/io/gps_parser.c``
``get_timestamp_for_pixel`` then, for display row ``y``: flips it when TOP-DOWN, adds
CROPOFFY, multiplies by the binning, takes ``2.0 * LP * (y / 2) * 1e-3`` us (pairs) or
``LP * y * 1e-3`` (when READOUTM contains "2CMS"), adds QHY_OFF0, scales to seconds,
subtracts the exposure (start) or half of it (middle), and adds that many seconds to the
end stamp with ``g_date_time_add_seconds`` (``seconds * 1e6`` truncated to an integer).

This module reimplements that reading line by line, in scalar Python doubles and integers,
independently of :func:`qhytime.stamp.siril_row_times_us`, and checks the documented bound
on every row of stamped frames: binning 1 and 2, crop 0 and odd, pairs and 2CMS, rows stored
bottom-up and top-down.
"""

from __future__ import annotations

import math
import re
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from qhytime.rowmodel import RowModel
from qhytime.simulate import CameraSim
from qhytime.stamp import SIRIL_BOUND_NS, stamp_fits
from qhytime.timebase import iso_to_unix_ns

LP_NS = 43194.523827  # a fitted line period (the example), not an integer


def glib_from_fits_date(text: str) -> int:
    """Siril's FITS_date_to_date_time, as unix microseconds (GDateTime keeps whole us)."""
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):([0-9.]+)", text)
    assert m, text
    year, month, day, hour, minute = (int(m.group(i)) for i in range(1, 6))
    seconds = float(m.group(6))  # sscanf %lf
    # g_date_time_new: usec = seconds * USEC_PER_SECOND (to gint64), plus one when
    # (usec + 1) * 1e-6 <= seconds; the whole seconds come from (int) seconds.
    usec = math.trunc(seconds * 1000000)
    if (usec + 1) * 1e-6 <= seconds:
        usec += 1
    days = date(year, month, day).toordinal() - date(1970, 1, 1).toordinal()
    whole = days * 86400 + hour * 3600 + minute * 60 + math.trunc(seconds)
    return whole * 1000000 + usec % 1000000


def siril_read(h: fits.Header, ry: int) -> dict:
    """read_qhy_gps_data: the gps_rs_data struct, or None when a required keyword is missing."""
    for key in ("QHY_EXP", "QHY_LP", "QHY_OFF0", "READOUTM", "GPS_EUTC", "GPS_EFLG"):
        if key not in h:
            return {}
    assert isinstance(h["QHY_LP"], int), "QHY_LP must be an integer card for TINT"
    data = {
        "exposure": float(h["QHY_EXP"]),
        "line_period": int(h["QHY_LP"]),
        "end_offset0": float(h["QHY_OFF0"]),
        "readout_mode": str(h["READOUTM"]),
        "end_vsync_us": glib_from_fits_date(h["GPS_EUTC"]),
        "flag": int(h["GPS_EFLG"]),
        "crop_offset_y": 0,
    }
    if "CROPOFFX" in h and "CROPOFFY" in h:  # CROPOFFY is read only when CROPOFFX was
        data["crop_offset_y"] = int(h["CROPOFFY"])
    binning = int(h.get("XBINNING", 1))
    data["binning"] = binning if binning > 0 else 1
    data["top_down"] = h.get("ROWORDER") == "TOP-DOWN"
    data["ry"] = ry
    return data


def siril_timestamp_us(data: dict, moment: str, y: int) -> int | None:
    """get_timestamp_for_pixel(data, moment, x, y): unix microseconds; None unless the end
    stamp's state is 2 or 3 (``time_is_accurate``: ``flag == 3 || flag == 2`` in gps_parser.c)."""
    if data["flag"] not in (2, 3):
        return None
    if data["top_down"]:
        y = data["ry"] - y - 1
    y += data["crop_offset_y"]
    y *= data["binning"]
    if "2CMS" not in data["readout_mode"]:
        y_offset = 2.0 * data["line_period"] * (y // 2) * 1e-3
    else:
        y_offset = data["line_period"] * y * 1e-3
    offset_seconds = (y_offset + data["end_offset0"]) * 1e-6
    if moment == "start":
        offset_seconds -= data["exposure"]
    elif moment == "mid":
        offset_seconds -= data["exposure"] * 0.5
    return data["end_vsync_us"] + math.trunc(offset_seconds * 1000000.0)


def units(y: int, two_cms: bool) -> int:
    return y if two_cms else 2 * (y // 2)


def check_frame(out: Path, *, crop_y: int, binning: int, two_cms: bool, flipped: bool) -> int:
    """Assert the documented bound on every row of a stamped frame; return the largest
    difference (ns)."""
    with fits.open(out) as hdul:
        h = hdul[0].header
        tab = hdul["ROWTIMES"].data
        ry = int(h["NAXIS2"])
        data = siril_read(h, ry)
        assert data, "Siril finds every keyword it requires"
        lp_int, lp_exact = int(h["QHY_LP"]), float(h["QT_LP"])
        assert abs(lp_int - lp_exact) < 1  # the floor or the ceiling
        ours = {m: np.asarray(tab[f"{m.upper()}_NS"], dtype=np.int64) for m in ("start", "mid", "end")}
        worst = 0
        for r in range(ry):
            readout_row = ry - 1 - r if flipped else r
            sensor = [crop_y + binning * readout_row + k for k in range(binning)]
            n = max(units(y, two_cms) for y in sensor)
            spread = round((n - min(units(y, two_cms) for y in sensor)) * lp_exact)
            bound = SIRIL_BOUND_NS + n * abs(lp_int - lp_exact) + spread
            for m in ("start", "mid", "end"):
                diff = siril_timestamp_us(data, m, r) * 1000 - int(ours[m][r])
                assert abs(diff) <= bound, (r, m, diff, bound)
                worst = max(worst, abs(diff))
        assert worst == h["QT_SIRIL"]  # the header says the largest difference, to the ns
        # the other integer line period would not have kept Siril closer
        other = math.floor(lp_exact) if lp_int > lp_exact else math.ceil(lp_exact)
        if other != lp_int:
            alt = dict(data, line_period=other)
            worst_alt = max(
                abs(siril_timestamp_us(alt, m, r) * 1000 - int(ours[m][r]))
                for r in range(ry)
                for m in ("start", "mid", "end")
            )
            assert worst <= worst_alt
    return worst


def flip_rows(src: Path, dst: Path, *, roworder: bool) -> None:
    """Store the frame's rows top-down (the block moves to the last stored row)."""
    with fits.open(src) as hdul:  # uint16 data, written back with BZERO by astropy
        hdu = fits.PrimaryHDU(hdul[0].data[::-1].copy(), header=hdul[0].header)
        if roworder:
            hdu.header["ROWORDER"] = "TOP-DOWN"
        hdu.writeto(dst)


CASES = [
    # binning, crop, readout, flipped (ROWORDER), flipped without ROWORDER
    (1, 0, "pairs", False, False),
    (1, 37, "pairs", False, False),
    (2, 0, "pairs", False, False),
    (2, 37, "pairs", False, False),
    (1, 0, "2cms", False, False),
    (1, 37, "2cms", False, False),
    (2, 0, "2cms", False, False),
    (2, 37, "2cms", False, False),
    (1, 37, "pairs", True, False),
    (2, 37, "2cms", True, False),
    (1, 0, "pairs", False, True),
]


@pytest.mark.parametrize(("binning", "crop_y", "readout", "flipped", "soft_flip"), CASES)
def test_siril_reading_is_within_the_documented_bound(
    tmp_path: Path, binning: int, crop_y: int, readout: str, flipped: bool, soft_flip: bool
) -> None:
    mode = "High Gain 2CMS" if readout == "2cms" else "High Gain"
    sim = CameraSim(width=48, height=400 // binning, crop_y=crop_y, binning=binning,
                    readout=readout, readout_mode=mode, line_period_ns=LP_NS, reference="now",
                    exposure_us=2000.0, frame_interval_us=123_457.0)  # fmt: skip
    model = RowModel.from_us(offset0_us=sim.offset0_us, line_period_ns=LP_NS,
                             readout=readout, reference="now")  # fmt: skip
    for i, src in enumerate(sim.write_fits(tmp_path / "cap", 3)):
        if flipped or soft_flip:
            flip_rows(src, tmp_path / f"flip{i}.fits", roworder=flipped)
            src = tmp_path / f"flip{i}.fits"
        out = tmp_path / f"out{i}.fits"
        assert stamp_fits(src, out, model=model).status == "ok"
        h = fits.getheader(out)
        assert h["CROPOFFY"] * binning >= crop_y and h["QT_CROPY"] == crop_y
        if soft_flip:
            assert h["ROWORDER"] == "TOP-DOWN"  # the block showed the order
        worst = check_frame(out, crop_y=crop_y, binning=binning, two_cms=readout == "2cms",
                            flipped=flipped or soft_flip)  # fmt: skip
        if binning == 1:
            # the first readout row's end: only Siril's two truncations, each under 1 us
            first = h["NAXIS2"] - 1 if flipped or soft_flip else 0
            with fits.open(out) as hdul:
                data = siril_read(hdul[0].header, h["NAXIS2"])
                ours_end = int(hdul["ROWTIMES"].data["END_NS"][first])
            siril_end = siril_timestamp_us(data, "end", first) * 1000
            assert -SIRIL_BOUND_NS < siril_end - ours_end <= 0
            assert worst < SIRIL_BOUND_NS + (crop_y + 400)  # at most 1 ns per line period


def test_full_frame_siril_bound_and_integer_lp(tmp_path: Path) -> None:
    """The README's figure: a full 6388-row frame with LP 43194.523827 ns."""
    sim = CameraSim(width=32, height=6388, line_period_ns=LP_NS, reference="end",
                    exposure_us=100_000.0, frame_interval_us=250_001.0)  # fmt: skip
    model = RowModel.from_us(offset0_us=sim.offset0_us, line_period_ns=LP_NS, reference="end")
    worst = []
    for i, src in enumerate(sim.write_fits(tmp_path / "cap", 4)):
        out = tmp_path / f"out{i}.fits"
        stamp_fits(src, out, model=model)
        assert fits.getheader(out)["QHY_LP"] == 43195  # the ceiling keeps Siril closest here
        worst.append(check_frame(out, crop_y=0, binning=1, two_cms=False, flipped=False))
    # 2 us of truncation + 0.476 ns x 6386 line periods
    assert max(worst) <= SIRIL_BOUND_NS + 6386 * (43195 - LP_NS)
    assert max(worst) < 3100


def test_the_old_decimal_formula_was_wrong_for_siril(tmp_path: Path) -> None:
    """With QHY_LP written as the decimal 43194.523827, Siril (TINT) reads 43194: 3.3 us
    off at row 6387, what the issue saw; the integer QHY_LP avoids it."""
    sim = CameraSim(width=32, height=6388, line_period_ns=LP_NS, exposure_us=1000.0)
    model = RowModel.from_us(offset0_us=sim.offset0_us, line_period_ns=LP_NS)
    (src,) = sim.write_fits(tmp_path / "cap", 1)
    out = tmp_path / "out.fits"
    stamp_fits(src, out, model=model)
    with fits.open(out) as hdul:
        h, end = hdul[0].header, hdul["ROWTIMES"].data["END_NS"]
        data = siril_read(h, 6388)
        truncated = dict(data, line_period=math.trunc(LP_NS))  # cfitsio's TINT of 43194.52
        diff = siril_timestamp_us(truncated, "end", 6387) * 1000 - int(end[6387])
        assert diff < -3300
        diff_ours = siril_timestamp_us(data, "end", 6387) * 1000 - int(end[6387])
        assert abs(diff_ours) <= SIRIL_BOUND_NS + 6386 * abs(h["QHY_LP"] - LP_NS)


def test_glib_date_parse_is_whole_microseconds() -> None:
    """Hand-worked: GPS_EUTC 51.980086527 s keeps 51.980086 s."""
    us = glib_from_fits_date("2025-08-02T01:44:51.980086527")
    assert us * 1000 == iso_to_unix_ns("2025-08-02T01:44:51.980086000")

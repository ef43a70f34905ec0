"""The light-curve CSV in PyMovie's format, as PyOTE's reader parses it.

PyOTE (``pyoteapp.csvreader.readLightCurve``) picks its PyMovie parser only when the first
line contains the word ``PyMovie``; it keeps every line before the column header (the first
line containing ``FrameNum``) as a header, takes the columns whose names start with
``signal-`` as light curves (the first one as the target's) and cuts aperture names at the
first ``-``; it drops the last character of every data line (the newline), so the file ends
with one. ``timeInfo`` is ``[HH:MM:SS.fffffff]``, the UTC time of day; ``# date at frame 0:``
gives the date of the first data row.

qhytime's ``timeInfo`` is the exposure window (start by default) of the target's own row,
rounded to the 100 ns the format holds from the exact integer time.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from qhytime.atomic import atomic_open

if TYPE_CHECKING:
    from qhytime.occultation.lightcurve import LightCurve

NS_PER_DAY = 86_400 * 1_000_000_000
PYMOVIE_COLUMNS = ("appsum", "avgbkg", "stdbkg", "nmaskpx", "maxpx", "xcentroid", "ycentroid")
"""PyMovie's per-aperture columns after the ``signal-`` ones, in its order."""
MAX_LISTED = 200
"""Header lines listing left-out frames (the rest are counted; the JSON records have them all)."""


def round_to_100ns(unix_ns: int) -> int:
    """Unix ns rounded to a multiple of 100 ns, halves up.

    Examples
    --------
    >>> round_to_100ns(1_000_000_049), round_to_100ns(1_000_000_050), round_to_100ns(-50)
    (1000000000, 1000000100, 0)
    """
    return (int(unix_ns) + 50) // 100 * 100


def time_info(unix_ns: int) -> str:
    """PyMovie's ``timeInfo`` of an exact time: ``[HH:MM:SS.fffffff]`` (UTC time of day,
    rounded to 100 ns, halves up; never truncated).

    Examples
    --------
    >>> time_info(1770779872255319802)     # 2026-02-11T03:17:52.255319802
    '[03:17:52.2553198]'
    >>> time_info(1770779872255319850)     # a half rounds up
    '[03:17:52.2553199]'
    >>> time_info(86_400_000_000_000 - 40)  # 23:59:59.99999996 rounds into the next day
    '[00:00:00.0000000]'
    """
    r = round_to_100ns(unix_ns) % NS_PER_DAY
    sec, frac = divmod(r, 1_000_000_000)
    h, rem = divmod(sec, 3600)
    m, s = divmod(rem, 60)
    return f"[{h:02d}:{m:02d}:{s:02d}.{frac // 100:07d}]"


def utc_date(unix_ns: int) -> str:
    """UTC date (``YYYY-MM-DD``) of the rounded ``timeInfo`` of a time.

    Examples
    --------
    >>> utc_date(1770779872255319802), utc_date(86_400_000_000_000 - 40)
    ('2026-02-11', '1970-01-02')
    """
    days = round_to_100ns(unix_ns) // NS_PER_DAY
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(days))).isoformat()


_HEADER_KEYS = re.compile(r"FrameNum|BinNo", re.IGNORECASE)


def _clean(text: str) -> str:
    """One header line's text: no line breaks, nothing PyOTE would take for the column header."""
    text = text.replace("\r", " ").replace("\n", " ")
    return _HEADER_KEYS.sub(lambda m: m.group(0)[:3] + "_" + m.group(0)[3:], text)


def _fmt(v: float, nd: int) -> str:
    return f"{v:.{nd}f}" if np.isfinite(v) else "nan"


def _ranges(values: Sequence[int]) -> str:
    """``1-3, 7`` from ``[1, 2, 3, 7]``."""
    out: list[str] = []
    vals = sorted(set(int(v) for v in values))
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        out.append(str(vals[i]) if i == j else f"{vals[i]}-{vals[j]}")
        i = j + 1
    return ", ".join(out)


def header_lines(lc: LightCurve, time: str) -> list[str]:
    """The ``#`` lines of the CSV (without the date line), each starting with ``# ``."""
    from qhytime import __version__

    lines = [f"# PyMovie-format light curve written by qhytime {__version__} (PyOTE reads it)"]
    src = lc.sources
    if len(src) <= 4:
        lines.append("# source: " + "; ".join(src))
    else:
        folders = sorted({os.path.dirname(p) or "." for p in src})
        where = folders[0] if len(folders) == 1 else f"{len(folders)} folders"
        lines.append(
            f"# source: {len(src)} files in {where}, in this order: {os.path.basename(src[0])} .. "
            f"{os.path.basename(src[-1])}"
        )
    for s in lc.settings:
        lines.append(f"# camera setting: {s}")
    for t in lc.timing:
        lines.append(f"# timing: {t}")
    ids = ["none (explicit model)" if c is None else f"#{c}" for c in lc.calibration_ids]
    lines.append(f"# calibration id: {', '.join(ids) or 'none'}")
    ok = lc.timed
    tg = lc.target
    rows = tg.row[ok]
    sensor = tg.sensor_row[ok]
    if rows.size and rows.min() == rows.max():
        row_txt = f"image row {int(rows[0])} (sensor row {int(sensor[0])})"
    elif rows.size:
        row_txt = (
            f"image rows {int(rows.min())}-{int(rows.max())} (sensor rows {int(sensor.min())}-"
            f"{int(sensor.max())}), the row under the target's centroid in each frame"
        )
    else:
        row_txt = "no timed frame"
    how = "tracked, recentred each frame" if tg.aperture.tracked else "fixed"
    lines.append(
        f"# timeInfo: the {time} of the exposure of the target's row, {row_txt}, UTC, rounded to "
        f"100 ns from the exact time (aperture {how})"
    )
    sig = tg.sigma_ns[ok]
    if sig.size:
        lines.append(
            f"# timing sigma (1-sigma of each timeInfo: stamp ticks, offset0, line period): "
            f"{float(np.nanmax(sig)):.1f} ns"
        )
    else:
        lines.append("# timing sigma: no timed frame")
    r1, r2 = lc.options.annulus
    aps = "; ".join(
        f"{a.name} at ({a.aperture.x:g}, {a.aperture.y:g}) {'tracked' if a.aperture.tracked else 'fixed'}"
        for a in lc.apertures
    )
    lines.append(
        f"# apertures (x column, y row, 0-based): {aps}; radius {lc.options.radius:g} px, "
        f"background annulus {r1:g}-{r2:g} px (sigma-clipped median)"
    )
    lines.append(
        "# columns: signal = appsum - avgbkg x nmaskpx; nmaskpx is the exact aperture area in px; "
        "each aperture is timed at its own row (the JSON records give every aperture's times)"
    )
    lines.append(
        "# frame numbers count frames from the first one read, frames dropped from the GPS "
        "sequence numbers included"
    )
    gaps = lc.dropped
    if not gaps:
        lines.append("# dropped frames: none (no gap in the GPS sequence numbers)")
    else:
        total = sum(d.count for _, d in gaps)
        lines.append(
            f"# dropped frames: {total} missing from the GPS sequence numbers; the frame after a "
            "gap keeps its own time"
        )
        for i, d in gaps[:MAX_LISTED]:
            prev = max((j for j in range(i) if lc.index[j] >= 0), default=None)
            before = f" after {lc.where(prev)}" if prev is not None else ""
            lines.append(
                f"# dropped: {d.describe()} missing (frame number "
                f"{_ranges(range(int(lc.index[i]) - d.count, int(lc.index[i])))}){before}, "
                f"before {lc.where(i)}"
            )
        if len(gaps) > MAX_LISTED:
            lines.append(f"# dropped: ... and {len(gaps) - MAX_LISTED} more gaps (see the JSON records)")
    out = lc.left_out
    if not out:
        lines.append("# frames left out: none")
    else:
        lines.append(
            f"# frames left out: {len(out)} (own GPS time not trusted, or not readable/measurable)"
        )
        for i in out[:MAX_LISTED]:
            seq = f" (sequence {int(lc.sequence[i])})" if lc.sequence[i] >= 0 else ""
            why = "; ".join(lc.reasons[i]) or "unknown"
            lines.append(f"# left out: {lc.where(i)}{seq}, {lc.status[i]}: {why}")
        if len(out) > MAX_LISTED:
            lines.append(f"# left out: ... and {len(out) - MAX_LISTED} more (see the JSON records)")
    sat = []
    for a in lc.apertures:
        k = np.flatnonzero(a.saturated & ok)
        if k.size:
            sat.append(f"{a.name} {k.size} (frame numbers {_ranges(lc.index[k][:50].tolist())})")
    lines.append(
        f"# saturated samples (peak >= {lc.saturation_adu:g}): " + ("; ".join(sat) or "none")
    )
    full = np.pi * lc.options.radius**2
    cut = []
    for a in lc.apertures:
        k = np.flatnonzero(ok & (a.area < 0.999 * full))
        if k.size:
            cut.append(f"{a.name} {k.size} (frame numbers {_ranges(lc.index[k][:50].tolist())})")
    if cut:
        lines.append(
            "# apertures cut by the frame edge or the GPS block pixels (nmaskpx below the full "
            f"area): {'; '.join(cut)}"
        )
    return [_clean(x) for x in lines]


def write_pymovie_csv(lc: LightCurve, path: str | os.PathLike[str], *, time: str | None = None) -> int:
    """Write the light curve as a PyMovie CSV that PyOTE reads; returns the rows written.

    Only samples whose own time is trusted and whose photometry succeeded are rows (an empty
    ``timeInfo`` breaks PyOTE); the others are listed in the header with their reasons, as
    are the frames dropped from the sequence numbers. The file appears whole or not at all.

    Parameters
    ----------
    lc : LightCurve
    path : path
    time : {"start", "mid", "end"}, optional
        The moment ``timeInfo`` gives (default: the light curve's).

    Examples
    --------
    >>> import tempfile, os
    >>> from qhytime.rowmodel import RowModel
    >>> from qhytime.simulate import CameraSim, Star
    >>> from qhytime.occultation import light_curve
    >>> sim = CameraSim(width=64, height=40, exposure_us=20_000, frame_interval_us=25_000)
    >>> d = tempfile.mkdtemp()
    >>> paths = sim.write_fits(d, 3, stars=[Star(30, 25, 2e6, fwhm_px=3)])
    >>> m = RowModel.from_us(offset0_us=sim.offset0_us, line_period_ns=sim.line_period_ns)
    >>> lc = light_curve(paths, (30, 25), radius=4, annulus=(7, 12), model=m)
    >>> write_pymovie_csv(lc, os.path.join(d, "lc.csv"))
    3
    >>> with open(os.path.join(d, "lc.csv")) as fh:
    ...     lines = fh.read().splitlines()
    >>> lines[0].split(" by ")[0], lines[-4][:40]
    ('# PyMovie-format light curve written', 'FrameNum,timeInfo,signal-target,appsum-t')
    """
    time = time or lc.time
    names = lc.names
    ok = np.flatnonzero(lc.timed)
    tg = lc.target
    times = tg.times_ns(time)
    lines = header_lines(lc, time)
    if ok.size:
        lines.append(f"# date at frame 0: {utc_date(int(times[ok[0]]))}")
    cols = ["FrameNum", "timeInfo", *[f"signal-{n}" for n in names]]
    cols += [f"{c}-{n}" for c in PYMOVIE_COLUMNS for n in names]
    with atomic_open(path, "w", newline="\n") as fh:
        for line in lines:
            fh.write(line + "\n")
        fh.write(",".join(cols) + "\n")
        for i in ok:
            parts = [str(int(lc.index[i])), time_info(int(times[i]))]
            parts += [_fmt(a.signal[i], 2) for a in lc.apertures]
            per = {
                "appsum": [_fmt(a.appsum[i], 2) for a in lc.apertures],
                "avgbkg": [_fmt(a.background[i], 3) for a in lc.apertures],
                "stdbkg": [_fmt(a.background_std[i], 3) for a in lc.apertures],
                "nmaskpx": [_fmt(a.area[i], 3) for a in lc.apertures],
                "maxpx": [_fmt(a.peak[i], 0) for a in lc.apertures],
                "xcentroid": [
                    _fmt(a.xcentroid[i] if np.isfinite(a.xcentroid[i]) else a.x[i], 3)
                    for a in lc.apertures
                ],
                "ycentroid": [
                    _fmt(a.ycentroid[i] if np.isfinite(a.ycentroid[i]) else a.y[i], 3)
                    for a in lc.apertures
                ],
            }
            for c in PYMOVIE_COLUMNS:
                parts += per[c]
            fh.write(",".join(parts) + "\n")
    return int(ok.size)

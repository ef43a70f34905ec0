"""The light curve against exact time, with the fitted events (matplotlib, imported lazily)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qhytime.atomic import atomic_path
from qhytime.errors import OccultationError
from qhytime.timebase import unix_ns_to_iso

if TYPE_CHECKING:
    from qhytime.occultation.events import EventTimes
    from qhytime.occultation.lightcurve import LightCurve


def plot_light_curve(
    lc: LightCurve,
    events: EventTimes | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Any:
    """Plot the timed samples of every aperture against exact UTC, with the fitted events.

    Each target sample is drawn across its own exposure window (a horizontal bar from the
    start to the end of its row's window). With ``events``: the fitted square well, D and R
    with their 1-sigma bands, and (dashed) where frame-level times would put them.

    Parameters
    ----------
    lc : LightCurve
    events : EventTimes, optional
    path : path, optional
        Write the figure there (format from the suffix, default PNG), whole or not at all.

    Returns
    -------
    matplotlib.figure.Figure
        Built without pyplot (no global state).

    Raises
    ------
    OccultationError
        matplotlib missing (``pip install "qhytime[plot]"``) or nothing timed to plot.

    Examples
    --------
    >>> import tempfile
    >>> from qhytime.occultation import light_curve
    >>> from qhytime.rowmodel import RowModel
    >>> from qhytime.simulate import CameraSim, Star
    >>> sim = CameraSim(width=40, height=30, exposure_us=10_000, frame_interval_us=12_000)
    >>> paths = sim.write_fits(tempfile.mkdtemp(), 4, stars=[Star(20, 15, 2e6, fwhm_px=3)])
    >>> m = RowModel.from_us(offset0_us=sim.offset0_us, line_period_ns=sim.line_period_ns)
    >>> fig = plot_light_curve(light_curve(paths, (20, 15), radius=4, annulus=(7, 11), model=m))
    >>> fig.axes[0].get_ylabel()
    'signal (ADU, background subtracted)'
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise OccultationError('plots need matplotlib: pip install "qhytime[plot]"') from exc
    ok = np.flatnonzero(lc.timed)
    if not ok.size:
        raise OccultationError("no timed sample to plot")
    tg = lc.target
    t0 = int(tg.start_ns[ok[0]])

    def sec(ns: Any) -> Any:
        return (np.asarray(ns, dtype=np.int64) - t0) / 1e9

    fig = Figure(figsize=(10, 4.8), layout="constrained")
    ax = fig.subplots()
    s, e = sec(tg.start_ns[ok]), sec(tg.end_ns[ok])
    mid = (s + e) / 2
    ax.errorbar(mid, tg.signal[ok], xerr=(e - s) / 2, fmt="o", ms=3, lw=0.8, color="C0",
                label="target (bar: its row's exposure window)")  # fmt: skip
    for k, a in enumerate(lc.apertures[1:], start=1):
        m = (sec(a.start_ns[ok]) + sec(a.end_ns[ok])) / 2
        ax.plot(m, a.signal[ok], ".", ms=3, color=f"C{k + 1}", alpha=0.6, label=a.name)
    if events is not None:
        f = events.fit
        d, r = sec(f.D.unix_ns), sec(f.R.unix_ns)
        lo, hi = float(min(s.min(), d)), float(max(e.max(), r))
        ax.plot([lo, d, d, r, r, hi], [f.baseline, f.baseline, f.level, f.level, f.baseline,
                f.baseline], color="C1", lw=1.2, label="square-well fit")  # fmt: skip
        for edge, x in (("D", d), ("R", r)):
            sg = getattr(f, edge).sigma_ns / 1e9
            ax.axvspan(x - sg, x + sg, color="C1", alpha=0.25, lw=0)
            ax.axvline(x, color="C1", lw=0.8)
            ax.annotate(f"{edge} {getattr(f, edge).utc[11:23]}", (x, f.baseline), fontsize=8,
                        xytext=(3, 4), textcoords="offset points")  # fmt: skip
        g = events.frame_level
        for x in (sec(g.D.unix_ns), sec(g.R.unix_ns)):
            ax.axvline(x, color="0.4", ls="--", lw=0.8)
        ax.plot([], [], color="0.4", ls="--", lw=0.8, label="frame-level D, R (row 0)")
    ax.set_xlabel(f"seconds after {unix_ns_to_iso(t0)} UTC ({lc.time} of the target row)")
    ax.set_ylabel("signal (ADU, background subtracted)")
    ax.set_title("light curve, each sample timed at its aperture's row")
    ax.legend(fontsize=8, loc="lower left")
    if path is not None:
        fmt = Path(path).suffix.lstrip(".").lower() or "png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=120)
    return fig

"""Event times from a light curve: a square-well fit over each sample's exact exposure window.

Model: a star of baseline level ``B`` disappears at ``D`` and reappears at ``R`` (an event
level ``A`` in between, the asteroid's own light or zero). A sample exposed over
``[s, e]`` integrates the star while it is visible, so its expected value is ::

    v = B (1 - h) + A h,      h = |[s, e] ∩ [D, R]| / (e - s)

(the hidden fraction of its own window). A frame exposed partly during the event therefore
places D or R inside its window: sub-frame timing, when each sample carries the window of
the row the star was on.

The fit (:func:`fit_square_well`):

1. a coarse square well over sample indices (exact least squares on cumulative sums) finds
   the event and the two levels, and checks it is significant;
2. ``scipy.optimize.least_squares`` fits ``B, A, D, R`` with the analytic Jacobian, from the
   positions the edge samples' levels suggest;
3. the likelihood of each edge (the other edge at its best value, both levels profiled) is
   evaluated on a fine grid across the samples around it; D and R are its mean and their
   1-sigma its standard deviation (the noise from the fit's residuals). This covers the
   usual case (a partial frame: a near-Gaussian peak) and the dead time between frames (an
   edge that falls between two windows is only known to lie in that gap: flat likelihood,
   sigma = gap / sqrt(12)).

The 1-sigma reported combines that with the row-time sigma of the samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qhytime.errors import OccultationError
from qhytime.rowmodel import TICK_SIGMA_NS
from qhytime.timebase import unix_ns_to_iso

if TYPE_CHECKING:
    from qhytime.occultation.lightcurve import LightCurve

GRID = 4001
"""Points of each edge's likelihood grid (one coarse pass, one refined)."""


@dataclass(frozen=True)
class EdgeTime:
    """One event edge (D or R).

    Attributes
    ----------
    unix_ns : int
        The time (ns since 1970, UTC).
    sigma_ns : float
        1-sigma: the fit's combined with the row time's.
    fit_sigma_ns, row_sigma_ns : float
        The two parts.
    sample : int
        Index (among the fitted samples) of the sample whose window holds the edge, -1 when
        it falls between windows.

    Examples
    --------
    >>> EdgeTime(1770779873550320041, 222871.0, 222869.0, 28.9, 35).to_dict()
    {'utc': '2026-02-11T03:17:53.550320041', 'unix_ns': 1770779873550320041, 'sigma_s': 0.000222871}
    """

    unix_ns: int
    sigma_ns: float
    fit_sigma_ns: float
    row_sigma_ns: float
    sample: int

    @property
    def utc(self) -> str:
        """ISO UTC with 9 decimals."""
        return str(unix_ns_to_iso(self.unix_ns))

    def to_dict(self) -> dict[str, Any]:
        """``utc``, ``unix_ns``, ``sigma_s``."""
        return {"utc": self.utc, "unix_ns": int(self.unix_ns), "sigma_s": round(self.sigma_ns / 1e9, 9)}


@dataclass(frozen=True)
class SquareWell:
    """The result of :func:`fit_square_well`.

    Attributes
    ----------
    D, R : EdgeTime
    baseline, level : float
        ``B`` and ``A`` of the model.
    noise : float
        RMS of the residuals (per sample).
    duration_ns : int
    duration_sigma_ns : float
        The edges' fit sigmas and two stamp quantisations (a common offset0/line-period
        error cancels in a duration).
    samples, event_samples : int
        Samples fitted; samples at least half hidden.
    significance : float
        Depth over its standard error in the coarse fit.

    Examples
    --------
    >>> import numpy as np
    >>> s = np.arange(8) * 20_000_000
    >>> w = fit_square_well(s, s + 10_000_000, [9, 9, 9, 3, 1, 1, 9, 9])
    >>> w.D.unix_ns, w.D.sample    # sample 3 (60-70 ms) saw the star for a quarter
    (62500000, 3)
    >>> w.R.unix_ns, w.R.sample, round(w.R.fit_sigma_ns / 1e6, 2)   # R: the 110-120 ms gap
    (115000000, -1, 2.89)
    >>> w.duration_ns, w.event_samples, w.model([57_000_000], [67_000_000]).round(3).tolist()
    (52500000, 3, [5.4])
    """

    D: EdgeTime
    R: EdgeTime
    baseline: float
    level: float
    noise: float
    duration_ns: int
    duration_sigma_ns: float
    samples: int
    event_samples: int
    significance: float

    def model(self, start_ns: ArrayLike, end_ns: ArrayLike) -> NDArray[np.float64]:
        """Expected values of samples exposed over ``[start_ns, end_ns]``."""
        s = np.asarray(start_ns, dtype=np.int64)
        e = np.asarray(end_ns, dtype=np.int64)
        h = _hidden(
            (s - self.D.unix_ns).astype(np.float64), (e - self.D.unix_ns).astype(np.float64),
            0.0, float(self.R.unix_ns - self.D.unix_ns),
        )  # fmt: skip
        return self.baseline * (1.0 - h) + self.level * h

    def to_dict(self) -> dict[str, Any]:
        return {
            "D": self.D.to_dict(),
            "R": self.R.to_dict(),
            "duration_s": round(self.duration_ns / 1e9, 9),
            "duration_sigma_s": round(self.duration_sigma_ns / 1e9, 9),
        }


@dataclass(frozen=True)
class EventTimes:
    """Event times of a light curve's target, and what frame-level times would have given.

    Attributes
    ----------
    fit : SquareWell
        Samples timed at the target's own row.
    frame_level : SquareWell
        The same samples timed at each frame's first readout row (row 0 / DATE-OBS).

    Examples
    --------
    >>> import numpy as np
    >>> s = np.arange(8) * 20_000_000
    >>> v = [9, 9, 9, 3, 1, 1, 9, 9]
    >>> row = fit_square_well(s + 5_000_000, s + 15_000_000, v)   # the target's row: 5 ms later
    >>> ev = EventTimes(row, fit_square_well(s, s + 10_000_000, v))
    >>> ev.row_correction_ns, ev.D.unix_ns
    (5000000, 67500000)
    """

    fit: SquareWell
    frame_level: SquareWell

    @property
    def D(self) -> EdgeTime:
        return self.fit.D

    @property
    def R(self) -> EdgeTime:
        return self.fit.R

    @property
    def row_correction_ns(self) -> int:
        """How much later D is than the frame-level fit puts it."""
        return self.fit.D.unix_ns - self.frame_level.D.unix_ns

    def to_dict(self) -> dict[str, Any]:
        """The ``events`` object of ``qhytime lightcurve --json --events``."""
        f = self.fit
        return {
            **f.to_dict(),
            "baseline": round(f.baseline, 3),
            "event_level": round(f.level, 3),
            "noise": round(f.noise, 3),
            "samples": f.samples,
            "event_samples": f.event_samples,
            "significance": round(f.significance, 1),
            "row_correction_s": round(self.row_correction_ns / 1e9, 9),
            "frame_level": self.frame_level.to_dict(),
        }

    def summary(self) -> list[str]:
        """Lines for people."""
        f, g = self.fit, self.frame_level
        return [
            f"D  {f.D.utc} UTC  +/- {f.D.sigma_ns / 1e6:.3f} ms",
            f"R  {f.R.utc} UTC  +/- {f.R.sigma_ns / 1e6:.3f} ms",
            f"duration {f.duration_ns / 1e9:.6f} s  +/- {f.duration_sigma_ns / 1e6:.3f} ms "
            f"(baseline {f.baseline:.1f}, event level {f.level:.1f}, {f.samples} samples)",
            f"frame-level times (first readout row of each frame): {g.D.utc} and {g.R.utc}; "
            f"the target's row moves D by {self.row_correction_ns / 1e6:+.3f} ms",
        ]


def _hidden(s: Any, e: Any, d: float, r: float) -> Any:
    """Hidden fraction of windows [s, e] for an event [d, r]."""
    return np.clip(np.minimum(e, r) - np.maximum(s, d), 0.0, None) / (e - s)


def _coarse(v: NDArray[np.float64]) -> tuple[int, int, float]:
    """Best square well over indices: event = samples a..b, 1 <= a <= b <= n-2; SSR."""
    n = len(v)
    c1 = np.concatenate([[0.0], np.cumsum(v)])
    c2 = float((v * v).sum())
    tot = c1[-1]
    best = (math.inf, -1, -1)
    for a in range(1, n - 1):
        b = np.arange(a, n - 1)
        n_in = (b - a + 1).astype(np.float64)
        s_in = c1[b + 1] - c1[a]
        n_out = n - n_in
        s_out = tot - s_in
        ssr = c2 - s_in**2 / n_in - s_out**2 / n_out
        ssr = np.where(s_in / n_in < s_out / n_out, ssr, np.inf)
        k = int(np.argmin(ssr))
        if ssr[k] < best[0]:
            best = (float(ssr[k]), a, int(b[k]))
    if best[1] < 0:
        raise OccultationError("no dip in the light curve: nothing to fit")
    return best[1], best[2], best[0]


def _profile_ssr(
    h_loc: NDArray[np.float64], v_loc: NDArray[np.float64], sums: tuple[float, ...]
) -> NDArray[np.float64]:
    """SSR with B, A profiled, for hidden fractions ``h_loc`` (G, m) of the local samples;
    ``sums`` are the other samples' (Σpp, Σpq, Σqq, Σpv, Σqv, Σvv), p = 1 - h, q = h."""
    spp, spq, sqq, spv, sqv, svv = sums
    p, q = 1.0 - h_loc, h_loc
    a11 = spp + (p * p).sum(axis=1)
    a12 = spq + (p * q).sum(axis=1)
    a22 = sqq + (q * q).sum(axis=1)
    b1 = spv + (p * v_loc).sum(axis=1)
    b2 = sqv + (q * v_loc).sum(axis=1)
    vv = svv + float((v_loc * v_loc).sum())
    det = a11 * a22 - a12 * a12
    det = np.where(det > 0, det, np.nan)
    bb = (a22 * b1 - a12 * b2) / det
    aa = (a11 * b2 - a12 * b1) / det
    return vv - bb * b1 - aa * b2


class _EdgeProfile:
    """SSR (levels profiled) as one edge moves over [lo, hi], the other edge fixed."""

    def __init__(
        self, which: str, sr: NDArray[np.float64], er: NDArray[np.float64],
        v: NDArray[np.float64], d: float, r: float, lo: float, hi: float,
    ) -> None:  # fmt: skip
        self.which, self.d, self.r = which, d, r
        self.lo, self.hi = lo, max(hi, lo)
        local = (er > lo) & (sr < hi)
        h_all = _hidden(sr, er, d, r)
        other = ~local
        p, q = 1.0 - h_all[other], h_all[other]
        vo = v[other]
        self.sums = (float((p * p).sum()), float((p * q).sum()), float((q * q).sum()),
                     float((p * vo).sum()), float((q * vo).sum()), float((vo * vo).sum()))  # fmt: skip
        self.s, self.e, self.v = sr[local][None, :], er[local][None, :], v[local][None, :]

    def ssr(self, grid: NDArray[np.float64]) -> NDArray[np.float64]:
        g = grid[:, None]
        if self.which == "D":
            h = _hidden(self.s, self.e, g, self.r)
        else:
            h = _hidden(self.s, self.e, self.d, g)
        return _profile_ssr(h, self.v, self.sums)

    def best(self) -> tuple[float, float]:
        """The edge position of least SSR, and that SSR (grid, zoomed to 1 ns)."""
        a, b = self.lo, self.hi
        x, val = (a + b) / 2.0, math.inf
        for _ in range(6):
            grid = np.linspace(a, b, GRID)
            ssr = self.ssr(grid)
            if not np.isfinite(ssr).any():
                break
            k = int(np.nanargmin(ssr))
            x, val = float(grid[k]), float(ssr[k])
            step = (b - a) / (GRID - 1)
            if step <= 1.0:
                break
            a, b = max(self.lo, x - 3 * step), min(self.hi, x + 3 * step)
        return x, val

    def posterior(self, s2: float) -> tuple[float, float]:
        """Mean and 1-sigma of the edge under exp(-SSR / 2 s2) (flat prior on [lo, hi])."""
        if not self.hi > self.lo:
            return self.lo, 0.0

        def stats(grid: NDArray[np.float64]) -> tuple[float, float]:
            ssr = self.ssr(grid)
            ll = -(ssr - np.nanmin(ssr)) / (2.0 * s2)
            w = np.exp(np.where(np.isfinite(ll), ll, -np.inf))
            w /= w.sum()
            mean = float((w * grid).sum())
            return mean, math.sqrt(max(float((w * (grid - mean) ** 2).sum()), 0.0))

        a, b = self.lo, self.hi
        mean, std = stats(np.linspace(a, b, GRID))
        step = (b - a) / (GRID - 1)
        for _ in range(4):  # a narrow peak: zoom in until the grid resolves it (or reaches 1 ns)
            if std >= 40 * step or step <= 1.0:
                break
            a, b = max(self.lo, mean - 12 * max(std, step)), min(self.hi, mean + 12 * max(std, step))
            if not b > a:
                break
            mean, std = stats(np.linspace(a, b, GRID))
            step = (b - a) / (GRID - 1)
        return mean, math.sqrt(std**2 + step**2 / 12.0)


def fit_square_well(
    start_ns: ArrayLike,
    end_ns: ArrayLike,
    values: ArrayLike,
    *,
    row_sigma_ns: float = 0.0,
    min_significance: float = 5.0,
) -> SquareWell:
    """Fit a square-well occultation to samples with exact exposure windows.

    Parameters
    ----------
    start_ns, end_ns : int64 arrays
        Each sample's exposure window (unix ns), in time order.
    values : float array
        The signal of each sample.
    row_sigma_ns : float
        1-sigma of the sample times, combined with the fit's.
    min_significance : float
        Depth (baseline - event level) over its standard error below which there is no event.

    Returns
    -------
    SquareWell

    Raises
    ------
    OccultationError
        Fewer than 5 samples, windows not in order or empty, no significant event, an event
        without a sample before or after it.

    Examples
    --------
    Hand-worked: 10 ms windows every 20 ms; the star (1000, event level 0) hides from
    t = 45 ms (half of sample 2 is hidden) to t = 103 ms (sample 5 sees it for 7 of 10 ms).

    >>> import numpy as np
    >>> s = np.arange(10) * 20_000_000
    >>> e = s + 10_000_000
    >>> v = [1000, 1000, 500, 0, 0, 700, 1000, 1000, 1000, 1000]
    >>> w = fit_square_well(s, e, v)
    >>> w.D.unix_ns, w.R.unix_ns, round(w.baseline), round(w.level)
    (45000000, 103000000, 1000, 0)
    """
    from scipy.optimize import least_squares

    s = np.asarray(start_ns, dtype=np.int64).reshape(-1)
    e = np.asarray(end_ns, dtype=np.int64).reshape(-1)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    n = len(v)
    if not (len(s) == len(e) == n):
        raise OccultationError("start_ns, end_ns and values must have the same length")
    if n < 5:
        raise OccultationError(f"{n} samples: an event fit needs at least 5")
    if not np.all(np.isfinite(v)):
        raise OccultationError("the light curve holds non-finite values")
    if np.any(e <= s) or np.any(np.diff(s) <= 0):
        raise OccultationError("sample windows must be non-empty and in time order")
    t0 = int(s[0])
    sr = (s - t0).astype(np.float64)
    er = (e - t0).astype(np.float64)
    ex = er - sr

    a, b, _ = _coarse(v)
    inside = np.zeros(n, dtype=bool)
    inside[a : b + 1] = True
    b0, a0 = float(v[~inside].mean()), float(v[inside].mean())
    n_in, n_out = int(inside.sum()), int((~inside).sum())
    resid0 = np.concatenate([v[~inside] - b0, v[inside] - a0])
    s_pool = float(np.sqrt((resid0**2).sum() / max(n - 2, 1)))
    depth = b0 - a0
    signif = depth / (s_pool * math.sqrt(1.0 / n_in + 1.0 / n_out)) if s_pool > 0 else math.inf
    if not signif >= min_significance:
        raise OccultationError(
            f"no significant event: the deepest dip is {signif:.1f} sigma (needs "
            f"{min_significance:g}); is the target right, and does the recording cover the event?"
        )

    def resid(p: NDArray[np.float64]) -> NDArray[np.float64]:
        bb, aa, d, r = p
        h = _hidden(sr, er, d, r)
        return bb * (1.0 - h) + aa * h - v

    def jac(p: NDArray[np.float64]) -> NDArray[np.float64]:
        bb, aa, d, r = p
        h = _hidden(sr, er, d, r)
        lo, hi = np.maximum(sr, d), np.minimum(er, r)
        active = hi > lo
        # one-sided at a window edge, so that an edge starting there can move into it
        dd = np.where(active & (d >= sr), (bb - aa) / ex, 0.0)
        dr = np.where(active & (r <= er), (aa - bb) / ex, 0.0)
        return np.column_stack([1.0 - h, h, dd, dr])

    def visible(j: int) -> float:
        return float(np.clip((v[j] - a0) / depth, 0.0, 1.0))

    d_starts = [sr[j] + visible(j) * ex[j] for j in (a - 1, a)]
    r_starts = [er[j] - visible(j) * ex[j] for j in (b, b + 1)]
    best = None
    for d0 in d_starts:
        for r0 in r_starts:
            if not r0 > d0:
                continue
            res = least_squares(resid, np.array([b0, a0, d0, r0]), jac=jac, method="trf",
                                x_scale=np.array([depth, depth, ex[a], ex[b]]))  # fmt: skip
            if best is None or res.cost < best.cost:
                best = res
    if best is None:
        raise OccultationError("the event is too short to place D before R")
    d_ml, r_ml = float(best.x[2]), float(best.x[3])
    # Each edge can only be in the windows around the coarse one (and the gaps between):
    # D from the end of the second-last sample before the event to the start of the second
    # in it; R likewise. Refine both on grids (the least-squares start can stall where a
    # window edge makes the model flat), then take each edge's likelihood.
    lo_d = er[a - 2] if a >= 2 else sr[0]
    hi_d = sr[a + 1] if a + 1 < n else er[-1]
    lo_r = er[b - 1] if b >= 1 else sr[0]
    hi_r = sr[b + 2] if b + 2 < n else er[-1]
    ssr = 2.0 * float(best.cost)
    for _ in range(3):
        d_new, _s = _EdgeProfile("D", sr, er, v, d_ml, r_ml, lo_d, min(hi_d, r_ml)).best()
        r_new, ssr_new = _EdgeProfile("R", sr, er, v, d_new, r_ml, max(lo_r, d_new), hi_r).best()
        moved = abs(d_new - d_ml) + abs(r_new - r_ml)
        if ssr_new <= ssr:
            d_ml, r_ml, ssr = d_new, r_new, ssr_new
        if moved < 1.0:
            break
    s2 = ssr / max(n - 4, 1)
    if not s2 > 0:
        s2 = (1e-9 * max(abs(b0), 1.0)) ** 2
    d_mean, d_std = _EdgeProfile("D", sr, er, v, d_ml, r_ml, lo_d, min(hi_d, r_ml)).posterior(s2)
    r_mean, r_std = _EdgeProfile("R", sr, er, v, d_ml, r_ml, max(lo_r, d_ml), hi_r).posterior(s2)
    h = _hidden(sr, er, d_mean, r_mean)
    design = np.column_stack([1.0 - h, h])
    (bb, aa), *_ = np.linalg.lstsq(design, v, rcond=None)

    def edge(mean: float, std: float) -> EdgeTime:
        holder = np.flatnonzero((sr < mean) & (er > mean))
        return EdgeTime(
            unix_ns=t0 + round(mean),
            sigma_ns=math.hypot(std, row_sigma_ns),
            fit_sigma_ns=std,
            row_sigma_ns=float(row_sigma_ns),
            sample=int(holder[0]) if holder.size else -1,
        )

    dd, rr = edge(d_mean, d_std), edge(r_mean, r_std)
    return SquareWell(
        D=dd,
        R=rr,
        baseline=float(bb),
        level=float(aa),
        noise=math.sqrt(s2),
        duration_ns=rr.unix_ns - dd.unix_ns,
        duration_sigma_ns=math.sqrt(d_std**2 + r_std**2 + 2 * TICK_SIGMA_NS**2),
        samples=n,
        event_samples=int((h >= 0.5).sum()),
        significance=float(signif),
    )


def fit_events(lc: LightCurve, *, min_significance: float = 5.0) -> EventTimes:
    """Square-well event times of a light curve's target (timed samples only), and the same
    fit with every sample timed at its frame's first readout row.

    Raises
    ------
    OccultationError
        No significant event, or too few timed samples.

    Examples
    --------
    A star on sensor row 3020 hidden from 30 % into frame 8's window of that row to 70 % into
    frame 12's (the notebook ``notebooks/occultation.ipynb`` has a longer walk-through):

    >>> import tempfile
    >>> from qhytime.occultation import light_curve
    >>> from qhytime.rowmodel import RowModel
    >>> from qhytime.simulate import CameraSim, Star
    >>> sim = CameraSim(width=40, height=40, crop_y=3000, exposure_us=10_000,
    ...                 frame_interval_us=12_000, sky_adu_per_s=2000.0, seed=5)
    >>> end = lambda i: sim.block_for(i)[2] + round(float(sim.row_end_rel_ns()[20].max()))
    >>> d, r = end(8) - 7_000_000, end(12) - 3_000_000
    >>> star = Star(20, 20, 3e6, fwhm_px=3, occulted=(d, r))
    >>> paths = sim.write_fits(tempfile.mkdtemp(), 20, stars=[star])
    >>> m = RowModel.from_us(offset0_us=sim.offset0_us, line_period_ns=sim.line_period_ns)
    >>> ev = fit_events(light_curve(paths, (20, 20), model=m))
    >>> abs(ev.D.unix_ns - d) < 3 * ev.D.sigma_ns, abs(ev.R.unix_ns - r) < 3 * ev.R.sigma_ns
    (True, True)
    >>> ev.row_correction_ns     # 20 rows after image row 0, rows read in pairs
    863880
    """
    ok = lc.timed
    tg = lc.target
    if int(ok.sum()) < 5:
        raise OccultationError(f"{int(ok.sum())} timed samples: an event fit needs at least 5")
    order = np.argsort(tg.start_ns[ok], kind="stable")
    start, end = tg.start_ns[ok][order], tg.end_ns[ok][order]
    vals = tg.signal[ok][order]
    row_sigma = float(np.nanmax(tg.sigma_ns[ok]))
    fit = fit_square_well(start, end, vals, row_sigma_ns=row_sigma, min_significance=min_significance)
    fs, fe = lc.frame_start_ns[ok][order], lc.frame_end_ns[ok][order]
    frame = fit_square_well(fs, fe, vals, row_sigma_ns=row_sigma, min_significance=min_significance)
    return EventTimes(fit=fit, frame_level=frame)

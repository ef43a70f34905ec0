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
   the event and the two levels, and checks it is significant; each edge can then only lie
   from the end of the second-last sample before its coarse position to the start of the
   second one after it;
2. the least squares of ``B, A, D, R`` is solved exactly: the local range of the edges is cut
   at every window end, and in each cell (an edge on a window end, or inside a stretch that
   the same windows cover) the hidden fractions are linear in D and R, so the model is linear
   in ``B``, ``c = B - A``, ``c D`` and ``c R``; the best cell whose solution lies inside it
   is the global least squares (no start values, no local minimum);
3. the posterior of the edges is evaluated on a (D, R) grid: ``exp(-SSR / 2 s^2)``, flat
   priors on D and R, the two levels **profiled** (closed form at every node), ``s^2`` from
   the residuals (at least ``(NOISE_FLOOR * level)^2``, the resolution of noise-free data).
   D's axis has :data:`GRID` uniform nodes, the window ends and geometric clusters around the
   best positions; every D node has its own R nodes: uniform, the window ends, and clusters
   around the best R for that D in each cell (solved as in 2), so a narrow valley that
   curves through the plane (D and R trading off) is followed wherever it goes. The density is
   integrated as a continuous one (trapezoids with the window ends as nodes). D and R are the
   means of their **marginal** posteriors, their 1-sigma the marginal's standard deviation;
   the duration's sigma comes from the same joint posterior (their covariance included).

The levels are profiled, not marginalised: the model is linear in them, so marginalising
them under flat priors multiplies the profile by ``det(X^T X)^-1/2``, which is nearly constant
where the data determine them, and grows without bound where they do not: where the event
level is free (a single wholly hidden sample and an edge in the dead time), that factor would
favour ever deeper, unphysical event levels; the profile does not.

What comes out:

- a partial frame (an edge inside a window): a near-Gaussian peak, sigma about
  exposure * noise / depth (or the resolution of noise-free data);
- an edge in the dead time between frames is only known to lie in that gap: flat density,
  sigma = gap / sqrt(12), or a hair more (never less);
- **an undetermined event level.** The level A and the edges D, R need three samples that
  pin them: the wholly hidden ones, and one partial sample per edge inside a window. With
  fewer (one wholly hidden sample and an edge in the dead time; two and both edges in the
  dead time; an event inside one window), the data fit a family equally well: an edge in the
  dead time moves into the window of the wholly hidden sample next to it while the level
  drops, and the other edge follows. The marginal spreads over that whole family, so the
  sigmas say so (milliseconds, not nanoseconds; the truth, at an end of the family, within
  sqrt(3) sigma);
  :attr:`SquareWell.level_sigma` is the event level's posterior 1-sigma, and when it exceeds
  twice the noise of one sample (what one wholly hidden sample would give) ``flags`` holds
  ``"level_undetermined"``, which ``EventTimes.summary`` prints as a warning. A known event
  level (the asteroid's own brightness) would pin the edges; the fit does not assume one.

The 1-sigma reported combines the fit's with the row-time sigma of the samples. Times are
relative float ns inside the fit (to the start of the first sample in the event, so that they
resolve 1e-7 ns there), exact int ns outside.
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

GRID = 256
"""Uniform nodes on each edge's axis of the (D, R) grid (window ends and clusters are added)."""

NOISE_FLOOR = 1e-9
"""Least per-sample noise the fit assumes, relative to the light curve's level: noise-free
data are resolved to this, not beyond (float64 times and values carry about 1e-12)."""

LEVEL_FLAG = "level_undetermined"
"""The flag set when the event level trades off against D and R (see the module notes)."""

_STEP = math.log(1.15)  # node clusters around the best positions grow by 15 % per node
_SPLIT = 33  # nodes between two window ends or best positions on D's axis
_CENTERS = 16  # at most this many node clusters on D's axis
_KEEP = 80.0  # a cell whose best SSR is this many s^2 above the least carries < e^-40 of the mass
_MIN_WIDTH_NS = 1e-5  # the narrowest cluster spacing (times relative to the event resolve ~1e-7 ns)


@dataclass(frozen=True)
class EdgeTime:
    """One event edge (D or R).

    Attributes
    ----------
    unix_ns : int
        The time (ns since 1970, UTC): the mean of the edge's marginal posterior.
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
        ``B`` and ``A`` of the model: the best levels for the reported D and R.
    noise : float
        RMS of the residuals (per sample), at least ``NOISE_FLOOR`` of the level.
    duration_ns : int
    duration_sigma_ns : float
        From the joint posterior of D and R (their covariance included) and two stamp
        quantisations (a common offset0/line-period error cancels in a duration).
    samples, event_samples : int
        Samples fitted; samples at least half hidden.
    significance : float
        Depth over its standard error in the coarse fit.
    level_sigma : float
        Posterior 1-sigma of the event level ``A``, D and R marginalised.
    flags : tuple of str
        ``"level_undetermined"`` when ``level_sigma`` exceeds twice ``noise``: the data do
        not pin the event level, which trades off against D and R (their sigmas include it).

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
    >>> w.flags    # two wholly hidden samples and D inside a window pin the event level
    ()
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
    level_sigma: float = 0.0
    flags: tuple[str, ...] = ()

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
            "event_level_sigma": _round_sig(f.level_sigma),
            "noise": round(f.noise, 3),
            "samples": f.samples,
            "event_samples": f.event_samples,
            "significance": round(f.significance, 1),
            "flags": list(f.flags),
            "row_correction_s": round(self.row_correction_ns / 1e9, 9),
            "frame_level": self.frame_level.to_dict(),
        }

    def summary(self) -> list[str]:
        """Lines for people."""
        f, g = self.fit, self.frame_level
        lines = [
            f"D  {f.D.utc} UTC  +/- {f.D.sigma_ns / 1e6:.3f} ms",
            f"R  {f.R.utc} UTC  +/- {f.R.sigma_ns / 1e6:.3f} ms",
            f"duration {f.duration_ns / 1e9:.6f} s  +/- {f.duration_sigma_ns / 1e6:.3f} ms "
            f"(baseline {f.baseline:.1f}, event level {f.level:.1f}, {f.samples} samples)",
            f"frame-level times (first readout row of each frame): {g.D.utc} and {g.R.utc}; "
            f"the target's row moves D by {self.row_correction_ns / 1e6:+.3f} ms",
        ]
        if LEVEL_FLAG in f.flags:
            lines.append(
                f"warning: the data do not pin the event level ({f.level:.1f} +/- {f.level_sigma:.3g}, "
                f"noise {f.noise:.3g} per sample): it trades off against D and R, whose sigmas include "
                "that (an edge in the dead time next to too few wholly hidden samples)"
            )
        return lines


def _round_sig(x: float) -> float | None:
    """4 significant digits (JSON has no inf or nan: None)."""
    return float(f"{x:.4g}") if math.isfinite(x) else None


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




@dataclass(frozen=True)
class _Local:
    """The samples whose hidden fraction changes as D moves over its range and R over its own
    (windows relative to t0, float ns), and sums over the others, which are either wholly
    visible (h = 0: count, mean, sum of squares about the mean) or wholly hidden (h = 1)."""

    s: NDArray[np.float64]
    e: NDArray[np.float64]
    ex: NDArray[np.float64]
    v: NDArray[np.float64]
    n0: float
    m0: float
    ss0: float
    n1: float
    m1: float
    ss1: float

    @classmethod
    def build(
        cls, sr: NDArray[np.float64], er: NDArray[np.float64], v: NDArray[np.float64],
        d_range: tuple[float, float], r_range: tuple[float, float],
    ) -> _Local:  # fmt: skip
        (lo_d, hi_d), (lo_r, hi_r) = d_range, r_range
        local = ((er > lo_d) & (sr < hi_d)) | ((er > lo_r) & (sr < hi_r))
        hidden = ~local & (sr >= hi_d) & (er <= lo_r)
        visible = ~local & ~hidden

        def group(x: NDArray[np.float64]) -> tuple[float, float, float]:
            m = float(x.mean()) if x.size else 0.0
            return float(x.size), m, float(((x - m) ** 2).sum())

        return cls(sr[local], er[local], er[local] - sr[local], v[local], *group(v[visible]), *group(v[hidden]))

    def profile(
        self, d: NDArray[np.float64], r: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """At edges ``d``, ``r`` (broadcast): the SSR with both levels profiled (closed form),
        the best B and A, and A's conditional variance over s^2; nan where ``r <= d`` or the
        levels are not determined (nothing hidden). The SSR is summed from residuals, never
        as a difference of large sums, so noise-free data keep their resolution."""
        dd = np.atleast_1d(np.asarray(d, dtype=np.float64))
        rr = np.asarray(r, dtype=np.float64)
        shape = np.broadcast_shapes(dd.shape, rr.shape)
        # one local sample at a time on whole grids (there are few): q = its hidden fraction
        qs = []
        sq, sqq, sqv = np.zeros(shape), np.zeros(shape), np.zeros(shape)
        r_lo, d_hi = float(rr.min()), float(dd.max())
        for s, e, ex, v in zip(self.s, self.e, self.ex, self.v, strict=True):
            if e <= r_lo:  # R is past this window: q depends on D alone
                q = np.maximum(e - np.maximum(dd, s), 0.0)
            elif s >= d_hi:  # D is before it: q depends on R alone
                q = np.maximum(np.minimum(rr, e) - s, 0.0)
            else:
                q = np.minimum(rr, e) - np.maximum(dd, s)
                np.maximum(q, 0.0, out=q)
            q *= 1.0 / ex
            qs.append(q)
            sq += q
            sqq += q * q
            sqv += q * v
        m, sv = float(self.s.size), float(self.v.sum())
        a11 = self.n0 + m - 2.0 * sq + sqq  # sum of p^2, p = 1 - q
        a12 = sq - sqq
        a22 = self.n1 + sqq
        b1 = self.n0 * self.m0 + sv - sqv
        b2 = self.n1 * self.m1 + sqv
        det = a11 * a22 - a12 * a12
        det = np.where((det > 1e-12 * a11 * a22) & (rr > dd), det, np.nan)
        bb = (a22 * b1 - a12 * b2) / det
        aa = (a11 * b2 - a12 * b1) / det
        ssr = self.ss0 + self.n0 * (self.m0 - bb) ** 2 + self.ss1 + self.n1 * (self.m1 - aa) ** 2
        step = aa - bb
        for q, v in zip(qs, self.v, strict=True):
            res = v - bb
            res -= step * q
            ssr += res * res
        return ssr, bb, aa, a11 / det

    def cells(
        self, d_ref: NDArray[np.float64], d_len: NDArray[np.float64], d_mid: NDArray[np.float64],
        r_ref: NDArray[np.float64], r_len: NDArray[np.float64], r_mid: NDArray[np.float64],
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:  # fmt: skip
        """Exact least squares in cells (batched): D = d_ref + tD d_len, R = r_ref + tR r_len,
        ``*_mid`` a point inside the cell (which side of each window end an edge is on). There
        every hidden fraction is h = alpha + beta tD + gamma tR, so the model B - c h is linear
        in (B, c, c tD, c tR). Returns tD, tR (feasible when in [0, 1]) and c = B - A."""
        s, e, ex = self.s, self.e, self.ex
        dm, rm = d_mid[:, None], r_mid[:, None]
        over = np.minimum(e, rm) - np.maximum(s, dm) > 0
        d_in, r_in = over & (dm > s), over & (rm < e)
        alpha = np.where(over, (np.where(r_in, r_ref[:, None], e) - np.where(d_in, d_ref[:, None], s)) / ex, 0.0)
        beta = np.where(d_in, -d_len[:, None] / ex, 0.0)
        gamma = np.where(r_in, r_len[:, None] / ex, 0.0)
        x = np.stack([np.ones_like(alpha), -alpha, -beta, -gamma], axis=-1)
        xtx = np.einsum("cmi,cmj->cij", x, x)
        xtx[:, 0, 0] += self.n0 + self.n1
        xtx[:, 0, 1] -= self.n1
        xtx[:, 1, 0] -= self.n1
        xtx[:, 1, 1] += self.n1
        xtv = x.transpose(0, 2, 1) @ self.v
        xtv[:, 0] += self.n0 * self.m0 + self.n1 * self.m1
        xtv[:, 1] -= self.n1 * self.m1
        sc = np.sqrt(np.diagonal(xtx, axis1=1, axis2=2))
        sc = np.where(sc > 0, sc, 1.0)
        inv = np.linalg.pinv(xtx / sc[:, :, None] / sc[:, None, :], rcond=1e-11, hermitian=True)
        theta = np.einsum("cij,cj->ci", inv, xtv / sc) / sc
        c = theta[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            td = np.where(d_len > 0, theta[:, 2] / c, 0.0)
            tr = np.where(r_len > 0, theta[:, 3] / c, 0.0)
        return td, tr, c


def _pieces(nodes: NDArray[np.float64], lo: float, hi: float, loc: _Local) -> tuple[NDArray[np.float64], ...]:
    """An edge's configurations in [lo, hi]: on each node, or inside each stretch between two
    nodes that some window covers. Returns (ref, length, mid)."""
    pts = nodes[(nodes >= lo) & (nodes <= hi)]
    a, b = pts[:-1], pts[1:]
    covered = (b > a) & ((loc.s[None, :] < b[:, None]) & (loc.e[None, :] > a[:, None])).any(axis=1)
    a, b = a[covered], b[covered]
    return np.concatenate([pts, a]), np.concatenate([np.zeros(pts.size), b - a]), np.concatenate([pts, (a + b) / 2])


def _cluster_size(width: NDArray[np.float64], top: float) -> int:
    """Nodes on each side of a cluster (:func:`_cluster`) whose narrowest width is min(width)."""
    w = np.clip(np.nan_to_num(width, nan=top, posinf=top), _MIN_WIDTH_NS, top)
    lo = float(w.min()) if w.size else top
    return min(max(math.ceil(math.asinh(top * _STEP / lo) / _STEP), 2), 400)


def _cluster(
    center: NDArray[np.float64], width: NDArray[np.float64], top: float, k: int | None = None
) -> NDArray[np.float64]:
    """Nodes around each center (shape (..., 2k + 1)) at offsets (width / a) sinh(i a),
    a = _STEP: evenly ``width`` apart near the center, then growing by a factor e^a per node
    out to ``top`` (two steps of the uniform grid), so that the trapezoids resolve a peak of
    any width from ``width`` up (the integral of a Gaussian to about a^2 / 6)."""
    k = _cluster_size(width, top) if k is None else k
    w = np.clip(np.nan_to_num(width, nan=top, posinf=top), _MIN_WIDTH_NS, top)
    off = (w / _STEP)[..., None] * np.sinh(_STEP * np.arange(1, k + 1))
    return np.concatenate([center[..., None] - off[..., ::-1], center[..., None], center[..., None] + off], axis=-1)


def _moments(x: NDArray[np.float64], f: NDArray[np.float64]) -> Any:
    """Integrals of f, x f and x^2 f along the last axis for f linear between the (sorted)
    nodes x: the trapezoids, with the moments exact for that f (a flat stretch, an edge in the
    dead time, gives the uniform's mean and variance exactly)."""
    x0, x1, f0, f1 = x[..., :-1], x[..., 1:], f[..., :-1], f[..., 1:]
    h = x1 - x0
    m0 = (h * (f0 + f1)).sum(-1) / 2.0
    m1 = (h * (f0 * (2.0 * x0 + x1) + f1 * (x0 + 2.0 * x1))).sum(-1) / 6.0
    m2 = (h * (f0 * (3.0 * x0 * x0 + 2.0 * x0 * x1 + x1 * x1) + f1 * (x0 * x0 + 2.0 * x0 * x1 + 3.0 * x1 * x1))).sum(-1) / 12.0
    return m0, m1, m2


def _trapezoid_weights(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Trapezoid weights of sorted nodes along the last axis."""
    dx = np.diff(x, axis=-1) / 2.0
    w = np.zeros_like(x)
    w[..., 1:] += dx
    w[..., :-1] += dx
    return w


@dataclass(frozen=True)
class _Posterior:
    """Moments of the joint posterior of D, R and the event level (relative float ns)."""

    d_mean: float
    d_std: float
    r_mean: float
    r_std: float
    dr_cov: float
    a_std: float


def _posterior(
    loc: _Local, d_range: tuple[float, float], r_range: tuple[float, float],
    nodes: NDArray[np.float64], best: tuple[float, float, float], s2: float,
    d_centers: NDArray[np.float64], d_c: NDArray[np.float64],
) -> _Posterior:  # fmt: skip
    """Mean and covariance of D and R, and the event level's sigma, under
    exp(-SSR / 2 s2), levels profiled, flat priors, R > D.

    D's nodes: uniform, the window ends (and 10 fs either side), _SPLIT between each two window
    ends or centers, clusters at ``d_centers`` (``d_c`` their depths
    B - A, which set how narrow a peak can be). Each D node has its own R nodes: uniform, the
    window ends, D itself and D + 10 fs (where the density may jump: R > D), and clusters at its
    best R in each stretch of R's range that comes near the best for that D. Trapezoids on both
    axes.
    """
    (lo_d, hi_d), (lo_r, hi_r) = d_range, r_range
    d_ml, r_ml, ssr_ml = best
    noise_t = float(loc.ex.min()) * math.sqrt(s2)  # a peak is at least noise_t / depth wide
    top_d = 2.0 * (hi_d - lo_d) / (GRID - 1)  # clusters reach out to two uniform steps
    top_r = 2.0 * (hi_r - lo_r) / (GRID - 1)
    # the window ends, and a hair either side: where nothing is hidden any more the density
    # drops to 0, while next to it a free event level can still fit (a jump, not a slope)
    ends = (nodes[:, None] + np.array([-_MIN_WIDTH_NS, 0.0, _MIN_WIDTH_NS])).ravel()
    d_w = noise_t / np.abs(d_c) / 4.0
    # a stretch between two such landmarks (window ends, best positions) can hold a whole
    # family of fits, with the other edge and its moments moving along: _SPLIT nodes in each
    marks = np.unique(np.clip(np.concatenate([[lo_d, hi_d], nodes, d_centers]), lo_d, hi_d))
    split = (marks[:-1, None] + (marks[1:] - marks[:-1])[:, None] * np.linspace(0.0, 1.0, _SPLIT)).ravel()
    dn = np.concatenate([np.linspace(lo_d, hi_d, GRID), split, ends, _cluster(d_centers, d_w, top_d).ravel()])
    dn = np.unique(np.clip(dn, lo_d, hi_d))
    centers, widths = _best_r(loc, dn, nodes, r_range, s2)
    fixed = np.unique(np.clip(np.concatenate([np.linspace(lo_r, hi_r, GRID), ends]), lo_r, hi_r))
    a_ml = float(loc.profile(np.array([d_ml]), np.array([r_ml]))[2][0])
    g = np.zeros((5, dn.size))  # per D node: integrals over R of p, p R', p R'^2, p A', p A'^2
    k = _cluster_size(widths, top_r)
    chunk = max(1, 32_768 // (fixed.size + 2 + widths.shape[1] * (2 * k + 1)))  # rows that stay in cache
    for i in range(0, dn.size, chunk):
        d = dn[i : i + chunk, None]
        rn = np.concatenate([np.broadcast_to(fixed, (d.shape[0], fixed.size)), d, d + _MIN_WIDTH_NS,
                             _cluster(centers[i : i + chunk], widths[i : i + chunk], top_r, k).reshape(d.shape[0], -1)],
                            axis=1)  # fmt: skip
        rn = np.sort(np.clip(rn, lo_r, hi_r), axis=1)
        ssr, _bb, aa, va = loc.profile(d, rn)
        # ssr_ml is the exact least squares: a node can only undercut it by rounding
        dens = np.exp(np.minimum(-(ssr - ssr_ml) / (2.0 * s2), 0.0))
        good = np.isfinite(dens)
        dens = np.where(good, dens, 0.0)
        g[:3, i : i + chunk] = _moments(rn - r_ml, dens)
        w = _trapezoid_weights(rn) * dens
        ay = np.where(good, aa - a_ml, 0.0)
        g[3, i : i + chunk] = (w * ay).sum(1)
        g[4, i : i + chunk] = (w * (ay * ay + s2 * np.where(good, va, 0.0))).sum(1)
    dy = dn - d_ml
    z, m_d, m_dd = _moments(dy, g[0])
    if not z > 0:
        raise OccultationError("the event fit found no D and R that the data allow: is there an event?")
    _, m_dr, _ = _moments(dy, g[1])
    wd = _trapezoid_weights(dn)
    ed, e_r, e_a = m_d / z, float(wd @ g[1]) / z, float(wd @ g[3]) / z
    return _Posterior(
        d_mean=d_ml + ed,
        d_std=math.sqrt(max(m_dd / z - ed * ed, 0.0)),
        r_mean=r_ml + e_r,
        r_std=math.sqrt(max(float(wd @ g[2]) / z - e_r * e_r, 0.0)),
        dr_cov=m_dr / z - ed * e_r,
        a_std=math.sqrt(max(float(wd @ g[4]) / z - e_a * e_a, 0.0)),
    )


def _best_r(
    loc: _Local, dn: NDArray[np.float64], nodes: NDArray[np.float64], r_range: tuple[float, float], s2: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """For each D node, the best R in each stretch of R's range that some window covers (exact
    least squares with D fixed), keeping those within reach of that row's best (repeated to
    fill the rows); their cluster widths. Shapes (len(dn), K)."""
    lo_r, hi_r = r_range
    r_ref, r_len, _ = _pieces(nodes, lo_r, hi_r, loc)
    seg = r_len > 0
    r_ref, r_len = r_ref[seg], r_len[seg]
    nd, ns = dn.size, r_ref.size
    if not ns:
        return np.full((nd, 1), r_range[0]), np.full((nd, 1), hi_r - lo_r)
    dd = np.repeat(dn, ns)
    ra, rb = np.tile(r_ref, nd), np.tile(r_ref + r_len, nd)
    a = np.maximum(ra, dd)  # the part of the stretch after D
    _, tr, c = loc.cells(dd, np.zeros(dd.size), dd, ra, rb - ra, (a + rb) / 2)
    r_best = np.clip(ra + np.nan_to_num(tr, posinf=2.0, neginf=-1.0) * (rb - ra), np.minimum(a, rb), rb).reshape(nd, ns)
    r_w = (float(loc.ex.min()) * math.sqrt(s2) / np.abs(c) / 4.0).reshape(nd, ns)
    ssr = loc.profile(dn[:, None], r_best)[0]
    ssr = np.where(np.isfinite(ssr), ssr, math.inf)
    order = np.argsort(ssr, axis=1)
    near = ssr - ssr.min(axis=1, keepdims=True) < _KEEP * s2
    pick = order[:, : max(int(near.sum(axis=1).max()), 1)]
    pick = np.where(np.take_along_axis(near, pick, axis=1), pick, order[:, :1])
    rows = np.arange(nd)[:, None]
    return r_best[rows, pick], r_w[rows, pick]


def _least_squares(
    loc: _Local, nodes: NDArray[np.float64], d_range: tuple[float, float], r_range: tuple[float, float]
) -> tuple[tuple[float, float, float], tuple[NDArray[np.float64], NDArray[np.float64]]]:
    """The exact least squares over every pair of configurations of D and R (:meth:`_Local.cells`):
    (D, R, SSR) of the best feasible cell; and for each distinct D of a cell, its best cell's D
    and SSR (stacked, least SSR first) and depth B - A: where D's marginal may have a peak."""
    d_ref, d_len, d_mid = _pieces(nodes, *d_range, loc)
    r_ref, r_len, r_mid = _pieces(nodes, *r_range, loc)
    i, j = (x.ravel() for x in np.meshgrid(np.arange(d_ref.size), np.arange(r_ref.size), indexing="ij"))
    dm, rm = d_mid[i], r_mid[j]
    same = (d_len[i] > 0) & (d_ref[i] == r_ref[j]) & (d_len[i] == r_len[j])  # both in one stretch
    dm = np.where(same, d_ref[i] + d_len[i] / 3.0, dm)
    rm = np.where(same, d_ref[i] + 2.0 * d_len[i] / 3.0, rm)
    ok = dm < rm
    i, j, dm, rm = i[ok], j[ok], dm[ok], rm[ok]
    td, tr, c = loc.cells(d_ref[i], d_len[i], dm, r_ref[j], r_len[j], rm)
    tol = 1e-9
    feasible = np.isfinite(td) & np.isfinite(tr) & (td >= -tol) & (td <= 1 + tol) & (tr >= -tol) & (tr <= 1 + tol)
    d_fit = d_ref[i] + np.clip(np.nan_to_num(td), 0.0, 1.0) * d_len[i]
    r_fit = r_ref[j] + np.clip(np.nan_to_num(tr), 0.0, 1.0) * r_len[j]
    ssr = np.where(feasible, loc.profile(d_fit, r_fit)[0], np.nan)
    ssr = np.where(np.isfinite(ssr), ssr, math.inf)
    if not np.isfinite(ssr).any():
        raise OccultationError("the event is too short to place D before R")
    k = int(np.argmin(ssr))
    order = np.argsort(ssr)
    _, first = np.unique(np.round(d_fit[order], 3), return_index=True)  # distinct D (to 1 ps), best first
    cells = order[np.sort(first)]
    return (float(d_fit[k]), float(r_fit[k]), float(ssr[k])), (np.stack([d_fit[cells], ssr[cells]]), c[cells])


def fit_square_well(
    start_ns: ArrayLike,
    end_ns: ArrayLike,
    values: ArrayLike,
    *,
    row_sigma_ns: float = 0.0,
    min_significance: float = 5.0,
) -> SquareWell:
    """Fit a square-well occultation to samples with exact exposure windows.

    D and R are the means of their marginal posteriors (the other edge and the two levels
    free); see the module notes for the method and what an undetermined event level does.

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

    One wholly hidden sample and D in the dead time: the event level is free. D can move from
    the 50-60 ms gap into sample 3's window while the level drops (and R follows), so D's
    marginal is flat over the gap, then falls linearly to 0 at 70 ms: by hand, mean 57.78 ms,
    sigma 4.78 ms.

    >>> v = [1000, 1000, 1000, 0, 700, 1000, 1000, 1000, 1000, 1000]
    >>> w = fit_square_well(s, e, v)
    >>> w.flags, round(w.D.unix_ns / 1e6, 2), round(w.D.fit_sigma_ns / 1e6, 2)
    (('level_undetermined',), 57.78, 4.78)
    """
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
    a, b, _ = _coarse(v)
    t0 = int(s[a])  # relative times are finest near the event
    sr = (s - t0).astype(np.float64)
    er = (e - t0).astype(np.float64)
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
    # Each edge can only be in the windows around the coarse one (and the gaps between): D
    # from the end of the second-last sample before the event to the start of the second in
    # it; R likewise.
    d_range = (er[a - 2] if a >= 2 else sr[0], sr[a + 1] if a + 1 < n else er[-1])
    r_range = (er[b - 1] if b >= 1 else sr[0], sr[b + 2] if b + 2 < n else er[-1])
    d_range = (d_range[0], min(d_range[1], r_range[1]))
    loc = _Local.build(sr, er, v, d_range, r_range)
    ends = np.concatenate([loc.s, loc.e, d_range, r_range])
    nodes = np.unique(ends[(ends >= d_range[0]) & (ends <= r_range[1])])

    # 2. the exact least squares; 3. the posterior (see the module notes). A cell without a
    # solution (nothing hidden, a zero depth) gives inf or nan and is left out.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        (d_ml, r_ml, ssr_ml), (centers, depths) = _least_squares(loc, nodes, d_range, r_range)
        s2 = max(ssr_ml / max(n - 4, 1), (NOISE_FLOOR * max(abs(b0), abs(a0))) ** 2)
        keep = np.flatnonzero(np.isfinite(centers[1]) & (centers[1] - ssr_ml < _KEEP * s2))[:_CENTERS]
        post = _posterior(loc, d_range, r_range, nodes, (d_ml, r_ml, ssr_ml), s2, centers[0][keep], depths[keep])
    d_mean, r_mean = post.d_mean, post.r_mean
    h = _hidden(sr, er, d_mean, r_mean)
    design = np.column_stack([1.0 - h, h])
    (bb, aa), *_ = np.linalg.lstsq(design, v, rcond=None)
    noise = math.sqrt(s2)
    flags = (LEVEL_FLAG,) if post.a_std > 2.0 * noise else ()

    def edge(mean: float, std: float) -> EdgeTime:
        holder = np.flatnonzero((sr < mean) & (er > mean))
        return EdgeTime(
            unix_ns=t0 + round(mean),
            sigma_ns=math.hypot(std, row_sigma_ns),
            fit_sigma_ns=std,
            row_sigma_ns=float(row_sigma_ns),
            sample=int(holder[0]) if holder.size else -1,
        )

    dd, rr = edge(d_mean, post.d_std), edge(r_mean, post.r_std)
    dur_var = post.d_std**2 + post.r_std**2 - 2.0 * post.dr_cov
    return SquareWell(
        D=dd,
        R=rr,
        baseline=float(bb),
        level=float(aa),
        noise=noise,
        duration_ns=rr.unix_ns - dd.unix_ns,
        duration_sigma_ns=math.sqrt(max(dur_var, 0.0) + 2 * TICK_SIGMA_NS**2),
        samples=n,
        event_samples=int((h >= 0.5).sum()),
        significance=float(signif),
        level_sigma=post.a_std,
        flags=flags,
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

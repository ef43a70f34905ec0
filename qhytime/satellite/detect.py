"""Find satellite trails in a frame and place their ends to a fraction of a pixel.

1. Background and noise from sigma-clipped statistics (astropy), the GPS block masked.
2. A Gaussian-smoothed image thresholded with hysteresis and split into connected
   components (scikit-image: ``apply_hysteresis_threshold``, ``label``, ``regionprops``).
3. A line fit per component (its intensity-weighted principal axis); components that are
   not long and thin (stars, hot pixels, the GPS block) are not trails.
4. Each trail is fitted (scipy ``least_squares``) with the image of a uniformly moving point
   source: a segment convolved with a Gaussian, ``A [erf(s / sqrt(2) sig) - erf((s - L) /
   sqrt(2) sig)] / 2 exp(-d^2 / 2 sig^2) + background``, ``s`` along and ``d`` across the
   trail. Its end points are where the profile along the trail falls to half its plateau,
   to a fraction of a pixel; their covariance (weights from the background noise plus the
   signal's own shot noise, whose gain is measured from the residuals) gives each end's
   sigma along and across the trail. This needs no timing: :func:`detect_trails`.
5. Once the frame's row timing and the trail's time order are known,
   :func:`refine_trail` fits the image the trail really makes on a rolling shutter: the
   moving Gaussian integrated over each (sensor) row's own exposure window, as
   ``../shared/spec/streak-timing.md`` describes it. Its parameters are the motion (position
   and velocity); the ends follow from it exactly as the spec defines them (the object's
   position at the start of its row's window, and at the end of its row's window), with
   their covariance propagated from the fit's. Near an end the PSF spans several rows that
   each close at their own time, so the profile along the trail is not a plain step
   convolved with the PSF: the step is sheared by the motion in one readout step (``|v| x
   LP`` per row in 2CMS, per pair of rows in pairs mode, more per binned row), stretched
   when the object moves with the readout and sharpened against it; the half-plateau point
   is off the spec's end by up to about that motion (a 2CMS binned row's window runs from
   its first sensor row's start to its last one's end: both ends then look ``|v| LP / 2``
   short). Negligible at a few hundred px/s (0.01 px); a tenth of a pixel, several sigmas
   of a bright end, at thousands.

Pixels are 0-based pixel centres (``origin=0``). Detection knows nothing about time; the
refinement takes the frame's :class:`~qhytime.satellite.timing.FrameClock`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from qhytime.satellite.timing import FrameClock

SMOOTH_SIGMA_PX = 1.0
MIN_LENGTH_PX = 8.0
MIN_ELONGATION = 1.8
HIGH_SIGMA = 5.0
LOW_SIGMA = 2.0
MIN_SNR = 3.0
PLATEAU_MIN_FRACTION = 0.25
MAX_REFINE_SHIFT_PX = 2.0
"""The rolling-shutter fit moves an end by a fraction of a pixel (``|v| x`` a line period or
two); an end that moves further is a fit gone astray and the plain detection is kept."""
OUTLIER_SIGMA = 6.0
"""Pixels this far above the model (in their noise) are left out of a fit (a star, a cosmic
ray, another trail); an end with two or more such pixels within 2.5 PSF sigma is ``blended``."""


@dataclass(frozen=True)
class Trail:
    """A detected trail: its two ends, their sigmas and the fit.

    Attributes
    ----------
    ends : ((x, y), (x, y))
        From :func:`detect_trails` (in no time order): where the profile along the trail
        falls to half its plateau. From :func:`refine_trail`: the spec's ends, where the
        object was at the start of its row's window (``ends[first]``) and at the end of its
        row's window (the other), in the same index order as the trail it refined.
    sigma_along_px, sigma_cross_px : (float, float)
        1-sigma of each end along and across the trail (from the fit's covariance: photon
        and read noise).
    psf_sigma_px : float
        Gaussian sigma of the trail's cross profile.
    peak_adu : float
        The cross profile's peak on the plateau (above the background).
    noise_adu : float
        Background noise per pixel.
    snr : float
        ``peak_adu / noise_adu``: the signal-to-noise ratio per pixel.
    length_px : float
    chi2_red : float
        Reduced chi-square of the fit (about 1 when the noise model holds).
    flags : (tuple of str, tuple of str)
        Per end: ``blended`` when pixels around it had to be left out of the fit (a star or
        another trail on it, a masked area): its position is not trustworthy.
    background_adu : float
        The fit's local background level.
    gain_adu : float
        Shot-noise gain measured from the residuals (ADU per ADU of signal: the signal's
        variance is ``gain_adu x signal``).
    first : int or None
        Which of ``ends`` came first in time, for a trail fitted through the rolling
        shutter (:func:`refine_trail`); None for a plain detection.
    velocity_px_s : (float, float) or None
        The object's apparent velocity from the rolling-shutter fit (px/s).
    """

    ends: tuple[tuple[float, float], tuple[float, float]]
    sigma_along_px: tuple[float, float]
    sigma_cross_px: tuple[float, float]
    psf_sigma_px: float
    peak_adu: float
    noise_adu: float
    snr: float
    length_px: float
    chi2_red: float
    flags: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    background_adu: float = math.nan
    gain_adu: float = 0.0
    first: int | None = None
    velocity_px_s: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "ends_px": [list(e) for e in self.ends],
            "length_px": round(self.length_px, 3),
            "psf_sigma_px": round(self.psf_sigma_px, 3),
            "snr_per_px": round(self.snr, 2),
            "chi2_red": round(self.chi2_red, 3),
            "model": "static" if self.first is None else "rolling shutter",
        }
        if self.velocity_px_s is not None:
            d["velocity_px_s"] = [round(v, 4) for v in self.velocity_px_s]
        return d


def background(
    image: NDArray[Any], mask: NDArray[np.bool_] | None = None
) -> tuple[float, float]:
    """Sigma-clipped median and standard deviation of the unmasked pixels.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> med, std = background(rng.normal(100.0, 5.0, (64, 64)))
    >>> round(med), round(std)
    (100, 5)
    """
    from astropy.stats import sigma_clipped_stats

    data = np.asarray(image, dtype=np.float64)
    _, med, std = sigma_clipped_stats(data, mask=mask, sigma=3.0, maxiters=5)
    return float(med), float(std)


def _components(
    data: NDArray[np.float64], bad: NDArray[np.bool_], noise: float, low_sigma: float,
    high_sigma: float,
) -> NDArray[np.int_]:  # fmt: skip
    """Connected components of the smoothed, background-subtracted image above the
    hysteresis thresholds (in the smoothed image's noise)."""
    from scipy import ndimage
    from skimage.filters import apply_hysteresis_threshold
    from skimage.measure import label

    smooth = ndimage.gaussian_filter(data, SMOOTH_SIGMA_PX, mode="constant")
    delta = np.zeros((9, 9))
    delta[4, 4] = 1.0
    noise_s = noise * float(np.sqrt((ndimage.gaussian_filter(delta, SMOOTH_SIGMA_PX) ** 2).sum()))
    hyst = apply_hysteresis_threshold(smooth, low_sigma * noise_s, high_sigma * noise_s) & ~bad
    return np.asarray(label(hyst, connectivity=2))


def detect_trails(
    image: NDArray[Any],
    *,
    mask: NDArray[np.bool_] | None = None,
    min_length_px: float = MIN_LENGTH_PX,
    min_elongation: float = MIN_ELONGATION,
    high_sigma: float = HIGH_SIGMA,
    low_sigma: float = LOW_SIGMA,
    min_snr: float = MIN_SNR,
) -> list[Trail]:
    """Find the trails of moving objects in a frame.

    Parameters
    ----------
    image : 2-D array
        The frame as stored.
    mask : 2-D bool array, optional
        Pixels that hold no sky (the GPS block, bad columns): ignored.
    min_length_px : float
        Shorter components are point sources, not trails.
    min_elongation : float
        A component whose pixels spread less than this many times more along their line
        than across it is not a trail (a first cut: the fit then needs a segment of at
        least ``min_length_px`` with a plateau along it).
    high_sigma, low_sigma : float
        Hysteresis thresholds on the smoothed image, in its noise.
    min_snr : float
        Fitted trails fainter than this per pixel are dropped.

    Returns
    -------
    list of Trail
        In order of decreasing signal-to-noise ratio. Their ends are where the profile
        along the trail falls to half its plateau; once the frame's timing and the time
        order are known, :func:`refine_trail` places them through the rolling shutter.

    Examples
    --------
    A trail from (20, 30) to (80, 40) on a noisy background, and a star:

    >>> from qhytime.simulate import _psf
    >>> rng = np.random.default_rng(1)
    >>> img = rng.normal(100.0, 5.0, (64, 100))
    >>> s = np.linspace(0, 1, 600)[:, None]
    >>> xs, ys = np.arange(100.0), np.arange(64.0)
    >>> for x, y in zip(20 + 60 * s[:, 0], 30 + 10 * s[:, 0]):
    ...     img += _psf(xs, ys, x, y, 2.5) * 400
    >>> img += _psf(xs, ys, 50.0, 10.0, 2.5) * 3000
    >>> (t,) = detect_trails(img)
    >>> sorted((round(x), round(y)) for x, y in t.ends)
    [(20, 30), (80, 40)]
    """
    from scipy import ndimage
    from skimage.measure import regionprops

    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"an image must be 2-D, got shape {img.shape}")
    h, w = img.shape
    bad = np.zeros((h, w), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    bad = bad | ~np.isfinite(img)
    bkg, noise = background(img, bad)
    if not noise > 0:
        return []
    labels = _components(np.where(bad, 0.0, img - bkg), bad, noise, low_sigma, high_sigma)
    trails: list[Trail] = []
    for region in regionprops(labels):
        if region.area < 5:
            continue
        rr, cc = region.coords[:, 0], region.coords[:, 1]
        shape = _line_shape(cc.astype(float), rr.astype(float))
        if shape is None:
            continue
        centre, u, length, width = shape
        if length < min_length_px or math.sqrt(length**2 / 12.0 + width**2) / width < min_elongation:
            continue
        others = (labels > 0) & (labels != region.label)
        fit = _fit_trail(img, bad | ndimage.binary_dilation(others, iterations=2), bkg, noise,
                         centre, u, length, width, region.bbox)  # fmt: skip
        if fit is None:
            continue
        if fit.snr < min_snr or fit.length_px < min_length_px or fit.psf_sigma_px > 8.0:
            continue
        if not _has_plateau(img, bad, fit, bkg, noise):
            continue  # a chain of stars, not one object moving
        trails.append(fit)
    trails.sort(key=lambda t: -t.snr)
    return trails


def _has_plateau(
    img: NDArray[np.float64], bad: NDArray[np.bool_], t: Trail, bkg: float, noise: float,
    min_fraction: float = PLATEAU_MIN_FRACTION,
) -> bool:
    """True when the trail's profile along its length stays on a plateau: no stretch of it
    (a fifth of its length, at least 2 sigma) falls below ``min_fraction`` of the fitted
    level by more than 3 standard errors, as the gap between two blended stars would."""
    (x1, y1), (x2, y2) = t.ends
    length, sig = t.length_px, t.psf_sigma_px
    ux, uy = (x2 - x1) / length, (y2 - y1) / length
    h, w = img.shape
    c0, c1 = max(0, int(min(x1, x2) - 2 * sig)), min(w, int(max(x1, x2) + 2 * sig) + 1)
    r0, r1 = max(0, int(min(y1, y2) - 2 * sig)), min(h, int(max(y1, y2) + 2 * sig) + 1)
    yy, xx = np.mgrid[r0:r1, c0:c1]
    s = (xx - x1) * ux + (yy - y1) * uy
    d = (xx - x1) * uy - (yy - y1) * ux
    inside = (np.abs(d) < sig) & (s > sig) & (s < length - sig) & ~bad[r0:r1, c0:c1]
    if inside.sum() < 6:
        return True  # too short to tell: the shape tests decide
    prof = np.exp(-0.5 * (d[inside] / sig) ** 2)
    v = (img[r0:r1, c0:c1][inside] - bkg) / (t.peak_adu * prof)
    err = noise / (t.peak_adu * prof)
    width = max(length / 5.0, 2.0 * sig)
    edges = np.arange(sig, length - sig + 1e-9, width)
    for lo in edges:
        sel = (s[inside] >= lo) & (s[inside] < lo + width)
        if sel.sum() < 3:
            continue
        wts = 1.0 / err[sel] ** 2
        mean = float((v[sel] * wts).sum() / wts.sum())
        se = float(1.0 / math.sqrt(wts.sum()))
        if mean < min_fraction - 3.0 * se:
            return False
    return True


def _line_shape(
    x: NDArray[np.float64], y: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], float, float] | None:
    """The line through a region's pixels (unweighted principal axis): centre, direction,
    length ``sqrt(12 (l1 - l2))`` and width ``sqrt(l2)`` from the variances along and across.

    Unweighted, so that a bright star touching a trail does not make it look round; this is
    a first cut (the fit decides whether a candidate is a trail).
    """
    line = _principal_axis(x, y, np.ones(x.size))
    if line is None:
        return None
    centre, u, lam1, lam2 = line
    return centre, u, math.sqrt(max(12.0 * (lam1 - lam2), 0.0)), math.sqrt(max(lam2, 0.09))


def _principal_axis(
    x: NDArray[np.float64], y: NDArray[np.float64], w: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], float, float] | None:
    """Weighted total-least-squares line: centre, unit direction, variances along/across."""
    sw = float(w.sum())
    if sw <= 0:
        return None
    cx, cy = float((w * x).sum() / sw), float((w * y).sum() / sw)
    dx, dy = x - cx, y - cy
    cov = np.array([[(w * dx * dx).sum(), (w * dx * dy).sum()],
                    [(w * dx * dy).sum(), (w * dy * dy).sum()]]) / sw  # fmt: skip
    vals, vecs = np.linalg.eigh(cov)
    return np.array([cx, cy]), vecs[:, 1], float(vals[1]), float(vals[0])


def _model(
    p: NDArray[np.float64], x: NDArray[np.float64], y: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The static trail: a segment from ``(x1, y1)`` to ``(x2, y2)`` convolved with a
    Gaussian, ``p = (x1, y1, x2, y2, amp, sig, bkg)``."""
    from scipy.special import erf

    x1, y1, x2, y2, amp, sig, bkg = p
    dx, dy = x2 - x1, y2 - y1
    length = math.hypot(dx, dy)
    if length < 1e-9:
        length = 1e-9
    ux, uy = dx / length, dy / length
    s = (x - x1) * ux + (y - y1) * uy
    d = (x - x1) * uy - (y - y1) * ux
    k = 1.0 / (math.sqrt(2.0) * sig)
    along = 0.5 * (erf(s * k) - erf((s - length) * k))
    return bkg + amp * along * np.exp(-0.5 * (d / sig) ** 2)


@dataclass
class _Fit:
    """What :func:`_robust_fit` found: parameters, covariance (scaled by the reduced
    chi-square when it exceeds 1), the pixels used, the shot-noise gain."""

    p: NDArray[np.float64]
    cov: NDArray[np.float64]
    use: NDArray[np.bool_]
    gain: float
    chi2_red: float


def _robust_fit(
    model: Callable[[NDArray[np.float64], Any], NDArray[np.float64]],
    p0: NDArray[np.float64],
    lo: Sequence[float],
    hi: Sequence[float],
    z: NDArray[np.float64],
    noise: float,
    bkg_index: int,
) -> _Fit | None:
    """Weighted least squares of ``model(p, pixels) ~ z`` in three passes.

    Pass 0 is robust (soft L1): a star on the trail must not drag the fit; its weights are
    fixed, ``noise^2 + (z - background)`` (shot noise of 1 ADU per ADU of signal, from the
    data: without it a bright trail on a low-noise sensor looks like outliers everywhere).
    The passes after it leave out the pixels more than :data:`OUTLIER_SIGMA` above the model
    and weight the rest by the noise model ``noise^2 + gain x signal``, the gain measured
    from the residuals of the pixels with signal. ``model(p, m)`` gives the model at the
    pixels selected by the boolean mask ``m``. The covariance is that of the last (linear)
    pass.
    """
    from scipy.optimize import least_squares

    lo_a, hi_a = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    p0 = np.clip(np.asarray(p0, dtype=float), lo_a + 1e-9, hi_a - 1e-9)
    gain = 0.0
    use = np.ones(z.size, dtype=bool)
    var0 = noise**2 + np.clip(z - p0[bkg_index], 0.0, None)
    res = None
    for it in range(3):
        def resid(p: NDArray[np.float64], g: float = gain, m: NDArray[np.bool_] = use,
                  first: bool = it == 0) -> Any:  # fmt: skip
            mod = model(p, m)
            var = var0[m] if first else noise**2 + g * np.clip(mod - p[bkg_index], 0.0, None)
            return (z[m] - mod) / np.sqrt(var)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            # lsmr: no dense SVD of the tall Jacobian (slow under threaded BLAS on busy cores)
            res = least_squares(resid, p0, bounds=(lo_a, hi_a), x_scale="jac", method="trf",
                                tr_solver="lsmr", loss="soft_l1" if it == 0 else "linear",
                                f_scale=3.0, max_nfev=400)  # fmt: skip
        if it == 2:
            break
        p0 = res.x
        everywhere = np.ones(z.size, dtype=bool)
        mod = model(res.x, everywhere)
        sig_all = mod - res.x[bkg_index]
        r = z - mod
        for _ in range(2):
            var = noise**2 + gain * np.clip(sig_all, 0.0, None)
            use = r / np.sqrt(var) < OUTLIER_SIGMA
            strong = use & (sig_all > 2 * noise)
            if strong.sum() >= 10:
                gain = max(0.0, float(((r[strong] ** 2 - noise**2) * sig_all[strong]).sum()
                                      / (sig_all[strong] ** 2).sum()))  # fmt: skip
    assert res is not None
    dof = max(int(res.fun.size) - len(p0), 1)
    chi2 = float((res.fun**2).sum()) / dof
    try:
        cov = np.linalg.inv(res.jac.T @ res.jac) * max(chi2, 1.0)
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(cov)):
        return None
    return _Fit(p=np.asarray(res.x, dtype=float), cov=cov, use=use, gain=gain, chi2_red=chi2)


def _end_flags(
    excluded: NDArray[np.bool_],
    xx: NDArray[Any],
    yy: NDArray[Any],
    ends: Sequence[tuple[float, float]],
    u: tuple[float, float],
    sig: float,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``blended`` for an end with two or more left-out pixels within 2.5 sigma of it."""
    out = []
    for x0, y0 in ends:
        s = (xx - x0) * u[0] + (yy - y0) * u[1]
        d = (xx - x0) * u[1] - (yy - y0) * u[0]
        near = (np.abs(s) < 2.5 * sig) & (np.abs(d) < 2.5 * sig)
        out.append(("blended",) if int((excluded & near).sum()) >= 2 else ())
    return out[0], out[1]


def _fit_trail(
    img: NDArray[np.float64],
    bad: NDArray[np.bool_],
    bkg: float,
    noise: float,
    centre: NDArray[np.float64],
    u: NDArray[np.float64],
    length: float,
    width: float,
    bbox: Sequence[int],
) -> Trail | None:
    h, w = img.shape
    sig0 = min(max(width, 0.8), 4.0)
    margin = math.ceil(5 * sig0 + 4)
    r0, c0, r1, c1 = bbox
    r0, c0 = max(0, r0 - margin), max(0, c0 - margin)
    r1, c1 = min(h, r1 + margin), min(w, c1 + margin)
    yy, xx = np.mgrid[r0:r1, c0:c1]
    sub = img[r0:r1, c0:c1]
    good = ~bad[r0:r1, c0:c1]
    x, y, z = xx[good].astype(float), yy[good].astype(float), sub[good]
    if z.size < 20:
        return None
    half = 0.5 * length * u
    p0 = np.array([centre[0] - half[0], centre[1] - half[1], centre[0] + half[0],
                   centre[1] + half[1], 1.0, sig0, bkg])  # fmt: skip
    s_perp = (x - centre[0]) * u[1] - (y - centre[1]) * u[0]
    s_par = (x - centre[0]) * u[0] + (y - centre[1]) * u[1]
    on = (np.abs(s_perp) < 0.75) & (np.abs(s_par) < 0.3 * length)  # the trail's middle
    p0[4] = max(float(np.median(z[on]) - bkg) if on.sum() >= 3 else noise, noise)
    lo = [-0.5, -0.5, -0.5, -0.5, 0.0, 0.3, -np.inf]
    hi = [w - 0.5, h - 0.5, w - 0.5, h - 0.5, np.inf, 10.0, np.inf]
    fit = _robust_fit(lambda p, m: _model(p, x[m], y[m]), p0, lo, hi, z, noise, bkg_index=6)
    if fit is None:
        return None
    x1, y1, x2, y2, amp, sig, bkg_fit = fit.p
    length_fit = math.hypot(x2 - x1, y2 - y1)
    if length_fit < 1.0 or amp <= 0:
        return None
    cov = fit.cov
    ux, uy = (x2 - x1) / length_fit, (y2 - y1) / length_fit
    along_v, cross_v = np.array([ux, uy]), np.array([uy, -ux])
    sa, sc = [], []
    for k in (0, 2):
        c = cov[k : k + 2, k : k + 2]
        sa.append(float(math.sqrt(max(along_v @ c @ along_v, 0.0))))
        sc.append(float(math.sqrt(max(cross_v @ c @ cross_v, 0.0))))
    if not all(math.isfinite(v) for v in sa + sc):
        return None
    # ends with pixels left out around them (a star on the end, another source, a mask)
    excl = ~good
    gy, gx = np.nonzero(good)
    excl[gy[~fit.use], gx[~fit.use]] = True
    flags = _end_flags(excl, xx, yy, ((x1, y1), (x2, y2)), (ux, uy), sig)
    return Trail(
        ends=((float(x1), float(y1)), (float(x2), float(y2))),
        sigma_along_px=(sa[0], sa[1]),
        sigma_cross_px=(sc[0], sc[1]),
        psf_sigma_px=float(sig),
        peak_adu=float(amp),
        noise_adu=noise,
        snr=float(amp / noise),
        length_px=length_fit,
        chi2_red=fit.chi2_red,
        flags=flags,
        background_adu=float(bkg_fit),
        gain_adu=fit.gain,
    )


# -- through the rolling shutter ----------------------------------------------------------


def _rolling_model(
    p: NDArray[np.float64],
    x: NDArray[np.float64],
    ysub: NDArray[np.float64],
    t0: NDArray[np.float64],
    t1: NDArray[np.float64],
) -> NDArray[np.float64]:
    """A Gaussian moving uniformly, integrated over each sensor row's own window.

    ``p = (xm, ym, vx, vy, amp, sig, bkg)``: the object is at ``(xm, ym) + v t`` (``t`` in s
    from the fit's time origin). ``x`` (N,) are pixel columns, ``ysub`` (N, b) the centres of
    the sensor rows that make each pixel (``b`` the binning) and ``t0``, ``t1`` (N, b) their
    windows. Over a window the time integral of the moving Gaussian is closed-form: with
    ``s``, ``d`` the pixel's position along and across the track from ``(xm, ym)``, it is
    ``amp exp(-d^2 / 2 sig^2) [erf((s - |v| t0) / sqrt(2) sig) - erf((s - |v| t1) /
    sqrt(2) sig)] / 2``, ``amp`` the plateau's peak (the static model's, with each row's
    own ends ``|v| t0`` and ``|v| t1`` along the track); a binned pixel is the mean of its
    sensor rows.
    """
    from scipy.special import erf

    xm, ym, vx, vy, amp, sig, bkg = p
    speed = max(math.hypot(vx, vy), 1e-9)
    ux, uy = vx / speed, vy / speed
    qx = (x - xm)[:, None]
    qy = ysub - ym
    s = qx * ux + qy * uy
    d = qx * uy - qy * ux
    k = 1.0 / (math.sqrt(2.0) * sig)
    along = 0.5 * (erf((s - speed * t0) * k) - erf((s - speed * t1) * k))
    return bkg + amp * (along * np.exp(-0.5 * (d / sig) ** 2)).mean(axis=1)


def _spec_end(
    times_ns: NDArray[np.int64],
    t_m: int,
    motion: tuple[float, float, float, float],
    *,
    last: bool,
) -> tuple[float, float, float, float]:
    """The spec's end of the motion ``(xm, ym) + (vx, vy) tau`` (``tau`` in s from ``t_m``)
    on a frame whose image rows' window boundaries are ``times_ns`` (starts for the first
    end, ends for the last; int64 unix ns): the object's position at the boundary of the
    row it is on at that instant, the earliest such row (first end) or the latest (last).

    Returns ``(x, y, tau, skip_s)``, ``skip_s`` 0. When no row qualifies (the object passes
    from a row whose window is still open into one whose window has closed, between those
    two boundaries: possible whenever it moves against the readout, the more often the
    faster), the end is where it crosses that row boundary, put on the side whose window
    boundary is nearer in time; ``skip_s`` is how far that is from the crossing, the time
    error the row's time then carries.

    Examples
    --------
    Rows closing 10 us apart, the object moving down 0.5 px per 10 us: on row 4 when it
    closes (t = 40 us, y = 4.0) and on row 5 when that one closes (y = 4.5): the latest.

    >>> t = 10_000 * np.arange(10)
    >>> _spec_end(t, 0, (0.0, 2.0, 0.0, 50_000.0), last=True)[1:]
    (4.5, 5e-05, 0.0)

    Moving up as fast, no row holds the object at its own boundary; it passes from row 2
    (open until 20 us) into row 1 (closed at 10 us) at 15 us, half way between:

    >>> x, y, tau, skip = _spec_end(t, 0, (0.0, 2.25, 0.0, -50_000.0), last=True)
    >>> round(y, 4), round(tau * 1e6, 3), round(skip * 1e6, 3)
    (1.5, 15.0, 5.0)
    """
    xm, ym, vx, vy = motion
    rows = np.arange(times_ns.size)
    tau = (np.asarray(times_ns, dtype=np.int64) - t_m) * 1e-9
    qx, qy = xm + vx * tau, ym + vy * tau
    off = np.floor(qy + 0.5) - rows
    cand = np.flatnonzero(off == 0)
    if cand.size:
        i = int(cand[np.argmax(tau[cand])] if last else cand[np.argmin(tau[cand])])
        return float(qx[i]), float(qy[i]), float(tau[i]), 0.0
    flips = np.flatnonzero(np.sign(off[:-1]) * np.sign(off[1:]) < 0)
    if not flips.size or vy == 0.0:  # nothing sensible: the nearest row
        i = int(np.argmin(np.abs(qy - rows)))
        return float(qx[i]), float(qy[i]), float(tau[i]), 0.0
    r = int(flips[np.argmin(np.abs(qy[flips] - flips - 0.5))])
    y_b = r + 0.5  # the boundary between rows r and r + 1 (it belongs to row r + 1)
    tau_c = (y_b - ym) / vy
    side = r if abs(tau[r] - tau_c) <= abs(tau[r + 1] - tau_c) else r + 1
    y = y_b - 1e-6 if side == r else y_b
    return float(xm + vx * tau_c), float(y), float(tau_c), float(abs(tau[side] - tau_c))


def refine_trail(
    image: NDArray[Any],
    trail: Trail,
    clock: FrameClock,
    first: int,
    *,
    mask: NDArray[np.bool_] | None = None,
    high_sigma: float = HIGH_SIGMA,
    low_sigma: float = LOW_SIGMA,
) -> Trail:
    """Fit a trail with the image it makes on the rolling shutter; its ends as the spec's.

    The model (:func:`_rolling_model`) is the object's uniform motion ``p(t) = p_m + v (t -
    t_m)`` seen through every sensor row's own exposure window (``clock``; crop, binning,
    flips and the readout mode included), with a Gaussian PSF, its plateau level and a local
    background: 7 parameters, fitted to the pixels around the trail like the static model
    (robust first pass, then weighted by the noise model, outliers and other sources left
    out). The first end is then the object's position at the start of the window of the
    row it is on (``start(y_a)``), the last end its position at the end of its row's window
    (``end(y_b)``), found row by row as ``../shared/spec/streak-timing.md`` defines them, and
    their sigmas come from the fit's covariance through ``p(t_a) = p_m + v (t_a - t_m)``.

    Parameters
    ----------
    image : 2-D array
        The frame the trail was detected in.
    trail : Trail
        From :func:`detect_trails` (its ends start the fit).
    clock : FrameClock
        The frame's row timing.
    first : {0, 1}
        Which of ``trail.ends`` came first in time.
    mask : 2-D bool array, optional
        Pixels that hold no sky.
    high_sigma, low_sigma : float
        As for :func:`detect_trails` (other sources near the trail are found the same way).

    Returns
    -------
    Trail
        With ``first`` set and ``velocity_px_s``, its ends in the same index order as
        ``trail``'s. The trail itself, unchanged (``first`` None), when the fit cannot be
        made: an end on the frame's edge or the GPS block (its position is where the object
        crossed that boundary, so the trail's length does not give its speed), an order
        that no object can record (the last end's row closes before the first's opens), or
        a fit that fails.

    Examples
    --------
    A bright trail at 2,000 px/s along the readout (2CMS: each row closes 43 us after the one
    above, 0.09 px of motion): the plain detection's last end is 0.1 px (ten of its sigmas)
    off the spec's, the refined ends are not.

    >>> from qhytime.rowmodel import FrameGeometry, RowModel
    >>> from qhytime.satellite.sim import trail_truth
    >>> from qhytime.satellite.timing import FrameClock, block_rectangle
    >>> from qhytime.simulate import CameraSim, Mover
    >>> sim = CameraSim(width=120, height=100, readout="2cms", exposure_us=20_000.0,
    ...                 read_noise_adu=2.0, seed=3)
    >>> _, _, ref = sim.block_for(0)
    >>> mover = Mover(60.0, 46.3, 400.0, 1960.0, ref - 10_000_000, 3e7)
    >>> image = sim.frame(0, movers=[mover]).image
    >>> model = RowModel.from_us(offset0_us=sim.offset0_us, line_period_ns=sim.line_period_ns,
    ...                          readout="2cms")
    >>> clock = FrameClock(model, FrameGeometry(height=100), ref, 20_000_000, width=120,
    ...                    masked=(block_rectangle(100, 16),))
    >>> mask = np.zeros(image.shape, dtype=bool)
    >>> mask[0, :22] = True
    >>> (t,) = detect_trails(image, mask=mask)
    >>> first = 0 if t.ends[0][1] < t.ends[1][1] else 1   # moving down: the top end came first
    >>> r = refine_trail(image, t, clock, first, mask=mask)
    >>> a, b = trail_truth(sim, 0, mover)
    >>> def errors(tr):
    ...     return [math.dist(tr.ends[first], (a.x, a.y)), math.dist(tr.ends[1 - first], (b.x, b.y))]
    >>> max(errors(t)) > 0.08, max(errors(r)) < 0.02, max(r.sigma_along_px) < 0.015
    (True, True, True)
    >>> r.first == first, [round(v) for v in r.velocity_px_s]
    (True, [400, 1960])
    """
    from scipy import ndimage

    if first not in (0, 1):
        raise ValueError(f"first must be 0 or 1, not {first!r}")
    img = np.asarray(image, dtype=np.float64)
    h, w = img.shape
    if (h, w) != (clock.height, clock.width or w):
        raise ValueError(f"image {img.shape} and clock ({clock.height} rows, {clock.width} "
                         "columns) are not of the same frame")  # fmt: skip
    (xa, ya), (xb, yb) = trail.ends[first], trail.ends[1 - first]
    if clock.boundary_flags(xa, ya) or clock.boundary_flags(xb, yb):
        return trail
    t_a = clock.start_ns(clock.row_of(ya))
    t_b = clock.end_ns(clock.row_of(yb))
    if t_b <= t_a:
        return trail
    bad = np.zeros((h, w), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    bad = bad | ~np.isfinite(img)
    noise = trail.noise_adu
    bkg = trail.background_adu if math.isfinite(trail.background_adu) else background(img, bad)[0]
    # the pixels within reach of the trail (a capsule around it)
    length = math.hypot(xb - xa, yb - ya)
    ux, uy = (xb - xa) / length, (yb - ya) / length
    sig0 = min(max(trail.psf_sigma_px, 0.8), 4.0)
    reach = 5.0 * sig0 + 3.0
    r0, r1 = max(0, int(min(ya, yb) - reach)), min(h, int(max(ya, yb) + reach) + 2)
    c0, c1 = max(0, int(min(xa, xb) - reach)), min(w, int(max(xa, xb) + reach) + 2)
    yy, xx = np.mgrid[r0:r1, c0:c1]
    # other sources there, found as detect_trails finds them (in a box a little larger), are
    # left out: the components that the trail's own line does not cross
    pad = 6
    q0, q1, p0_, p1_ = max(0, r0 - pad), min(h, r1 + pad), max(0, c0 - pad), min(w, c1 + pad)
    box_bad = bad[q0:q1, p0_:p1_]
    labels = _components(np.where(box_bad, 0.0, img[q0:q1, p0_:p1_] - bkg), box_bad, noise,
                         low_sigma, high_sigma)  # fmt: skip
    n_s = max(int(length) * 2, 2)
    sx = np.clip(np.rint(np.linspace(xa, xb, n_s)).astype(int), p0_, p1_ - 1) - p0_
    sy = np.clip(np.rint(np.linspace(ya, yb, n_s)).astype(int), q0, q1 - 1) - q0
    own = np.unique(labels[sy, sx])
    others = (labels > 0) & ~np.isin(labels, own[own > 0])
    excluded_box = box_bad | ndimage.binary_dilation(others, iterations=2)
    excluded = excluded_box[r0 - q0 : r1 - q0, c0 - p0_ : c1 - p0_]
    s_all = (xx - xa) * ux + (yy - ya) * uy
    d_all = (xx - xa) * uy - (yy - ya) * ux
    dist = np.hypot(np.clip(s_all, 0.0, length) - s_all, d_all)
    take = (dist <= reach) & ~excluded
    x, rows = xx[take].astype(float), yy[take]
    z = img[r0:r1, c0:c1][take]
    if z.size < 20:
        return trail
    # every sensor row's window, in s from the time origin t_m (integers first: exact)
    t_m = (t_a + t_b) // 2
    uniq, inv = np.unique(rows, return_inverse=True)
    s_ps, e_ps = clock.sensor_windows_ps(uniq)
    origin_ps = (t_m - clock.reference_ns) * 1000
    t0 = ((s_ps - origin_ps) * 1e-12)[inv]
    t1 = ((e_ps - origin_ps) * 1e-12)[inv]
    b = clock.geometry.binning
    sub = (np.arange(b) + 0.5) / b - 0.5  # sensor row centres within a binned row
    ysub = rows[:, None] + (-sub[None, :] if clock.geometry.flipped else sub[None, :])
    # start from the static fit
    span_s = (t_b - t_a) * 1e-9
    vx0, vy0 = (xb - xa) / span_s, (yb - ya) / span_s
    frac = (t_m - t_a) * 1e-9
    p0 = np.array([xa + vx0 * frac, ya + vy0 * frac, vx0, vy0, trail.peak_adu,
                   trail.psf_sigma_px, bkg])  # fmt: skip
    lo = [-np.inf, -np.inf, -np.inf, -np.inf, 0.0, 0.3, -np.inf]
    hi = [np.inf, np.inf, np.inf, np.inf, np.inf, 10.0, np.inf]

    def model(p: NDArray[np.float64], m: NDArray[np.bool_]) -> NDArray[np.float64]:
        return _rolling_model(p, x[m], ysub[m], t0[m], t1[m])

    fit = _robust_fit(model, p0, lo, hi, z, noise, bkg_index=6)
    if fit is None:
        return trail
    xm, ym, vx, vy, amp, sig, bkg_fit = fit.p
    speed = math.hypot(vx, vy)
    if amp <= 0 or not speed > 0 or not vx * (xb - xa) + vy * (yb - ya) > 0:
        return trail
    # the spec's ends: p(start(y)) on row y, the earliest such row; p(end(y)), the latest
    starts, ends = clock.row_windows_ns()
    pa = _spec_end(starts, t_m, (xm, ym, vx, vy), last=False)
    pb = _spec_end(ends, t_m, (xm, ym, vx, vy), last=True)
    u_v = np.array([vx, vy]) / speed
    n_v = np.array([u_v[1], -u_v[0]])
    sa, sc = [], []
    for _, _, tau, skip_s in (pa, pb):
        jac = np.array([[1.0, 0.0, tau, 0.0], [0.0, 1.0, 0.0, tau]])
        c = jac @ fit.cov[:4, :4] @ jac.T
        # an end between two rows' windows is timed by the nearer one: off by skip_s
        sa.append(float(math.sqrt(max(u_v @ c @ u_v, 0.0) + (speed * skip_s) ** 2)))
        sc.append(float(math.sqrt(max(n_v @ c @ n_v, 0.0))))
    if not all(math.isfinite(v) for v in sa + sc):
        return trail
    for (x_new, y_new), (x_old, y_old) in zip((pa[:2], pb[:2]), ((xa, ya), (xb, yb)), strict=True):
        # a fit that wandered off the trail it started from, or onto the frame's edge
        if math.hypot(x_new - x_old, y_new - y_old) > MAX_REFINE_SHIFT_PX:
            return trail
        if clock.boundary_flags(x_new, y_new):
            return trail
    excl_box = excluded.copy()
    ty, tx = np.nonzero(take)
    excl_box[ty[~fit.use], tx[~fit.use]] = True
    fl = _end_flags(excl_box, xx, yy, (pa[:2], pb[:2]), (float(u_v[0]), float(u_v[1])), sig)
    pa, pb = pa[:3], pb[:3]
    order = (0, 1) if first == 0 else (1, 0)  # back to the trail's index order
    ends_t = ((pa[0], pa[1]), (pb[0], pb[1]))
    return replace(
        trail,
        ends=(ends_t[order[0]], ends_t[order[1]]),
        sigma_along_px=(sa[order[0]], sa[order[1]]),
        sigma_cross_px=(sc[order[0]], sc[order[1]]),
        psf_sigma_px=float(sig),
        peak_adu=float(amp),
        snr=float(amp / noise),
        length_px=math.hypot(pb[0] - pa[0], pb[1] - pa[1]),
        chi2_red=fit.chi2_red,
        flags=(fl[order[0]], fl[order[1]]),
        background_adu=float(bkg_fit),
        gain_adu=fit.gain,
        first=first,
        velocity_px_s=(float(vx), float(vy)),
    )

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
   sigma along and across the trail.

Pixels are 0-based pixel centres (``origin=0``). Nothing here knows about time: see
:mod:`qhytime.satellite.timing`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

SMOOTH_SIGMA_PX = 1.0
MIN_LENGTH_PX = 8.0
MIN_ELONGATION = 1.8
HIGH_SIGMA = 5.0
LOW_SIGMA = 2.0
MIN_SNR = 3.0
PLATEAU_MIN_FRACTION = 0.25
ALONG_FLOOR_PX = 0.03
"""Added in quadrature to each end's along-track sigma: what the photon-noise fit leaves out
(flux changes near an end from scintillation or a tumbling satellite, a PSF that is not
quite Gaussian, a renderer's time steps). Measured: on the shared reference frames the
along-track errors exceed the photon-noise bound by ~15% (about 0.04 px) while the
cross-track ones do not, as a motion sampled in ~1 ms steps would make them."""


@dataclass(frozen=True)
class Trail:
    """A detected trail: its two ends (in no time order), their sigmas and the fit.

    Attributes
    ----------
    ends : ((x, y), (x, y))
        Where the profile along the trail falls to half its plateau (0-based pixels).
    sigma_along_px, sigma_cross_px : (float, float)
        1-sigma of each end along and across the trail.
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "ends_px": [list(e) for e in self.ends],
            "length_px": round(self.length_px, 3),
            "psf_sigma_px": round(self.psf_sigma_px, 3),
            "snr_per_px": round(self.snr, 2),
            "chi2_red": round(self.chi2_red, 3),
        }


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


def detect_trails(
    image: NDArray[Any],
    *,
    mask: NDArray[np.bool_] | None = None,
    min_length_px: float = MIN_LENGTH_PX,
    min_elongation: float = MIN_ELONGATION,
    high_sigma: float = HIGH_SIGMA,
    low_sigma: float = LOW_SIGMA,
    min_snr: float = MIN_SNR,
    along_floor_px: float = ALONG_FLOOR_PX,
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
    along_floor_px : float
        Systematic floor of the ends' along-track sigma (see :data:`ALONG_FLOOR_PX`).

    Returns
    -------
    list of Trail
        In order of decreasing signal-to-noise ratio.

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
    from skimage.filters import apply_hysteresis_threshold
    from skimage.measure import label, regionprops

    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"an image must be 2-D, got shape {img.shape}")
    h, w = img.shape
    bad = np.zeros((h, w), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    bad = bad | ~np.isfinite(img)
    bkg, noise = background(img, bad)
    if not noise > 0:
        return []
    data = np.where(bad, 0.0, img - bkg)
    smooth = ndimage.gaussian_filter(data, SMOOTH_SIGMA_PX, mode="constant")
    delta = np.zeros((9, 9))
    delta[4, 4] = 1.0
    noise_s = noise * float(np.sqrt((ndimage.gaussian_filter(delta, SMOOTH_SIGMA_PX) ** 2).sum()))
    hyst = apply_hysteresis_threshold(smooth, low_sigma * noise_s, high_sigma * noise_s) & ~bad
    labels = label(hyst, connectivity=2)
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
                         centre, u, length, width, region.bbox, along_floor_px)  # fmt: skip
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
    along_floor_px: float,
) -> Trail | None:
    from scipy.optimize import least_squares

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
    p0 = np.clip(p0, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
    gain = 0.0
    use = np.ones(z.size, dtype=bool)
    res = None
    # pass 0 is robust (soft L1): a star on the trail must not drag the fit; the passes after
    # it leave out the pixels far above the model and weight the rest by the noise model
    for it in range(3):
        def resid(p: NDArray[np.float64], g: float = gain, m: NDArray[np.bool_] = use) -> Any:
            mod = _model(p, x[m], y[m])
            var = noise**2 + g * np.clip(mod - p[6], 0.0, None)
            return (z[m] - mod) / np.sqrt(var)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            # lsmr: no dense SVD of the tall Jacobian (slow under threaded BLAS on busy cores)
            res = least_squares(resid, p0, bounds=(lo, hi), x_scale="jac", method="trf",
                                tr_solver="lsmr", loss="soft_l1" if it == 0 else "linear",
                                f_scale=3.0, max_nfev=400)  # fmt: skip
        if it == 2:
            break
        p0 = res.x
        mod = _model(res.x, x, y)
        sig_all = mod - res.x[6]
        r = z - mod
        for _ in range(2):
            var = noise**2 + gain * np.clip(sig_all, 0.0, None)
            use = r / np.sqrt(var) < 6.0
            strong = use & (sig_all > 2 * noise)
            if strong.sum() >= 10:
                gain = max(0.0, float(((r[strong] ** 2 - noise**2) * sig_all[strong]).sum()
                                      / (sig_all[strong] ** 2).sum()))  # fmt: skip
    assert res is not None
    x1, y1, x2, y2, amp, sig, _ = res.x
    length_fit = math.hypot(x2 - x1, y2 - y1)
    if length_fit < 1.0 or amp <= 0:
        return None
    jac = res.jac
    dof = max(int(res.fun.size) - 7, 1)
    chi2 = float((res.fun**2).sum()) / dof
    try:
        cov = np.linalg.inv(jac.T @ jac) * max(chi2, 1.0)
    except np.linalg.LinAlgError:
        return None
    ux, uy = (x2 - x1) / length_fit, (y2 - y1) / length_fit
    along_v, cross_v = np.array([ux, uy]), np.array([uy, -ux])
    sa, sc = [], []
    for k in (0, 2):
        c = cov[k : k + 2, k : k + 2]
        sa.append(float(math.sqrt(max(along_v @ c @ along_v, 0.0) + along_floor_px**2)))
        sc.append(float(math.sqrt(max(cross_v @ c @ cross_v, 0.0))))
    if not all(math.isfinite(v) for v in sa + sc):
        return None
    # ends with pixels left out around them (a star on the end, another source, a mask)
    excl = ~good
    gy, gx = np.nonzero(good)
    excl[gy[~use], gx[~use]] = True
    s_c = (xx - x1) * ux + (yy - y1) * uy
    d_c = (xx - x1) * uy - (yy - y1) * ux
    end_flags = []
    for s_end in (0.0, length_fit):
        near = (np.abs(s_c - s_end) < 2.5 * sig) & (np.abs(d_c) < 2.5 * sig)
        end_flags.append(("blended",) if int((excl & near).sum()) >= 2 else ())
    return Trail(
        ends=((float(x1), float(y1)), (float(x2), float(y2))),
        sigma_along_px=(sa[0], sa[1]),
        sigma_cross_px=(sc[0], sc[1]),
        psf_sigma_px=float(sig),
        peak_adu=float(amp),
        noise_adu=noise,
        snr=float(amp / noise),
        length_px=length_fit,
        chi2_red=chi2,
        flags=(end_flags[0], end_flags[1]),
    )

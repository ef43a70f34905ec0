"""LED calibration: measure offset0, the true line period and the true exposure from frames
of an LED pulse, to a fraction of a nanosecond, on scans as real cameras and LEDs make them.

An LED pulse ``[P, P + W]`` (relative to each frame's reference stamp) adds to every row a
signal proportional to the overlap of the row's exposure window ``[end(y) - E, end(y)]``
with the pulse (``../shared/spec/row-timing.md``). With a short exposure the lit rows form a
band, and the partly lit rows at its two edges place the pulse to a small fraction of a line
period. Over many frames with different pulse delays one weighted least-squares fit
(:func:`scipy.optimize.least_squares`) of that overlap model gives ``offset0``, ``LP`` and
``E`` with their covariance.

The model is what real scans need (:func:`fit_led`):

    row mean(k, y) = bias_k + banding_y + A_k g(y) F_k(y; offset0, LP, E) + noise

- ``A_k``: the LED level of each frame (an LED and its driver drift and jitter);
- ``g(y) = 1 + sum_j c_j P_j(y)``: a smooth illumination profile over the rows (Legendre
  polynomials; the light along x is handled per row by :func:`~qhytime.ledscan.row_profile`);
- ``bias_k`` and ``banding_y``: the bias of each frame and a fixed row banding pattern,
  estimated from the rows the model calls dark (and a bias frame when given), with the
  random part of the banding (``row noise``) measured there and added to every row's
  variance;
- the row means are robust to cosmic rays (rejected pixels are counted), saturated frames
  and frames without a band are rejected with their reason;
- the start comes from a grid over offset0 scored by the whole scan, not from band
  centroids; the LED levels are solved for exactly at each step (variable projection), and
  the covariance of offset0, LP, E and the light profile is that of the full problem.

A fit that does not converge to a plausible LED level and chi2 raises
:class:`~qhytime.errors.LedFitError`: it is never a calibration.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qhytime.calibration import Calibration, Setting
from qhytime.errors import LedFitError, QhytimeError
from qhytime.ledmodel import (
    _Dark,
    _dark_levels,
    _dilate,
    _frac_rows,
    _Light,
    _lit_rows,
    _Problem,
    _problem,
    _step_units,
    _unit_ns,
)
from qhytime.ledscan import (
    BiasProfile,
    LedFrame,
    RowProfile,
    load_scan,
    pps_pulses,
    read_bias,
    read_pulses_csv,
    row_profile,
    write_pulses_csv,
)
from qhytime.rowmodel import Readout, Reference

__all__ = [
    "BiasProfile",
    "LedDiagnostics",
    "LedFit",
    "LedFrame",
    "RowProfile",
    "fit_led",
    "load_scan",
    "plot_fit",
    "pps_pulses",
    "read_bias",
    "read_pulses_csv",
    "row_profile",
    "write_pulses_csv",
]


@dataclass
class LedDiagnostics:
    """What the fit found the scan doing besides the timing (all levels in ADU).

    Attributes
    ----------
    led_level_adu : float
        Median LED level: a fully lit row where the light is at its mean.
    led_levels : dict
        Frame name -> its LED level relative to the median.
    led_drift_percent, led_jitter_percent : float
        +- of a smooth trend (quadratic in time) of the LED level, and the rms around it.
    illumination_rows_percent : float
        +- of the fitted light profile over the rows the bands cover.
    illumination_x_percent : float
        +- of the light along x (median over frames).
    illumination_rows, illumination_profile : float arrays
        Sensor rows and the fitted profile ``g`` at them (for plots).
    bias_adu : dict
        Frame name -> its bias level.
    bias_drift_adu : float
        +- of the bias over the scan.
    banding_rms_adu : float
        Rms of the fixed banding pattern.
    banding : float array (R,)
        The pattern, by image row.
    row_noise_adu : float
        Rms of the random row offsets (banding that changes from frame to frame).
    cosmic_ray_pixels : int
        Pixels rejected as cosmic rays in the frames read.
    cosmic_by_frame : dict
        Frame name -> pixels rejected.

    Examples
    --------
    >>> LedDiagnostics(led_level_adu=40012.3, row_noise_adu=0.3).to_dict()["led_level_adu"]
    40012.3
    """

    led_level_adu: float = math.nan
    led_levels: dict[str, float] = field(default_factory=dict)
    led_drift_percent: float = math.nan
    led_jitter_percent: float = math.nan
    illumination_rows_percent: float = 0.0
    illumination_x_percent: float = math.nan
    illumination_rows: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0), repr=False)
    illumination_profile: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0), repr=False)
    bias_adu: dict[str, float] = field(default_factory=dict)
    bias_drift_adu: float = math.nan
    banding_rms_adu: float = 0.0
    banding: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0), repr=False)
    row_noise_adu: float = 0.0
    cosmic_ray_pixels: int = 0
    cosmic_by_frame: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The diagnostics of ``qhytime ledcal --json`` (scalars, rounded to what they mean)."""

        def r(x: float, nd: int) -> float | None:
            return None if not math.isfinite(x) else round(float(x), nd)

        return {
            "led_level_adu": r(self.led_level_adu, 1),
            "led_drift_percent": r(self.led_drift_percent, 2),
            "led_jitter_percent": r(self.led_jitter_percent, 2),
            "illumination_rows_percent": r(self.illumination_rows_percent, 2),
            "illumination_x_percent": r(self.illumination_x_percent, 2),
            "bias_drift_adu": r(self.bias_drift_adu, 2),
            "banding_rms_adu": r(self.banding_rms_adu, 3),
            "row_noise_adu": r(self.row_noise_adu, 3),
            "cosmic_ray_pixels": int(self.cosmic_ray_pixels),
        }


@dataclass
class LedFit:
    """Result of an LED calibration fit (times in the units of their names).

    ``frames`` are the frames used, with ``amplitudes_adu`` (their LED levels), ``data``
    (their row signals above the fitted bias and banding) and ``sigma_total`` (those rows'
    sigmas) in the same order; ``diagnostics`` says what the scan did besides the timing.
    :func:`fit_led` has an example.
    """

    offset0_us: float
    offset0_sigma_us: float
    line_period_ns: float
    line_period_sigma_ns: float
    exposure_us: float
    exposure_sigma_us: float
    amplitude_adu: float
    covariance: NDArray[np.float64]
    readout: Readout
    reference: Reference
    frames_used: list[str]
    frames_rejected: list[tuple[str, str]]
    residual_rms_us: float
    frame_residual_rms_us: dict[str, float]
    reduced_chi2: float
    nominal_exposure_us: float | None = None
    frames: list[LedFrame] = field(default_factory=list, repr=False)
    params_ns: NDArray[np.float64] = field(default_factory=lambda: np.zeros(4), repr=False)
    diagnostics: LedDiagnostics = field(default_factory=LedDiagnostics)
    amplitudes_adu: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0), repr=False)
    illumination_coef: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0), repr=False)
    data: list[NDArray[np.float64]] = field(default_factory=list, repr=False)
    sigma_total: list[NDArray[np.float64]] = field(default_factory=list, repr=False)
    _light: Any = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON record of ``qhytime ledcal --json``."""
        out = {
            "offset0_us": self.offset0_us,
            "offset0_sigma_us": self.offset0_sigma_us,
            "line_period_ns": self.line_period_ns,
            "line_period_sigma_ns": self.line_period_sigma_ns,
            "exposure_us": self.exposure_us,
            "exposure_sigma_us": self.exposure_sigma_us,
            "amplitude_adu": self.amplitude_adu,
            "readout": self.readout,
            "reference": self.reference,
            "frames_used": len(self.frames_used),
            "frames_rejected": [{"frame": n, "reason": r} for n, r in self.frames_rejected],
            "residual_rms_us": self.residual_rms_us,
            "reduced_chi2": self.reduced_chi2,
        }
        out.update(self.diagnostics.to_dict())
        return out

    def _index(self, frame: LedFrame) -> int:
        for i, f in enumerate(self.frames):
            if f is frame or f.name == frame.name:
                return i
        raise KeyError(f"{frame.name} is not a frame of this fit")

    def model_profile(self, frame: LedFrame) -> NDArray[np.float64]:
        """The fitted LED signal of one frame's rows above its fitted bias and banding (ADU)."""
        try:
            i = self._index(frame)
            amp = float(self.amplitudes_adu[i])
        except KeyError:
            amp = self.amplitude_adu
        frac = _frac_rows(self.params_ns[:3], frame, self.readout)
        light = self._light(frame) if self._light is not None else 1.0
        return amp * light * frac

    def corrected_signal(self, frame: LedFrame) -> NDArray[np.float64]:
        """A frame's row means with the fitted bias and banding removed (ADU)."""
        return self.data[self._index(frame)]

    def to_calibration(
        self, setting: Setting, *, measured_at: str = "", notes: str = ""
    ) -> Calibration:
        """A calibration record (method ``LED fit``) for the store."""
        scale = self.exposure_us / self.nominal_exposure_us if self.nominal_exposure_us else None
        scale_sigma = (
            self.exposure_sigma_us / self.nominal_exposure_us if self.nominal_exposure_us else None
        )
        return Calibration(
            setting=setting,
            reference=self.reference,
            offset0_us=self.offset0_us,
            offset0_sigma_us=self.offset0_sigma_us,
            line_period_ns=self.line_period_ns,
            line_period_sigma_ns=self.line_period_sigma_ns,
            exposure_scale=scale,
            exposure_scale_sigma=scale_sigma,
            method="LED fit",
            measured_at=measured_at,
            notes=notes
            or (
                f"{len(self.frames_used)} frames used, {len(self.frames_rejected)} rejected; "
                f"residual RMS {self.residual_rms_us * 1e3:.2f} ns; reduced chi2 {self.reduced_chi2:.2f}"
            ),
            provenance="qhytime ledcal: least-squares fit of the LED overlap model (LED level "
            "per frame, light profile, bias and banding) to robust row profiles",
            frames=tuple(self.frames_used),
            residual_rms_us=self.residual_rms_us,
        )


# -- the fit -----------------------------------------------------------------------------------


def fit_led(
    frames: list[LedFrame],
    *,
    readout: Readout = "pairs",
    reference: Reference = "end",
    line_period_ns: float | None = None,
    exposure_ns: float | None = None,
    rejected: Sequence[tuple[str, str]] = (),
    pps: tuple[float, float] | None = None,
    outlier_factor: float = 5.0,
    min_frames: int = 3,
    illumination_degree: int = 4,
    banding: bool = True,
    max_reduced_chi2: float = 5.0,
) -> LedFit:
    """Fit offset0, line period, exposure, the LED level of each frame, the light profile,
    the bias of each frame and the banding to the row profiles of a scan.

    Parameters
    ----------
    frames : list of LedFrame
        From :func:`~qhytime.ledscan.load_scan`.
    readout, reference
        Readout (pairs / 2CMS) and the stamp the pulses are relative to.
    line_period_ns, exposure_ns : float, optional
        Nominal values, used as starting points (estimated from the scan when absent).
    rejected : list of (name, reason)
        Frames already left out (they are reported).
    pps : (width_ns, delay_ns), optional
        A PPS-driven LED: pulses are placed at whole UTC seconds once the band is located.
    outlier_factor : float
        A frame whose reduced chi2 exceeds this many times the median is rejected.
    min_frames : int
        Fewest frames with partly lit rows the fit accepts.
    illumination_degree : int
        Degree of the light profile over the rows (0: flat light).
    banding : bool
        Estimate a fixed row banding pattern from the dark rows.
    max_reduced_chi2 : float
        A fit whose reduced chi2 is larger is an error, not a result.

    Returns
    -------
    LedFit

    Raises
    ------
    LedFitError
        No usable frame, no lit band, saturated band, pulse longer than the exposure, too
        few frames with partly lit rows, a degenerate scan, or a fit that does not converge
        to a plausible LED level and chi2.

    Examples
    --------
    >>> from qhytime.readers import ArrayReader
    >>> from qhytime.simulate import CameraSim, pulse_table
    >>> sim = CameraSim(width=1600, height=40, exposure_us=8 * 43.194, offset0_us=1998.921, seed=5)
    >>> pulses = sim.led_scan_pulses(20, 10.0)
    >>> frames, rejected, _ = load_scan([ArrayReader(sim.led_stack(pulses))], pulses=pulse_table(pulses))
    >>> fit = fit_led(frames, exposure_ns=sim.exposure_us * 1e3, line_period_ns=43194.0)
    >>> abs(fit.offset0_us - sim.offset0_us) < 5 * fit.offset0_sigma_us, len(fit.frames_used)
    (True, 20)
    """
    from scipy.optimize import least_squares

    rejected = list(rejected)
    if not frames:
        raise LedFitError(f"no usable frames in the scan{_listing(rejected)}")
    sat = [f for f in frames if f.saturated]
    if len(sat) == len(frames):
        raise LedFitError(
            f"saturated band in all {len(frames)} frames: the lit rows reach the top of the ADC; "
            "lower the LED current or the gain"
        )
    for f in sat:
        rejected.append((f.name, "saturated band: lit rows reach the top of the ADC"))
    good = [f for f in frames if not f.saturated]
    if pps is not None:
        good = _place_pps_pulses(good, pps, readout, line_period_ns, exposure_ns, rejected)
        if not good:
            raise LedFitError(f"no frame of the PPS scan holds a whole UTC second{_listing(rejected)}")
    widths = np.concatenate([f.pulses[:, 1] for f in good]) if good else np.zeros(0)
    if exposure_ns is not None and widths.size and widths.max() >= exposure_ns:
        raise LedFitError(
            f"pulse longer than the exposure ({widths.max() / 1e3:.3f} us >= {exposure_ns / 1e3:.3f} us): "
            "no row is then partly lit at both edges in a way that locates the pulse; use a pulse "
            "shorter than the exposure"
        )
    dark0 = _dark_before_model(good)
    dk = _dark_levels(good, dark0, banding)
    data, sig = dk.correct(good)
    # frames without a band
    peaks = np.array([float(np.max(d)) for d in data])
    at = [int(np.argmax(d)) for d in data]
    strong = np.array([peaks[i] > 10.0 * sig[i][at[i]] for i in range(len(good))])
    typical = float(np.median(peaks[strong])) if strong.any() else 0.0
    keep_idx = []
    for i, f in enumerate(good):
        if strong[i] and peaks[i] >= 0.2 * typical:
            keep_idx.append(i)
            continue
        why = (
            f"brightest row {peaks[i]:.1f} ADU above bias and banding, noise {sig[i][at[i]]:.1f} ADU"
            if not strong[i]
            else f"brightest row {peaks[i]:.1f} ADU, {100 * peaks[i] / typical:.0f} % of the scan's "
            f"typical {typical:.0f} ADU"
        )
        rejected.append((f.name, f"no lit band ({why})"))
    if not keep_idx:
        raise LedFitError(
            f"no lit band in any of the {len(good)} frames: is the LED on, bright enough, and its "
            "pulse timed inside the exposures?"
        )
    if len(keep_idx) < min_frames:
        raise LedFitError(
            f"only {len(keep_idx)} frame(s) with a lit band; at least {min_frames} are needed"
        )
    lit_frames = [good[i] for i in keep_idx]
    n_edges = sum(_has_partial_rows(data[i], sig[i]) for i in keep_idx)
    if n_edges < min_frames:
        raise LedFitError(
            f"only {n_edges} of {len(keep_idx)} frames have partly lit rows at the band's edges; "
            f"at least {min_frames} are needed to locate the pulse in time. Step the pulse delay "
            "by a fraction of a line period between frames (or use a longer pulse): "
            "qhytime.ledplan.plan_scan (`qhytime ledcal plan`) makes such a schedule"
        )
    # nuisances again with the band-less frames out of the picture, then the start
    dk, data, sig, lit_masks, light, theta, _ = _start(
        lit_frames, [dark0[i] for i in keep_idx], readout, line_period_ns, exposure_ns, banding,
        illumination_degree, float(widths.max()) if widths.size else 0.0,
    )  # fmt: skip

    use = list(range(len(lit_frames)))
    # Refit until the windows and the bias settle; a frame whose residuals stand out is left
    # out, the worst first (one bad frame pulls the others' residuals up with it).
    for _outer in range(6 + len(lit_frames) // 4):
        fr = [lit_frames[i] for i in use]
        rows = [_window(theta, f, readout, lit_masks[i]) for f, i in zip(fr, use, strict=True)]
        prob = _problem(fr, rows, [data[i] for i in use], [sig[i] for i in use], readout, light)
        res = _solve(least_squares, prob, theta)
        theta = res.x
        # bias and banding again, from the rows the fitted model calls dark in the frames used
        in_use = set(use)
        dark = [(_frac_rows(theta[:3], f, readout) == 0) & (i in in_use)
                for i, f in enumerate(lit_frames)]  # fmt: skip
        new_dk = _dark_levels(lit_frames, dark, banding)
        moved = float(np.max(np.abs(new_dk.bias - dk.bias)[use])) if use else 0.0
        dk = new_dk
        data, sig = dk.correct(lit_frames)
        prob = _problem(fr, rows, [data[i] for i in use], [sig[i] for i in use], readout, light)
        res = _solve(least_squares, prob, theta)
        theta = res.x
        _, r, _ = prob.solve_levels(theta)
        chi = (r**2 * prob.ok).sum(axis=1) / np.maximum(prob.ok.sum(axis=1), 1)
        med = float(np.median(chi))
        worst = int(np.argmax(chi))
        if chi[worst] > outlier_factor * max(med, 1.0) and len(use) > min_frames:
            rejected.append((fr[worst].name, f"residuals stand out: reduced chi2 "
                                             f"{chi[worst]:.1f} vs median {med:.1f}"))  # fmt: skip
            use = [i for i in use if i != use[worst]]
            continue
        stable = all(np.array_equal(_window(theta, f, readout, lit_masks[i]), rr)
                     for f, i, rr in zip(fr, use, rows, strict=True))  # fmt: skip
        if stable and moved < 0.05:
            break
    fr = [lit_frames[i] for i in use]
    rows = [_window(theta, f, readout, lit_masks[i]) for f, i in zip(fr, use, strict=True)]
    prob = _problem(fr, rows, [data[i] for i in use], [sig[i] for i in use], readout, light)
    res = _solve(least_squares, prob, theta)
    theta = res.x
    return _result(prob, res, theta, fr, [data[i] for i in use], [sig[i] for i in use],
                   frames, lit_frames, rejected, dk, light, readout, reference, line_period_ns,
                   exposure_ns, max_reduced_chi2)  # fmt: skip


def _dark_before_model(frames: list[LedFrame]) -> list[NDArray[np.bool_]]:
    """Dark rows before any model: rows far (4 rows) from anything lit."""
    dark = []
    for f in frames:
        d = f.signal - np.median(f.signal)
        lit = _lit_rows(d, np.sqrt(f.sigma**2 + np.median(f.sigma) ** 2 + 1.0))
        dark.append(~_dilate(lit, 4))
    return dark


def _start(
    frames: list[LedFrame], dark: list[NDArray[np.bool_]], readout: str, lp: float | None,
    exp: float | None, banding: bool, degree: int, longest_pulse_ns: float,
) -> tuple[Any, ...]:  # fmt: skip
    """Bias and banding from the dark rows, the rows lit, the light profile's range, and the
    start of the fit: line period and exposure (nominal or from the bands), offset0 from a
    grid scored by the whole scan. Returns ``(dark levels, data, sigmas, lit rows, light,
    theta, the band-centroid estimate of offset0)``."""
    dk = _dark_levels(frames, dark, banding)
    data, sig = dk.correct(frames)
    lit_masks = [_dilate(_lit_rows(d, s), 1) for d, s in zip(data, sig, strict=True)]
    tau0, margin_rows = _start_values(frames, data, lit_masks, readout, lp, exp)
    if longest_pulse_ns >= tau0[2]:
        raise LedFitError(
            f"pulse longer than the exposure ({longest_pulse_ns / 1e3:.3f} us >= ~{tau0[2] / 1e3:.3f} us)"
        )
    light = _light_range(frames, lit_masks, degree)
    rows = [np.flatnonzero(_dilate(m, margin_rows)) for m in lit_masks]
    prob = _problem(frames, rows, data, sig, readout, light)
    theta = _grid_start(prob, tau0, readout, frames, light.degree)
    return dk, data, sig, lit_masks, light, theta, float(tau0[0])


def _listing(rejected: Sequence[tuple[str, str]], n: int = 3) -> str:
    """``': a.fits, b.fits: reason; c.fits: other reason (and 4 more)'`` or ``''``: frames with
    the same reason named together."""
    if not rejected:
        return ""
    groups: dict[str, list[str]] = {}
    for name, why in rejected:
        groups.setdefault(why, []).append(name)
    parts = []
    for why, names in list(groups.items())[:n]:
        who = ", ".join(names[:2]) + (f" and {len(names) - 2} more" if len(names) > 2 else "")
        parts.append(f"{who}: {why}")
    more = f" (and {len(groups) - n} other reasons)" if len(groups) > n else ""
    return ": " + "; ".join(parts) + more


def _has_partial_rows(d: NDArray[np.float64], s: NDArray[np.float64]) -> bool:
    """A row whose signal is clearly between dark and fully lit (10 sigma from both)."""
    peak = float(np.percentile(d, 99.5))
    return bool(np.any((d > 10 * s) & (d < peak - 10 * s - 0.02 * peak)))


def _start_values(
    frames: list[LedFrame], data: list[NDArray[np.float64]], lit: list[NDArray[np.bool_]],
    readout: str, lp0: float | None, exp0: float | None,
) -> tuple[NDArray[np.float64], int]:  # fmt: skip
    """Line period and exposure to start from (nominal, else from the bands), a rough offset0
    (its range for the grid), and the margin in rows around lit rows."""
    cents, mids, areas = [], [], []
    for f, d, m in zip(frames, data, lit, strict=True):
        if not m.any():
            continue
        wts = np.clip(d[m], 0.0, None)
        if wts.sum() <= 0:
            continue
        u = _step_units(f.sensor_rows[m], readout).mean(axis=1)
        cents.append(float((u * wts).sum() / wts.sum()))
        mids.append(float(np.mean(f.pulses[:, 0] + f.pulses[:, 1] / 2)))
        areas.append(float(np.clip(d, 0.0, None).sum() / max(float(d.max()), 1e-9)) * f.sensor_rows.shape[1])
    cents_a, mids_a = np.asarray(cents), np.asarray(mids)
    if lp0 is None:
        if len(cents) < 3 or np.ptp(cents_a) < 4:
            raise LedFitError(
                "give line_period_ns (the nominal line period): the scan does not move the band "
                "enough to find it"
            )
        from scipy.stats import theilslopes

        lp0 = float(theilslopes(mids_a, cents_a).slope)
        if not 0 < lp0 < 1e6:
            raise LedFitError(
                f"the bands move by {lp0:.1f} ns per row, not a line period: give "
                "line_period_ns (the nominal line period)"
            )
    if exp0 is None:
        # the band's area over its peak is max(E, W) in rows
        exp0 = float(np.median(areas)) * lp0
    unit = _unit_ns(lp0, readout)
    b = max(f.sensor_rows.shape[1] for f in frames)
    margin = math.ceil(2 * unit / lp0 / b) + 1
    off = float(np.median(mids_a + exp0 / 2 - lp0 * cents_a)) if cents else 0.0
    return np.array([off, lp0, exp0]), margin


def _light_range(frames: list[LedFrame], lit: list[NDArray[np.bool_]], degree: int) -> _Light:
    ys = np.concatenate([f.sensor_rows[m].mean(axis=1) for f, m in zip(frames, lit, strict=True)])
    if ys.size == 0 or degree <= 0:
        return _Light(0.0, 1.0, 0)
    # a degree for every two distinct band positions (whole rows), at most ``degree``: each
    # band measures the profile's local slope, the LED level of its frame its local value
    cents = np.array([np.mean(f.sensor_rows[m]) for f, m in zip(frames, lit, strict=True) if m.any()])
    span = float(np.ptp(ys))
    distinct = len(np.unique(np.round(cents)))
    deg = int(min(degree, max(1, distinct - 2)))
    return _Light(float(ys.min()), float(ys.min() + max(span, 1.0)), deg)


def _window(
    theta: NDArray[np.float64], f: LedFrame, readout: str, lit: NDArray[np.bool_]
) -> NDArray[np.intp]:
    """Rows of one frame in the fit: those the model lights and those the data shows lit,
    with two readout units of margin."""
    end = theta[0] + _step_units(f.sensor_rows, readout) * theta[1]  # (R, b)
    unit = _unit_ns(theta[1], readout)
    sel = np.zeros(f.signal.shape[0], dtype=bool)
    for p0, w in f.pulses:
        sel |= ((end >= p0 - 2 * unit) & (end <= p0 + w + theta[2] + 2 * unit)).any(axis=1)
    sel |= lit
    return np.flatnonzero(sel)


def _grid_start(
    prob: _Problem, tau0: NDArray[np.float64], readout: str, frames: list[LedFrame], degree: int
) -> NDArray[np.float64]:
    """offset0 from a grid scored by the chi2 of all frames (LED levels solved for), over the
    range the bands allow, in steps of a quarter of the shortest pulse (or readout unit)."""
    off0, lp, exp = (float(x) for x in tau0)
    unit = _unit_ns(lp, readout)
    wmin = float(min(f.pulses[:, 1].min() for f in frames))
    # each frame's crude offset (from its band's centre) bounds the range; the grid decides
    crude = []
    for k in range(prob.ok.shape[0]):
        zk = np.where(prob.ok[k], prob.z[k] / np.where(prob.w[k] > 0, prob.w[k], 1.0), 0.0)
        wts = np.clip(zk, 0.0, None)
        if wts.sum() <= 0:
            continue
        u = prob.units[k].mean(axis=1)
        cent = float((u * wts).sum() / wts.sum())
        mid = float(np.mean(prob.p0[k][prob.pok[k] > 0] + prob.pw[k][prob.pok[k] > 0] / 2))
        crude.append(mid + exp / 2 - lp * cent)
    if crude:
        lo = float(np.percentile(crude, 10)) - 2 * unit
        hi = float(np.percentile(crude, 90)) + 2 * unit
    else:
        lo, hi = off0 - 4 * unit, off0 + 4 * unit
    step = min(wmin, unit) / 4.0
    n = math.ceil((hi - lo) / step) + 1
    if n > 4000:  # a coarse pass first, then the fine one around its best
        coarse = np.linspace(lo, hi, 4000)
        best = coarse[int(np.argmin(prob.cost_grid(coarse, lp, exp)))]
        lo, hi = best - 2 * (coarse[1] - coarse[0]), best + 2 * (coarse[1] - coarse[0])
        n = math.ceil((hi - lo) / step) + 1
    grid = np.linspace(lo, hi, max(n, 2))
    cost = prob.cost_grid(grid, lp, exp)
    off = float(grid[int(np.argmin(cost))])
    return np.concatenate([[off, lp, exp], np.zeros(degree)])


def _solve(least_squares: Any, prob: _Problem, theta0: NDArray[np.float64]) -> Any:
    """Least squares over offset0, LP, E and the light profile, LED levels projected out."""
    cache: dict[str, Any] = {}

    def both(x: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        key = x.tobytes()
        if cache.get("key") != key:
            _, r, _, j = prob.solve_levels(x, derivs=True)
            cache.update(key=key, r=r[prob.ok], j=j[:, prob.ok].T)
        return cache["r"], cache["j"]

    res = least_squares(lambda x: both(x)[0], theta0, jac=lambda x: both(x)[1], method="lm",
                        x_scale="jac", xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=200)  # fmt: skip
    return res


def _result(
    prob: _Problem, res: Any, theta: NDArray[np.float64], fr: list[LedFrame],
    data: list[NDArray[np.float64]], sig: list[NDArray[np.float64]], all_frames: list[LedFrame],
    lit_frames: list[LedFrame], rejected: list[tuple[str, str]], dk: _Dark, light: _Light,
    readout: Readout, reference: Reference, lp_nominal: float | None, exp_nominal: float | None,
    max_red: float,
) -> LedFit:  # fmt: skip
    amp, r, phi, jac = prob.solve_levels(theta, derivs=True)
    n_obs = prob.n_obs
    n_par = theta.size + len(fr)
    dof = max(1, n_obs - n_par)
    chi2 = float((r[prob.ok] ** 2).sum())
    red = chi2 / dof
    j = jac[:, prob.ok].T
    if res.status <= 0 or not np.all(np.isfinite(theta)):
        raise LedFitError(
            f"the least-squares fit did not converge ({res.message}); nothing is stored. Check "
            "the pulse list, readout= and reference="
        )
    try:
        cov = np.linalg.inv(j.T @ j) * max(red, 1.0)
    except np.linalg.LinAlgError:
        raise LedFitError(
            "the fit is degenerate: the pulses do not move the band across rows"
        ) from None
    sig_p = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    if not np.all(np.isfinite(sig_p)) or np.any(np.diag(cov)[:3] <= 0):
        raise LedFitError(
            "the fit is degenerate: offset0, line period and exposure are not all constrained by this scan"
        )
    off, lp, exp = (float(x) for x in theta[:3])
    # plausibility: the LED level must describe the bands, chi2 the noise
    model_peak = np.array([float((a * p / np.where(prob.w[k] > 0, prob.w[k], 1.0)).max())
                           for k, (a, p) in enumerate(zip(amp, phi, strict=True))])  # fmt: skip
    data_peak = np.array([float(d.max()) for d in data])
    ratio = float(np.median(model_peak / np.maximum(data_peak, 1e-9)))
    med_amp = float(np.median(amp))
    if not (med_amp > 0 and 0.67 <= ratio <= 1.5):
        raise LedFitError(
            f"the fit did not converge to a plausible LED level: {med_amp:.1f} ADU, its bands "
            f"{100 * ratio:.0f} % of the observed ones (reduced chi2 {red:.1f}); nothing is "
            "stored. Check the pulse list (its delays count from the reference= stamp), "
            "readout= and the exposure"
        )
    if red > max_red:
        raise LedFitError(
            f"the overlap model does not describe these frames: reduced chi2 {red:.1f} > "
            f"{max_red:g} (LED level {med_amp:.0f} ADU); nothing is stored. Check the pulse list, "
            "readout= and reference=, or look at the residuals with plot_fit()"
        )
    if lp <= 0 or exp <= 0:
        raise LedFitError(f"the fit gave a line period of {lp:.3f} ns and an exposure of {exp:.1f} ns")
    if lp_nominal and abs(lp / lp_nominal - 1) > 0.01:
        raise LedFitError(
            f"the fitted line period {lp:.3f} ns is {1e2 * (lp / lp_nominal - 1):+.1f} % off the "
            f"nominal {lp_nominal:.3f} ns: is readout= right ('pairs' or '2cms')?"
        )
    if exp_nominal and abs(exp / exp_nominal - 1) > 0.1:
        raise LedFitError(
            f"the fitted exposure {exp / 1e3:.3f} us is {1e2 * (exp / exp_nominal - 1):+.1f} % off "
            f"the nominal {exp_nominal / 1e3:.3f} us: check the exposure and the pulse widths"
        )
    light.coef = np.asarray(theta[3:], dtype=np.float64)
    # residuals in time: ADU -> ns of pulse overlap
    width_ns = float(np.median(np.concatenate([f.pulses[:, 1] for f in fr])))
    to_us = width_ns / med_amp / 1e3
    sig_rows = np.where(prob.w > 0, 1.0 / np.where(prob.w > 0, prob.w, 1.0), 0.0)
    raw = r * sig_rows
    lit_model = (phi > 0) & prob.ok
    band_res = raw[lit_model]
    diag = _diagnostics(fr, amp, all_frames, dk, light, lit_frames, data)
    return LedFit(
        offset0_us=off / 1e3,
        offset0_sigma_us=float(sig_p[0]) / 1e3,
        line_period_ns=lp,
        line_period_sigma_ns=float(sig_p[1]),
        exposure_us=exp / 1e3,
        exposure_sigma_us=float(sig_p[2]) / 1e3,
        amplitude_adu=med_amp,
        covariance=cov,
        readout=readout,
        reference=reference,
        frames_used=[f.name for f in fr],
        frames_rejected=rejected,
        residual_rms_us=float(np.sqrt(np.mean(band_res**2))) * to_us if band_res.size else 0.0,
        frame_residual_rms_us={
            f.name: float(np.sqrt(np.mean(raw[k][prob.ok[k]] ** 2))) * to_us
            for k, f in enumerate(fr)
        },
        reduced_chi2=red,
        nominal_exposure_us=None if exp_nominal is None else exp_nominal / 1e3,
        frames=fr,
        params_ns=np.array([off, lp, exp, med_amp]),
        diagnostics=diag,
        amplitudes_adu=np.asarray(amp, dtype=np.float64),
        illumination_coef=light.coef,
        data=data,
        sigma_total=sig,
        _light=light,
    )


def _diagnostics(
    fr: list[LedFrame], amp: NDArray[np.float64], all_frames: list[LedFrame], dk: _Dark,
    light: _Light, lit_frames: list[LedFrame], data: list[NDArray[np.float64]],
) -> LedDiagnostics:  # fmt: skip
    med = float(np.median(amp))
    t = np.array([f.reference_ns for f in fr], dtype=np.int64)
    x = ((t - t.min()) / 1e9) if np.ptp(t) > 0 else np.arange(len(fr), dtype=np.float64)
    deg = min(2, len(fr) - 1)
    if deg >= 1 and np.ptp(x) > 0:
        xs = (x - x.mean()) / max(float(np.ptp(x)), 1e-12)
        trend = np.polyval(np.polyfit(xs, amp, deg), xs)
    else:
        trend = np.full(len(fr), med)
    drift = 100.0 * float(np.ptp(trend)) / 2.0 / med
    jitter = 100.0 * float(np.std(amp / np.where(trend > 0, trend, med) - 1.0))
    ys = np.linspace(light.lo, light.hi, 200)
    prof = 1.0 + (np.tensordot(light.coef, light.basis(ys), axes=(0, 0)) if light.coef.size else 0.0)
    prof = np.broadcast_to(prof, ys.shape).astype(np.float64)
    xg = [f.x_gradient for f in fr if math.isfinite(f.x_gradient)]
    name_of = {id(f): i for i, f in enumerate(lit_frames)}
    bias_abs = {f.name: float(f.level_adu + dk.bias[name_of[id(f)]]) for f in lit_frames}
    used_bias = np.array([bias_abs[f.name] for f in fr])
    band = dk.band
    return LedDiagnostics(
        led_level_adu=med,
        led_levels={f.name: float(a / med) for f, a in zip(fr, amp, strict=True)},
        led_drift_percent=drift,
        led_jitter_percent=jitter,
        illumination_rows_percent=100.0 * float(np.ptp(prof)) / 2.0,
        illumination_x_percent=100.0 * float(np.median(np.abs(xg))) * (1.0 if np.median(xg) >= 0 else -1.0) if xg else math.nan,
        illumination_rows=ys,
        illumination_profile=prof,
        bias_adu=bias_abs,
        bias_drift_adu=float(np.ptp(used_bias)) / 2.0 if used_bias.size else math.nan,
        banding_rms_adu=dk.banding_rms(),
        banding=band,
        row_noise_adu=math.sqrt(dk.row_var),
        cosmic_ray_pixels=int(sum(f.cosmic_pixels for f in all_frames)),
        cosmic_by_frame={f.name: int(f.cosmic_pixels) for f in all_frames},
    )


def _place_pps_pulses(
    frames: list[LedFrame], pps: tuple[float, float], readout: str, lp: float | None,
    exp: float | None, rejected: list[tuple[str, str]],
) -> list[LedFrame]:  # fmt: skip
    """Put each PPS pulse at the whole UTC second that falls inside the frame's readout."""
    width, delay = pps
    lp = lp or 43194.0
    exp = exp or 0.0
    out = []
    for f in frames:
        units = _step_units(f.sensor_rows, readout)
        window = (float(-exp - 1e7), float(units.max() * lp + 1e7))  # generous: +/- 10 ms
        cands = pps_pulses(f.reference_ns, window, width, delay)
        if not cands:
            rejected.append((f.name, "no whole UTC second falls inside this frame's readout"))
            continue
        f.pulses = np.asarray(cands[:1], dtype=np.float64)
        out.append(f)
    return out


# -- plots ------------------------------------------------------------------------------------


def plot_fit(
    fit: LedFit, path: str | os.PathLike[str] | None = None, *, max_profiles: int = 6
) -> Any:
    """Residuals, band profiles and the diagnostics of a fit (matplotlib, imported lazily):
    LED level per frame, light profile over the rows, bias per frame, banding, cosmic rays.

    Returns the figure; writes it to ``path`` when given (whole or not at all).

    Raises
    ------
    QhytimeError
        When matplotlib is missing or the file cannot be written.

    Examples
    --------
    >>> import os, tempfile
    >>> import matplotlib.pyplot as plt
    >>> from qhytime.readers import ArrayReader
    >>> from qhytime.simulate import CameraSim, pulse_table
    >>> sim = CameraSim(width=800, height=30, exposure_us=8 * 43.194, seed=2)
    >>> pulses = sim.led_scan_pulses(12, 10.0)
    >>> frames, _, _ = load_scan([ArrayReader(sim.led_stack(pulses))], pulses=pulse_table(pulses))
    >>> fit = fit_led(frames, exposure_ns=sim.exposure_us * 1e3, line_period_ns=43194.0)
    >>> path = os.path.join(tempfile.mkdtemp(), "fit.png")
    >>> fig = plot_fit(fit, path)
    >>> os.path.getsize(path) > 10_000
    True
    >>> plt.close(fig)
    """
    try:
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - extra not installed
        raise QhytimeError("plots need matplotlib: pip install 'qhytime[plot]'") from exc
    dg = fit.diagnostics
    fig, axes = plt.subplots(3, 2, figsize=(12, 11))
    ax1, ax2 = axes[0]
    width = float(np.median([f.pulses[0, 1] for f in fit.frames]))
    for f, d in zip(fit.frames, fit.data, strict=True):
        model = fit.model_profile(f)
        rows = f.sensor_rows.mean(axis=1)
        band = model > 0
        ax1.plot(rows[band], (d - model)[band] / fit.amplitude_adu * width, ".", ms=3)
    ax1.axhline(0, color="k", lw=0.5)
    ax1.set_xlabel("sensor row")
    ax1.set_ylabel("residual (ns of pulse overlap)")
    ax1.set_title(
        f"offset0 {fit.offset0_us:.7f} ± {fit.offset0_sigma_us:.7f} us, "
        f"LP {fit.line_period_ns:.4f} ± {fit.line_period_sigma_ns:.4f} ns, "
        f"E {fit.exposure_us:.4f} ± {fit.exposure_sigma_us:.4f} us; χ²ᵣ {fit.reduced_chi2:.2f}",
        fontsize=8,
    )
    step = max(1, len(fit.frames) // max_profiles)
    for f, d in list(zip(fit.frames, fit.data, strict=True))[::step][:max_profiles]:
        rows = f.sensor_rows.mean(axis=1)
        model = fit.model_profile(f)
        lit = np.flatnonzero(model > 0)
        if lit.size == 0:
            continue
        lo, hi = max(0, lit.min() - 3), min(len(rows), lit.max() + 4)
        ax2.plot(rows[lo:hi], d[lo:hi], "o", ms=3)
        ax2.plot(rows[lo:hi], model[lo:hi], "-", lw=1, color=ax2.lines[-1].get_color())
    ax2.set_xlabel("sensor row")
    ax2.set_ylabel("row signal above bias and banding (ADU)")
    ax2.set_title("band profiles (points) and the fitted model (lines)", fontsize=8)
    ax3, ax4 = axes[1]
    lv = np.array([dg.led_levels.get(f.name, np.nan) for f in fit.frames])
    ax3.plot(np.arange(len(lv)), 100 * (lv - 1), ".-", ms=4)
    ax3.set_xlabel("frame (in the order used)")
    ax3.set_ylabel("LED level - median (%)")
    ax3.set_title(f"LED level {dg.led_level_adu:.0f} ADU: drift ±{dg.led_drift_percent:.1f} %, "
                  f"jitter {dg.led_jitter_percent:.1f} % rms", fontsize=8)  # fmt: skip
    ax4.plot(dg.illumination_rows, 100 * (dg.illumination_profile - 1), "-")
    ax4.set_xlabel("sensor row")
    ax4.set_ylabel("light - mean (%)")
    xg = f"±{abs(dg.illumination_x_percent):.1f} %" if math.isfinite(dg.illumination_x_percent) else "n/a"
    ax4.set_title(f"light over the rows ±{dg.illumination_rows_percent:.1f} %, along x {xg}", fontsize=8)
    ax5, ax6 = axes[2]
    names = [f.name for f in fit.frames]
    ax5.plot(np.arange(len(names)), [dg.bias_adu.get(n, np.nan) for n in names], ".-", ms=4)
    ax5.set_xlabel("frame (in the order used)")
    ax5.set_ylabel("bias (ADU)")
    ax5b = ax5.twinx()
    ax5b.plot(np.arange(len(names)), [dg.cosmic_by_frame.get(n, 0) for n in names], ".", color="C3", ms=4)
    ax5b.set_ylabel("cosmic-ray pixels rejected", color="C3")
    ax5.set_title(f"bias drift ±{dg.bias_drift_adu:.2f} ADU; {dg.cosmic_ray_pixels} cosmic-ray "
                  "pixels rejected in the frames read", fontsize=8)  # fmt: skip
    ax6.plot(np.arange(dg.banding.size), dg.banding, "-")
    ax6.set_xlabel("image row")
    ax6.set_ylabel("banding (ADU)")
    ax6.set_title(f"banding {dg.banding_rms_adu:.2f} ADU rms, row noise {dg.row_noise_adu:.2f} ADU rms",
                  fontsize=8)  # fmt: skip
    fig.tight_layout()
    if path is not None:
        from qhytime.atomic import atomic_path

        suffix = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
        try:
            with atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=110, format=suffix)
        except (OSError, ValueError) as exc:
            plt.close(fig)
            raise QhytimeError(f"{os.fspath(path)}: cannot write the plot: {exc}") from None
    return fig

"""A scan plan for LED calibration: pulse delays that sample every phase of the readout unit,
light partly lit rows in every frame, and a prediction of the sigma the fit will reach.

Only partly lit rows place the pulse in time. A row is partly lit at the band's leading
edge when a row's end of exposure falls inside the pulse, and at its trailing edge when a
row's start does. With the pulse start at phase ``x`` of a readout unit ``U`` (two rows in
pairs mode, one in 2CMS), the leading edge is partly lit for ``x`` in ``(0, W)`` and the
trailing one for ``x`` in ``(e, e + W)``, where ``e = E mod U``. A plan's delays step ``x``
evenly through the whole unit, so that the scan does not depend on knowing offset0 to
better than a unit; every frame then has partly lit rows when ``W >= max(e, U - e)``.
When the exposure is a whole number of units (``e = 0``) both edges coincide and a pulse
shorter than ``U`` leaves a fraction ``1 - W / U`` of the frames without partly lit rows:
the plan warns, and by default chooses the shortest pulse that lights partial rows in every
frame. The predicted sigmas come from the fit's own model and Jacobian (Fisher matrix with
the LED level of every frame and the light profile free), for the noise given.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qhytime.errors import LedFitError
from qhytime.ledmodel import _Light, _overlap, _problem, _step_units, _unit_ns
from qhytime.ledscan import LedFrame, write_pulses_csv
from qhytime.rowmodel import Readout, Reference

VENDOR_ROWS = 46
"""The vendor's figure: the first row pair ends 46 line periods + 21.52 us after VSYNC."""
VENDOR_EXTRA_US = 21.52
SDK_NOW_OFFSET0_US = 1974.286
"""The SDK's RollingShutterEndOffset of the first row pair, from the now stamp."""
_PLASTIC = 0.7548776662466927  # 1 / plastic number: a low-discrepancy step


@dataclass
class LedPlan:
    """A schedule of LED pulses for ``qhytime ledcal`` and the sigmas it should give.

    Attributes
    ----------
    readout, reference
    exposure_us, line_period_ns, pulse_width_us : float
    offset0_us : float
        The nominal offset0 the delays were placed with.
    rows, crop_y, binning : int
        The strip: image rows, its first sensor row, the binning.
    names : list of str
        File name of each frame (the pulse CSV's ``file`` column).
    pulse_start_us : float array (N,)
        Pulse start of each frame, relative to its reference stamp.
    band_row : int array (N,)
        Sensor row whose end of exposure the pulse starts next to.
    phase : float array (N,)
        Where the pulse starts in its readout unit (0..1).
    partial : bool array (N,)
        Frames with partly lit rows (for the nominal offset0).
    coverage : float
        Fraction of all pulse phases that give partly lit rows (whatever offset0 is).
    sigma_offset0_ns, sigma_line_period_ns, sigma_exposure_ns : float
        The fit's predicted 1-sigma (median over where offset0 may fall in its unit).
    sigma_offset0_range_ns : (float, float)
        Smallest and largest predicted sigma of offset0 over those places.
    noise : dict
        The noise assumed: LED level, read noise, pixels per row, row noise, gain.
    warnings : list of str

    Examples
    --------
    >>> plan = plan_scan(exposure_us=388.746, line_period_ns=43194.0, readout="pairs", frames=12,
    ...                  rows=100, names="led_{i:03d}.fits")
    >>> plan.names[:2], round(plan.pulse_width_us, 3), plan.warnings
    (['led_000.fits', 'led_001.fits'], 45.354, [])
    >>> sorted(plan.pulses_ns())[:1]
    ['led_000.fits']
    """

    readout: Readout
    reference: Reference
    exposure_us: float
    line_period_ns: float
    pulse_width_us: float
    offset0_us: float
    rows: int
    crop_y: int
    binning: int
    names: list[str]
    pulse_start_us: NDArray[np.float64]
    band_row: NDArray[np.int64]
    phase: NDArray[np.float64]
    partial: NDArray[np.bool_]
    coverage: float
    sigma_offset0_ns: float
    sigma_line_period_ns: float
    sigma_exposure_ns: float
    sigma_offset0_range_ns: tuple[float, float] = (math.nan, math.nan)
    noise: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def unit_us(self) -> float:
        """The readout unit (us)."""
        return _unit_ns(self.line_period_ns, self.readout) / 1e3

    def pulses_ns(self) -> dict[str, list[tuple[float, float]]]:
        """File name -> ``[(start_ns, width_ns)]``, as :func:`~qhytime.ledscan.load_scan` takes."""
        w = self.pulse_width_us * 1e3
        return {n: [(float(p) * 1e3, w)] for n, p in zip(self.names, self.pulse_start_us, strict=True)}

    def write_csv(self, path: str | os.PathLike[str]) -> None:
        """The pulse CSV ``qhytime ledcal --pulses`` reads (with ``band_row`` and ``phase``)."""
        w = self.pulse_width_us * 1e3
        write_pulses_csv(path, self.names, [[(float(p) * 1e3, w)] for p in self.pulse_start_us],
                         extra={"band_row": [int(r) for r in self.band_row],
                                "phase": [f"{x:.4f}" for x in self.phase]})  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """The plan's summary (``qhytime ledcal plan --json``, last line; a sigma the schedule
        cannot reach is null)."""

        def fin(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {
            "frames": len(self.names),
            "readout": self.readout,
            "reference": self.reference,
            "exposure_us": self.exposure_us,
            "exposure_units": self.exposure_us / self.unit_us,
            "unit_us": self.unit_us,
            "line_period_ns": self.line_period_ns,
            "pulse_width_us": self.pulse_width_us,
            "offset0_us": self.offset0_us,
            "rows": self.rows,
            "crop_y": self.crop_y,
            "binning": self.binning,
            "coverage": self.coverage,
            "frames_without_partial_rows": int((~self.partial).sum()),
            "predicted_offset0_sigma_us": fin(self.sigma_offset0_ns / 1e3),
            "predicted_offset0_sigma_range_us": [fin(x / 1e3) for x in self.sigma_offset0_range_ns],
            "predicted_line_period_sigma_ns": fin(self.sigma_line_period_ns),
            "predicted_exposure_sigma_us": fin(self.sigma_exposure_ns / 1e3),
            **{f"assumed_{k}": v for k, v in self.noise.items()},
            "warnings": list(self.warnings),
        }


def phase_coverage(exposure_us: float, pulse_width_us: float, unit_us: float) -> float:
    """Fraction of pulse phases in a readout unit that give partly lit rows: the measure of
    ``(0, W) U (e, e + W)`` on a circle of length ``U``, over ``U``.

    Examples
    --------
    >>> round(phase_coverage(4 * 86.388, 10.0, 86.388), 4)  # a whole number of units: one window
    0.1158
    >>> phase_coverage(4.5 * 86.388, 43.194, 86.388)        # half a unit over: both, all phases
    1.0
    """
    if pulse_width_us >= unit_us:
        return 1.0
    e = math.fmod(exposure_us, unit_us)
    w = pulse_width_us

    def overlap(a1: float, a2: float, b1: float, b2: float) -> float:
        return max(0.0, min(a2, b2) - max(a1, b1))

    common = overlap(0.0, w, e, e + w) + overlap(0.0, w, e - unit_us, e + w - unit_us)
    return min(1.0, round((2.0 * w - common) / unit_us, 12))


def shortest_full_pulse_us(exposure_us: float, unit_us: float) -> float:
    """The shortest pulse that lights partial rows at every phase: ``max(e, U - e)``.

    Examples
    --------
    >>> shortest_full_pulse_us(345.552, 86.388)
    86.388
    """
    e = math.fmod(exposure_us, unit_us)
    if min(e, unit_us - e) < 1e-9 * unit_us:
        return unit_us
    return max(e, unit_us - e)


def _name(pattern: str, i: int) -> str:
    try:
        return pattern.format(i=i)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise LedFitError(
            f"the file name pattern {pattern!r} cannot be formatted with i={i} ({exc}); use "
            "e.g. 'led_{i:04d}.fits'"
        ) from None


def plan_scan(
    *,
    exposure_us: float,
    line_period_ns: float,
    readout: Readout = "pairs",
    frames: int = 60,
    pulse_width_us: float | None = None,
    rows: int = 200,
    crop_y: int = 0,
    binning: int = 1,
    offset0_us: float | None = None,
    reference: Reference = "end",
    led_adu: float = 40_000.0,
    read_noise_adu: float = 3.0,
    width_px: int = 9576,
    row_noise_adu: float = 0.0,
    gain_e_per_adu: float = 1.0,
    illumination_degree: int = 4,
    names: str = "frame_{i:04d}.fits",
) -> LedPlan:
    """Plan an LED scan: a pulse delay per frame and the sigmas the fit should reach.

    Parameters
    ----------
    exposure_us, line_period_ns : float
        The exposure and the nominal line period of the setting.
    readout : {"pairs", "2cms"}
    frames : int
        Frames in the scan.
    pulse_width_us : float, optional
        Default: the shortest pulse that gives partly lit rows in every frame.
    rows, crop_y, binning : int
        The strip read out (image rows, first sensor row, binning).
    offset0_us : float, optional
        Nominal offset0 from the ``reference`` stamp; default the vendor's figure (46 line
        periods + 21.52 us after the end stamp; + the exposure from the start stamp) or, from
        the now stamp, the SDK's 1974.286 us. Errors of tens of us only move the bands.
    led_adu, read_noise_adu, width_px, row_noise_adu, gain_e_per_adu
        The noise of a row mean: ``(signal / gain + read_noise^2) / width_px + row_noise^2``.
    illumination_degree : int
        As :func:`~qhytime.ledcal.fit_led` (the prediction frees the same light profile).
    names : str
        File names, a ``str.format`` pattern of ``i``.

    Returns
    -------
    LedPlan

    Raises
    ------
    LedFitError
        On values out of range, a strip too short for the band, or a name pattern that fails.

    Examples
    --------
    >>> plan = plan_scan(exposure_us=345.552, line_period_ns=43194.0, readout="pairs", frames=40,
    ...                  rows=120, width_px=800)
    >>> round(plan.pulse_width_us, 3), plan.coverage, bool(plan.partial.all())
    (90.707, 1.0, True)
    >>> plan.sigma_offset0_ns < 20.0
    True
    """
    for label, v in (("exposure_us", exposure_us), ("line_period_ns", line_period_ns),
                     ("led_adu", led_adu), ("gain_e_per_adu", gain_e_per_adu)):  # fmt: skip
        if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise LedFitError(f"{label} must be a finite number > 0, got {v!r}")
    for label, v in (("read_noise_adu", read_noise_adu), ("row_noise_adu", row_noise_adu)):
        if not (math.isfinite(v) and v >= 0):
            raise LedFitError(f"{label} must be a finite number >= 0, got {v!r}")
    if readout not in ("pairs", "2cms"):
        raise LedFitError(f"readout must be 'pairs' or '2cms', got {readout!r}")
    if reference not in ("start", "end", "now"):
        raise LedFitError(f"reference must be 'start', 'end' or 'now', got {reference!r}")
    if not 3 <= int(frames) <= 10_000 or int(frames) != frames:
        raise LedFitError(f"frames must be a whole number from 3 to 10000, got {frames!r}")
    if int(binning) != binning or not 1 <= binning <= 64:
        raise LedFitError(f"binning must be 1..64, got {binning!r}")
    if int(width_px) != width_px or width_px < 1 or int(rows) != rows or not 4 <= rows <= 100_000 or crop_y < 0:
        raise LedFitError(f"a strip needs width_px >= 1, 4 <= rows <= 100000, crop_y >= 0 (got {width_px}, {rows}, {crop_y})")
    frames, rows, binning, crop_y = int(frames), int(rows), int(binning), int(crop_y)
    lp_us = line_period_ns / 1e3
    unit = _unit_ns(line_period_ns, readout) / 1e3
    warnings: list[str] = []
    need = shortest_full_pulse_us(exposure_us, unit)
    if pulse_width_us is None:
        pulse_width_us = round(min(1.05 * need, 0.9 * exposure_us), 3)
        if 1.05 * need >= 0.9 * exposure_us:
            warnings.append(
                f"the exposure ({exposure_us:.3f} us) is too short for a pulse that lights partly "
                f"lit rows at every phase ({need:.3f} us); the pulse is {pulse_width_us:.3f} us: "
                f"use an exposure of at least {need / 0.9:.3f} us"
            )
    if not (math.isfinite(pulse_width_us) and 0 < pulse_width_us < exposure_us):
        raise LedFitError(
            f"the pulse ({pulse_width_us} us) must be > 0 and shorter than the exposure "
            f"({exposure_us} us)"
        )
    if offset0_us is None:
        end0 = VENDOR_ROWS * lp_us + VENDOR_EXTRA_US
        offset0_us = {"end": end0, "start": end0 + exposure_us, "now": SDK_NOW_OFFSET0_US}[reference]
    if not math.isfinite(offset0_us):
        raise LedFitError(f"offset0_us must be finite, got {offset0_us!r}")
    coverage = phase_coverage(exposure_us, pulse_width_us, unit)
    units_per_unit_rows = 2 if readout == "pairs" else 1
    # units whose band fits in the strip, two units of margin on both sides
    first_row, last_row = crop_y, crop_y + rows * binning - 1
    n_lo = -(-first_row // units_per_unit_rows) + 2
    band_units = math.ceil((pulse_width_us + exposure_us) / unit) + 1
    n_hi = last_row // units_per_unit_rows - band_units - 2
    if n_hi < n_lo:
        raise LedFitError(
            f"the strip of {rows} rows is too short for a band of ~{band_units * units_per_unit_rows} "
            f"rows with 2 readout units of margin on each side: read more rows (at least "
            f"{(band_units + 5) * units_per_unit_rows // binning + 1})"
        )
    k = np.arange(frames)
    n_k = n_lo + np.floor(np.mod(k * _PLASTIC + 0.5, 1.0) * (n_hi - n_lo + 1)).astype(np.int64)
    order = np.argsort(np.mod(k * (_PLASTIC**2) + 0.25, 1.0), kind="stable")
    phase = np.empty(frames)
    phase[order] = (k + 0.5) / frames
    starts = offset0_us + n_k * unit - phase * unit
    name_list = [_name(names, i) for i in range(frames)]
    if len(set(name_list)) != frames:
        raise LedFitError(f"the file name pattern {names!r} gives the same name to several frames: put {{i}} in it")
    # The frames as the fit would see them, noise-free, and the fit's Jacobian at the truth.
    # Where offset0 truly falls in its readout unit is unknown: predict at eight places
    # across the unit and report the median (and the range).
    y = crop_y + binning * np.arange(rows)
    sensor = y[:, None] + np.arange(binning)[None, :]
    sds = []
    partial = np.zeros(frames, dtype=bool)
    for j, shift in enumerate(np.arange(8) / 8.0 * unit):
        tau = np.array([(offset0_us + shift) * 1e3, line_period_ns, exposure_us * 1e3])
        sd, part = _predict(tau, starts, pulse_width_us, sensor, readout, binning, led_adu,
                            gain_e_per_adu, read_noise_adu, width_px, row_noise_adu,
                            illumination_degree, units_per_unit_rows)  # fmt: skip
        sds.append(sd)
        if j == 0:
            partial = part
    sd_all = np.array(sds)
    sd = np.median(sd_all, axis=0)
    sd_range = (sd_all.min(axis=0), sd_all.max(axis=0))
    if not np.all(np.isfinite(sd)):
        warnings.append("this schedule does not constrain offset0, line period and exposure: "
                        "more frames or partly lit rows are needed")  # fmt: skip
    without = frames - round(coverage * frames)
    if coverage < 0.999:
        e_units = exposure_us / unit
        if abs(e_units - round(e_units)) < 1e-6 * max(e_units, 1.0) or min(
            math.fmod(exposure_us, unit), unit - math.fmod(exposure_us, unit)
        ) < 1e-6 * unit:
            warnings.append(
                f"the exposure ({exposure_us:.3f} us) is a whole number ({round(e_units)}) of "
                f"readout units ({unit:.3f} us): both band edges fall at the same phase, and a "
                f"{pulse_width_us:.3f} us pulse leaves about {without} of {frames} frames without "
                f"partly lit rows (they place nothing in time). Use a pulse of at least "
                f"{need:.3f} us, or an exposure of {round(e_units) + 0.5:g} units "
                f"({(round(e_units) + 0.5) * unit:.3f} us)"
            )
        else:
            warnings.append(
                f"a {pulse_width_us:.3f} us pulse gives partly lit rows at {100 * coverage:.0f} % of "
                f"the phases: about {without} of {frames} frames will have none; a pulse of at "
                f"least {need:.3f} us gives them in every frame"
            )
    return LedPlan(
        readout=readout, reference=reference, exposure_us=float(exposure_us),
        line_period_ns=float(line_period_ns), pulse_width_us=float(pulse_width_us),
        offset0_us=float(offset0_us), rows=rows, crop_y=crop_y, binning=binning,
        names=name_list, pulse_start_us=starts, band_row=n_k * units_per_unit_rows,
        phase=phase, partial=partial, coverage=coverage,
        sigma_offset0_ns=float(sd[0]), sigma_line_period_ns=float(sd[1]),
        sigma_exposure_ns=float(sd[2]),
        sigma_offset0_range_ns=(float(sd_range[0][0]), float(sd_range[1][0])),
        noise={"led_adu": float(led_adu), "read_noise_adu": float(read_noise_adu),
               "width_px": float(width_px), "row_noise_adu": float(row_noise_adu),
               "gain_e_per_adu": float(gain_e_per_adu)},
        warnings=warnings,
    )  # fmt: skip


def _predict(
    tau: NDArray[np.float64], starts: NDArray[np.float64], width_us: float,
    sensor: NDArray[np.int64], readout: Readout, binning: int, led_adu: float, gain: float,
    read_noise: float, width_px: int, row_noise: float, degree: int, unit_rows: int,
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:  # fmt: skip
    """Predicted sigmas of offset0, LP, E (ns) and which frames have partly lit rows.

    Only the rows around each band are built (those are the rows a fit's window holds), so
    the cost does not grow with the strip's height."""
    units_all = _step_units(sensor, readout)
    ends = tau[0] + units_all.max(axis=1) * tau[1]  # increasing with the row
    unit = (2.0 if readout == "pairs" else 1.0) * tau[1]
    lframes, data, sig = [], [], []
    for p in starts:
        p_ns, w_ns = p * 1e3, width_us * 1e3
        lo = int(np.searchsorted(ends, p_ns - 3 * unit))
        hi = max(lo + 1, int(np.searchsorted(ends, p_ns + w_ns + tau[2] + 3 * unit, side="right")))
        hi = min(hi, sensor.shape[0])
        lo = min(lo, hi - 1)
        rows = sensor[lo:hi]
        pulses = np.array([[p_ns, w_ns]])
        frac = _overlap(tau, units_all[lo:hi][None], pulses[None, :, 0], pulses[None, :, 1],
                        np.ones((1, 1)))[0]  # fmt: skip
        signal = led_adu * binning**2 * frac  # a binned pixel sums binning x binning pixels
        sd = np.sqrt(np.maximum((signal / gain + read_noise**2) / width_px + row_noise**2, 1e-12))
        lframes.append(LedFrame(name="", sensor_rows=rows, signal=signal, sigma=sd, pulses=pulses))
        data.append(signal)
        sig.append(sd)
    partial = np.array([bool(np.any((d > 1e-3 * d.max()) & (d < (1 - 1e-3) * d.max()))) for d in data])
    lit = [d > 0.02 * d.max() for d in data]
    light = _light_for_plan(lframes, lit, degree)
    win = [np.flatnonzero(_dilate_rows(d > 0, 2 * unit_rows // binning + 1)) for d in data]
    win = [w if w.size else np.array([0]) for w in win]
    prob = _problem(lframes, win, data, sig, readout, light)
    theta = np.concatenate([tau, np.zeros(light.degree)])
    _, _, _, jac = prob.solve_levels(theta, derivs=True)
    j = jac[:, prob.ok].T
    return _sigmas(j.T @ j), partial


def _sigmas(fisher: NDArray[np.float64]) -> NDArray[np.float64]:
    """1-sigma of the first three parameters (inf when the Fisher matrix is singular)."""
    try:
        ev = np.linalg.eigvalsh(fisher)
        if not np.all(np.isfinite(ev)) or ev.min() <= 1e-12 * max(float(ev.max()), 1e-300):
            return np.full(3, math.inf)
        var = np.diag(np.linalg.inv(fisher))[:3]
    except np.linalg.LinAlgError:
        return np.full(3, math.inf)
    return np.where(var > 0, np.sqrt(np.where(var > 0, var, 1.0)), math.inf)


def _dilate_rows(mask: NDArray[np.bool_], n: int) -> NDArray[np.bool_]:
    out = mask.copy()
    for k in range(1, n + 1):
        out[k:] |= mask[:-k]
        out[:-k] |= mask[k:]
    return out


def _light_for_plan(frames: list[LedFrame], lit: list[NDArray[np.bool_]], degree: int) -> _Light:
    from qhytime.ledcal import _light_range

    return _light_range(frames, lit, degree)

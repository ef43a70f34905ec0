"""LED calibration: measure offset0, the true line period and the true exposure from frames
of an LED pulse, to a fraction of a microsecond.

An LED pulse ``[P, P + W]`` (relative to each frame's reference stamp) adds to every row a
signal proportional to the overlap of the row's exposure window ``[end(y) - E, end(y)]``
with the pulse (``../shared/spec/row-timing.md``). With a short exposure the lit rows form a
band, and the partly lit rows at its two edges place the pulse to a small fraction of a line
period. Over many frames with different pulse delays, a weighted least-squares fit
(:func:`scipy.optimize.least_squares`) of that overlap model to the bias-subtracted row
means gives ``offset0``, ``LP`` and ``E`` (and the LED amplitude) with their covariance.

Frames that cannot be used (no lit band, saturated band) or whose residuals stand out are
rejected and listed with the reason; a scan that cannot be fitted raises
:class:`~qhytime.errors.LedFitError`.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qhytime.calibration import Calibration, Setting
from qhytime.decode import decode_reader
from qhytime.errors import LedFitError, QhytimeError
from qhytime.framerows import exposure_ns_from_metadata, setting_from_reader
from qhytime.gpsblock import BLOCK_SIZE
from qhytime.readers import FrameReader, open_frames
from qhytime.rowmodel import FrameGeometry, Readout, Reference

NS_PER_S = 1_000_000_000


@dataclass
class LedFrame:
    """The measured row profile of one frame of an LED scan.

    Attributes
    ----------
    name : str
        ``path`` or ``path#index``.
    sensor_rows : int array (R, b)
        Sensor rows of each image row.
    signal : float array (R,)
        Bias-subtracted mean of each row (ADU).
    sigma : float array (R,)
        Standard error of each row mean, from the scatter of its pixels.
    pulses : float array (M, 2)
        ``(start_ns, width_ns)`` of each pulse relative to the frame's reference stamp.
    saturated : bool
        Whether the lit rows reach the top of the ADC.
    """

    name: str
    sensor_rows: NDArray[np.int64]
    signal: NDArray[np.float64]
    sigma: NDArray[np.float64]
    pulses: NDArray[np.float64]
    saturated: bool = False
    reference_ns: int = 0


@dataclass
class LedFit:
    """Result of an LED calibration fit (times in the units of their names)."""

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

    def to_dict(self) -> dict[str, Any]:
        """The JSON record of ``qhytime ledcal --json``."""
        return {
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

    def model_profile(self, frame: LedFrame) -> NDArray[np.float64]:
        """The fitted model's row signal for one frame (ADU)."""
        return _predict(self.params_ns, frame, self.readout)

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
            provenance="qhytime ledcal: least-squares fit of the LED overlap model to row profiles",
            frames=tuple(self.frames_used),
            residual_rms_us=self.residual_rms_us,
        )


# -- reading a scan ---------------------------------------------------------------------------


def read_pulses_csv(path: str | os.PathLike[str]) -> dict[str, list[tuple[float, float]]]:
    """Per-frame pulses from a CSV with columns ``file``, ``pulse_start_us``, ``pulse_width_us``.

    Several lines for one file make a pulse train; other columns are ignored; ``file`` is
    matched by file name.

    Raises
    ------
    LedFitError
        Naming the file and the line that is wrong.
    """
    out: dict[str, list[tuple[float, float]]] = {}
    p = os.fspath(path)
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            need = {"file", "pulse_start_us", "pulse_width_us"}
            if reader.fieldnames is None or not need <= set(reader.fieldnames):
                raise LedFitError(f"pulse CSV needs the columns {sorted(need)}", path=p)
            for line, row in enumerate(reader, start=2):
                try:
                    start, width = float(row["pulse_start_us"]), float(row["pulse_width_us"])
                except (TypeError, ValueError):
                    raise LedFitError(
                        f"line {line}: pulse start/width are not numbers", path=p
                    ) from None
                if width <= 0:
                    raise LedFitError(f"line {line}: pulse width must be > 0", path=p)
                out.setdefault(Path(row["file"]).name, []).append((start * 1e3, width * 1e3))
    except OSError as exc:
        raise LedFitError(f"cannot read pulse CSV: {exc}", path=p) from exc
    return out


def row_profile(
    image: NDArray[Any],
    *,
    block_row: int | None = 0,
    bias: NDArray[np.float64] | float | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], bool]:
    """Row means, their standard errors, and whether any row reaches saturation.

    The GPS block pixels of ``block_row`` are left out. Without ``bias`` the bias is the
    median of the row means of the dimmer half of the rows.
    """
    img = np.asarray(image, dtype=np.float64)
    top = 255.0 if image.dtype.itemsize == 1 else 65535.0
    h, w = img.shape
    means = img.mean(axis=1)
    var = img.var(axis=1, ddof=1)
    n = np.full(h, float(w))
    if block_row is not None:
        r = block_row % h
        rest = img[r, BLOCK_SIZE:]
        means[r], var[r], n[r] = rest.mean(), rest.var(ddof=1), rest.size
    saturated = bool((np.asarray(image) >= top).sum(axis=1).max() > max(3, w // 1000))
    if bias is None:
        b = float(np.median(np.sort(means)[: max(1, h // 2)]))
    else:
        b = bias  # type: ignore[assignment]
    sigma = np.sqrt(np.maximum(var, 1e-6) / n)
    return means - b, sigma, saturated


def pps_pulses(
    reference_ns: int, window: tuple[float, float], width_ns: float, delay_ns: float = 0.0
) -> list[tuple[float, float]]:
    """Pulses of a GPS-PPS-driven LED (one at every whole UTC second + ``delay_ns``) that fall
    in ``window`` (ns relative to the reference stamp)."""
    # integers for the absolute instants: a float64 of unix ns would lose ~100 ns
    lo = int(reference_ns) + int(np.floor(window[0] - delay_ns - width_ns))
    hi = int(reference_ns) + int(np.ceil(window[1] - delay_ns))
    first = -(-lo // NS_PER_S)
    return [
        (float(s * NS_PER_S - int(reference_ns)) + delay_ns, width_ns)
        for s in range(first, hi // NS_PER_S + 1)
    ]


def load_scan(
    paths: Iterable[str | os.PathLike[str] | FrameReader],
    *,
    pulses: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    pulse_start_us: float | None = None,
    pulse_width_us: float | None = None,
    pps_width_us: float | None = None,
    pps_delay_us: float = 0.0,
    reference: Reference = "end",
    crop_y: int | None = None,
    binning: int | None = None,
    bias: NDArray[np.float64] | None = None,
    allow_invalid: bool = False,
) -> tuple[list[LedFrame], list[tuple[str, str]], dict[str, Any]]:
    """Read the frames of a scan into row profiles with their pulses.

    ``paths`` may also hold open readers (e.g. an :class:`~qhytime.readers.ArrayReader`).
    Pulses come from ``pulses`` (file name, or ``name#index`` for a frame of a multi-frame
    source -> list of (start_ns, width_ns)), from one
    ``pulse_start_us``/``pulse_width_us`` for every frame, or from a PPS-driven LED
    (``pps_width_us``, at whole UTC seconds + ``pps_delay_us``).

    Returns
    -------
    frames, rejected, info
        Usable frames, ``(name, reason)`` for frames left out, and facts from the files
        (``exposure_ns``, ``setting``, ``first_reader`` header values).
    """
    frames: list[LedFrame] = []
    rejected: list[tuple[str, str]] = []
    info: dict[str, Any] = {}
    for p in paths:
        if isinstance(p, FrameReader):
            reader, name = p, p.path
        else:
            name = os.fspath(p)
            try:
                reader = open_frames(name)
            except QhytimeError as exc:
                rejected.append((name, f"unreadable: {exc}"))
                continue
        with reader:
            _read_frames(reader, name, frames, rejected, info, pulses, pulse_start_us, pulse_width_us,
                         pps_width_us, pps_delay_us, reference, crop_y, binning, bias, allow_invalid)  # fmt: skip
    return frames, rejected, info


def _read_frames(
    reader: FrameReader, name: str, frames: list[LedFrame], rejected: list[tuple[str, str]],
    info: dict[str, Any], pulses: Mapping[str, Sequence[tuple[float, float]]] | None,
    pulse_start_us: float | None, pulse_width_us: float | None, pps_width_us: float | None,
    pps_delay_us: float, reference: Reference, crop_y: int | None, binning: int | None,
    bias: NDArray[np.float64] | None, allow_invalid: bool,
) -> None:  # fmt: skip
    decoded = decode_reader(reader)
    if "setting" not in info and len(decoded):
        meta = reader.metadata(0)
        info["setting"] = setting_from_reader(reader, 0)
        info["exposure_ns"] = exposure_ns_from_metadata(meta)
        qlp = meta.get("QHY_LP")
        info["line_period_ns"] = float(qlp) if isinstance(qlp, int | float) else None
    setting = info.get("setting")
    # crop origin and binning default to the file's, as its setting read them
    cy = crop_y if crop_y is not None else (setting.roi_y if setting else 0)
    b = binning if binning is not None else (setting.binning if setting else 1)
    for i in range(len(decoded)):
        rec = decoded.frame(i)
        label = name if reader.declared_frames == 1 else f"{name}#{i}"
        if rec.block is None:
            rejected.append((label, "; ".join(rec.reasons)))
            continue
        if rec.reasons and not allow_invalid:
            rejected.append((label, "time flagged: " + "; ".join(rec.reasons)))
            continue
        geom = FrameGeometry(height=reader.height, crop_y=cy, binning=b, flipped=rec.flipped)
        sensor = geom.sensor_rows(np.arange(reader.height))
        ref_ns = rec.stamps[reference].unix_ns
        if pulses is not None:
            plist = list(pulses.get(label, pulses.get(Path(name).name, [])))
            if not plist:
                rejected.append((label, "no pulse for this file in the pulse list"))
                continue
        elif pulse_start_us is not None and pulse_width_us is not None:
            plist = [(pulse_start_us * 1e3, pulse_width_us * 1e3)]
        elif pps_width_us is not None:
            plist = []  # decided after the first fit guess; keep the reference for now
        else:
            raise LedFitError(
                "give pulses: a CSV, --pulse-start-us/--pulse-width-us, or --pps-width-us"
            )
        image = reader.image(i)
        block_row = (reader.height - 1) if rec.flipped else 0
        signal, sigma, saturated = row_profile(image, block_row=block_row, bias=bias)
        frames.append(
            LedFrame(
                name=label,
                sensor_rows=sensor,
                signal=signal,
                sigma=sigma,
                pulses=np.asarray(plist, dtype=np.float64).reshape(-1, 2),
                saturated=saturated,
                reference_ns=int(ref_ns),
            )
        )
    if pps_width_us is not None:
        info["pps"] = (pps_width_us * 1e3, pps_delay_us * 1e3)


# -- the model ----------------------------------------------------------------------------------


def _step_units(sensor_rows: NDArray[np.int64], readout: str) -> NDArray[np.float64]:
    units = 2 * (sensor_rows // 2) if readout == "pairs" else sensor_rows
    return units.astype(np.float64)


def _predict(params: NDArray[np.float64], frame: LedFrame, readout: str) -> NDArray[np.float64]:
    """Row signal of one frame (the same overlap model the fit uses, see :class:`_Stacked`)."""
    return _Stacked([frame], readout).predict(params)[0]


def _guess(
    frames: list[LedFrame], readout: str, lp0: float | None, exp0: float | None
) -> NDArray[np.float64]:
    """Starting values from band centroids: P + (W + E)/2 ~ offset0 + LP x centroid."""
    amps, cents, mids, widths = [], [], [], []
    for f in frames:
        s = np.clip(f.signal, 0.0, None)
        peak = float(s.max())
        y = f.sensor_rows.mean(axis=1)
        order = np.argsort(y)
        lit = s[order] > 0.1 * peak
        # bands = runs of lit rows in readout order; pair them with the pulses in time order
        edges = np.flatnonzero(np.diff(np.concatenate([[0], lit.astype(np.int8), [0]])))
        runs = list(zip(edges[::2], edges[1::2], strict=True))
        pulses = f.pulses[np.argsort(f.pulses[:, 0])]
        if not runs or len(runs) != len(pulses):
            continue
        for (a, b), (p0, w) in zip(runs, pulses, strict=True):
            idx = order[a:b]
            c = float((y[idx] * s[idx]).sum() / s[idx].sum())
            amps.append(peak)
            cents.append(c - (0.5 if readout == "pairs" else 0.0))
            mids.append(p0 + w / 2)
            widths.append(float(s[idx].sum() / peak))
    if not cents:
        raise LedFitError("no frame with a single lit band to start the fit from")
    cents_a, mids_a = np.asarray(cents), np.asarray(mids)
    if lp0 is None:
        if len(cents) < 2 or np.ptp(cents_a) < 2:
            raise LedFitError(
                "give the nominal line period: the scan does not move the band enough to find it"
            )
        lp0 = float(np.polyfit(cents_a, mids_a, 1)[0])
    if exp0 is None:
        exp0 = float(np.median(widths)) * lp0 * (2.0 if readout == "pairs" else 1.0) / 2.0
    amp0 = float(np.percentile(amps, 90))
    off0 = float(np.median(mids_a + exp0 / 2 - lp0 * cents_a))
    return np.array([off0, lp0, exp0, amp0])


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
) -> LedFit:
    """Fit offset0, line period, exposure and LED amplitude to the row profiles of a scan.

    Parameters
    ----------
    frames : list of LedFrame
        From :func:`load_scan`.
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

    Raises
    ------
    LedFitError
        No lit band, saturated band, pulse longer than the exposure, too few frames.
    """
    from scipy.optimize import least_squares

    rejected = list(rejected)
    if not frames:
        reasons = "; ".join(f"{n}: {r}" for n, r in rejected[:5])
        raise LedFitError(f"no usable frames in the scan ({reasons})")
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
    widths = np.concatenate([f.pulses[:, 1] for f in good]) if good else np.zeros(0)
    if exposure_ns is not None and widths.size and widths.max() >= exposure_ns:
        raise LedFitError(
            f"pulse longer than the exposure ({widths.max() / 1e3:.3f} us >= {exposure_ns / 1e3:.3f} us): "
            "no row is then partly lit at both edges in a way that locates the pulse; use a pulse "
            "shorter than the exposure"
        )
    lit = []
    for f in good:
        noise = float(np.median(f.sigma))
        if f.signal.max() > 10 * noise:
            lit.append(f)
        else:
            rejected.append(
                (
                    f.name,
                    f"no lit band (brightest row {f.signal.max():.1f} ADU above bias, noise {noise:.1f} ADU)",
                )
            )
    if not lit:
        raise LedFitError(
            f"no lit band in any of the {len(good)} frames: is the LED on, bright enough, and its "
            "pulse timed inside the exposures?"
        )
    if len(lit) < min_frames:
        raise LedFitError(
            f"only {len(lit)} frame(s) with a lit band; at least {min_frames} are needed"
        )
    edges = [f for f in lit if _has_partial_rows(f)]
    if len(edges) < min_frames:
        raise LedFitError(
            f"only {len(edges)} of {len(lit)} frames have partly lit rows at the band's edges; "
            f"at least {min_frames} are needed to locate the pulse in time. Step the pulse delay "
            "by a fraction of a line period between frames (or use a longer pulse)"
        )
    p0 = _guess(lit, readout, line_period_ns, exposure_ns)
    if widths.size and widths.max() >= p0[2]:
        raise LedFitError(
            f"pulse longer than the exposure ({widths.max() / 1e3:.3f} us >= ~{p0[2] / 1e3:.3f} us)"
        )

    use = [dataclasses.replace(f, signal=f.signal.copy()) for f in lit]
    for _ in range(4):
        res = _solve(least_squares, use, p0, readout)
        # The bias from the dim rows is good to ~1/3 of a dark row's error, which would
        # inflate chi2: re-estimate it from the rows the fitted model calls dark, refit.
        for _pass in range(2):
            if not _refine_bias(use, res.x, readout):
                break
            res = _solve(least_squares, use, res.x, readout)
        chi = _frame_chi2(res.x, use, readout)
        med = float(np.median(chi))
        bad = [f for f, c in zip(use, chi, strict=True) if c > outlier_factor * max(med, 1.0)]
        if not bad or len(use) - len(bad) < min_frames:
            break
        for f, c in zip(use, chi, strict=True):
            if f in bad:
                rejected.append(
                    (f.name, f"residuals stand out: reduced chi2 {c:.1f} vs median {med:.1f}")
                )
        use = [f for f in use if f not in bad]
        p0 = res.x
    x = res.x
    resid = res.fun  # weighted
    dof = max(1, resid.size - x.size)
    red = float(resid @ resid / dof)
    jac = res.jac
    try:
        cov = np.linalg.inv(jac.T @ jac) * max(red, 1.0)
    except np.linalg.LinAlgError:
        raise LedFitError(
            "the fit is degenerate: the pulses do not move the band across rows"
        ) from None
    sig = np.sqrt(np.diag(cov))
    if not np.all(np.isfinite(sig)):
        raise LedFitError(
            "the fit is degenerate: offset0, line period and exposure are not all constrained by this scan"
        )
    amp = float(x[3])
    models = [_predict(x, f, readout) for f in use]
    raw_res = [m - f.signal for m, f in zip(models, use, strict=True)]
    width_ns = float(np.median(np.concatenate([f.pulses[:, 1] for f in use])))
    to_us = width_ns / amp / 1e3 if amp > 0 else float("nan")
    band_res = np.concatenate([r[np.abs(m) > 0] for r, m in zip(raw_res, models, strict=True)])
    return LedFit(
        offset0_us=float(x[0]) / 1e3,
        offset0_sigma_us=float(sig[0]) / 1e3,
        line_period_ns=float(x[1]),
        line_period_sigma_ns=float(sig[1]),
        exposure_us=float(x[2]) / 1e3,
        exposure_sigma_us=float(sig[2]) / 1e3,
        amplitude_adu=amp,
        covariance=cov,
        readout=readout,
        reference=reference,
        frames_used=[f.name for f in use],
        frames_rejected=rejected,
        residual_rms_us=float(np.sqrt(np.mean(band_res**2))) * to_us if band_res.size else 0.0,
        frame_residual_rms_us={
            f.name: float(np.sqrt(np.mean(r**2))) * to_us for f, r in zip(use, raw_res, strict=True)
        },
        reduced_chi2=red,
        nominal_exposure_us=None if exposure_ns is None else exposure_ns / 1e3,
        frames=use,
        params_ns=np.asarray(x, dtype=np.float64),
    )


class _Stacked:
    """All frames of a fit in padded arrays, so the model is one numpy expression."""

    def __init__(self, frames: list[LedFrame], readout: str) -> None:
        k = len(frames)
        r = max(f.sensor_rows.shape[0] for f in frames)
        b = max(f.sensor_rows.shape[1] for f in frames)
        m = max(len(f.pulses) for f in frames)
        self.units = np.zeros((k, r, b))
        self.row_ok = np.zeros((k, r), dtype=bool)
        self.p0 = np.zeros((k, m))
        self.pw = np.ones((k, m))
        self.pulse_ok = np.zeros((k, m))
        self.signal = np.zeros((k, r))
        self.inv_sigma = np.zeros((k, r))
        for i, f in enumerate(frames):
            nr, nb = f.sensor_rows.shape
            self.units[i, :nr, :nb] = _step_units(f.sensor_rows, readout)
            if nb < b:  # pad binned rows by repeating their last sensor row
                self.units[i, :nr, nb:] = self.units[i, :nr, nb - 1 : nb]
            self.row_ok[i, :nr] = True
            self.p0[i, : len(f.pulses)] = f.pulses[:, 0]
            self.pw[i, : len(f.pulses)] = f.pulses[:, 1]
            self.pulse_ok[i, : len(f.pulses)] = 1.0
            self.signal[i, :nr] = f.signal
            self.inv_sigma[i, :nr] = 1.0 / f.sigma

    def predict(self, p: NDArray[np.float64]) -> NDArray[np.float64]:
        off0, lp, exp, amp = p
        end = (off0 + self.units * lp)[:, :, :, None]  # (K, R, b, 1)
        start = end - exp
        p0 = self.p0[:, None, None, :]
        p1 = p0 + self.pw[:, None, None, :]
        ov = np.clip(np.minimum(end, p1) - np.maximum(start, p0), 0.0, None)
        frac = (ov / self.pw[:, None, None, :] * self.pulse_ok[:, None, None, :]).sum(axis=3)
        return amp * frac.mean(axis=2)

    def residuals(self, p: NDArray[np.float64]) -> NDArray[np.float64]:
        return ((self.predict(p) - self.signal) * self.inv_sigma)[self.row_ok]


def _solve(
    least_squares: Any, frames: list[LedFrame], p0: NDArray[np.float64], readout: str
) -> Any:
    stacked = _Stacked(frames, readout)
    lp = abs(p0[1])
    scale = np.array([lp * 0.01, max(lp * 1e-5, 1e-3), lp * 0.01, max(p0[3] * 0.01, 1.0)])
    best = None
    # The overlap model is piecewise linear: start from the guess, and from a few shifted
    # offsets when the first solution does not fit the data.
    for shift in (0.0, 0.25, -0.25, 0.5, -0.5):
        start = p0 + np.array([shift * lp, 0.0, 0.0, 0.0])
        r = least_squares(stacked.residuals, start, x_scale=scale, method="trf", diff_step=1e-9,
                          xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=400)  # fmt: skip
        if best is None or r.cost < best.cost:
            best = r
        if 2 * best.cost / max(1, best.fun.size - 4) < 2.0:
            break
    return best


def _refine_bias(frames: list[LedFrame], p: NDArray[np.float64], readout: str) -> bool:
    """Subtract from each frame the weighted mean of its rows the model predicts dark.

    Returns whether any frame moved by more than a tenth of its dark-row error.
    """
    moved = False
    for f in frames:
        dark = _predict(p, f, readout) == 0.0
        if dark.sum() < 3:
            continue
        w = 1.0 / f.sigma[dark] ** 2
        off = float((f.signal[dark] * w).sum() / w.sum())
        if abs(off) > 0.1 / np.sqrt(w.sum()):
            moved = True
        f.signal -= off
    return moved


def _has_partial_rows(f: LedFrame) -> bool:
    """A row whose signal is clearly between dark and fully lit (10 sigma from both)."""
    peak = float(np.percentile(f.signal, 99.5))
    s = f.signal
    return bool(np.any((s > 10 * f.sigma) & (s < peak - 10 * f.sigma - 0.02 * peak)))


def _frame_chi2(
    p: NDArray[np.float64], frames: list[LedFrame], readout: str
) -> NDArray[np.float64]:
    return np.array(
        [float(np.mean(((_predict(p, f, readout) - f.signal) / f.sigma) ** 2)) for f in frames]
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
    """Residuals vs row and band profiles with the model (matplotlib, imported lazily).

    Returns the figure; writes it to ``path`` when given.
    """
    try:
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - extra not installed
        raise QhytimeError("plots need matplotlib: pip install 'qhytime[plot]'") from exc
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 8))
    for f in fit.frames:
        model = fit.model_profile(f)
        rows = f.sensor_rows.mean(axis=1)
        band = model > 0
        ax1.plot(
            rows[band],
            (f.signal - model)[band] / fit.amplitude_adu * float(f.pulses[0, 1]),
            ".",
            ms=3,
        )
    ax1.axhline(0, color="k", lw=0.5)
    ax1.set_xlabel("sensor row")
    ax1.set_ylabel("residual (ns of pulse overlap)")
    ax1.set_title(
        f"LED fit: offset0 {fit.offset0_us:.4f} us ± {fit.offset0_sigma_us * 1e3:.1f} ns, "
        f"LP {fit.line_period_ns:.4f} ± {fit.line_period_sigma_ns:.4f} ns, "
        f"E {fit.exposure_us:.4f} us", fontsize=9,
    )  # fmt: skip
    step = max(1, len(fit.frames) // max_profiles)
    for f in fit.frames[::step][:max_profiles]:
        rows = f.sensor_rows.mean(axis=1)
        model = fit.model_profile(f)
        lit = np.flatnonzero(model > 0)
        lo, hi = max(0, lit.min() - 3), min(len(rows), lit.max() + 4)
        ax2.plot(rows[lo:hi], f.signal[lo:hi], "o", ms=3)
        ax2.plot(rows[lo:hi], model[lo:hi], "-", lw=1, color=ax2.lines[-1].get_color())
    ax2.set_xlabel("sensor row")
    ax2.set_ylabel("row signal above bias (ADU)")
    ax2.set_title("band profiles (points) and the fitted overlap model (lines)", fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig

"""The LED overlap model and its nuisances: the numerical core of :mod:`qhytime.ledcal`.

A row's exposure window ``[end - E, end]`` with ``end = offset0 + units x LP`` sees the
fraction ``F`` of an LED pulse ``[P, P + W]`` that overlaps it (``../shared/spec/row-timing.md``);
a binned row averages its sensor rows, a pulse train sums its pulses. :class:`_Problem` holds
the rows of a fit padded per frame and gives, for ``theta = (offset0, LP, E, c_1..c_D)``, the
exactly solved LED level of every frame, the weighted residuals and their Jacobian with the
levels projected out (variable projection, Kaufman's form), which is also the Jacobian whose
``J'J`` is the inverse covariance of ``theta`` with the levels free. :func:`_dark_levels`
estimates the bias of every frame, a fixed banding pattern, the offset between full-width
and sampled rows and the row noise from the dark rows, with the noise of each estimate.

Internal: the public face is :func:`qhytime.ledcal.fit_led` and
:func:`qhytime.ledplan.plan_scan`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qhytime.ledscan import LedFrame

# -- the overlap model ------------------------------------------------------------------------


def _step_units(sensor_rows: NDArray[np.int64], readout: str) -> NDArray[np.float64]:
    units = 2 * (sensor_rows // 2) if readout == "pairs" else sensor_rows
    return units.astype(np.float64)


def _unit_ns(lp: float, readout: str) -> float:
    """A readout unit: two rows (pairs) or one (2CMS)."""
    return 2.0 * lp if readout == "pairs" else lp


def _frac_rows(tau: NDArray[np.float64], frame: LedFrame, readout: str) -> NDArray[np.float64]:
    """Fraction of the pulse(s) each row of one frame sees (mean over a binned row's rows)."""
    units = _step_units(frame.sensor_rows, readout)[None]
    return _overlap(tau, units, frame.pulses[None, :, 0], frame.pulses[None, :, 1],
                    np.ones((1, len(frame.pulses))))[0]  # fmt: skip


def _overlap(
    tau: NDArray[np.float64], units: NDArray[np.float64], p0: NDArray[np.float64],
    pw: NDArray[np.float64], pok: NDArray[np.float64], derivs: bool = False,
) -> Any:  # fmt: skip
    """Fraction F (K, R) of the pulses each row sees, and optionally dF/d(offset0, LP, E).

    ``units`` (K, R, b) are the readout units of each sensor row; ``p0``, ``pw``, ``pok``
    (K, M) the pulse starts, widths and which are real. A row's window is
    ``[end - E, end]`` with ``end = offset0 + units * LP``.
    """
    off, lp, exp = float(tau[0]), float(tau[1]), float(tau[2])
    end = (off + units * lp)[..., None]  # (K, R, b, 1)
    start = end - exp
    q0 = p0[:, None, None, :]
    q1 = q0 + pw[:, None, None, :]
    hi = np.minimum(end, q1)
    lo = np.maximum(start, q0)
    ov = hi - lo
    pos = ov > 0.0
    inv_w = (pok / pw)[:, None, None, :]
    b = units.shape[2]
    frac = (np.where(pos, ov, 0.0) * inv_w).sum(axis=3).sum(axis=2) / b
    if not derivs:
        return frac
    a = end < q1
    c = start > q0
    g_end = ((pos & a).astype(np.float64) - (pos & c)) * inv_w  # d ov / d end
    d_end = g_end.sum(axis=3)
    d_off = d_end.sum(axis=2) / b
    d_lp = (d_end * units).sum(axis=2) / b
    d_exp = ((pos & c) * inv_w).sum(axis=3).sum(axis=2) / b
    return frac, np.stack([d_off, d_lp, d_exp])


@dataclass
class _Problem:
    """The rows of a fit, padded per frame: data, weights, units, light basis, pulses."""

    rows: NDArray[np.intp]  # (K, Rw) row index in each frame (padding repeats a row)
    ok: NDArray[np.bool_]  # (K, Rw) real rows
    units: NDArray[np.float64]  # (K, Rw, b)
    basis: NDArray[np.float64]  # (D, K, Rw) light polynomials P_1..P_D
    p0: NDArray[np.float64]  # (K, M)
    pw: NDArray[np.float64]
    pok: NDArray[np.float64]
    z: NDArray[np.float64]  # (K, Rw) data / sigma (0 on padding)
    w: NDArray[np.float64]  # (K, Rw) 1 / sigma (0 on padding)

    @property
    def n_obs(self) -> int:
        return int(self.ok.sum())

    def light(self, c: NDArray[np.float64]) -> NDArray[np.float64]:
        if c.size == 0:
            return np.ones(self.ok.shape)
        return 1.0 + np.tensordot(c, self.basis, axes=(0, 0))

    def solve_levels(
        self, theta: NDArray[np.float64], derivs: bool = False
    ) -> tuple[Any, ...]:
        """LED levels (exact least squares for fixed theta), weighted residuals, and (with
        ``derivs``) the Jacobian of the residuals with the levels projected out."""
        tau, c = theta[:3], theta[3:]
        g = self.light(c)
        if derivs:
            frac, dfrac = _overlap(tau, self.units, self.p0, self.pw, self.pok, True)
        else:
            frac = _overlap(tau, self.units, self.p0, self.pw, self.pok)
        phi = self.w * g * frac
        pp = np.einsum("kr,kr->k", phi, phi)
        pz = np.einsum("kr,kr->k", phi, self.z)
        amp = np.where(pp > 0, pz / np.where(pp > 0, pp, 1.0), 0.0)
        res = amp[:, None] * phi - self.z
        if not derivs:
            return amp, res, phi
        cols = [self.w * g * dfrac[j] for j in range(3)]
        cols += [self.w * self.basis[j] * frac for j in range(c.size)]
        dphi = np.stack(cols)  # (P, K, Rw)
        # Kaufman: J = A (I - phi phi' / phi'phi) dphi
        proj = np.einsum("pkr,kr->pk", dphi, phi) / np.where(pp > 0, pp, 1.0)
        jac = amp[None, :, None] * (dphi - proj[:, :, None] * phi[None])
        return amp, res, phi, jac

    def cost_grid(self, offsets: NDArray[np.float64], lp: float, exp: float) -> NDArray[np.float64]:
        """Chi2 (LED levels solved for) at each offset0 of a grid, light flat."""
        out = np.empty(offsets.size)
        zz = np.einsum("kr,kr->k", self.z, self.z)
        for i, off in enumerate(offsets):
            frac = _overlap(np.array([off, lp, exp]), self.units, self.p0, self.pw, self.pok)
            phi = self.w * frac
            pp = np.einsum("kr,kr->k", phi, phi)
            pz = np.einsum("kr,kr->k", phi, self.z)
            gain = np.where(pp > 0, np.maximum(pz, 0.0) ** 2 / np.where(pp > 0, pp, 1.0), 0.0)
            out[i] = float((zz - gain).sum())
        return out


@dataclass
class _Light:
    """The light profile's coordinates: Legendre polynomials of the sensor row over the range
    the bands cover."""

    lo: float
    hi: float
    degree: int
    coef: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))

    def basis(self, sensor_mean: NDArray[np.float64]) -> NDArray[np.float64]:
        """``(D, ...)``: P_1..P_D at the rows (clipped to the range)."""
        if self.degree == 0:
            return np.zeros((0, *np.shape(sensor_mean)))
        v = np.clip(2.0 * (sensor_mean - self.lo) / max(self.hi - self.lo, 1.0) - 1.0, -1.0, 1.0)
        van = np.polynomial.legendre.legvander(v, self.degree)
        return np.moveaxis(van[..., 1:], -1, 0)

    def __call__(self, frame: LedFrame) -> NDArray[np.float64]:
        b = self.basis(frame.sensor_rows.mean(axis=1))
        return 1.0 + (np.tensordot(self.coef, b, axes=(0, 0)) if self.coef.size else 0.0)


def _problem(
    frames: list[LedFrame],
    rows: list[NDArray[np.intp]],
    data: list[NDArray[np.float64]],
    sig: list[NDArray[np.float64]],
    readout: str,
    light: _Light,
) -> _Problem:
    k = len(frames)
    rw = max(1, max(len(r) for r in rows))
    b = max(f.sensor_rows.shape[1] for f in frames)
    m = max(1, max(len(f.pulses) for f in frames))
    idx = np.zeros((k, rw), dtype=np.intp)
    ok = np.zeros((k, rw), dtype=bool)
    units = np.zeros((k, rw, b))
    ymean = np.zeros((k, rw))
    p0 = np.zeros((k, m))
    pw = np.ones((k, m))
    pok = np.zeros((k, m))
    z = np.zeros((k, rw))
    w = np.zeros((k, rw))
    for i, (f, r) in enumerate(zip(frames, rows, strict=True)):
        n = len(r)
        rr = np.concatenate([r, np.full(rw - n, r[-1] if n else 0, dtype=np.intp)])
        idx[i], ok[i, :n] = rr, True
        u = _step_units(f.sensor_rows[rr], readout)
        nb = u.shape[1]
        units[i, :, :nb] = u
        if nb < b:  # pad binned rows by repeating their last sensor row
            units[i, :, nb:] = u[:, nb - 1 : nb]
        ymean[i] = f.sensor_rows[rr].mean(axis=1)
        npl = len(f.pulses)
        p0[i, :npl], pw[i, :npl], pok[i, :npl] = f.pulses[:, 0], f.pulses[:, 1], 1.0
        w[i, :n] = 1.0 / sig[i][r]
        z[i, :n] = data[i][r] * w[i, :n]
    return _Problem(rows=idx, ok=ok, units=units, basis=light.basis(ymean), p0=p0, pw=pw,
                    pok=pok, z=z, w=w)  # fmt: skip


# -- bias, banding and row noise from the dark rows ----------------------------------------


@dataclass
class _Dark:
    bias: NDArray[np.float64]  # (K,)
    band: NDArray[np.float64]  # (R,)
    delta: float  # full-width rows minus sampled rows
    row_var: float
    band_var: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))  # its noise
    bias_var: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    delta_var: float = 0.0

    def banding_rms(self) -> float:
        """Rms of the banding pattern, its estimation noise taken out."""
        has = self.band != 0
        if not has.any():
            return 0.0
        return math.sqrt(max(0.0, float(np.mean(self.band[has] ** 2 - self.band_var[has]))))

    def correct(self, frames: list[LedFrame]) -> tuple[list[NDArray[np.float64]], list[NDArray[np.float64]]]:
        """Row signals above bias and banding, and their sigmas: pixel noise, row noise and
        the noise of the bias and banding subtracted (which matters where the pixel noise
        is small: faint partly lit rows measured over the full width)."""
        data, sig = [], []
        for i, f in enumerate(frames):
            full = np.ones(f.signal.shape, bool) if f.full is None else f.full
            n = f.signal.shape[0]
            data.append(f.signal - self.bias[i] - self.band[:n] - self.delta * full)
            extra = self.row_var + self.bias_var[i] + self.band_var[:n] + self.delta_var * full
            sig.append(np.sqrt(f.sigma**2 + extra))
        return data, sig


def _dark_levels(
    frames: list[LedFrame], dark: list[NDArray[np.bool_]], banding: bool, clip: float = 5.0
) -> _Dark:
    """Bias per frame, banding per row, the full-vs-sampled offset and the row-noise variance,
    by alternating weighted means over the dark rows (outliers clipped)."""
    k = len(frames)
    r = max(f.signal.shape[0] for f in frames)
    s = np.zeros((k, r))
    v = np.ones((k, r))
    full = np.zeros((k, r), bool)
    use = np.zeros((k, r), bool)
    for i, f in enumerate(frames):
        n = f.signal.shape[0]
        s[i, :n], v[i, :n] = f.signal, f.sigma**2
        full[i, :n] = True if f.full is None else f.full
        use[i, :n] = dark[i]
    with_delta = bool((use & full).sum() >= 3 and (use & ~full).sum() >= 3)
    # robust start: medians
    bias = np.array([np.median(s[i, use[i]]) if use[i].any() else 0.0 for i in range(k)])
    band = np.zeros(r)
    delta, row_var = 0.0, 0.0
    keep = use.copy()
    for _ in range(8):
        wt = keep / (v + row_var)
        e = s - band[None] - delta * full
        sw = wt.sum(axis=1)
        bias = np.where(sw > 0, (wt * e).sum(axis=1) / np.where(sw > 0, sw, 1.0), bias)
        if banding and k >= 4:
            e = s - bias[:, None] - delta * full
            cw = wt.sum(axis=0)
            nb = np.where(cw > 0, (wt * e).sum(axis=0) / np.where(cw > 0, cw, 1.0), 0.0)
            has = (keep.sum(axis=0) >= 3)
            nb = np.where(has, nb, 0.0)
            shift = float((nb * cw).sum() / max(cw.sum(), 1e-300)) if has.any() else 0.0
            band = np.where(has, nb - shift, 0.0)
            bias = bias + shift
        if with_delta:
            e = s - bias[:, None] - band[None]
            wf = wt * full
            delta = float((wf * e).sum() / max(wf.sum(), 1e-300))
        res = s - bias[:, None] - band[None] - delta * full
        n_obs = int(keep.sum())
        n_par = k + (int((keep.sum(axis=0) >= 3).sum()) if banding and k >= 4 else 0) + with_delta
        scale = n_obs / max(n_obs - n_par, 1)
        new_var = max(0.0, float(((res**2 - v) * keep).sum() / max(n_obs, 1)) * scale)
        new_keep = use & (np.abs(res) <= clip * np.sqrt(v + new_var))
        done = np.array_equal(new_keep, keep) and abs(new_var - row_var) <= 1e-3 * (row_var + 1e-6)
        keep, row_var = new_keep, new_var
        if done:
            break
    wt = keep / (v + row_var)
    cw, sw = wt.sum(axis=0), wt.sum(axis=1)
    band_var = np.where(band != 0, 1.0 / np.where(cw > 0, cw, 1.0), 0.0)
    if banding and k >= 4 and (band != 0).any():
        # rows dark in too few frames to measure their banding: it is unknown noise there
        has = band != 0
        rms2 = max(0.0, float(np.mean(band[has] ** 2 - band_var[has])))
        band_var = np.where(has, band_var, rms2)
    bias_var = np.where(sw > 0, 1.0 / np.where(sw > 0, sw, 1.0), 0.0)
    wf = float((wt * full).sum())
    delta_var = 1.0 / wf if with_delta and wf > 0 else 0.0
    return _Dark(bias=bias, band=band, delta=delta, row_var=row_var, band_var=band_var,
                 bias_var=bias_var, delta_var=delta_var)  # fmt: skip


def _dilate(mask: NDArray[np.bool_], n: int) -> NDArray[np.bool_]:
    out = mask.copy()
    for k in range(1, n + 1):
        out[k:] |= mask[:-k]
        out[:-k] |= mask[k:]
    return out


def _lit_rows(d: NDArray[np.float64], s: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Rows clearly lit in one frame: 5 sigma above the dark level and 2 % of its peak."""
    peak = float(d.max()) if d.size else 0.0
    return (d > 5.0 * s) & (d > 0.02 * peak)

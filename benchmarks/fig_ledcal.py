"""The robust LED calibration fit against the bare row means of the same stack."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks._core import Context, Result
from benchmarks._timing import alternate, traced_peak_mib
from qhytime.ledcal import fit_led, load_scan
from qhytime.readers import ArrayReader
from qhytime.simulate import CameraSim, LedFaults, pulse_table

LP_NOM = 43194.0


def ledcal(ctx: Context) -> Result:
    """Everything from 100 frames of 9600x200 (with the faults of real scans,
    ``LedFaults.typical``) to the fit (blocks, robust row profiles, bias and banding, grid
    start, least squares and covariance), against ``stack.mean(axis=2)``: the row means any
    fit must take at least once. The accuracy against the simulator's truth is in the notes."""
    n, w, h = ctx.size(100, 20), 9600, 200
    sim = CameraSim(width=w, height=h, readout="pairs", lp_ppm=12.0, exposure_us=8 * LP_NOM / 1e3,
                    offset0_us=1998.921, seed=1)  # fmt: skip
    pulses = sim.led_scan_pulses(n, 10.0)
    plist = pulse_table(pulses)
    exp_ns = sim.exposure_us * 1e3
    stack = sim.led_fault_stack(pulses, LedFaults.typical(1))[0]
    out: dict[str, Any] = {}

    def baseline() -> None:
        stack.mean(axis=2, dtype=np.float64)

    def ours() -> None:
        frames, rejected, _ = load_scan([ArrayReader(stack)], pulses=plist)
        out["fit"] = fit_led(frames, readout="pairs", exposure_ns=exp_ns,  # type: ignore[arg-type]
                             line_period_ns=LP_NOM, rejected=rejected)  # fmt: skip

    tb, to = alternate(baseline, ours, ctx.reps(3, 1))
    fit = out["fit"]
    err_o0_ns = (fit.offset0_us - sim.offset0_us) * 1e3
    err_lp_ns = fit.line_period_ns - sim.true_line_period_ns
    return Result(
        name="ledcal", title=f"LED fit, {n} frames {w}x{h} (faulty scan)",
        baseline_label="bare numpy row means", baseline=tb, qhytime=to, target=4.0,
        target_text="<= 4x", peak_mib=traced_peak_mib(ours),
        baseline_peak_mib=traced_peak_mib(baseline), memory="tracemalloc (the stack itself, "
        f"{stack.nbytes / 2**20:.0f} MiB, is not counted)",
        details={"offset0_error_ns": err_o0_ns, "offset0_sigma_ns": fit.offset0_sigma_us * 1e3,
                 "line_period_error_ns": err_lp_ns, "line_period_sigma_ns": fit.line_period_sigma_ns,
                 "frames_used": len(fit.frames_used), "frames_rejected": len(fit.frames_rejected)},
        notes=[f"offset0 {err_o0_ns:+.3f} ns from the truth (sigma {fit.offset0_sigma_us * 1e3:.3f} ns), "
               f"LP {err_lp_ns:+.5f} ns (sigma {fit.line_period_sigma_ns:.5f} ns); "
               f"{len(fit.frames_used)} frames used, {len(fit.frames_rejected)} rejected"],
    )  # fmt: skip

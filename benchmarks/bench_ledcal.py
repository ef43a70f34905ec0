"""Benchmark: LED calibration fit of 100 frames of 9600x200 (pairs), against a bare baseline.

The baseline is the bare numpy work any fit must do at least once: the row means of the same
stack. Frames are simulated first (not timed). Prints the fit's time, its ratio to the
baseline, and its accuracy against the simulator's truth.

    python benchmarks/bench_ledcal.py [--frames 100] [--width 9600] [--height 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from qhytime.ledcal import fit_led, load_scan
from qhytime.readers import ArrayReader
from qhytime.simulate import CameraSim, pulse_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--width", type=int, default=9600)
    ap.add_argument("--height", type=int, default=200)
    ap.add_argument("--readout", choices=["pairs", "2cms"], default="pairs")
    args = ap.parse_args()
    sim = CameraSim(width=args.width, height=args.height, readout=args.readout, lp_ppm=12.0,
                    exposure_us=(8 if args.readout == "pairs" else 4) * 43.194, offset0_us=1998.921, seed=1)  # fmt: skip
    pulses = sim.led_scan_pulses(args.frames, 10.0)
    stack = sim.led_stack(pulses)
    plist = pulse_table(pulses)

    load_scan(
        [ArrayReader(stack[:1])], pulses={"<array>#0": plist["<array>#0"]}
    )  # imports, not timed

    t0 = time.perf_counter()
    _ = stack.mean(axis=2, dtype=np.float64)
    t_base = time.perf_counter() - t0

    t0 = time.perf_counter()
    frames, rej, _ = load_scan([ArrayReader(stack)], pulses=plist)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit = fit_led(
        frames,
        readout=args.readout,
        exposure_ns=sim.exposure_us * 1e3,
        line_period_ns=43194.0,
        rejected=rej,
    )
    t_fit = time.perf_counter() - t0
    total = t_load + t_fit
    print(f"LED fit of {args.frames} frames of {args.width}x{args.height} ({args.readout})")
    print(f"  baseline numpy row means of the stack: {t_base:7.3f} s")
    print(f"  qhytime row profiles (load_scan):      {t_load:7.3f} s")
    print(f"  qhytime least-squares fit (fit_led):   {t_fit:7.3f} s")
    print(f"  total {total:.3f} s, ratio to baseline {total / t_base:.1f}x")
    print(
        f"  offset0 error {(fit.offset0_us - sim.offset0_us) * 1e3:+.3f} ns (sigma {fit.offset0_sigma_us * 1e3:.3f} ns), "
        f"LP error {fit.line_period_ns - sim.true_line_period_ns:+.5f} ns (sigma {fit.line_period_sigma_ns:.5f}), "
        f"exposure error {(fit.exposure_us - sim.exposure_us) * 1e3:+.3f} ns"
    )


if __name__ == "__main__":
    main()

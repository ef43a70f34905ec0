"""Pull study of the LED fit on full simulated images (not a test; slow).

For each noise seed, simulate a 50-frame scan of 9600-wide strips (LP scaled by +/-20 ppm,
pairs and 2CMS), fit it, and collect error / sigma of offset0, line period and exposure.
Prints the error bounds reached and the standard deviation of the pulls.

    python benchmarks/led_pulls.py [--seeds 100] [--height 40]
"""

from __future__ import annotations

import argparse

import numpy as np

from qhytime.ledcal import fit_led, load_scan
from qhytime.readers import ArrayReader
from qhytime.simulate import CameraSim, pulse_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--height", type=int, default=40)
    args = ap.parse_args()
    for readout, ppm in (("pairs", 20.0), ("2cms", -20.0)):
        errs, pulls = [], []
        for seed in range(args.seeds):
            sim = CameraSim(width=9600, height=args.height, readout=readout, lp_ppm=ppm,
                            exposure_us=(8 if readout == "pairs" else 4) * 43.194, offset0_us=1998.921, seed=seed)  # fmt: skip
            pulses = sim.led_scan_pulses(50, 10.0, seed=0)
            stack = sim.led_stack(pulses)
            plist = pulse_table(pulses)
            frames, rej, _ = load_scan([ArrayReader(stack)], pulses=plist)
            fit = fit_led(
                frames,
                readout=readout,
                exposure_ns=sim.exposure_us * 1e3,
                line_period_ns=43194.0,
                rejected=rej,
            )
            e = np.array([(fit.offset0_us - sim.offset0_us) * 1e3, fit.line_period_ns - sim.true_line_period_ns,
                          (fit.exposure_us - sim.exposure_us) * 1e3])  # fmt: skip
            s = np.array(
                [fit.offset0_sigma_us * 1e3, fit.line_period_sigma_ns, fit.exposure_sigma_us * 1e3]
            )
            errs.append(e)
            pulls.append(e / s)
        errs_a, pulls_a = np.array(errs), np.array(pulls)
        print(f"{readout} ({ppm:+.0f} ppm), {args.seeds} seeds, 50 frames of 9600x{args.height}:")
        print(
            f"  max |error|: offset0 {np.abs(errs_a[:, 0]).max():.3f} ns, LP {np.abs(errs_a[:, 1]).max():.4f} ns, exposure {np.abs(errs_a[:, 2]).max():.3f} ns"
        )
        print(
            f"  pull std:    offset0 {pulls_a[:, 0].std(ddof=1):.3f}, LP {pulls_a[:, 1].std(ddof=1):.3f}, exposure {pulls_a[:, 2].std(ddof=1):.3f}"
        )
        print(
            f"  pull mean:   offset0 {pulls_a[:, 0].mean():+.3f}, LP {pulls_a[:, 1].mean():+.3f}, exposure {pulls_a[:, 2].mean():+.3f}"
        )


if __name__ == "__main__":
    main()

"""Pull study of the LED fit on simulated scans with the faults of real ones (not a test; slow).

For each seed, simulate a scan of 60 frames of 9600-wide strips (LP off nominal by +/-20 ppm,
pairs and 2CMS) with the faults of issue 12 (``LedFaults.typical``: LED drifting +-10 % with
2 % jitter, light +-15 %, bias drifting +-15 ADU with 3 ADU banding and 0.3 ADU row noise,
4 cosmic rays per frame, 2-3 saturated and 1-2 band-less frames), fit it, and collect
error / sigma of offset0, line period and exposure. Prints, per readout: how many scans meet
the issue's bounds, the largest errors and sigmas, whether every saturated and band-less
frame was rejected (and frames rejected besides), and the mean and standard deviation of
the pulls.

    python benchmarks/led_pulls.py [--seeds 50] [--first-seed 0] [--height 40] [--readouts pairs,2cms]
                                   [--clean] [--fast]

``--clean`` drops the faults (the clean-scan study); ``--fast`` draws row means from their
sampling distribution (no pixels: no cosmic rays, no saturation) instead of full images.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from qhytime.errors import LedFitError
from qhytime.ledcal import LedFrame, fit_led, load_scan
from qhytime.readers import ArrayReader
from qhytime.simulate import CameraSim, LedFaults, pulse_table

LP_NOM = 43194.0


def one_scan(readout: str, seed: int, height: int, frames: int, faults: bool, fast: bool) -> dict:
    ppm = 20.0 if readout == "pairs" else -20.0
    exp = (8 if readout == "pairs" else 4) * LP_NOM / 1e3
    sim = CameraSim(width=9600, height=height, readout=readout, lp_ppm=ppm, exposure_us=exp,
                    offset0_us=1998.921, seed=seed)  # fmt: skip
    pulses = sim.led_scan_pulses(frames, 10.0, seed=seed)
    f = LedFaults.typical(seed) if faults else LedFaults(seed=seed)
    if fast:
        means, sigmas, truth = sim.led_fault_row_means(pulses, f, seed=seed)
        sensor = sim.sensor_rows()
        scan = [LedFrame(name=f"<array>#{i}", sensor_rows=sensor, signal=means[i], sigma=sigmas[i],
                         pulses=np.array([[p.start_ns, p.width_ns] for p in pulses[i]]))
                for i in range(frames)]  # fmt: skip
        rej: list[tuple[str, str]] = []
    else:
        stack, truth = sim.led_fault_stack(pulses, f)
        scan, rej, _ = load_scan([ArrayReader(stack)], pulses=pulse_table(pulses))
    fit = fit_led(scan, readout=readout, exposure_ns=exp * 1e3, line_period_ns=LP_NOM, rejected=rej)  # type: ignore[arg-type]
    err = np.array([(fit.offset0_us - sim.offset0_us) * 1e3, fit.line_period_ns - sim.true_line_period_ns,
                    (fit.exposure_us - sim.exposure_us) * 1e3])  # fmt: skip
    sig = np.array([fit.offset0_sigma_us * 1e3, fit.line_period_sigma_ns, fit.exposure_sigma_us * 1e3])
    reasons = dict(fit.frames_rejected)
    bad = {f"<array>#{i}": "saturated" for i in truth.saturated}
    bad |= {f"<array>#{i}": "no lit band" for i in truth.bandless}
    caught = all(n in reasons and reasons[n].startswith(w) for n, w in bad.items())
    extra = sorted(set(reasons) - set(bad))
    ok = (abs(err[0]) <= max(3 * sig[0], 2.0) and sig[0] <= 5.0
          and abs(err[1]) <= max(3 * sig[1], 0.02) and sig[1] <= 0.02
          and abs(err[2]) <= 5.0 and caught)  # fmt: skip
    return {"err": err, "sig": sig, "caught": caught, "extra": extra, "ok": ok,
            "chi2": fit.reduced_chi2, "faulty": len(bad)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--height", type=int, default=40)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--clean", action="store_true", help="no faults")
    ap.add_argument("--fast", action="store_true", help="row-mean sampler instead of images")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--readouts", default="pairs,2cms")
    args = ap.parse_args()
    kind = "clean" if args.clean else "faulty"
    for readout in args.readouts.split(","):
        t0 = time.perf_counter()
        rows, errors = [], []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            try:
                rows.append(one_scan(readout, seed, args.height, args.frames, not args.clean, args.fast))
            except LedFitError as exc:
                errors.append(f"seed {seed}: {exc}")
        dt = time.perf_counter() - t0
        print(f"{readout}: {args.seeds} {kind} scans of {args.frames} frames of 9600x{args.height}"
              f"{' (row-mean sampler)' if args.fast else ''}, {dt:.0f} s")  # fmt: skip
        for e in errors:
            print(f"  FIT ERROR {e}")
        if not rows:
            continue
        err = np.array([r["err"] for r in rows])
        sig = np.array([r["sig"] for r in rows])
        pull = err / sig
        print(f"  within the issue's bounds: {sum(r['ok'] for r in rows)}/{len(rows)}; every "
              f"saturated/band-less frame rejected with its reason: {sum(r['caught'] for r in rows)}/{len(rows)} "
              f"({sum(r['faulty'] for r in rows)} such frames)")  # fmt: skip
        extra = sum(len(r["extra"]) for r in rows)
        print(f"  other frames rejected: {extra} in {sum(bool(r['extra']) for r in rows)} scans; "
              f"reduced chi2 {np.median([r['chi2'] for r in rows]):.3f} median, {max(r['chi2'] for r in rows):.3f} max")  # fmt: skip
        print(f"  max |error|: offset0 {np.abs(err[:, 0]).max():.3f} ns, LP {np.abs(err[:, 1]).max():.5f} ns, "
              f"exposure {np.abs(err[:, 2]).max():.3f} ns")  # fmt: skip
        print(f"  max sigma:   offset0 {sig[:, 0].max():.3f} ns, LP {sig[:, 1].max():.5f} ns, "
              f"exposure {sig[:, 2].max():.3f} ns")  # fmt: skip
        print(f"  pull std:    offset0 {pull[:, 0].std(ddof=1):.3f}, LP {pull[:, 1].std(ddof=1):.3f}, "
              f"exposure {pull[:, 2].std(ddof=1):.3f}")  # fmt: skip
        print(f"  pull mean:   offset0 {pull[:, 0].mean():+.3f}, LP {pull[:, 1].mean():+.3f}, "
              f"exposure {pull[:, 2].mean():+.3f}")  # fmt: skip


if __name__ == "__main__":
    main()

"""The LED scan plan: delays that step evenly through the readout unit's phase, partly lit rows
in every frame, and a predicted sigma that a simulated scan of the schedule reaches."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qhytime.errors import LedFitError
from qhytime.ledcal import LedFrame, _frac_rows, fit_led, load_scan
from qhytime.ledplan import phase_coverage, plan_scan, shortest_full_pulse_us
from qhytime.readers import ArrayReader
from qhytime.simulate import CameraSim, LedFaults, LedPulse, pulse_table

LP = 43194.0
U_PAIRS = 2 * LP / 1e3


def test_default_plan_lights_partial_rows_in_every_frame_and_covers_the_phase() -> None:
    plan = plan_scan(exposure_us=4 * U_PAIRS, line_period_ns=LP, readout="pairs", frames=48, rows=120)
    assert plan.pulse_width_us == pytest.approx(1.05 * U_PAIRS, abs=1e-3)
    assert plan.coverage == 1.0 and plan.partial.all() and not plan.warnings
    assert np.sort(plan.phase) == pytest.approx((np.arange(48) + 0.5) / 48)
    # the pulse starts' phase in the unit really is the one listed
    x = np.mod(plan.offset0_us - plan.pulse_start_us, plan.unit_us) / plan.unit_us
    assert x == pytest.approx(plan.phase, abs=1e-9)
    # bands inside the strip with 2 units of margin, spread over it
    assert plan.band_row.min() >= 4 and plan.band_row.max() <= 120 - 4 - 2 * 6
    assert np.ptp(plan.band_row) > 60


def test_every_frame_of_the_schedule_has_partly_lit_rows_whatever_offset0_is() -> None:
    plan = plan_scan(exposure_us=4 * U_PAIRS, line_period_ns=LP, readout="pairs", frames=30, rows=120)
    for shift_us in (0.0, 13.7, 41.0, 80.2):
        sim = CameraSim(width=100, height=120, exposure_us=plan.exposure_us, readout="pairs",
                        offset0_us=plan.offset0_us + shift_us)  # fmt: skip
        sensor = sim.sensor_rows()
        for p in plan.pulse_start_us:
            f = LedFrame("", sensor, np.zeros(120), np.ones(120),
                         np.array([[p * 1e3, plan.pulse_width_us * 1e3]]))  # fmt: skip
            frac = _frac_rows(np.array([sim.offset0_us * 1e3, LP, plan.exposure_us * 1e3]), f, "pairs")
            assert np.any((frac > 0.0) & (frac < 1.0))


def test_coverage_and_the_shortest_pulse() -> None:
    u = U_PAIRS
    assert phase_coverage(4 * u, 10.0, u) == pytest.approx(10.0 / u)  # one window
    assert phase_coverage(4.25 * u, 10.0, u) == pytest.approx(20.0 / u)  # two windows
    assert phase_coverage(4.5 * u, u / 2, u) == 1.0
    assert shortest_full_pulse_us(4 * u, u) == pytest.approx(u)
    assert shortest_full_pulse_us(4.5 * u, u) == pytest.approx(u / 2)
    assert shortest_full_pulse_us(4.25 * u, u) == pytest.approx(0.75 * u)
    assert shortest_full_pulse_us(4 * LP / 1e3, LP / 1e3) == pytest.approx(LP / 1e3)


def test_whole_units_with_a_short_pulse_warns() -> None:
    plan = plan_scan(exposure_us=4 * U_PAIRS, line_period_ns=LP, readout="pairs", frames=60,
                     pulse_width_us=10.0)  # fmt: skip
    assert len(plan.warnings) == 1 and "whole number (4) of readout units" in plan.warnings[0]
    assert 50 <= (~plan.partial).sum() <= 56  # ~ 1 - 10/86.4 of 60
    # half a unit over: a pulse of half a unit lights partial rows everywhere, no warning
    plan = plan_scan(exposure_us=4.5 * U_PAIRS, line_period_ns=LP, readout="pairs", frames=60,
                     pulse_width_us=U_PAIRS / 2 + 0.5)  # fmt: skip
    assert plan.partial.all() and not plan.warnings


@pytest.mark.parametrize(
    "kw",
    [
        {"exposure_us": 0.0}, {"exposure_us": math.nan}, {"line_period_ns": -1.0},
        {"frames": 2}, {"rows": 8}, {"pulse_width_us": 500.0}, {"readout": "quad"},
        {"names": "{i}{j}"}, {"names": "a.fits"}, {"offset0_us": math.inf}, {"binning": 0},
    ],
)  # fmt: skip
def test_bad_plan_inputs_are_clear_errors(kw: dict) -> None:
    args = {"exposure_us": 4 * U_PAIRS, "line_period_ns": LP, "readout": "pairs", **kw}
    with pytest.raises(LedFitError):
        plan_scan(**args)


def _plan_and_sim(readout: str, shift_us: float, **kw: float) -> tuple:
    exp = (4.0 if readout == "pairs" else 4.5) * (U_PAIRS if readout == "pairs" else LP / 1e3)
    plan = plan_scan(exposure_us=exp, line_period_ns=LP, readout=readout, frames=60, rows=60,  # type: ignore[arg-type]
                     width_px=9600, read_noise_adu=3.0, **kw)  # fmt: skip
    sim = CameraSim(width=9600, height=60, exposure_us=exp, readout=readout,  # type: ignore[arg-type]
                    offset0_us=plan.offset0_us + shift_us, lp_ppm=15.0, seed=9)  # fmt: skip
    pulses = [[LedPulse(p * 1e3, plan.pulse_width_us * 1e3)] for p in plan.pulse_start_us]
    return plan, sim, pulses


@pytest.mark.parametrize(("readout", "shift_us"), [("pairs", 17.3), ("2cms", -8.1)])
def test_a_simulated_scan_of_the_plan_reaches_the_predicted_sigma(readout: str, shift_us: float) -> None:
    """Full images of the plan's schedule (offset0 off the plan's nominal): the fit's sigma and
    its error against the truth are those the plan predicted (within 30 %)."""
    plan, sim, pulses = _plan_and_sim(readout, shift_us)
    frames, rej, _ = load_scan([ArrayReader(sim.led_stack(pulses))], pulses=pulse_table(pulses))
    fit = fit_led(frames, readout=readout, exposure_ns=sim.exposure_us * 1e3, line_period_ns=LP,  # type: ignore[arg-type]
                  rejected=rej)  # fmt: skip
    assert fit.offset0_sigma_us * 1e3 == pytest.approx(plan.sigma_offset0_ns, rel=0.3)
    assert fit.line_period_sigma_ns == pytest.approx(plan.sigma_line_period_ns, rel=0.3)
    assert abs(fit.offset0_us - sim.offset0_us) * 1e3 <= 4 * plan.sigma_offset0_ns


@pytest.mark.parametrize("readout", ["pairs", "2cms"])
def test_the_scatter_over_noise_seeds_is_the_predicted_sigma(readout: str) -> None:
    """Row means drawn 40 times (with drift, uneven light, banding and row noise): the standard
    deviation of the offset0 errors is the predicted sigma within 30 %."""
    plan, sim, pulses = _plan_and_sim(readout, 23.0, row_noise_adu=0.3)
    errs = []
    for seed in range(40):
        faults = LedFaults(led_drift=0.1, led_jitter=0.02, illumination=0.15, bias_drift_adu=15.0,
                           banding_adu=3.0, row_noise_adu=0.3, seed=seed)  # fmt: skip
        means, sigmas, _ = sim.led_fault_row_means(pulses, faults, seed=seed)
        frames = [LedFrame(f"f{i}", sim.sensor_rows(), means[i], sigmas[i],
                           np.array([[p.start_ns, p.width_ns] for p in pl]))
                  for i, pl in enumerate(pulses)]  # fmt: skip
        fit = fit_led(frames, readout=readout, exposure_ns=sim.exposure_us * 1e3, line_period_ns=LP)  # type: ignore[arg-type]
        errs.append((fit.offset0_us - sim.offset0_us) * 1e3)
    assert np.std(errs, ddof=1) == pytest.approx(plan.sigma_offset0_ns, rel=0.3)

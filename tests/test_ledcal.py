"""LED calibration: accuracy on simulated and reference scans, honest sigmas, clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from qhytime.cli import main
from qhytime.errors import LedFitError
from qhytime.ledcal import LedFrame, fit_led, load_scan, pps_pulses, read_pulses_csv
from qhytime.readers import ArrayReader
from qhytime.simulate import CameraSim, LedPulse, pulse_table
from qhytime.store import CalibrationStore

LP_NOM = 43194.0


def _sim(readout: str, ppm: float, **kw: Any) -> CameraSim:
    exp = (8 if readout == "pairs" else 4) * LP_NOM / 1e3  # a whole number of nominal LPs
    args: dict[str, Any] = dict(width=9600, height=40, exposure_us=exp, offset0_us=1998.921,
                                lp_ppm=ppm, readout=readout, seed=5)  # fmt: skip
    args.update(kw)
    return CameraSim(**args)


def _fit_images(
    sim: CameraSim, n: int = 50, width_us: float = 10.0, amplitude: float = 40_000.0, **kw: Any
):  # type: ignore[no-untyped-def]
    pulses = sim.led_scan_pulses(n, width_us, amplitude_adu=amplitude)
    stack = sim.led_stack(pulses)
    plist = pulse_table(pulses)
    # arrays carry no CROPOFFY/XBINNING keywords: say the geometry
    frames, rej, _ = load_scan(
        [ArrayReader(stack)], pulses=plist, crop_y=sim.crop_y, binning=sim.binning
    )
    return fit_led(frames, readout=sim.readout, exposure_ns=sim.exposure_us * 1e3,
                   line_period_ns=LP_NOM, rejected=rej, **kw)  # fmt: skip


@pytest.mark.parametrize(
    ("readout", "ppm"), [("pairs", 20.0), ("pairs", -20.0), ("2cms", 20.0), ("2cms", -20.0)]
)
def test_simulated_scan_accuracy(readout: str, ppm: float) -> None:
    sim = _sim(readout, ppm)
    fit = _fit_images(sim)
    assert abs(fit.offset0_us - sim.offset0_us) <= 0.2  # us, issue bound
    assert fit.offset0_sigma_us <= 0.2
    assert abs(fit.line_period_ns - sim.true_line_period_ns) <= 0.05  # ns per row
    assert abs(fit.exposure_us - sim.exposure_us) <= 0.2
    # and far better in fact: a few ns, within 5 sigma
    assert abs(fit.offset0_us - sim.offset0_us) <= 5 * fit.offset0_sigma_us + 1e-3
    assert len(fit.frames_used) == 50 and not fit.frames_rejected


def test_reference_scans(data_dir: Path) -> None:
    for name in ("led_pairs", "led_2cms"):
        d = data_dir / name
        truth = json.loads((d / "truth.json").read_text())
        frames, rej, info = load_scan(
            sorted(d.glob("*.fits")), pulses=read_pulses_csv(d / "pulses.csv")
        )
        fit = fit_led(
            frames,
            readout=truth["readout"],
            reference="end",
            exposure_ns=info["exposure_ns"],
            rejected=rej,
        )
        err_ns = (fit.offset0_us - truth["offset0_us"]) * 1e3
        assert abs(err_ns) <= 200 and abs(err_ns) <= 4 * fit.offset0_sigma_us * 1e3
        assert abs(fit.line_period_ns - truth["line_period_ns"]) <= 0.05
        assert abs(fit.exposure_us - truth["exposure_us"]) * 1e3 <= 200


@pytest.mark.parametrize("readout", ["pairs", "2cms"])
def test_pulls_over_100_seeds(readout: str) -> None:
    """error / sigma over 100 noise realisations has a standard deviation near 1."""
    sim = _sim(readout, 20.0 if readout == "pairs" else -20.0)
    pulses = sim.led_scan_pulses(50, 10.0)
    sensor = sim.sensor_rows()
    truth = np.array([sim.offset0_us * 1e3, sim.true_line_period_ns, sim.exposure_us * 1e3])
    pulls = []
    for seed in range(100):
        means, sigmas = sim.led_row_means(pulses, seed=seed)
        frames = [
            LedFrame(
                name=f"f{i}",
                sensor_rows=sensor,
                signal=means[i],
                sigma=sigmas[i],
                pulses=np.array([[p.start_ns, p.width_ns] for p in pulses[i]]),
            )
            for i in range(len(pulses))
        ]
        fit = fit_led(
            frames, readout=readout, exposure_ns=sim.exposure_us * 1e3, line_period_ns=LP_NOM
        )
        est = np.array([fit.offset0_us * 1e3, fit.line_period_ns, fit.exposure_us * 1e3])
        sig = np.array(
            [fit.offset0_sigma_us * 1e3, fit.line_period_sigma_ns, fit.exposure_sigma_us * 1e3]
        )
        pulls.append((est - truth) / sig)
    p = np.array(pulls)
    std = p.std(axis=0, ddof=1)
    assert np.all((std > 0.8) & (std < 1.2)), std
    assert np.all(np.abs(p.mean(axis=0)) < 0.4), p.mean(axis=0)


def test_bad_scans_raise_clear_errors() -> None:
    sim = _sim("pairs", 0.0, width=800)
    pulses = sim.led_scan_pulses(10, 10.0)
    # no lit band: the LED was off
    dark = sim.led_stack([[] for _ in pulses])
    plist = pulse_table(pulses)
    frames, rej, _ = load_scan([ArrayReader(dark)], pulses=plist)
    with pytest.raises(LedFitError, match="no lit band in any of the 10 frames"):
        fit_led(frames, readout="pairs", exposure_ns=sim.exposure_us * 1e3, rejected=rej)
    # saturated band
    hot = [[LedPulse(p[0].start_ns, p[0].width_ns, 200_000.0)] for p in pulses]
    frames, rej, _ = load_scan([ArrayReader(sim.led_stack(hot))], pulses=plist)
    with pytest.raises(LedFitError, match="saturated band in all 10 frames"):
        fit_led(frames, readout="pairs", exposure_ns=sim.exposure_us * 1e3, rejected=rej)
    # pulse longer than the exposure
    long = {k: [(v[0][0], 400_000.0)] for k, v in plist.items()}
    frames, rej, _ = load_scan([ArrayReader(sim.led_stack(pulses))], pulses=long)
    with pytest.raises(LedFitError, match="pulse longer than the exposure"):
        fit_led(frames, readout="pairs", exposure_ns=sim.exposure_us * 1e3, rejected=rej)


def test_scan_without_partial_rows_is_refused() -> None:
    sim = _sim("pairs", 0.0, width=800)
    ends = sim.row_end_rel_ns().max(axis=1)
    # every pulse well inside a pair period: bands without partly lit rows
    pulses = [[LedPulse(float(ends[k] + 30_000.0), 10_000.0)] for k in range(4, 24, 2)]
    plist = pulse_table(pulses)
    frames, rej, _ = load_scan([ArrayReader(sim.led_stack(pulses))], pulses=plist)
    with pytest.raises(LedFitError, match="partly lit rows"):
        fit_led(frames, readout="pairs", exposure_ns=sim.exposure_us * 1e3, rejected=rej)


def test_outlier_frame_is_rejected_and_said() -> None:
    sim = _sim("2cms", 10.0, width=1600)
    pulses = sim.led_scan_pulses(30, 10.0)
    stack = sim.led_stack(pulses)
    plist = pulse_table(pulses)
    plist["<array>#7"] = [(plist["<array>#7"][0][0] + 3_000.0, 10_000.0)]  # a wrong delay
    frames, rej, _ = load_scan([ArrayReader(stack)], pulses=plist)
    fit = fit_led(
        frames,
        readout="2cms",
        exposure_ns=sim.exposure_us * 1e3,
        line_period_ns=LP_NOM,
        rejected=rej,
    )
    assert [n for n, _ in fit.frames_rejected] == ["<array>#7"]
    assert "reduced chi2" in fit.frames_rejected[0][1]
    assert abs(fit.offset0_us - sim.offset0_us) < 0.01


def test_roi_binning_and_pulse_trains() -> None:
    sim = _sim("pairs", 15.0, width=1600, height=60, crop_y=1001, binning=1)
    pulses = sim.led_scan_pulses(30, 8.0)
    # a second pulse 1 ms later in every frame: a pulse train
    trains = [[p[0], LedPulse(p[0].start_ns + 1_000_000.0, 8_000.0)] for p in pulses]
    stack = sim.led_stack(trains)
    plist = pulse_table(trains)
    frames, rej, _ = load_scan([ArrayReader(stack)], pulses=plist, crop_y=1001)
    fit = fit_led(
        frames,
        readout="pairs",
        exposure_ns=sim.exposure_us * 1e3,
        line_period_ns=LP_NOM,
        rejected=rej,
    )
    assert abs(fit.offset0_us - sim.offset0_us) < 0.02
    assert abs(fit.line_period_ns - sim.true_line_period_ns) < 0.05


def test_binned_frames() -> None:
    sim = _sim("2cms", -5.0, width=1600, height=30, binning=2)
    # 2x2 binning sums four pixels: 10,000 ADU per pixel stays below saturation
    fit = _fit_images(sim, n=30, amplitude=10_000.0)
    assert abs(fit.offset0_us - sim.offset0_us) < 0.05
    assert abs(fit.line_period_ns - sim.true_line_period_ns) < 0.05


def test_pps_pulses() -> None:
    ref = 1_754_099_091_999_000_000  # 1 ms before a whole second
    (p,) = pps_pulses(ref, (0.0, 5_000_000.0), 10_000.0)
    assert p == (1_000_000.0, 10_000.0)
    assert pps_pulses(ref, (2_000_000.0, 5_000_000.0), 10_000.0) == []


def test_pulse_csv_errors(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("file,start\nx,1\n")
    with pytest.raises(LedFitError, match="columns"):
        read_pulses_csv(tmp_path / "p.csv")
    (tmp_path / "q.csv").write_text("file,pulse_start_us,pulse_width_us\na.fits,abc,1\n")
    with pytest.raises(LedFitError, match="line 2"):
        read_pulses_csv(tmp_path / "q.csv")


def test_cli_ledcal_store_and_plot(tmp_path: Path, data_dir: Path) -> None:
    d = data_dir / "led_pairs"
    db = str(tmp_path / "c.sqlite")
    out = CliRunner().invoke(main, ["ledcal", "--pulses", str(d / "pulses.csv"), "--reference", "end",
                                    "--store", "--db", db, "--plot", str(tmp_path / "fit.png"), "--json",
                                    *map(str, sorted(d.glob("*.fits")))])  # fmt: skip
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout.splitlines()[-1])
    assert res["readout"] == "pairs" and res["frames_used"] == 40
    assert (tmp_path / "fit.png").stat().st_size > 10_000
    with CalibrationStore(db) as store:
        cal = store.get(res["calibration_id"])
    assert cal.method == "LED fit" and len(cal.frames) == 40
    assert cal.offset0_us == pytest.approx(res["offset0_us"]) and cal.residual_rms_us is not None
    assert cal.setting.readout_mode == "Photographic DSO" and cal.setting.roi_height == 120


def test_cli_ledcal_usage() -> None:
    assert CliRunner().invoke(main, ["ledcal", "x.fits"]).exit_code == 2


def test_pps_driven_led_scan() -> None:
    # frames 1 s - 23 us apart: the whole second walks through the rows, 23 us per frame,
    # starting before the first row's exposure (so the first frames see no pulse)
    sim = _sim("2cms", 8.0, width=1600, height=60, frame_interval_us=999_977.0,
               t0_unix_ns=1_754_099_091_000_000_000 - 1_600_000)  # fmt: skip
    pulses = sim.pps_led_pulses(60, 5.0)
    lit = [i for i, p in enumerate(pulses) if p]
    assert len(lit) >= 30
    stack = sim.led_stack(pulses)
    frames, rej, _ = load_scan([ArrayReader(stack)], pps_width_us=5.0)
    fit = fit_led(frames, readout="2cms", exposure_ns=sim.exposure_us * 1e3, line_period_ns=LP_NOM,
                  rejected=rej, pps=(5_000.0, 0.0))  # fmt: skip
    assert abs(fit.offset0_us - sim.offset0_us) < 0.02
    assert abs(fit.line_period_ns - sim.true_line_period_ns) < 0.05
    # frames whose readout held no whole second are listed, not silently used
    assert any("no lit band" in r or "no whole UTC second" in r for _, r in fit.frames_rejected)


def test_bias_frames_take_out_the_banding(tmp_path: Path) -> None:
    """Bias frames with the scan's fixed banding: subtracted, the fit sees (almost) none left."""
    from qhytime.ledcal import read_bias
    from qhytime.simulate import LedFaults

    sim = _sim("pairs", 10.0, width=1600)
    pulses = sim.led_scan_pulses(30, 10.0)
    faults = LedFaults(banding_adu=4.0, seed=3)
    bias_paths, bias_truth = sim.led_fault_fits(tmp_path / "bias", [[] for _ in range(4)], faults)
    bias = read_bias(bias_paths)
    assert bias.frames == 4 and bias.height == 40
    assert np.max(np.abs(bias.levels[1:] - 800.0 - bias_truth.banding_adu[1:])) < 0.3
    stack, truth = sim.led_fault_stack(pulses, faults)
    frames, rej, _ = load_scan([ArrayReader(stack)], pulses=pulse_table(pulses), bias=bias)
    fit = fit_led(frames, readout="pairs", exposure_ns=sim.exposure_us * 1e3, line_period_ns=LP_NOM,
                  rejected=rej)  # fmt: skip
    assert fit.diagnostics.banding_rms_adu < 0.3 < truth.banding_adu.std()
    assert abs(fit.offset0_us - sim.offset0_us) * 1e3 <= max(3 * fit.offset0_sigma_us * 1e3, 2.0)


def test_read_bias_errors(tmp_path: Path, data_dir: Path) -> None:
    from qhytime.ledcal import read_bias

    text = tmp_path / "notes.fits"
    text.write_text("not a frame")
    with pytest.raises(LedFitError, match=r"notes\.fits: cannot use it as a bias frame"):
        read_bias([text])
    other = sorted((data_dir / "led_pairs").glob("*.fits"))[0]
    with pytest.raises(LedFitError, match=r"bias frame is 800x120 but .*fits16_000\.fits is 320x96"):
        read_bias([data_dir / "fits16_000.fits", other])
    with pytest.raises(LedFitError, match="no bias file"):
        read_bias([])


def test_pulse_list_names_a_frame_of_a_multi_frame_file(tmp_path: Path) -> None:
    """``name#i`` lines of a pulse CSV go to frame i of a multi-frame source."""
    from qhytime.ledcal import write_pulses_csv

    sim = _sim("2cms", 5.0, width=800)
    pulses = sim.led_scan_pulses(12, 10.0)
    names = [f"<array>#{i}" for i in range(12)]
    write_pulses_csv(tmp_path / "p.csv", names, [[(p.start_ns, p.width_ns) for p in pl] for pl in pulses])
    table = read_pulses_csv(tmp_path / "p.csv")
    frames, rej, _ = load_scan([ArrayReader(sim.led_stack(pulses))], pulses=table)
    assert not rej and [f.pulses[0, 0] for f in frames] == pytest.approx([p[0].start_ns for p in pulses], abs=1e-3)

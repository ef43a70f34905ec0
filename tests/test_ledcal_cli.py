"""`qhytime ledcal` and `qhytime ledcal plan` from the command line: every bad input a clear
error (exit code, no traceback, the file and the problem named), batches that go on, units
printed consistently, and nothing stored from a fit that fails (issues 7 and 12)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from qhytime.cli import main
from qhytime.ledscan import read_pulses_csv
from qhytime.simulate import CameraSim, LedFaults, LedPulse
from qhytime.store import CalibrationStore

LED = Path(__file__).parent / "data" / "led_pairs"


def run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args))
    assert "Traceback" not in res.output and "Traceback" not in res.stderr
    assert "internal error" not in res.stderr, res.stderr
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise AssertionError(f"exception escaped: {res.exception!r}")
    return res.exit_code, res.stdout, res.stderr


def scan_files(n: int = 10) -> list[str]:
    return [str(p) for p in sorted(LED.glob("*.fits"))[:n]]


def truncated(tmp_path: Path, name: str = "cut.fits") -> Path:
    src = sorted(LED.glob("*.fits"))[0].read_bytes()
    out = tmp_path / name
    out.write_bytes(src[:20_000])
    return out


# -- the issue-7 list ------------------------------------------------------------------------


def test_bias_of_another_shape(tmp_path: Path, data_dir: Path) -> None:
    bias = data_dir / "fits16_000.fits"  # 320x96, the scan is 800x120
    code, _, err = run("ledcal", "--pulses", str(LED / "pulses.csv"), "--bias", str(bias), *scan_files())
    assert code == 1
    assert str(bias) in err and "320x96" in err and "800x120" in err
    assert "give bias frames of the scan's size" in err


def test_pulse_width_zero_is_a_usage_error() -> None:
    code, _, err = run("ledcal", "--pulse-start-us", "1000", "--pulse-width-us", "0", *scan_files())
    assert code == 2 and "--pulse-width-us" in err and "must be > 0" in err


def test_truncated_bias(tmp_path: Path) -> None:
    cut = truncated(tmp_path, "bias_cut.fits")
    code, _, err = run("ledcal", "--pulses", str(LED / "pulses.csv"), "--bias", str(cut), *scan_files())
    assert code == 1
    assert str(cut) in err and "no complete frame" in err and "truncated" in err
    assert "Warning" not in err and "RuntimeWarning" not in err


def test_truncated_frame_alone(tmp_path: Path) -> None:
    cut = truncated(tmp_path)
    code, _, err = run("ledcal", "--pulses", str(LED / "pulses.csv"), str(cut))
    assert code == 1
    assert "no usable frames in the scan" in err and str(cut) in err and "truncated" in err
    assert "()" not in err


def test_truncated_frame_in_a_batch_is_a_status_line_and_exit_1(tmp_path: Path) -> None:
    cut = truncated(tmp_path, "led_999.fits")
    code, out, err = run("ledcal", "--pulses", str(LED / "pulses.csv"), *scan_files(40), str(cut))
    assert code == 1
    assert re.search(rf"rejected {re.escape(str(cut))}: truncated", out)
    assert "frames used 40, rejected 1" in out and "offset0" in out
    assert "1 file(s) could not be read" in err and "led_999.fits" in err


def test_unreadable_file_in_a_batch_json(tmp_path: Path) -> None:
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"\x00\x01not fits at all" * 100)
    code, out, err = run("ledcal", "--pulses", str(LED / "pulses.csv"), "--json", *scan_files(40), str(junk))
    assert code == 1
    lines = [json.loads(x) for x in out.splitlines()]
    assert lines[0]["rejected"] == str(junk) and "unreadable" in lines[0]["reason"]
    assert lines[-1]["frames_used"] == 40 and "offset0_us" in lines[-1]
    assert str(junk) in err


def test_binary_pulse_csv(tmp_path: Path) -> None:
    bad = tmp_path / "pulses.csv"
    bad.write_bytes(bytes(range(256)) * 20)
    code, _, err = run("ledcal", "--pulses", str(bad), *scan_files())
    assert code == 1 and str(bad) in err and "not a text CSV file" in err


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "needs a header"),
        ("file,start\nx,1\n", "needs a header"),
        ("file,pulse_start_us,pulse_width_us\n", "lists no pulse"),
        ("file,pulse_start_us,pulse_width_us\na.fits,nan,10\n", "line 2: pulse start/width are not finite"),
        ("file,pulse_start_us,pulse_width_us\na.fits,1,-3\n", "line 2: pulse width must be > 0"),
        ("file,pulse_start_us,pulse_width_us\na.fits,1,1e300\n", "line 2: pulse width must be > 0"),
        ("file,pulse_start_us,pulse_width_us\n,1,1\n", "line 2: no file name"),
        ("file,pulse_start_us,pulse_width_us\na.fits,x,1\n", "line 2: pulse_start_us/pulse_width_us are not numbers"),
        ("file,pulse_start_us,pulse_width_us\na.fits,1,2\x00\n", "not a readable CSV|line 2"),
    ],
)
def test_bad_pulse_csv(tmp_path: Path, content: str, problem: str) -> None:
    p = tmp_path / "p.csv"
    p.write_text(content)
    code, _, err = run("ledcal", "--pulses", str(p), *scan_files(3))
    assert code == 1 and str(p) in err and re.search(problem, err), err


def test_text_result_prints_each_value_and_its_sigma_in_one_unit() -> None:
    code, out, _ = run("ledcal", "--pulses", str(LED / "pulses.csv"), *scan_files(40))
    assert code == 0
    for name, unit in (("offset0", "us"), ("line period", "ns"), ("exposure", "us")):
        line = next(x for x in out.splitlines() if x.startswith(name))
        m = re.match(rf"{name}\s+([-\d.]+) \+/- ([\d.]+) (\w+)", line)
        assert m is not None and m.group(3) == unit, line
        assert line.count(" us") + line.count(" ns") == 1, line  # one unit on the line
    off = float(re.search(r"offset0\s+([\d.]+) \+/- ([\d.]+) us", out).group(2))  # type: ignore[union-attr]
    assert 1e-5 < off < 1e-3  # the sigma in us, a fraction of a ns


def test_fit_subcommand_and_group_help() -> None:
    code, out, _ = run("ledcal", "--help")
    assert code == 0 and "plan" in out and "fit" in out
    code, out, _ = run("ledcal", "fit", "--pulses", str(LED / "pulses.csv"), "--json", str(LED))
    assert code == 0 and json.loads(out.splitlines()[-1])["frames_used"] == 40
    assert run("ledcal")[0] == 2


@pytest.mark.parametrize(
    "option",
    [
        ("--pulse-start-us", "nan"), ("--pulse-start-us", "1e30"), ("--pps-width-us", "-1"),
        ("--pps-delay-us", "inf"), ("--line-period-ns", "0"), ("--line-period-ns", "x"),
        ("--exposure-s", "nan"), ("--exposure-s", "1e30"), ("--crop-y", "-1"), ("--crop-y", "1.5"),
        ("--binning", "0"), ("--illumination-degree", "99"), ("--clip-sigma", "1"),
        ("--max-chi2", "0"), ("--readout", "quads"), ("--reference", "middle"),
    ],
)  # fmt: skip
def test_every_option_value_checked(option: tuple[str, str]) -> None:
    extra = [] if option[0].startswith(("--pulse-start", "--pps")) else ["--pulses", str(LED / "pulses.csv")]
    if option[0] == "--pulse-start-us":
        extra = ["--pulse-width-us", "10"]
    code, _, err = run("ledcal", *extra, *option, *scan_files(3))
    assert code == 2 and option[0] in err, err


def test_plot_to_a_missing_folder_or_format_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run("ledcal", "--pulses", str(LED / "pulses.csv"), "--plot",
                       str(tmp_path / "nope" / "fit.png"), *scan_files(3))  # fmt: skip
    assert code == 2 and "does not exist" in err
    code, _, err = run("ledcal", "--pulses", str(LED / "pulses.csv"), "--plot",
                       str(tmp_path / "fit.xyz"), *scan_files(3))  # fmt: skip
    assert code == 2 and ".xyz" in err


def test_failed_fit_stores_nothing(tmp_path: Path) -> None:
    """Pulses that do not belong to their frames: an error, exit 1, and --store stores nothing."""
    rows = (LED / "pulses.csv").read_text().splitlines()
    head, body = rows[0], rows[1:]
    names = [r.split(",")[0] for r in body]
    rest = [r.split(",", 1)[1] for r in body]
    shuffled = [f"{n},{rest[(i * 7 + 3) % len(rest)]}" for i, n in enumerate(names)]
    p = tmp_path / "wrong.csv"
    p.write_text("\n".join([head, *shuffled]) + "\n")
    db = tmp_path / "c.sqlite"
    code, out, err = run("ledcal", "--pulses", str(p), "--store", "--db", str(db), *scan_files(40))
    assert code == 1 and "nothing is stored" in err and out == ""
    if db.exists():
        with CalibrationStore(str(db)) as store:
            assert not [c for c in store.list(include_superseded=True) if c.method == "LED fit"]


def test_wrong_readout_is_refused() -> None:
    code, _, err = run("ledcal", "--pulses", str(LED / "pulses.csv"), "--readout", "2cms", *scan_files(40))
    assert code == 1 and ("reduced chi2" in err or "--readout" in err)


def test_subprocess_bias_shape_and_faulty_scan_json(tmp_path: Path, data_dir: Path) -> None:
    """A real process: no traceback on a bad bias; a faulty FITS scan through the contract."""
    exe = shutil.which("qhytime")
    cmd = [exe] if exe else [sys.executable, "-m", "qhytime.cli"]
    env = {**os.environ, "QHYTIME_DB": str(tmp_path / "db.sqlite")}
    bad = subprocess.run([*cmd, "ledcal", "--pulses", str(LED / "pulses.csv"), "--bias",
                          str(data_dir / "fits16_000.fits"), *scan_files(4)],
                         capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "fits16_000.fits" in bad.stderr and "320x96" in bad.stderr
    # a scan with the faults of real ones, written as FITS with a plan-made pulse list
    sim = CameraSim(width=2400, height=40, exposure_us=4.5 * 86.388, offset0_us=1998.921,
                    lp_ppm=12.0, seed=7)  # fmt: skip
    code, _, err = run("ledcal", "plan", "--exposure-us", str(sim.exposure_us), "--line-period-ns",
                         "43194", "--readout", "pairs", "--frames", "40", "--rows", "40",
                         "--width-px", "2400", "--offset0-us", "1990", "--names", "led_{i:04d}.fits",
                         "-o", str(tmp_path / "pulses.csv"))  # fmt: skip
    assert code == 0 and err == ""
    table = read_pulses_csv(tmp_path / "pulses.csv")
    pulses = [[LedPulse(*table[f"led_{i:04d}.fits"][0])] for i in range(40)]
    _, truth = sim.led_fault_fits(tmp_path / "scan", pulses, LedFaults.typical(2))
    good = subprocess.run([*cmd, "ledcal", "--pulses", str(tmp_path / "pulses.csv"), "--json", "--store",
                           "--plot", str(tmp_path / "fit.png"), str(tmp_path / "scan")],
                          capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert good.returncode == 0, good.stderr
    res = json.loads(good.stdout.splitlines()[-1])
    rejected = [json.loads(x) for x in good.stdout.splitlines()[:-1]]
    assert len(rejected) == len(truth.saturated) + len(truth.bandless)
    assert abs(res["offset0_us"] - sim.offset0_us) * 1e3 <= max(3 * res["offset0_sigma_us"] * 1e3, 2.0)
    assert res["offset0_sigma_us"] * 1e3 <= 5.0 and res["cosmic_ray_pixels"] > 0
    assert (tmp_path / "fit.png").stat().st_size > 20_000
    with CalibrationStore(str(tmp_path / "db.sqlite")) as store:
        cal = store.get(res["calibration_id"])
    assert cal.method == "LED fit" and cal.offset0_us == pytest.approx(res["offset0_us"])


# -- the plan ---------------------------------------------------------------------------------


def test_plan_writes_the_csv_the_fit_reads(tmp_path: Path) -> None:
    out = tmp_path / "plan.csv"
    code, text, err = run("ledcal", "plan", "--exposure-us", "388.746", "--line-period-ns", "43194",
                          "--readout", "pairs", "--frames", "12", "--rows", "120", "-o", str(out))  # fmt: skip
    assert code == 0 and err == ""
    table = read_pulses_csv(out)
    assert sorted(table) == [f"frame_{i:04d}.fits" for i in range(12)]
    assert "predicted sigma: offset0" in text and "us" in text
    starts = [float(x.split()[2]) for x in text.splitlines() if re.match(r"\s+\d+\s+frame_", x)]
    assert starts == pytest.approx([table[f"frame_{i:04d}.fits"][0][0] / 1e3 for i in range(12)], abs=1e-6)


def test_plan_warns_on_a_whole_number_of_units_with_a_short_pulse() -> None:
    code, out, err = run("ledcal", "plan", "--exposure-us", "345.552", "--line-period-ns", "43194",
                         "--readout", "pairs", "--pulse-width-us", "10", "--json")  # fmt: skip
    assert code == 0
    assert "whole number (4) of readout units" in err and "without partly lit rows" in err
    summary = json.loads(out.splitlines()[-1])
    assert summary["frames_without_partial_rows"] > 40 and summary["coverage"] < 0.2
    code, out, err = run("ledcal", "plan", "--exposure-us", "345.552", "--line-period-ns", "43194",
                         "--readout", "pairs", "--json")  # fmt: skip
    assert code == 0 and err == "" and json.loads(out.splitlines()[-1])["coverage"] == 1.0


@pytest.mark.parametrize(
    ("args", "code_want", "text"),
    [
        (["--exposure-us", "0"], 2, "--exposure-us"),
        (["--exposure-us", "nan"], 2, "--exposure-us"),
        (["--frames", "2"], 2, "--frames"),
        (["--rows", "5"], 1, "too short for a band"),
        (["--pulse-width-us", "400"], 1, "shorter than the exposure"),
        (["--names", "x{j}.fits"], 1, "cannot be formatted"),
        (["--names", "same.fits"], 1, "same name"),
        (["--led-adu", "-1"], 2, "--led-adu"),
        (["-o", "/nonexistent/dir/p.csv"], 2, "does not exist"),
    ],
)
def test_plan_errors(args: list[str], code_want: int, text: str) -> None:
    base = {"--exposure-us": "345.552", "--line-period-ns": "43194", "--readout": "pairs"}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v
    code, _, err = run("ledcal", "plan", *[x for kv in base.items() for x in kv])
    assert code == code_want and text in err, err


def test_plan_json_is_valid_json_when_unconstrained() -> None:
    code, out, _ = run("ledcal", "plan", "--exposure-us", "345.552", "--line-period-ns", "43194",
                       "--readout", "pairs", "--frames", "4", "--pulse-width-us", "10", "--json")  # fmt: skip
    assert code == 0
    summary = json.loads(out.splitlines()[-1])  # no NaN literal
    assert summary["predicted_offset0_sigma_us"] is None or np.isfinite(summary["predicted_offset0_sigma_us"])


def test_fits_header_of_scan_readable(tmp_path: Path) -> None:
    """The FITS the simulator writes for faulty scans carry the camera's keywords."""
    sim = CameraSim(width=200, height=24, exposure_us=345.552, seed=1)
    paths, _ = sim.led_fault_fits(tmp_path, sim.led_scan_pulses(2, 10.0), LedFaults(seed=1))
    with fits.open(paths[0]) as hdul:
        assert hdul[0].header["QHY_EXP"] == pytest.approx(345.552e-6)

"""`qhytime streak`: the JSON contract, IOD and ADES files, usage errors, messages, plots."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qhytime.cli import main
from qhytime.simulate import CameraSim, Mover

from conftest import need

SAT_DATA = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "satellite"
TLE_PATH = Path(__file__).parent / "data" / "satellite" / "iss.tle"


def _truth(name: str) -> dict[str, Any]:
    need((SAT_DATA / "truth.json").is_file(), f"the shared satellite reference set ({SAT_DATA})")
    return next(f for f in json.loads((SAT_DATA / "truth.json").read_text())["frames"] if f["file"] == name)


def _run(*args: Any) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr


def _ends_args(fr: dict[str, Any]) -> list[str]:
    a, b = fr["trails"][0]["ends"]
    return ["streak", str(SAT_DATA / fr["file"]), "--ends",
            f"{a['x']},{a['y']},{b['x']},{b['y']}", "--first", "1", *fr["cli"]]  # fmt: skip


def test_json_contract() -> None:
    fr = _truth("end_02.fits")
    code, out, err = _run(*_ends_args(fr), "--points", "3", "--json")
    assert code == 0, err
    recs = [json.loads(ln) for ln in out.splitlines()]
    assert [r["kind"] for r in recs] == ["first", "interior", "interior", "interior", "last"]
    for r in recs:
        assert {"x", "y", "kind", "unix_ns", "utc", "sigma_s", "ra_deg", "dec_deg", "flags"} <= set(r)
        assert isinstance(r["unix_ns"], int) and r["flags"] == [] and r["timing"] is True
        assert r["utc"].startswith("2026-") and len(r["utc"].split(".")[1]) == 9
    a, b = fr["trails"][0]["ends"]
    assert (recs[0]["unix_ns"], recs[-1]["unix_ns"]) == (a["unix_ns"], b["unix_ns"])
    assert recs[0]["utc"] == a["utc"]


def test_frame_without_wcs_says_so() -> None:
    fr = _truth("end_09.fits")
    code, out, err = _run(*_ends_args(fr), "--json")
    assert code == 0
    recs = [json.loads(ln) for ln in out.splitlines()]
    assert all("ra_deg" not in r for r in recs) and "no celestial WCS" in err
    code, _, err = _run(*_ends_args(fr), "--iod", "-", "--station", "9999", "--norad", "25544",
                        "--cospar", "98067A")  # fmt: skip
    assert code == 1 and "WCS" in err and "Traceback" not in err


def test_edge_end_is_flagged_in_the_table() -> None:
    fr = _truth("end_10.fits")
    code, out, err = _run(*_ends_args(fr))
    assert code == 0 and "edge" in out and "not a timing point" in err


def test_iod_and_ades_files(tmp_path: Path) -> None:
    fr = _truth("end_00.fits")
    iod_path, psv_path = tmp_path / "obs.iod", tmp_path / "obs.psv"
    code, out, err = _run(*_ends_args(fr), "--points", "1", "--iod", iod_path, "--ades", psv_path,
                          "--station", "9999", "--norad", "25544", "--cospar", "98067A",
                          "--observer", "J. Doe", "--ast-cat", "Gaia3")  # fmt: skip
    assert code == 0, err
    lines = iod_path.read_text().splitlines()
    assert len(lines) == 3 and all(len(ln) == 64 for ln in lines)
    path = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "iod.py"
    spec = importlib.util.spec_from_file_location("conformance_iod", path)
    assert spec is not None and spec.loader is not None
    iod = sys.modules.get("conformance_iod") or importlib.util.module_from_spec(spec)
    if "conformance_iod" not in sys.modules:
        sys.modules["conformance_iod"] = iod
        spec.loader.exec_module(iod)
    obs = [iod.parse(ln) for ln in lines]
    a = fr["trails"][0]["ends"][0]
    assert obs[0].unix_ns == (a["unix_ns"] + 500_000) // 1_000_000 * 1_000_000
    psv = psv_path.read_text()
    assert psv.startswith("# version=2022\n") and "1998-067A|CMO|9999|" in psv
    assert len([ln for ln in psv.splitlines() if ln.startswith("1998-067A")]) == 3
    # standard output: the IOD lines only
    code, out, _ = _run(*_ends_args(fr), "--iod", "-", "--station", "9999", "--norad", "25544",
                        "--cospar", "98067A")  # fmt: skip
    assert code == 0 and out.splitlines() == lines[:1] + lines[2:]


@pytest.mark.parametrize("args,words", [
    (["--detect", "--ends", "1,2,3,4"], "exactly one of"),
    (["--first", "1", "--detect"], "--first goes with --ends"),
    (["--ends", "1,2,3"], "4 comma-separated numbers"),
    (["--ends", "1,2,3,x", "--first", "1"], "4 comma-separated numbers"),
    (["--point", "5,5", "--iod", "-"], "--iod needs --station"),
    (["--point", "5,5", "--ades", "-"], "--ades needs --station"),
    (["--point", "5,5", "--points", "-1"], "out of range"),
])  # fmt: skip
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], words: str) -> None:
    (path,) = CameraSim(width=64, height=40).write_fits(tmp_path, 1)
    code, _, err = _run("streak", path, *args)
    assert code == 2 and words in err


def test_failures_exit_1_with_a_message(tmp_path: Path) -> None:
    (path,) = CameraSim(width=64, height=40).write_fits(tmp_path, 1)
    model = ["--offset0-us", "1974.286", "--line-period-ns", "43194"]
    code, _, err = _run("streak", path, "--ends", "1,2,30,50", "--first", "1", *model)
    assert code == 1 and "outside the frame's rows" in err and "Traceback" not in err
    code, _, err = _run("streak", path, "--ends", "10,10,30,20", *model)
    assert code == 1 and all(f in err for f in ("--first 1|2", "--next FRAME2", "--tle FILE"))
    code, _, err = _run("streak", tmp_path / "missing.fits", "--point", "1,1", *model)
    assert code == 1 and "missing.fits" in err


def test_point_source_ades_and_plot(tmp_path: Path) -> None:
    from qhytime.satellite.sky import tan_wcs

    sim = CameraSim(width=160, height=120, exposure_us=100_000.0, read_noise_adu=10.0, seed=9)
    _, _, ref = sim.block_for(0)
    slow = Mover(80.0, 60.0, 3.0, -2.0, ref - 50_000_000, 5e4)
    (path,) = sim.write_fits(tmp_path, 1, movers=[slow],
                             wcs=tan_wcs(150.0, 2.0, width=160, height=120, scale_arcsec=1.5))  # fmt: skip
    psv, png = tmp_path / "mp.psv", tmp_path / "cut.png"
    code, out, err = _run("streak", path, "--point", "80.1,59.9", "--offset0-us", "1974.286",
                          "--line-period-ns", "43194", "--ades", psv, "--station", "I41",
                          "--perm-id", "433", "--plot", png, "--json")  # fmt: skip
    assert code == 0, err
    (rec,) = [json.loads(ln) for ln in out.splitlines()]
    assert rec["kind"] == "point" and rec["row"] == 60 and rec["timing"]
    assert "permID|mode|stn|obsTime" in psv.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tle_check_is_printed(tmp_path: Path) -> None:
    from qhytime.satellite.orbit import Observer, load_tle
    from qhytime.satellite.sim import simulate_pass

    sim = CameraSim(width=256, height=192, readout="pairs", exposure_us=200_000.0,
                    t0_unix_ns=1777671368_000_000_000, read_noise_adu=15.0, seed=4)  # fmt: skip
    sp = simulate_pass(load_tle(TLE_PATH), Observer(52.21503, -0.87262, 50.0), sim, 1,
                       scale_arcsec=30.0, flux_adu_per_s=3e5)  # fmt: skip
    (path,) = sp.write_fits(tmp_path)
    a, b = sp.truth[0]
    code, out, err = _run("streak", path, "--ends", f"{b.x},{b.y},{a.x},{a.y}", "--tle", TLE_PATH,
                          "--height-m", "50", "--offset0-us", str(sim.offset0_us),
                          "--line-period-ns", "43194", "--position-sigma-px", "0.05")  # fmt: skip
    assert code == 0, err
    assert "orbit check against ISS" in out and "time offset (reported - orbit)" in out
    assert "its own along-track error" in out
    # the TLE put the ends in time order: the second pair given came first
    first_line = next(ln for ln in out.splitlines() if ln.startswith("first"))
    assert f"{a.x:.3f}" in first_line


def test_order_from_the_next_frame() -> None:
    """--ends without --first, with --next: the end nearer the next frame's trail came last."""
    fr = _truth("det_02_0.fits")
    for t in fr["trails"]:
        a, b = t["ends"]  # a came first
        code, out, err = _run("streak", SAT_DATA / fr["file"], "--ends",
                              f"{b['x']},{b['y']},{a['x']},{a['y']}", "--next",
                              SAT_DATA / fr["next"], *fr["cli"], "--json")  # fmt: skip
        assert code == 0, err
        first, last = (json.loads(ln) for ln in out.splitlines())
        assert (first["kind"], first["x"], first["unix_ns"]) == ("first", a["x"], a["unix_ns"])
        assert (last["kind"], last["x"], last["unix_ns"]) == ("last", b["x"], b["unix_ns"])

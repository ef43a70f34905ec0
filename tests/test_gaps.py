"""Gaps in the tests, each against independent truth: ``qhytime doctor`` on a healthy and a
broken setup, the light curve's saturation flag, the service alerts for an out-of-range pps
count and a repeated sequence number, ``qhytime streak --wcs FILE``, and the HTTP tests'
server helper under ``CI=true``."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from qhytime.cli import main
from qhytime.gpsblock import embed_block
from qhytime.readers import write_ser
from qhytime.service.alerts import list_alerts
from qhytime.service.index import FrameIndex
from qhytime.simulate import CameraSim, Mover, Star

REPO = Path(__file__).resolve().parents[1]
MODEL = ["--offset0-us", "1974.286", "--line-period-ns", "43194"]


def cli(args: list[str], **env: str) -> Any:
    res = CliRunner().invoke(main, [str(a) for a in args], env=env or None)
    assert "Traceback" not in res.output and "internal error" not in res.output, res.output
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise AssertionError(f"{res.exception!r} escaped") from res.exception
    return res


# -- a. qhytime doctor ------------------------------------------------------------------------


def test_doctor_on_a_healthy_setup(tmp_path: Path) -> None:
    db = tmp_path / "data" / "q.sqlite"
    db.parent.mkdir()
    res = cli(["doctor"], QHYTIME_DB=str(db))
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith("qhytime ") and " on Python 3." in lines[0]
    assert f"database: sqlite:///{db}" in lines
    # the shipped calibrations (counted from the TOML itself) are in a new database
    shipped = tomllib.loads((REPO / "calibrations" / "qhy600pro.toml").read_text())["calibration"]
    m = re.search(r"schema revision (\w+) \(head (\w+)\), (\d+) calibration\(s\) stored", res.stdout)
    assert m is not None and m.group(1) == m.group(2) and int(m.group(3)) == len(shipped)
    assert f"  {len(shipped)} current:" in lines
    offsets = sorted(float(x) for x in re.findall(r"offset0=([\d.]+)\+/-", res.stdout))
    assert offsets == sorted(c["offset0_us"] for c in shipped)
    assert "frame index: 0 file(s), 0 frame(s)" in res.stdout
    m = re.search(r"leap seconds: bundled astropy table, (\d+) steps, last (\S+), expires", res.stdout)
    assert m is not None and int(m.group(1)) >= 27 and m.group(2) >= "2017-01-01"
    assert lines[-1] == f"shipped calibrations: {REPO / 'calibrations' / 'qhy600pro.toml'}"
    assert db.is_file()


def test_doctor_counts_what_the_index_holds(tmp_path: Path) -> None:
    db = tmp_path / "q.sqlite"
    sim = CameraSim(width=64, height=16, exposure_us=5000.0, receiver_state=2)
    paths = sim.write_fits(tmp_path / "cap", 3)
    assert cli(["index", tmp_path / "cap", "--db", db]).exit_code == 0
    res = cli(["doctor", "--db", db])
    assert res.exit_code == 0
    # 3 files of 1 frame; receiver not locked: one alert per file
    assert "frame index: 3 file(s), 3 frame(s)" in res.stdout
    assert "3 active alert(s)" in res.stdout
    assert f"{paths[-1]} frame 0" in res.stdout


@pytest.mark.parametrize("kind,words", [
    ("text", "not a qhytime database"),
    ("folder", "is a folder, not a database file"),
    ("missing_folder", "does not exist"),
])  # fmt: skip
def test_doctor_on_a_broken_database(tmp_path: Path, kind: str, words: str) -> None:
    bad = {"text": tmp_path / "notes.sqlite", "folder": tmp_path,
           "missing_folder": tmp_path / "nowhere" / "q.sqlite"}[kind]  # fmt: skip
    if kind == "text":
        bad.write_text("not a database\n" * 100)
    res = cli(["doctor"], QHYTIME_DB=str(bad))
    assert res.exit_code == 1
    assert words in res.stderr and str(bad) in res.stderr
    assert res.stdout == ""  # nothing half-printed
    if kind == "text":
        assert bad.read_text() == "not a database\n" * 100  # left as it was


def test_doctor_without_shipped_calibrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken install (no calibrations folder): the doctor says so, a new database is empty."""
    import qhytime.calibration
    import qhytime.store

    monkeypatch.setattr(qhytime.calibration, "shipped_calibration_files", lambda: [])
    monkeypatch.setattr(qhytime.store, "shipped_calibration_files", lambda: [])
    res = cli(["doctor", "--db", tmp_path / "q.sqlite"])
    assert res.exit_code == 0
    assert "0 calibration(s) stored" in res.stdout and "  0 current:" in res.stdout
    assert res.stdout.splitlines()[-1] == "shipped calibrations: none found"


# -- b. the light curve's saturation flag ---------------------------------------------------


def test_saturation_flag_marks_exactly_the_saturated_frames(tmp_path: Path) -> None:
    """A star bright enough to fill the ADC, hidden (occulted) over frames 4-6 by whole row
    windows: the target is saturated in every frame but those; the comparison never."""
    sim = CameraSim(width=48, height=40, crop_y=3100, exposure_us=20_000.0,
                    frame_interval_us=25_000.0, seed=5)  # fmt: skip
    ty, cy = 20, 12

    def window(i: int, row: int) -> tuple[int, int]:  # the true window of an image row
        _, _, ref = sim.block_for(i)
        end = ref + round(float(sim.row_end_rel_ns()[row].max()))
        return end - round(sim.exposure_us * 1e3), end

    # hidden from the middle of the dead time before frame 4 to the middle of that after 6
    d = (window(3, ty)[1] + window(4, ty)[0]) // 2
    r = (window(6, ty)[1] + window(7, ty)[0]) // 2
    stars = [Star(16.0, ty, 5e8, fwhm_px=3.0, occulted=(d, r)), Star(32.0, cy, 2e6, fwhm_px=3.0)]
    n = 10
    paths = sim.write_fits(tmp_path, n, stars=stars)
    # the truth from the images: the 16-bit top reached within the aperture (radius 5)
    yy, xx = np.mgrid[0:40, 0:48]
    top = 65535
    truth_target, truth_comp = [], []
    for i in range(n):
        img = sim.frame(i, stars=stars).image
        truth_target.append(bool((img[(xx - 16) ** 2 + (yy - ty) ** 2 <= 25] >= top).any()))
        truth_comp.append(bool((img[(xx - 32) ** 2 + (yy - cy) ** 2 <= 25] >= top).any()))
    assert truth_target == [i not in (4, 5, 6) for i in range(n)]  # by construction
    assert not any(truth_comp)

    csv = tmp_path / "lc.csv"
    res = cli(["lightcurve", *paths, "--target", f"16,{ty}", "--comparison", f"32,{cy}", "--fixed", *MODEL,
               "--exposure-s", "0.02", "--crop-y", "3100", "--json", "-o", csv, "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    recs = [json.loads(x) for x in res.stdout.splitlines()]
    assert [r["apertures"]["target"]["saturated"] for r in recs] == truth_target
    assert [r["apertures"]["comp1"]["saturated"] for r in recs] == truth_comp
    assert all((r["apertures"]["target"]["peak"] >= top) == s for r, s in zip(recs, truth_target, strict=True))
    # the CSV header lists them for PyOTE's users: 7 samples, frames 0-3 and 7-9
    header = [ln for ln in csv.read_text().splitlines() if ln.startswith("# saturated samples")]
    assert len(header) == 1 and "target 7 " in header[0] and "comp1" not in header[0]
    assert "0-3" in header[0] and "7-9" in header[0]


# -- c. service alerts: pps count out of range, repeated sequence numbers ----------------------


def _ser_with_blocks(tmp: Path, sim: CameraSim, n: int, edit: Any) -> Path:
    frames = []
    for i in range(n):
        shot = sim.frame(i, noise=False)
        img = shot.image.copy()
        embed_block(img, edit(i, shot.block))
        frames.append(img)
    path = tmp / "faulty.ser"
    write_ser(path, np.stack(frames))
    return path


def test_pps_count_out_of_range_and_pps_lost_alert(db_url: str, tmp_path: Path) -> None:
    """Frames 3-5 carry a pps count above 10,001,000 (not disciplined), frame 8 the 10,000,500
    the box writes when it has lost the PPS: one alert of 4 frames, first frame 3."""
    sim = CameraSim(width=64, height=16, exposure_us=5000.0, frame_interval_us=6000.0)
    bad_pps = {3: 10_002_000, 4: 10_002_000, 5: 10_002_000, 8: 10_000_500}

    def edit(i: int, blk: Any) -> Any:
        return dataclasses.replace(blk, pps_count=bad_pps[i]) if i in bad_pps else blk

    ser = _ser_with_blocks(tmp_path, sim, 12, edit)
    with FrameIndex(db_url) as index:
        index.ingest(ser, exposure_ns=5_000_000)
        alerts = [a for a in list_alerts(index) if a.kind == "pps_count_out_of_range"]
        assert len(alerts) == 1
        (a,) = alerts
        third = index.frames(file=str(ser), frame=3)[0]
        assert (a.frames, a.frame_id, a.severity) == (4, third.id, "error")
        assert a.t_ns == third.end_ns
        assert "first frame 3" in a.message and "10002000" in a.message
        # no other frame raised it, and no frame is flagged receiver_not_locked
        assert "receiver_not_locked" not in {x.kind for x in list_alerts(index)}


def test_sequence_repeat_alert(db_url: str, tmp_path: Path) -> None:
    """The camera hands over the sequence numbers 1,2,3,3,4,5,6,6,7,...: frames 3 and 7 repeat
    the previous frame's number (stale blocks); their times are right."""
    sim = CameraSim(width=64, height=16, exposure_us=5000.0, frame_interval_us=6000.0)
    repeats = (3, 7)

    def edit(i: int, blk: Any) -> Any:
        return dataclasses.replace(blk, sequence=sim.sequence0 + i - sum(r <= i for r in repeats))

    ser = _ser_with_blocks(tmp_path, sim, 12, edit)
    with FrameIndex(db_url) as index:
        index.ingest(ser, exposure_ns=5_000_000)
        alerts = list_alerts(index)
        (rep,) = [a for a in alerts if a.kind == "sequence_repeat"]
        first = index.frames(file=str(ser), frame=3)[0]
        assert (rep.frames, rep.frame_id, rep.severity) == (2, first.id, "error")
        assert f"sequence {sim.sequence0 + 2} repeats" in rep.message
        # a repeat is not a gap nor a step backwards
        assert not {"sequence_gap", "sequence_backwards"} & {a.kind for a in alerts}


# -- d. qhytime streak --wcs FILE ------------------------------------------------------------


def _trail_frame(tmp: Path, wcs: Any = None) -> tuple[Path, list[float]]:
    sim = CameraSim(width=160, height=120, exposure_us=100_000.0, read_noise_adu=5.0, seed=4)
    _, _, ref = sim.block_for(0)
    sat = Mover(30.0, 40.0, 800.0, 300.0, ref - 150_000_000, 4e6)
    (path,) = sim.write_fits(tmp, 1, movers=[sat], wcs=wcs)
    return path, [30.0, 40.0, 110.0, 70.0]


@pytest.mark.parametrize("form", ["text", "fits"])
def test_streak_positions_come_from_the_wcs_file(tmp_path: Path, form: str) -> None:
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.wcs import WCS

    from qhytime.satellite.sky import tan_wcs

    # the frame's own header has one solution; the file another (FK5, rotated): the file wins
    own = tan_wcs(150.0, 2.0, width=160, height=120, scale_arcsec=1.5)
    path, ends = _trail_frame(tmp_path, wcs=own)
    hdr = tan_wcs(210.25, -33.5, width=160, height=120, scale_arcsec=2.2, rotation_deg=31.0).to_header()
    hdr["RADESYS"], hdr["EQUINOX"] = "FK5", 2000.0
    wcs_file = tmp_path / ("solution.wcs" if form == "text" else "solution.fits")
    if form == "text":
        hdr.totextfile(wcs_file)
    else:
        fits.PrimaryHDU(header=hdr).writeto(wcs_file)
    ends_text = ",".join(f"{v:g}" for v in ends)
    res = cli(["streak", path, "--ends", ends_text, "--first", "1", "--wcs", wcs_file, "--json",
               "--points", "1", *MODEL])  # fmt: skip
    assert res.exit_code == 0, res.output
    recs = [json.loads(x) for x in res.stdout.splitlines()]
    assert [r["kind"] for r in recs] == ["first", "interior", "last"]
    truth = WCS(hdr)
    for r in recs:
        expect = truth.pixel_to_world(r["x"], r["y"]).icrs  # 0-based pixel centres
        got = SkyCoord(r["ra_deg"], r["dec_deg"], unit="deg", frame="icrs")
        assert got.separation(expect).to_value("arcsec") < 1e-3, (r, expect)
        wrong = own.pixel_to_world(r["x"], r["y"])
        assert got.separation(wrong).to_value("deg") > 10
    # the ends are where they were given
    assert (recs[0]["x"], recs[0]["y"], recs[-1]["x"], recs[-1]["y"]) == pytest.approx(ends, abs=1e-9)


def test_streak_wcs_file_without_a_solution(tmp_path: Path) -> None:
    from astropy.io import fits

    path, ends = _trail_frame(tmp_path)
    bad = tmp_path / "empty.wcs"
    fits.Header({"OBJECT": "M42", "EXPTIME": 0.1}).totextfile(bad)  # a header, no solution
    res = cli(["streak", path, "--ends", ",".join(map(str, ends)), "--first", "1", "--wcs", bad,
               *MODEL])  # fmt: skip
    assert res.exit_code == 1 and str(bad) in res.stderr and "no celestial WCS" in res.stderr


# -- e. the HTTP tests' server helper under CI=true ----------------------------------------------


@pytest.mark.parametrize("ci", ["true", ""])
def test_http_server_helper_fails_under_ci(tmp_path: Path, ci: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """When ``qhytime serve`` cannot start (here: its database is random bytes), the HTTP tests'
    helper fails the test under CI=true and skips it otherwise."""
    pytest.importorskip("httpx")
    from test_service_http import Server

    bad = tmp_path / "noise.sqlite"
    bad.write_bytes(bytes(range(256)) * 20)
    monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if ci == "true" else pytest.skip.Exception
    with pytest.raises(expected) as info:
        Server(str(bad), tmp_path / "server.log")
    assert "not a qhytime database" in str(info.value)
    assert os.path.getsize(tmp_path / "server.log") > 0

"""Occultation light curves against the simulator's truth and PyOTE's own reader.

Every capture here is rendered by :class:`qhytime.simulate.CameraSim`: a rolling-shutter
sensor with a GPS block, an occulted star whose disappearance (D) and reappearance (R)
happen at given UTC instants and are integrated over each row's own window, and a
comparison star. The truth of each sample's time is the simulator's own row window
(``Shot.reference_ns + Shot.row_end_ns``), not qhytime's row model.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from qhytime.cli import main
from qhytime.occultation import fit_events, light_curve, time_info
from qhytime.readers.serfile import write_ser
from qhytime.rowmodel import RowModel
from qhytime.simulate import CameraSim, Star

SHARED = Path(__file__).parents[2] / "shared" / "testdata" / "occultation"
OFFSET0_US = 1998.921
LP_NS = 43194.527
T0 = 1_770_779_872_000_000_000  # 2026-02-11T03:17:52 UTC


def missing(what: str) -> None:
    (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(f"{what} missing")


def pyote_read(path: Path) -> tuple[Any, ...]:
    """PyOTE's own reader (``pip install --no-deps pyote``)."""
    try:
        from pyoteapp.csvreader import readLightCurve
    except ImportError:
        missing("PyOTE's reader (pip install --no-deps pyote)")
    return readLightCurve(str(path), pymovieColumnType="signal", pymovieDict={})


def parse_time_info(s: str, day: str) -> int:
    """[HH:MM:SS.fffffff] on a date, to unix ns (independent of qhytime)."""
    assert len(s) == 18 and s[0] == "[" and s[-1] == "]", s
    h, m, rest = s[1:-1].split(":")
    sec, frac = rest.split(".")
    assert len(frac) == 7
    midnight = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
    return (int(midnight.timestamp()) + int(h) * 3600 + int(m) * 60 + int(sec)) * 10**9 + int(frac) * 100


@dataclasses.dataclass
class Capture:
    paths: list[Path]
    sim: CameraSim
    model: RowModel
    target: tuple[float, float]
    comp: tuple[float, float]
    D: int
    R: int
    written: list[int]  # frame indices of the capture that were written (dropped ones are not)
    invalid: list[int]
    truth: dict[str, dict[int, tuple[int, int]]]  # aperture -> capture index -> (start, end) ns
    row0: dict[int, tuple[int, int]]

    @property
    def exposure_ns(self) -> int:
        return round(self.sim.exposure_us * 1e3)

    def model_args(self) -> list[str]:
        return ["--offset0-us", str(OFFSET0_US), "--line-period-ns", str(LP_NS), "--readout",
                self.sim.readout, "--reference", "end", "--exposure-s", f"{self.sim.exposure_us / 1e6:.9f}",
                "--crop-y", str(self.sim.crop_y)]  # fmt: skip


def capture(
    tmp: Path, *, readout: str, exposure_ms: float, interval_ms: float, fmt: str, n: int = 40,
    height: int = 3300, crop_y: int = 0, target_row: float = 3131.0, comp_row: float = 3020.0,
    d_frame: int = 12, d_frac: float = 0.3, r_frame: int = 21, r_frac: float = 0.65,
    d_gap: float | None = None, drop: tuple[int, ...] = (), invalid: tuple[int, ...] = (),
    flux: float = 1.0e6, seed: int = 1, width: int = 40,
) -> Capture:  # fmt: skip
    """Write a simulated occultation; D at ``d_frac`` of frame ``d_frame``'s target-row window
    (or at ``d_gap`` of the dead time after it), R at ``r_frac`` of frame ``r_frame``'s."""
    sim = CameraSim(
        width=width, height=height, crop_y=crop_y, readout=readout, reference="end",  # type: ignore[arg-type]
        offset0_us=OFFSET0_US, line_period_ns=LP_NS, exposure_us=exposure_ms * 1e3,
        frame_interval_us=interval_ms * 1e3, t0_unix_ns=T0, sky_adu_per_s=2000.0,
        read_noise_adu=3.0, seed=seed, sequence0=5000, pps_count=9_999_721,
    )  # fmt: skip
    exp = sim.exposure_us * 1e3
    t_row, c_row = round(target_row), round(comp_row)

    def window(i: int, row: int) -> tuple[int, int]:
        """The simulator's true window of an image row, ns (rounded once from its float
        offset to the stamp: absolute ns never go through float64)."""
        _, _, ref = sim.block_for(i)
        rel_end = float(sim.row_end_rel_ns()[row].max())
        return ref + round(rel_end - exp), ref + round(rel_end)

    if d_gap is None:
        d_true = round(window(d_frame, t_row)[0] + d_frac * exp)
    else:
        gap_start, gap_end = window(d_frame, t_row)[1], window(d_frame + 1, t_row)[0]
        d_true = round(gap_start + d_gap * (gap_end - gap_start))
    r_true = round(window(r_frame, t_row)[0] + r_frac * exp)
    tx, cx = width / 2 - 2.0, width / 2 + 3.0
    stars = [Star(tx, target_row, flux, fwhm_px=3.0, occulted=(d_true, r_true)),
             Star(cx, comp_row, 1.3 * flux, fwhm_px=3.0)]  # fmt: skip
    bad = dataclasses.replace(sim, receiver_state=2)
    written = [i for i in range(n) if i not in drop]
    images = []
    for i in written:
        shot = (bad if i in invalid else sim).frame(i, stars=stars)
        images.append(shot.image)
    paths: list[Path] = []
    if fmt == "fits":
        from astropy.io import fits

        for i, img in zip(written, images, strict=True):
            hdu = fits.PrimaryHDU(img)
            for k, v in sim.fits_header().items():
                hdu.header[k] = v
            p = tmp / f"occ_{i:04d}.fits"
            hdu.writeto(p)
            paths.append(p)
    else:
        p = tmp / "occ.ser"
        write_ser(p, np.stack(images))
        paths.append(p)
    truth = {
        "target": {i: window(i, t_row) for i in range(n)},
        "comp1": {i: window(i, c_row) for i in range(n)},
    }
    model = RowModel.from_us(offset0_us=OFFSET0_US, line_period_ns=LP_NS, readout=readout)  # type: ignore[arg-type]
    return Capture(paths, sim, model, (tx, target_row), (cx, comp_row), d_true, r_true, written,
                   list(invalid), truth, {i: window(i, 0) for i in range(n)})  # fmt: skip


def run_cli(args: list[str]) -> Any:
    res = CliRunner().invoke(main, ["lightcurve", *args])
    assert "Traceback" not in res.output and "internal error" not in res.output, res.output
    return res


def check_csv_against_truth(csv: Path, cap: Capture, time: str = "start") -> list[str]:
    """PyOTE reads the CSV; every timeInfo is the truth window of the target's row to 100 ns."""
    raw = csv.read_text()
    assert raw.splitlines()[0].startswith("# PyMovie") and raw.endswith("\n")
    frame, times, value, ref1, _r2, _r3, _extra, names, headers = pyote_read(csv)
    expect = [i for i in cap.written if i not in cap.invalid]
    assert [int(f) for f in frame] == expect  # capture index, dropped frames counted
    assert names[0] == "target" and len(value) == len(expect)
    assert len(names) == 1 or (names[1] == "comp1" and len(ref1) == len(expect))
    date = next(h.split(":", 1)[1].strip() for h in headers if h.startswith("# date at frame 0:"))
    k = {"start": 0, "mid": None, "end": 1}[time]
    for i, s in zip(expect, times, strict=True):
        st, en = cap.truth["target"][i]
        t_true = (st + en) // 2 if k is None else (st, en)[k]  # mid: within 1 ns
        got = parse_time_info(s, date)
        assert abs(got - t_true) <= 51, (i, s, got - t_true)
        assert got % 100 == 0
    return headers


# -- the Must-show cases ------------------------------------------------------------------------

CASES = [  # readout, format, exposure (ms), frame interval (ms), crop, height, target row
    pytest.param("pairs", "fits", 35.4, 36.734, 0, 3300, 3131.0, id="pairs-fits-35ms"),
    pytest.param("pairs", "fits", 10.0, 12.0, 3000, 200, 151.0, id="pairs-fits-10ms-crop3000"),
    pytest.param("2cms", "ser", 82.2, 139.551, 0, 3300, 3136.0, id="2cms-ser-82ms"),
    pytest.param("2cms", "ser", 100.0, 104.0, 0, 3300, 3205.0, id="2cms-ser-100ms"),
]


@pytest.mark.parametrize(("readout", "fmt", "exp_ms", "interval_ms", "crop", "height", "row"), CASES)
def test_simulated_occultation_times_and_events(
    tmp_path: Path, readout: str, fmt: str, exp_ms: float, interval_ms: float, crop: int,
    height: int, row: float,
) -> None:  # fmt: skip
    cap = capture(tmp_path, readout=readout, exposure_ms=exp_ms, interval_ms=interval_ms, fmt=fmt,
                  crop_y=crop, height=height, target_row=row, comp_row=row - 111, drop=(5,),
                  seed=int(exp_ms))  # fmt: skip
    assert crop + row > 3000
    csv = tmp_path / "lc.csv"
    res = run_cli([*map(str, cap.paths), "--target", "{},{}".format(*cap.target), "--comparison",
                   "{},{}".format(*cap.comp), "--aperture", "5", "--annulus", "9,15",
                   *cap.model_args(), "-o", str(csv), "--json", "--events", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    check_csv_against_truth(csv, cap)
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    frames, events = lines[:-1], lines[-1]["events"]
    # --json: every aperture's window to 1 ns of the simulator's, ISO with 9 decimals
    worst = 0.0
    for rec in frames:
        i = rec["index"]
        assert rec["status"] == "ok"
        for name in ("target", "comp1"):
            ap = rec["apertures"][name]
            st, en = cap.truth[name][i]
            worst = max(worst, abs(ap["start_ns"] - st), abs(ap["end_ns"] - en))
            assert ap["mid_ns"] == (ap["start_ns"] + ap["end_ns"]) // 2 or abs(ap["mid_ns"] - (st + en) / 2) <= 1
            assert ap["start"].endswith(str(ap["start_ns"] % 10**9).zfill(9))
    assert worst <= 1.0
    assert [r["dropped_before"] for r in frames if r["dropped_before"]] == [
        {"count": 1, "first_sequence": 5005, "last_sequence": 5005}]  # fmt: skip
    # events: D and R within 3 sigma, sigma far below the row-0 correction
    shift = cap.truth["target"][0][0] - cap.row0[0][0]  # the target row's offset from image row 0
    for edge, true in (("D", cap.D), ("R", cap.R)):
        got, sig = events[edge]["unix_ns"], events[edge]["sigma_s"] * 1e9
        assert abs(got - true) <= 3 * sig, (edge, got - true, sig)
        assert sig < exp_ms * 1e6 / 20
        naive = events["frame_level"][edge]["unix_ns"]
        assert abs((got - naive) - shift) <= 2  # the frame-level fit is off by the row offset
        if crop == 0:
            assert sig < shift / 100  # far below the correction it contains
    assert abs(events["row_correction_s"] * 1e9 - shift) <= 2


def test_events_in_the_dead_time_have_honest_sigma(tmp_path: Path) -> None:
    """2CMS at 82 ms every 140 ms: D falls between two windows; it is only known to lie in the gap."""
    cap = capture(tmp_path, readout="2cms", exposure_ms=82.2, interval_ms=139.551, fmt="ser", n=30,
                  height=200, crop_y=3000, target_row=150, comp_row=60, d_frame=10, d_gap=0.37)  # fmt: skip
    en, nxt = cap.truth["target"][10][1], cap.truth["target"][11][0]
    lc = light_curve(cap.paths, cap.target, [cap.comp], fixed=True, model=cap.model,
                     exposure_ns=cap.exposure_ns, crop_y=3000)  # fmt: skip
    ev = fit_events(lc)
    gap = nxt - en
    assert ev.D.sample == -1  # between windows
    assert abs(ev.D.fit_sigma_ns - gap / math.sqrt(12)) < 0.05 * gap
    assert abs(ev.D.unix_ns - cap.D) <= math.sqrt(3) * ev.D.sigma_ns  # uniform: within the gap
    assert abs(ev.R.unix_ns - cap.R) <= 3 * ev.R.sigma_ns and ev.R.sample >= 0


def test_dropped_frame_and_invalid_block_fits(tmp_path: Path) -> None:
    """PyOTE reads the CSV; the header says which frames are missing or left out, and why."""
    cap = capture(tmp_path, readout="pairs", exposure_ms=35.4, interval_ms=36.734, fmt="fits", n=30,
                  height=200, crop_y=3400, target_row=131, comp_row=40, d_frame=10, r_frame=16,
                  drop=(7, 8), invalid=(20,))  # fmt: skip
    csv = tmp_path / "lc.csv"
    res = run_cli([str(tmp_path), "--target", "{},{}".format(*cap.target), "--comparison",
                   "{},{}".format(*cap.comp), *cap.model_args(), "-o", str(csv), "--json", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    headers = check_csv_against_truth(csv, cap)
    text = "\n".join(headers)
    assert "# dropped: 2 frame(s), sequence 5007-5008 missing (frame number 7-8) after occ_0006.fits" in text
    left = [h for h in headers if h.startswith("# left out:")]
    assert len(left) == 1 and "occ_0020.fits" in left[0] and "(sequence 5020)" in left[0]
    assert "receiver_state" in left[0] and "invalid" in left[0]
    recs = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(recs) == 28  # every frame read has an object
    bad = next(r for r in recs if r["index"] == 20)
    assert bad["status"] == "invalid" and bad["reasons"][0].startswith("receiver_state")
    assert bad["apertures"]["target"]["start_ns"] is None and bad["apertures"]["target"]["start"] is None
    assert bad["apertures"]["target"]["signal"] > 0  # measured, just not timed
    after = next(r for r in recs if r["index"] == 9)  # the frame after the gap keeps its time
    assert after["status"] == "ok" and after["reasons"][0].startswith("sequence_gap")
    assert abs(after["apertures"]["target"]["start_ns"] - cap.truth["target"][9][0]) <= 1
    assert "sequence 5007-5008" in res.stderr and "occ_0020.fits frame 0 left out" in res.stderr


def test_invalid_block_and_gap_in_ser(tmp_path: Path) -> None:
    cap = capture(tmp_path, readout="2cms", exposure_ms=50.0, interval_ms=60.0, fmt="ser", n=25,
                  height=120, crop_y=3100, target_row=100, comp_row=30, d_frame=8, r_frame=14,
                  drop=(3,), invalid=(17, 18))  # fmt: skip
    lc = light_curve(cap.paths, cap.target, [cap.comp], model=cap.model, exposure_ns=cap.exposure_ns,
                     crop_y=3100)  # fmt: skip
    assert [lc.status[k] for k in range(len(lc))].count("invalid") == 2
    assert [(i, d.count, d.first) for i, d in lc.dropped] == [(3, 1, 5003)]
    csv = tmp_path / "lc.csv"
    assert lc.write_csv(csv) == 22
    headers = check_csv_against_truth(csv, cap)
    assert sum(h.startswith("# left out: occ.ser frame 1") for h in headers) == 2  # frames 16, 17 of the file


def test_tracking_follows_a_drifting_star(tmp_path: Path) -> None:
    """0.5 px per frame over 500 frames, through an occultation where it cannot be centroided."""
    n, vx, vy = 500, 0.48, 0.14  # |v| = 0.50 px/frame
    sim = CameraSim(width=290, height=110, crop_y=3200, readout="2cms", offset0_us=OFFSET0_US,
                    line_period_ns=LP_NS, exposure_us=10_000, frame_interval_us=12_000,
                    t0_unix_ns=T0, sky_adu_per_s=2000.0, seed=9)  # fmt: skip
    x0, y0 = 20.3, 25.6
    i = np.arange(n)
    tx, ty = x0 + vx * i, y0 + vy * i

    def window(k: int) -> tuple[int, int]:  # the true window of the star's row in frame k
        _, _, ref = sim.block_for(k)
        end = ref + round(float(sim.row_end_rel_ns()[round(ty[k])].max()))
        return end - 10_000_000, end

    d_ns, r_ns = window(240)[0] + 3_000_000, window(250)[0] + 6_000_000
    stack = np.stack([
        sim.frame(k, stars=[Star(tx[k], ty[k], 1.5e6, fwhm_px=3.0, occulted=(d_ns, r_ns)),
                            Star(150.0, 90.0, 1.5e6, fwhm_px=3.0)]).image
        for k in range(n)
    ])  # fmt: skip
    path = tmp_path / "drift.ser"
    write_ser(path, stack)
    model = RowModel.from_us(offset0_us=OFFSET0_US, line_period_ns=LP_NS, readout="2cms")
    lc = light_curve([path], (x0 + 0.4, y0 - 0.3), [(150.0, 90.0)], model=model, exposure_ns=10_000_000,
                     crop_y=3200)  # fmt: skip
    tg = lc.target
    good = tg.centroid_ok
    assert good[i < 240].all() and good[i > 250].all()
    assert not good[(i > 240) & (i < 250)].any()  # hidden: the aperture follows the fitted drift
    assert np.abs(tg.xcentroid[good] - tx[good]).max() < 0.15
    assert np.abs(tg.ycentroid[good] - ty[good]).max() < 0.15
    assert np.hypot(tg.x - tx, tg.y - ty).max() < 0.5  # incl. the fitted drift during the event
    assert tg.x[-1] > 250  # followed all the way across
    # each sample timed at the row under the aperture; that row is the true one (off half-rows)
    clear = np.abs((ty % 1) - 0.5) > 0.2
    assert (tg.row[clear] == np.floor(ty[clear] + 0.5)).all()
    for k in (0, 137, 320, 499):
        _, _, ref = sim.block_for(k)
        rel_end = float(sim.row_end_rel_ns()[tg.row[k]].max())
        assert abs(int(tg.end_ns[k]) - ref - rel_end) <= 1
        assert abs(int(tg.start_ns[k]) - ref - (rel_end - 10_000_000)) <= 1
    assert len(set(tg.row.tolist())) > 60  # many rows, many times
    comp = lc.apertures[1]
    assert np.abs(comp.xcentroid - 150).max() < 0.15 and (comp.row == 90).all()


# -- the shared reference captures (independent generator, truth.json) --------------------------


def shared_truth(name: str) -> tuple[Path, dict[str, Any]]:
    d = SHARED / name
    if not (d / "truth.json").exists():
        missing(f"shared test data {d}")
    return d, json.loads((d / "truth.json").read_text())


@pytest.mark.parametrize("name", ["pairs_fits", "2cms_ser"])
def test_shared_reference_captures(tmp_path: Path, name: str) -> None:
    d, t = shared_truth(name)
    csv = tmp_path / "lc.csv"
    res = run_cli([*[str(d / f) for f in t["files"]], "--target", f"{t['target']['x']},{t['target']['y']}",
                   "--comparison", f"{t['comparison']['x']},{t['comparison']['y']}", "--fixed",
                   *t["model_options"], "-o", str(csv), "--json", "--events", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    frame, times, _value, _ref1, *_rest, headers = pyote_read(csv)
    assert len(frame) == len(t["frames"]) == len(times)
    day = next(h.split(":", 1)[1].strip() for h in headers if h.startswith("# date at frame 0:"))
    errs = [parse_time_info(s, day) - f["target"]["start_ns"] for s, f in zip(times, t["frames"], strict=True)]
    assert max(map(abs, errs)) <= 50
    recs = [json.loads(x) for x in res.stdout.splitlines()]
    for rec, f in zip(recs[:-1], t["frames"], strict=True):
        assert rec["apertures"]["target"]["start_ns"] == f["target"]["start_ns"]
        assert rec["apertures"]["comp1"]["start_ns"] == f["comparison"]["start_ns"]
        assert rec["apertures"]["target"]["end_ns"] == f["target"]["end_ns"]
    ev = recs[-1]["events"]
    for edge in ("D", "R"):
        err = ev[edge]["unix_ns"] - t[f"{edge}_unix_ns"]
        assert abs(err) <= 3 * ev[edge]["sigma_s"] * 1e9
        assert ev[edge]["sigma_s"] < t["exposure_s"] / 20
    assert round(ev["row_correction_s"] * 1e9) == t["shift_from_image_row0_ns"]
    for dr in t["dropped"]:
        assert any(h.startswith("# dropped:") and f"sequence {dr['sequence']}" in h for h in headers)


# -- the command line: outputs together, errors without tracebacks ------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Capture:
    tmp = tmp_path_factory.mktemp("small")
    return capture(tmp, readout="pairs", exposure_ms=20.0, interval_ms=25.0, fmt="fits", n=14,
                   height=60, crop_y=3300, target_row=40, comp_row=15, d_frame=5, r_frame=8)  # fmt: skip


def test_cli_mid_end_plot_and_table(tmp_path: Path, small: Capture) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        missing("matplotlib (the plot extra)")
    files = [str(p) for p in small.paths]
    for moment in ("mid", "end"):
        csv = tmp_path / f"{moment}.csv"
        res = run_cli([*files, "--target", "{},{}".format(*small.target), *small.model_args(),
                       "--time", moment, "-o", str(csv), "-q"])  # fmt: skip
        assert res.exit_code == 0, res.output
        headers = check_csv_against_truth(csv, small, time=moment)
        assert any(f"the {moment} of the exposure of the target's row" in h for h in headers)
    png = tmp_path / "lc.png"
    res = run_cli([*files, "--target", "{},{}".format(*small.target), *small.model_args(), "--events",
                   "--plot", str(png), "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res.stdout.startswith("D  ") and "R  " in res.stdout
    res = run_cli([*files, "--target", "{},{}".format(*small.target), *small.model_args(), "-q"])
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 15  # header + 14 frames
    assert time_info(int(light_curve(small.paths, small.target, model=small.model).target.start_ns[3])) in res.stdout


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--target", "1;2"], 2, "is not X,Y"),
        (["--target", "nan,2"], 2, "finite"),
        (["--target", "5,5", "--annulus", "3,15"], 2, "inside the aperture"),
        (["--target", "5,5", "--annulus", "15,9"], 2, "0 < R1 < R2"),
        (["--target", "5,5", "--aperture", "0"], 2, "out of range"),
        (["--target", "500,5"], 1, "outside the 40x60 first frame"),
        (["--target", "5,5", "--offset0-us", "10"], 2, "go together"),
    ],
)
def test_cli_refuses_bad_input(small: Capture, args: list[str], code: int, words: str) -> None:
    res = run_cli([str(small.paths[0]), *args, "-q"])
    assert res.exit_code == code, res.output
    assert words in res.output


def test_cli_ser_needs_exposure_and_unreadable_files_are_listed(tmp_path: Path, small: Capture) -> None:
    ser = tmp_path / "x.ser"
    write_ser(ser, np.stack([small.sim.frame(i).image for i in range(6)]))
    res = run_cli([str(ser), "--target", "10,10", "--offset0-us", "1", "--line-period-ns", "43194", "-q"])
    assert res.exit_code == 1 and "give --exposure-s" in res.stderr
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not a fits file")
    csv = tmp_path / "lc.csv"
    files = [str(p) for p in small.paths]
    res = run_cli([*files[:3], str(junk), *files[3:], "--target", "{},{}".format(*small.target),
                   *small.model_args(), "-o", str(csv), "--json", "-q"])  # fmt: skip
    assert res.exit_code == 1  # one input could not be read: said, and everything else written
    frame, *_ = pyote_read(csv)
    assert len(frame) == 14
    text = csv.read_text()
    assert "# left out: junk.fits, error: unreadable: not a FITS or SER file" in text
    recs = [json.loads(x) for x in res.stdout.splitlines()]
    assert [r["status"] for r in recs].count("error") == 1 and len(recs) == 15


def test_cli_events_without_an_event(tmp_path: Path) -> None:
    sim = CameraSim(width=40, height=40, crop_y=3100, exposure_us=20_000, frame_interval_us=25_000, seed=2)
    paths = sim.write_fits(tmp_path, 12, stars=[Star(20, 20, 1e6, fwhm_px=3)])
    csv = tmp_path / "lc.csv"
    res = run_cli([*map(str, paths), "--target", "20,20", "--offset0-us", "1974.286", "--line-period-ns",
                   "43194", "-o", str(csv), "--json", "--events", "-q"])  # fmt: skip
    assert res.exit_code == 1 and "no significant event" in res.stderr
    last = json.loads(res.stdout.splitlines()[-1])
    assert "no significant event" in last["events"]["error"]
    assert len(pyote_read(csv)[0]) == 12  # the light curve is still written


def test_calibration_from_the_store(tmp_path: Path, small: Capture) -> None:
    """No explicit model: the calibration of the files' setting, as `qhytime rows` finds it."""
    from qhytime.calibration import Calibration
    from qhytime.framerows import setting_from_reader
    from qhytime.readers import open_frames
    from qhytime.store import CalibrationStore

    with open_frames(small.paths[0]) as r:
        setting = setting_from_reader(r)
    db = tmp_path / "cal.sqlite"
    with CalibrationStore(str(db)) as store:
        cal = store.add(Calibration(setting=setting, reference="end", offset0_us=OFFSET0_US,
                                    offset0_sigma_us=0.05, line_period_ns=LP_NS,
                                    line_period_sigma_ns=0.001, method="manual"))  # fmt: skip
    csv = tmp_path / "lc.csv"
    res = run_cli([*map(str, small.paths), "--target", "{},{}".format(*small.target), "--db", str(db),
                   "-o", str(csv), "--json", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    headers = check_csv_against_truth(csv, small)
    assert f"# calibration id: #{cal.id}" in headers
    sig = json.loads(res.stdout.splitlines()[0])["apertures"]["target"]["sigma_ns"]
    assert 50 < sig < 60  # offset0 50 ns, ticks 28.9 ns, 3340 rows x 0.001 ns


def test_binned_rows_are_timed_as_intervals(tmp_path: Path) -> None:
    """Binning 2: an image row spans two sensor rows; its window is their earliest start and
    latest end (the simulator's own sensor rows)."""
    sim = CameraSim(width=48, height=60, crop_y=3301, binning=2, readout="2cms", offset0_us=OFFSET0_US,
                    line_period_ns=LP_NS, exposure_us=20_000, frame_interval_us=25_000, t0_unix_ns=T0,
                    seed=4)  # fmt: skip
    paths = sim.write_fits(tmp_path, 6, stars=[Star(20, 41.3, 2e6, fwhm_px=3.0)])
    model = RowModel.from_us(offset0_us=OFFSET0_US, line_period_ns=LP_NS, readout="2cms")
    lc = light_curve(paths, (20, 41), model=model)
    tg = lc.target
    assert (tg.row == 41).all() and (tg.sensor_row == 3301 + 82).all()
    ends = sim.row_end_rel_ns()[41]  # the two sensor rows 3383, 3384
    for k in range(6):
        ref = sim.block_for(k)[2]
        assert abs(int(tg.end_ns[k]) - ref - ends.max()) <= 1
        assert abs(int(tg.start_ns[k]) - ref - (ends.min() - 20_000_000)) <= 1
        assert abs(int(tg.mid_ns[k]) - ref - (ends.mean() - 10_000_000)) <= 1


def test_a_star_leaving_the_frame_is_reported_not_lost(tmp_path: Path) -> None:
    sim = CameraSim(width=60, height=40, crop_y=3200, exposure_us=10_000, frame_interval_us=12_000,
                    t0_unix_ns=T0, seed=5)  # fmt: skip
    xs = 30 + 2.0 * np.arange(30)  # leaves the 60-px frame after ~15 frames
    stack = np.stack([sim.frame(k, stars=[Star(float(xs[k]), 20, 2e6, fwhm_px=3.0)]).image for k in range(30)])
    write_ser(tmp_path / "off.ser", stack)
    model = RowModel.from_us(offset0_us=OFFSET0_US, line_period_ns=LP_NS)
    lc = light_curve([tmp_path / "off.ser"], (30, 20), model=model, exposure_ns=10_000_000, search=4)
    st = np.array(lc.status)
    assert (st[:12] == "ok").all() and (st[-5:] == "error").all()
    assert all(r[-1].startswith("photometry: no measurement for target") for r, s in
               zip(lc.reasons, lc.status, strict=True) if s == "error")  # fmt: skip
    assert lc.write_csv(tmp_path / "lc.csv") == int((st == "ok").sum())
    assert len(pyote_read(tmp_path / "lc.csv")[0]) == int((st == "ok").sum())


def test_truncated_ser_and_sequence_wrap(tmp_path: Path) -> None:
    """The sequence counter wraps at 2**32 (a dropped frame across the wrap is still a gap);
    a SER cut short keeps its complete frames and reports the rest."""
    sim = CameraSim(width=40, height=40, crop_y=3100, exposure_us=10_000, frame_interval_us=12_000,
                    t0_unix_ns=T0, seed=6)  # fmt: skip
    s0 = 2**32 - 3
    star = [Star(20, 20, 2e6, fwhm_px=3.0)]
    frames = [dataclasses.replace(sim, sequence0=(s0 + k) % 2**32 - k).frame(k, stars=star).image
              for k in range(8) if k != 4]  # fmt: skip
    path = tmp_path / "wrap.ser"
    write_ser(path, np.stack(frames))
    with open(path, "r+b") as fh:  # cut the last frame in half
        fh.truncate(178 + 6 * 40 * 40 * 2 + 40 * 40)
    model = RowModel.from_us(offset0_us=sim.offset0_us, line_period_ns=sim.line_period_ns)
    lc = light_curve([path], (20, 20), model=model, exposure_ns=10_000_000, crop_y=3100)
    assert lc.sequence.tolist() == [2**32 - 3, 2**32 - 2, 2**32 - 1, 0, 2, 3, -1]
    assert lc.index.tolist()[:6] == [0, 1, 2, 3, 5, 6]
    assert [(i, d.count, d.first, d.last) for i, d in lc.dropped] == [(4, 1, 1, 1)]
    assert lc.status == ["ok"] * 6 + ["error"] and "truncated" in lc.reasons[-1][0]
    for k, cap_index in enumerate([0, 1, 2, 3, 5, 6]):  # the frame after the gap keeps its time
        _, _, ref = sim.block_for(cap_index)
        assert abs(int(lc.target.end_ns[k]) - ref - float(sim.row_end_rel_ns()[20].max())) <= 1


@pytest.mark.parametrize(("readout", "binning"), [("pairs", 1), ("2cms", 1), ("2cms", 2)])
def test_simulated_star_is_hidden_exactly_over_each_rows_window(readout: str, binning: int) -> None:
    """Hand-worked: without noise a row's star signal is flux x its visible time; D falls 30 %
    into row 50's window, so row 50 sees 30 % of it, and rows read out later see less."""
    sim = CameraSim(width=32, height=100, crop_y=3500, binning=binning, readout=readout,  # type: ignore[arg-type]
                    exposure_us=10_000, bias_adu=0.0, t0_unix_ns=T0)  # fmt: skip
    _, _, ref = sim.block_for(0)
    ends = sim.row_end_rel_ns()  # (rows, binning) float ns after the reference stamp
    d = ref + round(ends[50].max() - 10_000_000 + 3_000_000)
    r = d + 10**9
    flux = 5e11  # ADU/s over a flat "star" much wider than the strip: ~27,000 ADU per pixel
    hidden = sim.frame(0, stars=[Star(16, 50, flux, fwhm_px=400.0, occulted=(d, r))], noise=False)
    shown = sim.frame(0, stars=[Star(16, 50, flux, fwhm_px=400.0)], noise=False)
    frac = hidden.image[:, 16].astype(float) / shown.image[:, 16].astype(float)
    for row in (30, 50, 70):
        sub_end = ends[row] - (d - ref)  # per sensor row: how long before its end D came
        expect = np.clip(1.0 - sub_end / 10_000_000, 0.0, 1.0).mean()
        assert abs(frac[row] - expect) < 2e-3, (row, frac[row], expect)
    if binning == 1:
        assert abs(frac[50] - 0.3) < 2e-3


def test_damaged_block_in_a_fits_series_is_not_timed(tmp_path: Path) -> None:
    """A block whose end stamp sits 2 ms off the sequence's cadence (a damaged byte of a
    single-frame FITS file) is caught by the across-file checks `qhytime decode` makes, and
    the light curve gives that frame no time."""
    from astropy.io import fits

    from qhytime.api import decode_paths
    from qhytime.gpsblock import Stamp, embed_block

    sim = CameraSim(width=64, height=40, crop_y=3000, exposure_us=20_000, frame_interval_us=25_000,
                    seed=5)  # fmt: skip
    star = Star(30, 20, 2e6, fwhm_px=3)
    paths = sim.write_fits(tmp_path / "seq", 12, stars=[star])
    shot = sim.frame(6, stars=[star])
    end = shot.block.end
    bad = dataclasses.replace(shot.block, end=Stamp(end.flag, end.seconds, end.ticks + 20_000))
    img = shot.image.copy()
    embed_block(img, bad)
    fits.PrimaryHDU(img, header=fits.getheader(paths[6])).writeto(paths[6], overwrite=True)
    flagged = {r.file: r for r in decode_paths(paths)}[str(paths[6])]
    assert flagged.status == "invalid"  # caught by the across-file consistency checks
    m = RowModel.from_us(offset0_us=sim.offset0_us, line_period_ns=sim.line_period_ns)
    lc = light_curve(paths, (30, 20), radius=4, annulus=(7, 12), model=m)
    assert lc.status == ["ok"] * 6 + ["invalid"] + ["ok"] * 5
    assert lc.reasons[6] == flagged.reasons

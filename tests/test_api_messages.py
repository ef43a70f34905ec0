"""Library errors speak Python: they name the argument to give (``first=1|2``, ``next_path=``,
``tle=``, ``wcs=``, ``readout=``) and the file and frame they concern, never a CLI flag; the
command line shows its users the flags instead."""

from __future__ import annotations

import ast
import csv
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qhytime.cli import main
from qhytime.errors import (
    FrameReadError,
    LedFitError,
    OrbitError,
    OutputError,
    QhytimeError,
    RowModelError,
)
from qhytime.rowmodel import RowModel
from qhytime.satellite.ades import AdesContext, AdesObject, ades_psv
from qhytime.satellite.orbit import Observer, first_end_by_orbit, load_tle
from qhytime.satellite.streak import measure_streak
from qhytime.simulate import CameraSim

from conftest import SHARED_TESTDATA, need

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
SAT = SHARED_TESTDATA / "satellite"
TLE = DATA / "satellite" / "iss.tle"
LED = DATA / "led_pairs"
FLAG = re.compile(r"(?<![\w-])--[A-Za-z]")
"""A CLI flag in a text (``--first``; not ``---`` rules nor ``a--b``)."""

MODEL = RowModel.from_us(offset0_us=1978.906, line_period_ns=43193.414)
MODEL_ARGS = ["--offset0-us", "1978.906", "--line-period-ns", "43193.414"]
ENDS = (363.9319, 342.0402, 433.5022, 395.1642)  # end_00.fits's trail (truth.json)


def _run(*args: Any) -> tuple[int, str]:
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise AssertionError(f"exception escaped: {res.exception!r}")
    return res.exit_code, res.stderr


def _python_words(msg: str) -> None:
    assert not FLAG.search(msg), f"a CLI flag in a library message: {msg}"


@pytest.fixture(scope="module")
def end00() -> Path:
    path = SAT / "end_00.fits"
    need(path.is_file(), f"the shared satellite reference frames ({SAT})")
    return path


@pytest.fixture(scope="module")
def plain_frame(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated frame without a WCS."""
    (path,) = CameraSim(width=64, height=40).write_fits(tmp_path_factory.mktemp("plain"), 1)
    return Path(path)


# -- no CLI flag in any library message of these modules ---------------------------------------

MODULES = sorted(
    [
        *(ROOT / "qhytime" / "satellite").glob("*.py"),
        *(ROOT / "qhytime" / "occultation").glob("*.py"),
        *(ROOT / "qhytime" / n for n in ("ledcal.py", "ledscan.py", "ledplan.py")),
    ]
)
MESSAGE_LISTS = {"notes", "warnings", "rejected", "lines", "problems"}


def _message_strings(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """String pieces of every raise, ``warnings.warn(...)`` and ``notes.append(...)`` (and the
    other message lists): what a caller reads."""
    for node in ast.walk(tree):
        inside = isinstance(node, ast.Raise)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            f = node.func
            inside |= f.attr == "warn" and isinstance(f.value, ast.Name) and f.value.id == "warnings"
            inside |= f.attr == "append" and isinstance(f.value, ast.Name) and f.value.id in MESSAGE_LISTS
        if inside:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    yield sub.lineno, sub.value


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_cli_flag_in_library_messages(module: Path) -> None:
    found = [f"{module.name}:{line}: {text!r}"
             for line, text in _message_strings(ast.parse(module.read_text()))
             if FLAG.search(text)]  # fmt: skip
    assert not found, "\n".join(found)


def test_the_scan_sees_messages() -> None:
    """The scan finds the strings of raises, warnings and notes (it cannot pass by missing
    them): a planted flag is caught in each place."""
    src = '''
def f(notes):
    raise ValueError(f"give --first {1}")
def g():
    warnings.warn("use --wcs")
def h(notes):
    notes.append("see --json")
'''
    texts = [t for _, t in _message_strings(ast.parse(src))]
    assert sum(bool(FLAG.search(t)) for t in texts) == 3


# -- measure_streak: which end came first ------------------------------------------------------


def test_order_unknown_names_the_arguments_and_the_frame(end00: Path) -> None:
    with pytest.raises(RowModelError) as ei:
        measure_streak(end00, 0, model=MODEL, ends=ENDS)
    msg = str(ei.value)
    assert ei.value.path == str(end00) and ei.value.frame == 0
    assert msg.startswith(f"{end00}, frame 0: which end came first")
    assert all(a in msg for a in ("first=1|2", "next_path=", "tle="))
    _python_words(msg)
    code, err = _run("streak", end00, "--ends", ",".join(map(str, ENDS)), *MODEL_ARGS)
    assert code == 1 and str(end00) in err and "frame 0" in err
    assert all(f in err for f in ("--first 1|2", "--next FRAME2", "--tle FILE"))
    assert "first=" not in err and "next_path=" not in err


def test_detected_trail_without_order_names_next_path_and_tle() -> None:
    path = SAT / "det_00_0.fits"
    need(path.is_file(), f"the shared satellite reference frames ({SAT})")
    with pytest.raises(RowModelError) as ei:
        measure_streak(path, model=MODEL, detect=True)
    msg = str(ei.value)
    assert msg.startswith(f"{path}, frame 0: 1 trail(s) found")
    assert "next_path=" in msg and "tle=" in msg
    _python_words(msg)
    code, err = _run("streak", path, "--detect", *MODEL_ARGS)
    assert code == 1 and str(path) in err and "--next FRAME2" in err and "--tle FILE" in err


def test_next_frame_out_of_range(end00: Path) -> None:
    with pytest.raises(RowModelError) as ei:
        measure_streak(end00, model=MODEL, ends=ENDS, next_path=end00, next_frame=3)
    msg = str(ei.value)
    assert ei.value.path == str(end00)
    assert "next_frame=3 is out of range: the file has 1 frame(s) (0..0)" in msg
    _python_words(msg)
    code, err = _run("streak", end00, "--ends", ",".join(map(str, ENDS)), *MODEL_ARGS,
                     "--next", end00, "--next-frame", "3")  # fmt: skip
    assert code == 1 and "--next-frame 3 is out of range" in err


def test_tle_without_wcs_asks_for_wcs(plain_frame: Path) -> None:
    ends = (10.0, 10.0, 30.0, 20.0)
    with pytest.raises(RowModelError) as ei:
        measure_streak(plain_frame, model=MODEL, ends=ends, tle=TLE)
    msg = str(ei.value)
    assert msg.startswith(f"{plain_frame}, frame 0: ") and "wcs=" in msg and "first=1|2" in msg
    _python_words(msg)
    # the orbit module says the same in its own words
    with pytest.raises(OrbitError, match=r"give wcs=") as oi:
        first_end_by_orbit(load_tle(TLE), Observer(0.0, 0.0), None, ((0, 0), (1, 1)), 0)
    _python_words(str(oi.value))
    code, err = _run("streak", plain_frame, "--ends", ",".join(map(str, ends)), *MODEL_ARGS,
                     "--tle", TLE)  # fmt: skip
    assert code == 1 and "--wcs FILE" in err and "--first 1|2" in err and "wcs=" not in err


def test_frame_without_wcs_note(plain_frame: Path) -> None:
    r = measure_streak(plain_frame, model=MODEL, ends=(10.0, 10.0, 30.0, 20.0), first=1)
    (note,) = [n for n in r.notes if "no celestial WCS" in n]
    assert note.startswith(str(plain_frame)) and "wcs=" in note
    _python_words(note)
    code, err = _run("streak", plain_frame, "--ends", "10,10,30,20", "--first", "1", *MODEL_ARGS)
    assert code == 0 and "no celestial WCS" in err and "--wcs FILE" in err


def test_an_end_outside_the_frame_names_file_and_frame(plain_frame: Path) -> None:
    with pytest.raises(RowModelError) as ei:
        measure_streak(plain_frame, model=MODEL, ends=(1e5, 10.0, 30.0, 20.0), first=1)
    assert (ei.value.path, ei.value.frame) == (str(plain_frame), 0)
    assert str(ei.value) == (f"{plain_frame}, frame 0: the first end x=100000.000 is outside "
                             "the frame's columns 0..63")  # fmt: skip
    with pytest.raises(RowModelError) as ei:
        measure_streak(plain_frame, model=MODEL, point_sources=[(10.0, 400.0)])
    assert str(ei.value).startswith(f"{plain_frame}, frame 0: position y=400.000 is outside")


# -- bad inputs name the file (and frame) ------------------------------------------------------


def test_bad_frame_files_are_named(tmp_path: Path, plain_frame: Path) -> None:
    missing = tmp_path / "missing.fits"
    with pytest.raises(FrameReadError) as ei:
        measure_streak(missing, model=MODEL, point_sources=[(10.0, 10.0)])
    assert ei.value.path == str(missing) and str(ei.value).startswith(str(missing))
    text = tmp_path / "notes.fits"
    text.write_text("not a frame\n")
    with pytest.raises(FrameReadError) as ei:
        measure_streak(text, model=MODEL, point_sources=[(10.0, 10.0)])
    assert str(ei.value).startswith(f"{text}: not a FITS or SER file")
    with pytest.raises(RowModelError) as ei:
        measure_streak(plain_frame, 5, model=MODEL, point_sources=[(10.0, 10.0)])
    assert str(ei.value).startswith(f"{plain_frame}, frame 5: frame 5 out of range")


def test_tle_errors_name_the_file(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.tle"
    garbage.write_text("hello\nworld\n")
    with pytest.raises(OrbitError) as ei:
        load_tle(garbage)
    assert ei.value.path == str(garbage)
    assert str(ei.value) == f"{garbage}: no TLE (a line starting '1 ' followed by one starting '2 ')"
    missing = tmp_path / "missing.tle"
    with pytest.raises(OrbitError) as ei:
        load_tle(missing)
    assert ei.value.path == str(missing) and str(ei.value).startswith(f"{missing}: cannot read")
    # a TLE given as text names the text, not a file
    lines = TLE.read_text().splitlines()
    damaged = "\n".join([lines[-2][:-1] + "0" if lines[-2][-1] != "0" else lines[-2][:-1] + "1",
                         lines[-1]])  # fmt: skip
    with pytest.raises(OrbitError) as ei:
        load_tle(damaged)
    assert ei.value.path is None and str(ei.value).startswith("the TLE text: TLE line 1 checksum")
    # through measure_streak, the TLE file is named (not the frame)
    end = SAT / "end_00.fits"
    need(end.is_file(), f"the shared satellite reference frames ({SAT})")
    with pytest.raises(OrbitError) as ei:
        measure_streak(end, model=MODEL, ends=ENDS, tle=garbage)
    assert ei.value.path == str(garbage)
    code, err = _run("streak", end, "--ends", ",".join(map(str, ENDS)), *MODEL_ARGS, "--tle", garbage)
    assert code == 1 and f"qhytime: {garbage}: no TLE" in err


def test_ades_object_names_the_arguments(end00: Path, tmp_path: Path) -> None:
    recs = [(1_777_600_799_866_751_054, 0.001, 132.5, -32.1, 0.5)]
    with pytest.raises(QhytimeError) as ei:
        ades_psv(recs, AdesContext("9999"), AdesObject())
    msg = str(ei.value)
    assert all(a in msg for a in ("art_sat=", "perm_id=", "prov_id=", "trk_sub="))
    _python_words(msg)
    psv = tmp_path / "x.psv"
    code, err = _run("streak", end00, "--ends", ",".join(map(str, ENDS)), "--first", "1",
                     *MODEL_ARGS, "--ades", psv, "--station", "9999")  # fmt: skip
    assert code == 1 and not psv.exists()
    assert all(f in err for f in ("--cospar", "--perm-id", "--prov-id", "--trksub"))
    assert "art_sat" not in err


@pytest.mark.parametrize("kind", ["--ades", "--iod"])
def test_output_into_a_missing_folder(end00: Path, tmp_path: Path, kind: str) -> None:
    out = tmp_path / "no" / "such" / "obs.txt"
    code, err = _run("streak", end00, "--ends", ",".join(map(str, ENDS)), "--first", "1",
                     *MODEL_ARGS, kind, out, "--station", "9999", "--norad", "25544",
                     "--cospar", "98067A")  # fmt: skip
    assert code == 1 and not out.exists()
    assert err.strip() == (f"qhytime: {out}: cannot write it: the folder does not exist "
                           f"({out.parent}); nothing was written")  # fmt: skip


def test_library_writers_into_a_missing_folder(tmp_path: Path) -> None:
    from qhytime.ledplan import plan_scan
    from qhytime.ledscan import write_pulses_csv

    out = tmp_path / "no" / "plan.csv"
    with pytest.raises(OutputError) as ei:
        write_pulses_csv(out, ["a.fits"], [[(1000.0, 10.0)]])
    assert ei.value.path == str(out) and "the folder does not exist" in str(ei.value)
    plan = plan_scan(exposure_us=345.552, line_period_ns=43194.0, readout="pairs", frames=3,
                     rows=120, width_px=64)  # fmt: skip
    with pytest.raises(OutputError) as ei:
        plan.write_csv(out)
    assert ei.value.path == str(out) and not out.exists()


# -- ledcal: readout= and reference=, --readout and --reference on the command line ------------


@pytest.fixture(scope="module")
def shuffled_pulses(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference scan's pulse list with each frame given another frame's pulse."""
    need(LED.is_dir(), f"the LED reference scan ({LED})")
    with open(LED / "pulses.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    head, body = rows[0], rows[1:]
    out = tmp_path_factory.mktemp("led") / "shuffled.csv"
    with open(out, "w", newline="") as fh:
        csv.writer(fh).writerows([head] + [[body[i][0], *body[(i * 7 + 3) % len(body)][1:]]
                                           for i in range(len(body))])  # fmt: skip
    return out


def test_ledcal_fit_names_readout_and_reference(shuffled_pulses: Path) -> None:
    from qhytime.ledcal import fit_led, load_scan, read_pulses_csv

    files = sorted(LED.glob("*.fits"))
    frames, rejected, info = load_scan(files, pulses=read_pulses_csv(shuffled_pulses))
    with pytest.raises(LedFitError) as ei:
        fit_led(frames, readout="pairs", reference="end", exposure_ns=info["exposure_ns"],
                line_period_ns=info["line_period_ns"], rejected=rejected)  # fmt: skip
    msg = str(ei.value)
    assert "nothing is stored" in msg and "readout=" in msg
    _python_words(msg)
    code, err = _run("ledcal", "--pulses", shuffled_pulses, "--quiet", *files)
    assert code == 1 and "nothing is stored" in err and "--readout" in err
    assert "readout=" not in err and "reference=" not in err and "plot_fit" not in err


def test_ledcal_points_python_callers_to_plan_scan() -> None:
    """The reference pairs scan fitted as 2CMS: too few frames with partly lit band edges;
    the message names the planner a Python caller can call."""
    from qhytime.ledcal import fit_led, load_scan, read_pulses_csv

    need(LED.is_dir(), f"the LED reference scan ({LED})")
    frames, rejected, info = load_scan(sorted(LED.glob("*.fits"))[:20],
                                       pulses=read_pulses_csv(LED / "pulses.csv"))  # fmt: skip
    with pytest.raises(LedFitError, match="have partly lit rows at the band's edges") as ei:
        fit_led(frames, readout="2cms", exposure_ns=info["exposure_ns"], rejected=rejected)
    msg = str(ei.value)
    assert "qhytime.ledplan.plan_scan" in msg
    _python_words(msg)


# -- occultation: the PyMOVIE CSV's header speaks of JSON records, not of a flag ----------------


def test_pymovie_header_has_no_flags(tmp_path: Path) -> None:
    from qhytime.occultation.lightcurve import light_curve
    from qhytime.occultation.pymovie import write_pymovie_csv

    files = sorted((SHARED_TESTDATA / "occultation" / "pairs_fits").glob("*.fits"))[:3]
    need(len(files) == 3, "the shared occultation reference frames")
    lc = light_curve(files, (100, 100), model=MODEL, fixed=True)
    out = tmp_path / "lc.csv"
    write_pymovie_csv(lc, out)
    header = [ln for ln in out.read_text().splitlines() if ln.startswith("#")]
    assert any("the JSON records give every aperture's times" in ln for ln in header)
    assert not [ln for ln in header if FLAG.search(ln)]

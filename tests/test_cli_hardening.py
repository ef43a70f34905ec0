"""CLI hardening: bad URLs, ports that never open, times and rows out of bounds, exit codes of
``index``, calibration advice that names options the command has, outputs checked before the
work, in-memory databases refused by writing commands, an empty ledcal folder.

Every case runs ``qhytime`` through click's CliRunner and checks the exit code, the words of
the message and that no traceback or "internal error" reaches the user.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import qhytime.cli.service as cli_service
from qhytime.cli import main
from qhytime.service.index import FrameIndex
from qhytime.service.watch import Watcher
from qhytime.simulate import CameraSim

# A small camera: frames of 64x16 px (writing and indexing them takes milliseconds).
SIM = dict(width=64, height=16, exposure_us=5000.0, frame_interval_us=6000.0)


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    res = CliRunner().invoke(main, list(args), env=env)
    text = res.output
    assert "Traceback" not in text and "internal error" not in text, text
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res


def fits_capture(folder: Path, n: int = 2) -> list[Path]:
    return CameraSim(**SIM).write_fits(folder, n)


# -- 1. gnss ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("socket://127.0.0.1:99999", "port 1..65535"),
        ("socket://gps-without-port", "needs HOST:PORT"),
        ("loop://?bad=1", "unknown option 'bad'"),
    ],
)
def test_gnss_malformed_url_is_a_usage_error(url: str, words: str) -> None:
    res = run("gnss", url, "--duration", "0.5", "--no-log")
    assert res.exit_code == 2, res.output
    assert "URL" in res.output and words in res.output and url.split("?")[0] in res.output


def test_gnss_port_that_never_opens_exits_1(tmp_path: Path) -> None:
    tty = tmp_path / "no-such-tty"
    res = run("gnss", str(tty), "--duration", "1.2", "--no-log")
    assert res.exit_code == 1, res.output
    assert f"the port {tty} never opened" in res.output
    assert "check the device name" in res.output and "dialout" in res.output
    # a port that opens (pyserial's loop://, silent): exit 0 although nothing was received
    ok = run("gnss", "loop://", "--duration", "0.5", "--no-log")
    assert ok.exit_code == 0, ok.output
    assert "never opened" not in ok.output


# -- 2. query bounds --------------------------------------------------------------------------


@pytest.fixture
def indexed(tmp_path: Path) -> dict[str, str]:
    """Two timed frames (the shipped calibration of the nearest setting, --fallback) indexed."""
    env = {"QHYTIME_DB": str(tmp_path / "i.sqlite")}
    fits_capture(tmp_path / "cap")
    res = run("index", str(tmp_path / "cap"), "--fallback", "--quiet", env=env)
    assert res.exit_code == 0, res.output
    return env


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--at", "1969-12-31T23:59:59.999999999Z"),
        ("--at", "2300-01-01T00:00:00Z"),  # past int64 ns
        ("--from", "1900-01-01T00:00:00Z"),
        ("--to", "2100-01-01T00:00:00Z"),  # 2100 itself is out: the bound is exclusive
    ],
)
def test_query_times_outside_1970_2100(indexed: dict[str, str], flag: str, value: str) -> None:
    res = run("query", flag, value, env=indexed)
    assert res.exit_code == 2, res.output
    assert f"for {flag}: {value} is outside 1970..2100" in res.output


def test_query_times_inside_the_bounds_still_work(indexed: dict[str, str]) -> None:
    frames = [json.loads(x) for x in run("query", "--json", env=indexed).stdout.splitlines()]
    assert len(frames) == 2
    res = run("query", "--from", "1970-01-01T00:00:00Z", "--to", "2099-12-31T23:59:59Z",
              "--json", env=indexed)  # fmt: skip
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 2
    row0 = run("query", "--sequence", str(frames[0]["sequence"]), "--rows", "0:1", "--json",
               env=indexed)  # fmt: skip
    mid = json.loads(row0.stdout)["rows"][0]["mid"]
    at = run("query", "--at", mid, "--json", env=indexed)
    assert at.exit_code == 0 and [json.loads(x)["id"] for x in at.stdout.splitlines()] == [
        frames[0]["id"]]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("-5", "row numbers start at 0"),
        ("-3:4", "row numbers start at 0"),
        ("5:2", "empty range"),
        ("4:4", "empty range"),
        ("0:99999999999", "beyond any frame"),
        ("1,2,5000000", "beyond any frame"),
        ("1,x", "is not A:B"),
        ("1:2:3", "is not A:B"),
        ("", "is not A:B"),
    ],
)
def test_query_rows_out_of_bounds(indexed: dict[str, str], spec: str, words: str) -> None:
    res = run("query", "--rows", spec, env=indexed)
    assert res.exit_code == 2, res.output
    assert "'--rows'" in res.output and words in res.output
    assert res.stdout == ""  # refused before any frame is printed


@pytest.mark.parametrize("spec", ["5:2", "-1", "0:99999999999"])
def test_query_rows_checked_when_no_frame_has_row_times(tmp_path: Path, spec: str) -> None:
    """No frame to compute rows for (an empty index, or frames without a calibration): the
    rows are refused all the same, not silently ignored."""
    empty = run("query", "--rows", spec, "--db", str(tmp_path / "empty.sqlite"))
    assert empty.exit_code == 2 and "'--rows'" in empty.output, empty.output
    CameraSim(**SIM).write_ser(tmp_path / "a.ser", 2)  # SER: no calibration
    env = {"QHYTIME_DB": str(tmp_path / "i.sqlite")}
    assert run("index", str(tmp_path / "a.ser"), env=env).exit_code == 0
    untimed = run("query", "--rows", spec, env=env)
    assert untimed.exit_code == 2 and "'--rows'" in untimed.output, untimed.output


def test_query_rows_inside_the_frame(indexed: dict[str, str]) -> None:
    res = run("query", "--rows", "2:5", "--json", env=indexed)
    assert res.exit_code == 0, res.output
    for line in res.stdout.splitlines():
        rows = json.loads(line)["rows"]
        assert [r["row"] for r in rows] == [2, 3, 4]
        # rows read in pairs: 2 and 3 end together, 4 one line period later
        assert rows[0]["end_ns"] == rows[1]["end_ns"] < rows[2]["end_ns"]


# -- 3. index exit codes ----------------------------------------------------------------------


def test_index_exits_1_when_a_file_is_unreadable_or_incomplete(tmp_path: Path) -> None:
    cap = tmp_path / "cap"
    good = fits_capture(cap)
    (cap / "zz_garbage.fits").write_bytes(b"not a FITS file at all\n" * 200)
    ser = tmp_path / "whole.ser"
    CameraSim(**SIM).write_ser(ser, 3)
    data = ser.read_bytes()
    (cap / "zz_truncated.ser").write_bytes(data[: 178 + 100])  # header, no complete frame
    env = {"QHYTIME_DB": str(tmp_path / "i.sqlite")}
    res = run("index", str(cap), "--fallback", env=env)
    assert res.exit_code == 1, res.output
    lines = res.stdout.splitlines()
    assert [ln.split()[0] for ln in lines if not ln.startswith(" ")] == [
        "indexed", "indexed", "error", "incomplete"]  # fmt: skip
    assert "could not be indexed" in res.output
    with FrameIndex(env["QHYTIME_DB"]) as index:
        assert index.count() == len(good)  # the good ones are indexed all the same
    again = run("index", str(cap), "--fallback", env=env)  # nothing changed: still failing
    assert again.exit_code == 1, again.output
    assert "(error when indexed, and not changed since)" in again.output
    assert "(incomplete when indexed, and not changed since)" in again.output
    only_good = run("index", *map(str, good), env=env)
    assert only_good.exit_code == 0, only_good.output
    (tmp_path / "emptydir").mkdir()
    empty = run("index", str(tmp_path / "emptydir"), str(good[0]), env=env)
    assert empty.exit_code == 1, empty.output
    assert "no FITS/SER files (.fits, .fit, .fts, .fz, .ser) in this folder" in empty.output
    assert "take folders" not in empty.output and "unchanged" in empty.output
    helptext = run("index", "--help").output
    assert "Exit codes" in helptext and "incomplete" in helptext


# -- 4. calibration advice of index and watch ------------------------------------------------


def _no_option_they_lack(text: str) -> None:
    for wrong in ("--offset0-us", "--line-period-ns", "give model", "explicit row model"):
        assert wrong not in text, text


def test_index_advice_when_no_calibration(tmp_path: Path) -> None:
    env = {"QHYTIME_DB": str(tmp_path / "i.sqlite")}
    sers = [tmp_path / "a.ser", tmp_path / "b.ser"]  # SER: no readout mode, no calibration
    for p in sers:
        CameraSim(**SIM).write_ser(p, 2)
    res = run("index", *map(str, sers), env=env)
    assert res.exit_code == 0, res.output
    _no_option_they_lack(res.output)
    advice = [ln for ln in res.stdout.splitlines() if ln.lstrip().startswith("!")]
    assert len(advice) == 1  # the same advice for both files, said once
    for words in ("qhytime calib add", "qhytime calib import", "qhytime index --refresh"):
        assert words in advice[0]
    CameraSim(**SIM).write_ser(tmp_path / "c.ser", 2)
    js = run("index", str(tmp_path / "c.ser"), "--json", env=env)
    msg = json.loads(js.stdout)["message"]
    _no_option_they_lack(msg)
    assert "qhytime calib import" in msg
    # a neighbouring setting's calibration exists (FITS: the readout mode is known)
    fits_capture(tmp_path / "cap", 1)
    near = run("index", str(tmp_path / "cap"), env=env)
    _no_option_they_lack(near.output)
    assert "--fallback" in near.output and "fallback=True" not in near.output


def test_watch_advice_when_no_calibration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "cap"
    folder.mkdir()
    CameraSim(**SIM).write_ser(folder / "a.ser", 2)
    stop = threading.Event()
    guard = threading.Timer(60.0, stop.set)  # a failing test must not hang
    guard.start()

    @contextlib.contextmanager
    def no_signals() -> Iterator[threading.Event]:
        yield stop

    step = Watcher.step

    def step_then_stop(self: Watcher, *a: object, **k: object) -> list:
        done = step(self, *a, **k)
        if any(r.action == "indexed" for r in done):
            stop.set()
        return done

    monkeypatch.setattr(cli_service, "_stop_on_signals", no_signals)
    monkeypatch.setattr(Watcher, "step", step_then_stop)
    try:
        res = run("watch", str(folder), "--poll", "--settle", "0",
                  "--db", str(tmp_path / "i.sqlite"))  # fmt: skip
    finally:
        guard.cancel()
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("indexed"))
    _no_option_they_lack(line)
    assert "qhytime calib import" in line and "qhytime index --refresh" in line


# -- 5. lightcurve outputs checked first ------------------------------------------------------


def test_lightcurve_checks_its_outputs_before_computing(tmp_path: Path) -> None:
    # the input does not exist: computing first would fail on it (exit 1), not on the output
    base = ["lightcurve", str(tmp_path / "missing.ser"), "--target", "10,5"]
    out = run(*base, "-o", str(tmp_path / "no-folder" / "lc.csv"))
    assert out.exit_code == 2, out.output
    assert "'-o' / '--output'" in out.output and "does not exist" in out.output
    folder = run(*base, "-o", str(tmp_path))
    assert folder.exit_code == 2 and "is a directory" in folder.output.lower()
    plot = run(*base, "--plot", str(tmp_path / "lc.xyz"))
    assert plot.exit_code == 2, plot.output
    assert "'--plot'" in plot.output and ".xyz" in plot.output and "png, pdf, svg" in plot.output
    plot_dir = run(*base, "--plot", str(tmp_path / "no-folder" / "lc.png"))
    assert plot_dir.exit_code == 2 and "does not exist" in plot_dir.output
    # good outputs: the command goes on to the input and says what is wrong with it
    go_on = run(*base, "-o", str(tmp_path / "lc.csv"), "--plot", str(tmp_path / "lc.PDF"),
                "--offset0-us", "1000", "--line-period-ns", "10000")  # fmt: skip
    assert go_on.exit_code == 1 and "missing.ser" in go_on.output


def test_lightcurve_output_folder_not_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.geteuid() == 0:  # root writes anywhere: let the folder say it is not writable
        access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: (
            False if os.fspath(p) == str(ro) and mode & os.W_OK else access(p, mode, **kw)))
    try:
        for opt in ("-o", "--plot"):
            res = run("lightcurve", str(tmp_path / "x.ser"), "--target", "1,1", opt,
                      str(ro / "lc.png"))  # fmt: skip
            assert res.exit_code == 2 and f"folder {ro} is not writable" in res.output, res.output
    finally:
        ro.chmod(0o700)


# -- 6. in-memory databases -------------------------------------------------------------------

MEMORY = ["sqlite://", "sqlite:///:memory:", "sqlite+pysqlite:///:memory:"]
CALIB_ADD = ["calib", "add", "--camera", "QHY600PRO", "--readout-mode", "Photographic DSO",
             "--roi", "0,0,9576,6388", "--reference", "end", "--offset0-us", "1000",
             "--line-period-ns", "15000"]  # fmt: skip


@pytest.mark.parametrize("db", MEMORY)
def test_writing_commands_refuse_an_in_memory_database(tmp_path: Path, db: str) -> None:
    fits = fits_capture(tmp_path / "cap", 1)
    toml = tmp_path / "c.toml"
    toml.write_text("")
    writers = [
        CALIB_ADD,
        ["calib", "import", str(toml)],
        ["calib", "retract", "1", "--reason", "wrong"],
        ["index", str(fits[0])],
        ["index", "--refresh"],
        ["watch", str(tmp_path / "cap")],
        ["gnss", "loop://", "--duration", "0.3"],
        ["ledcal", "--pps-width-us", "10", "--store", str(fits[0])],
        ["ledcal", "fit", "--pps-width-us", "10", "--store", str(fits[0])],
    ]
    for args in writers:
        res = run(*args, "--db", db)
        assert res.exit_code == 2, (args, res.output)
        assert "in-memory database, lost when the command ends: give a file path" in res.output
        assert "'--db'" in res.output
    via_env = run("index", str(fits[0]), env={"QHYTIME_DB": db})
    assert via_env.exit_code == 2 and "in-memory" in via_env.output
    # reading commands accept it (and find what an empty database holds)
    for args in (["calib", "list"], ["query"], ["alerts"], ["gnss", "loop://", "--duration",
                                                           "0.3", "--no-log"]):  # fmt: skip
        res = run(*args, "--db", db)
        assert res.exit_code == 0, (args, res.output)
    # a file database is fine for the writers
    ok = run(*CALIB_ADD, "--db", str(tmp_path / "c.sqlite"))
    assert ok.exit_code == 0, ok.output


# -- 7. ledcal on an empty folder -------------------------------------------------------------


@pytest.mark.parametrize("sub", [[], ["fit"]])
def test_ledcal_empty_folder(tmp_path: Path, sub: list[str]) -> None:
    empty = tmp_path / "scan"
    empty.mkdir()
    (empty / "notes.txt").write_text("no frames here\n")
    res = run("ledcal", *sub, "--pps-width-us", "10", str(empty))
    assert res.exit_code == 2, res.output
    assert f"no FITS/SER files (.fits, .fit, .fts, .fz, .ser) found in the folder {empty}" in res.output
    assert "give the folder that holds the LED scan's frames, or the frame files" in res.output
    assert "take folders" not in res.output and "is a folder, not a frame file" not in res.output

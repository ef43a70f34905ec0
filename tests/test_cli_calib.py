"""The calibration database from the command line: every bad database and bad record is a clear
error (named file, what to do, no traceback); read-only databases answer queries; imports are
atomic and idempotent; retractions; pinned calibrations of another setting; concurrent
creation and kill -9 during writes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from qhytime.cli import main
from qhytime.store import CalibrationStore, head_revision

from conftest import DATA, need

QHYTIME = [str(Path(sys.executable).parent / "qhytime")]  # the installed entry point
ADD = ["calib", "add", "--camera", "QHY600PRO", "--readout-mode", "unknown", "--roi",
       "0,0,320,96", "--reference", "end", "--offset0-us", "1998.92", "--line-period-ns",
       "43194.53"]  # fmt: skip


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real command in a subprocess (what a user sees, stderr included)."""
    return subprocess.run([*QHYTIME, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})  # fmt: skip


def invoke(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.output


def no_traceback(text: str) -> None:
    assert "Traceback" not in text and "internal error" not in text, text


# -- databases that are not what they should be -----------------------------------------


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        (b"calibrations go here\n", "not a qhytime database"),
        (bytes(range(256)) * 8, "not a qhytime database"),
    ],
    ids=["text", "random-bytes"],
)
def test_db_that_is_not_a_database(tmp_path: Path, content: bytes, expect: str) -> None:
    db = tmp_path / "x.sqlite"
    db.write_bytes(content)
    for cmd in (["calib", "list"], ["rows", str(DATA / "fits16_000.fits")]):
        p = run(*cmd, "--db", str(db))
        assert p.returncode == 1, p.stderr
        assert expect in p.stderr and str(db) in p.stderr
        no_traceback(p.stderr)
    assert db.read_bytes() == content  # never touched


def test_db_folder_empty_missing_parent(tmp_path: Path) -> None:
    p = run("calib", "list", "--db", str(tmp_path))
    assert p.returncode == 1 and "is a folder" in p.stderr and str(tmp_path) in p.stderr
    p = run("calib", "list", "--db", "")
    assert p.returncode == 1 and "empty database path" in p.stderr
    missing = tmp_path / "nonexistent_dir" / "x.sqlite"
    p = run("calib", "list", "--db", str(missing))
    assert p.returncode == 1 and "does not exist" in p.stderr and "create it first" in p.stderr
    assert not missing.parent.exists()  # only the default data folder is created on its own
    for text in (p.stderr,):
        no_traceback(text)


def test_db_urls_unknown_scheme_and_missing_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = invoke("calib", "list", "--db", "foo://host/db")
    assert code == 1 and "unknown database URL scheme 'foo'" in out
    code, out = invoke("calib", "list", "--db", "mysql://u@localhost/qhytime")
    assert code == 1 and "driver is not installed" in out
    # postgresql:// means psycopg 3; without it installed, the message says which extra
    monkeypatch.setitem(sys.modules, "psycopg", None)
    code, out = invoke("calib", "list", "--db", "postgresql://u@localhost/qhytime")
    assert code == 1 and "qhytime[postgres]" in out
    no_traceback(out)


def test_db_written_by_a_newer_qhytime(tmp_path: Path) -> None:
    db = tmp_path / "new.sqlite"
    CalibrationStore(db).close()
    con = sqlite3.connect(db)
    con.execute("UPDATE alembic_version SET version_num = '0099'")
    con.execute("UPDATE qhytime_meta SET value = 'qhytime 9.1.0' WHERE key = 'written_by'")
    con.commit()
    con.close()
    p = run("calib", "list", "--db", str(db))
    assert p.returncode == 1
    assert "newer qhytime (qhytime 9.1.0)" in p.stderr and "0099" in p.stderr
    assert "pip install -U qhytime" in p.stderr
    no_traceback(p.stderr)


def _as_unprivileged() -> list[str]:
    """A prefix that makes the kernel check file modes for this process (root ignores them)."""
    if os.geteuid() != 0:
        return []
    need(shutil.which("setpriv") is not None, "setpriv (util-linux)")
    caps = "-dac_override,-dac_read_search,-fowner"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}"]


def test_read_only_database_answers_queries_and_refuses_writes(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "c.sqlite"
    with CalibrationStore(db) as s:
        s.add(s.list()[0].replace(offset0_us=1999.0, method="manual"))
    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)
    before = db.read_bytes()
    db.chmod(0o444)
    folder.chmod(0o555)
    try:
        prefix = _as_unprivileged()
        env = {**os.environ, "QHYTIME_DB": str(db)}

        def sub(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*prefix, *QHYTIME, *args], capture_output=True, text=True,
                                  timeout=120, env=env)  # fmt: skip

        listed = sub("calib", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [json.loads(x)["offset0_us"] for x in listed.stdout.splitlines()] == [1974.286, 1999.0]
        shown = sub("calib", "show", "3")
        assert shown.returncode == 0 and json.loads(shown.stdout)["offset0_us"] == 1999.0
        rows = sub("rows", str(DATA / "fits16_000.fits"), "--calibration", "3", "--rows", "0",
                   "--json", "--exposure-s", "0.25")  # fmt: skip
        assert rows.returncode == 0, rows.stderr
        added = sub(*ADD)
        assert added.returncode == 1 and "read-only" in added.stderr and str(db) in added.stderr
        retracted = sub("calib", "retract", "3", "--reason", "test")
        assert retracted.returncode == 1 and "read-only" in retracted.stderr
        for p in (listed, shown, rows, added, retracted):
            no_traceback(p.stderr)
    finally:
        folder.chmod(0o755)
        db.chmod(0o644)
    assert db.read_bytes() == before  # not one byte written


# -- calibrations that are not what they should be -------------------------------------------


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--roi", "0,0,-5,10"], "roi_width = -5 is outside 1..100000"),
        (["--binning", "0"], "0 is out of range"),
        (["--bit-depth", "7"], "'7' is not one of"),
        (["--measured-at", "yesterday"], "measured_at = 'yesterday' is not an ISO date"),
        (["--offset0-us", "nan"], "'nan' is not a finite number"),
        (["--line-period-ns", "0"], "0 is out of range"),
        (["--roi", "wide"], "give X,Y,WIDTH,HEIGHT"),
    ],
)
def test_calib_add_checks_every_value(tmp_path: Path, args: list[str], expect: str) -> None:
    db = str(tmp_path / "c.sqlite")
    code, out = invoke(*ADD, "--db", db, *args)
    assert code == 2 and expect in out, out
    no_traceback(out)
    with CalibrationStore(db) as s:
        assert s.count() == 2  # nothing stored


def _toml(**over: object) -> str:
    rec = {"reference": '"end"', "offset0_us": "2008.444", "line_period_ns": "43194.0",
           "method": '"vendor"', "measured_at": "2025-01-01"}  # fmt: skip
    setting = {"camera_model": '"QHY600PRO"', "readout_mode": '"Photographic DSO"',
               "roi_width": "9576", "roi_height": "6388"}  # fmt: skip
    for k, v in over.items():
        (setting if k in ("roi_width", "binning") else rec)[k] = str(v)
    return ("[[calibration]]\n" + "".join(f"{k} = {v}\n" for k, v in rec.items())
            + "[calibration.setting]\n" + "".join(f"{k} = {v}\n" for k, v in setting.items()))  # fmt: skip


@pytest.mark.parametrize(
    ("bad", "expect"),
    [
        ({"roi_width": '"wide"'}, "roi_width = 'wide' is not a whole number"),
        ({"binning": "true"}, "binning = True is not a whole number"),
        ({"offset0_us": '"2008.444"'}, "offset0_us = '2008.444' is not a number"),
        ({"offset0_us": "nan"}, "offset0_us = nan is not finite"),
        ({"measured_at": '"last week"'}, "is not an ISO date"),
        ({"reference": '"middle"'}, "reference = 'middle' is not one of start, end, now"),
    ],
)
def test_import_is_atomic_and_names_the_record(tmp_path: Path, bad: dict[str, str], expect: str) -> None:
    db = str(tmp_path / "c.sqlite")
    f = tmp_path / "cals.toml"
    # a good record first: an import is all or nothing, so it must not be stored either
    f.write_text(_toml(offset0_us=1990.5) + "\n" + _toml(**bad))
    code, out = invoke("calib", "import", str(f), "--db", db)
    assert code == 1 and "record 1" in out and expect in out and str(f) in out, out
    no_traceback(out)
    with CalibrationStore(db) as s:
        assert s.count() == 2 and 1990.5 not in {c.offset0_us for c in s.list(include_superseded=True)}


def test_import_empty_binary_and_twice(tmp_path: Path) -> None:
    db = str(tmp_path / "c.sqlite")
    empty = tmp_path / "empty.toml"
    empty.write_text("# nothing\n")
    code, out = invoke("calib", "import", str(empty), "--db", db)
    assert code == 1 and "no [[calibration]] table" in out
    binary = tmp_path / "bin.toml"
    binary.write_bytes(bytes(range(256)))
    code, out = invoke("calib", "import", str(binary), "--db", db)
    assert code == 1 and "not a TOML text file" in out
    good = tmp_path / "good.toml"
    good.write_text(_toml(offset0_us=1990.5) + "\n" + _toml(offset0_us=1991.5, roi_width=320))
    res = CliRunner().invoke(main, ["calib", "import", str(good), "--db", db])
    assert res.exit_code == 0 and "2 new, 0 already present" in res.stderr
    res = CliRunner().invoke(main, ["calib", "import", str(good), "--db", db])
    assert res.exit_code == 0 and "0 new, 2 already present (#3, #4)" in res.stderr
    with CalibrationStore(db) as s:
        assert s.count() == 4


def test_retract_keeps_history_and_lookups_skip_it(tmp_path: Path) -> None:
    db = str(tmp_path / "c.sqlite")
    code, out = invoke(*ADD, "--db", db)
    assert code == 0 and "#3" in out
    code, out = invoke(*ADD[:-1], "43194.9", "--db", db)  # a second one supersedes it
    assert code == 0 and "supersedes #3" in out
    res = CliRunner().invoke(main, ["calib", "retract", "4", "--reason", "LED loose", "--db", db])
    assert res.exit_code == 0 and "RETRACTED" in res.output and "current for this setting: #3" in res.stderr
    code, out = invoke("calib", "list", "--db", db)
    assert "#3 " in out and "#4 " not in out
    code, out = invoke("calib", "list", "--all", "--db", db)
    assert "LED loose" in out and out.count("\n") == 4
    code, out = invoke("rows", str(DATA / "fits16_000.fits"), "--rows", "0", "--json", "--db", db)
    end_stamp_ns = 1754099091980086527  # truth.json, fits16_000.fits, end stamp
    assert code == 0 and json.loads(out.splitlines()[-1])["end_ns"] == end_stamp_ns + 1_998_920  # #3
    code, out = invoke("calib", "retract", "4", "--reason", "again", "--db", db)
    assert code == 1 and "already retracted" in out
    code, out = invoke("calib", "retract", "99", "--reason", "x", "--db", db)
    assert code == 1 and "no calibration with id 99" in out
    # a retracted calibration can still be pinned, with a warning that says why
    code, out = invoke("rows", str(DATA / "fits16_000.fits"), "--rows", "0", "--calibration", "4",
                       "--db", db)  # fmt: skip
    assert code == 0 and "retracted" in out and "LED loose" in out


def test_pinned_calibration_of_another_setting_is_warned_not_exact(tmp_path: Path) -> None:
    db = str(tmp_path / "c.sqlite")
    res = CliRunner().invoke(main, ["rows", str(DATA / "fits16_000.fits"), "--calibration", "1",
                                    "--rows", "0", "--db", db])  # fmt: skip
    assert res.exit_code == 0
    assert "pinned" in res.stderr and "exact match" not in res.stderr
    assert "roi_width 320 != 9576" in res.stderr and "stream_mode single != live" in res.stderr


def test_rows_over_many_files_goes_on(tmp_path: Path) -> None:
    files = [str(DATA / "fits16_000.fits"), str(DATA / "bad_text.fits"), str(DATA / "fits16_001.fits")]
    res = CliRunner().invoke(main, ["rows", *files, "--offset0-us", "1998.92", "--line-period-ns",
                                    "43194.53", "--rows", "0", "--json"])  # fmt: skip
    assert res.exit_code == 1
    objs = [json.loads(x) for x in res.stdout.splitlines()]
    assert [o["file"] for o in objs] == [files[0], files[2]]
    assert "bad_text.fits" in res.stderr and "1 of 3 files failed" in res.stderr


# -- faults ----------------------------------------------------------------------------------

RACER = """
import sys
from qhytime.store import CalibrationStore
with CalibrationStore(sys.argv[1]) as s:
    print(s.count())
"""


def test_processes_racing_to_create_a_database(tmp_path: Path) -> None:
    for k in range(20):
        db = tmp_path / f"race{k}.sqlite"
        procs = [subprocess.Popen([sys.executable, "-c", RACER, str(db)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        assert [o[0].strip() for o in outs] == ["2", "2"]  # shipped ones loaded once
        with CalibrationStore(db) as s:
            assert s.count() == 2 and s.schema_revision() == head_revision()


WRITER = """
import sys
from qhytime.calibration import Calibration, Setting
from qhytime.store import CalibrationStore
s0 = Setting(camera_model="QHY600PRO", readout_mode="unknown", roi_width=320, roi_height=96)
with CalibrationStore(sys.argv[1]) as s:
    for i in range(100000):
        c = s.add(Calibration(setting=s0, reference="end", offset0_us=1000.0 + i,
                              line_period_ns=43194.0, notes="x" * 2000))
        print(c.id, flush=True)
"""


def test_kill_9_while_writing_loses_nothing_committed(tmp_path: Path) -> None:
    db = tmp_path / "k.sqlite"
    CalibrationStore(db).close()
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    seen: list[int] = []
    deadline = time.monotonic() + 60
    while len(seen) < 150 and time.monotonic() < deadline:
        seen.append(int(p.stdout.readline()))
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    p.stdout.close()
    assert len(seen) >= 150
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with CalibrationStore(db) as s:
        every = s.list(include_superseded=True)
        ids = [c.id for c in every]
        assert set(seen) <= set(ids)  # everything reported as stored is there
        mine = [c for c in every if c.setting.roi_width == 320]
        assert [c.offset0_us for c in mine] == [1000.0 + i for i in range(len(mine))]  # no gap
        assert [c.supersedes for c in mine[1:]] == [c.id for c in mine[:-1]]  # linear history
        assert all(c.notes == "x" * 2000 for c in mine)  # no half-written row


def test_calib_commands_end_to_end(tmp_path: Path) -> None:
    db = str(tmp_path / "c.sqlite")
    r = CliRunner()
    out = r.invoke(main, ["calib", "list", "--db", db])
    assert out.exit_code == 0 and "SDK" in out.output and "vendor" in out.output
    add = ["calib", "add", "--db", db, "--camera", "QHY600PRO", "--readout-mode", "Photographic DSO",
           "--roi", "0,0,9576,6388", "--reference", "now", "--offset0-us", "1975.5",
           "--line-period-ns", "43194.2", "--method", "LED fit"]  # fmt: skip
    out = r.invoke(main, add)
    assert out.exit_code == 0 and "supersedes #2" in out.output, out.output
    assert "1975.500" in r.invoke(main, ["calib", "list", "--db", db]).output
    assert r.invoke(main, ["calib", "list", "--all", "--db", db]).output.count("\n") == 3
    shown = json.loads(r.invoke(main, ["calib", "show", "3", "--db", db]).output)
    assert shown["offset0_us"] == 1975.5 and shown["supersedes"] == 2
    exp = r.invoke(main, ["calib", "export", "--id", "3", "--db", db, "-o", str(tmp_path / "e.toml")])
    assert exp.exit_code == 0 and [p.name for p in tmp_path.iterdir() if "tmp" in p.name] == []
    db2 = str(tmp_path / "d.sqlite")
    imp = r.invoke(main, ["calib", "import", str(tmp_path / "e.toml"), "--db", db2])
    assert imp.exit_code == 0 and "1975.500" in imp.output
    assert r.invoke(main, ["calib", "show", "42", "--db", db]).exit_code == 1
    assert r.invoke(main, ["calib", "show", "0", "--db", db]).exit_code == 2
    huge = r.invoke(main, ["calib", "show", "99999999999999999999", "--db", db])
    assert huge.exit_code == 2 and "<= 9223372036854775807" in huge.output


def test_doctor(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["doctor", "--db", str(tmp_path / "c.sqlite")])
    assert out.exit_code == 0
    rev = head_revision()
    assert f"schema revision {rev} (head {rev})" in out.output and "expires 2027" in out.output

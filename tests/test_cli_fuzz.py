"""Bad arguments for every ``qhytime`` command: a clear message and exit 1 or 2, never a traceback.

The command tree is walked from :data:`qhytime.cli.main`, so a new command or option is fuzzed
without editing this file: every numeric option (out of range, negative, huge, nan, inf, not a
number, empty), every choice, an unknown option, and every path (a missing file, a folder, an
empty file, random bytes, a text file; for outputs a folder and a path under a file).
Expectations come from what the option declares (its range, whether it reads or writes), not
from earlier output: a bad value exits 1 or 2 and the output names the option or the path; a
value the declaration allows (its bounds) runs the command, which then succeeds or fails with a
message (exit 0 or 1), never an "internal error".

Commands that run until stopped (``serve``, ``watch``, ``gnss``) or do heavy work on valid input
(``demo``) get, besides the fuzzed value, an argument that makes them fail fast, so that a value
wrongly accepted shows up as a failed assertion, not as a hang.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qhytime.cli import main
from qhytime.cli._common import Number
from qhytime.simulate import CameraSim

REPO = Path(__file__).resolve().parents[1]
LED = Path(__file__).parent / "data" / "led_pairs"
MODEL = ["--offset0-us", "1974.286", "--line-period-ns", "43194"]

LOOPING = {"serve", "watch", "gnss", "demo"}
"""Run until stopped, or do heavy work, on valid input: never invoked with a valid argument set."""

NOT_RUN_WITH_VALID_VALUES = {"workers", "dask_address", "n_frames"}
"""Options whose valid extremes start heavy machinery (a 1024-worker dask cluster) or take long
(``ledcal plan --frames 10000``: ~10 s)."""


def walk(cmd: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    """Every leaf command under ``cmd``, as ("calib add", command)."""
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None
            yield from walk(sub, (*path, name))
    else:
        yield " ".join(path), cmd


COMMANDS: dict[str, click.Command] = dict(walk(main))
GROUPS = ["", *sorted({" ".join(n.split()[:-1]) for n in COMMANDS if " " in n})]


def options(cmd: click.Command) -> list[click.Option]:
    return [p for p in cmd.params if isinstance(p, click.Option) and not p.is_flag
            and p.name not in ("help", "version")]  # fmt: skip


def flag_of(p: click.Parameter) -> str:
    if isinstance(p, click.Argument):
        return p.human_readable_name
    return max(p.opts, key=len)


# -- the fixture files ------------------------------------------------------------------------


@dataclass
class Files:
    tmp: Path
    frames: list[Path]
    text: Path
    random: Path
    empty: Path
    folder: Path
    db: Path

    def bad(self, kind: str, name: str) -> Path:
        """A bad path of ``kind`` (unique per test, so the commands see fresh ones)."""
        if kind == "missing":
            return self.tmp / f"missing-{name}.fits"
        if kind == "folder":
            d = self.tmp / f"folder-{name}"
            d.mkdir(exist_ok=True)
            return d
        if kind == "under_file":
            return self.text / f"{name}.out"
        return {"empty": self.empty, "random": self.random, "text": self.text}[kind]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    tmp = tmp_path_factory.mktemp("fuzz")
    frames = CameraSim(width=64, height=40, exposure_us=20_000.0, frame_interval_us=25_000.0,
                       seed=3).write_fits(tmp / "cap", 2)  # fmt: skip
    text = tmp / "notes.fits"
    text.write_text("This is a text file, not a FITS frame.\n" * 40)
    rnd = tmp / "noise.fits"
    rnd.write_bytes(bytes((i * 7919 + 13) % 251 for i in range(9000)))
    empty = tmp / "empty.fits"
    empty.write_bytes(b"")
    folder = tmp / "an-empty-folder"
    folder.mkdir()
    return Files(tmp, frames, text, rnd, empty, folder, tmp / "fuzz.sqlite")


def base_args(name: str, f: Files) -> list[str] | None:
    """A valid invocation of each command that finishes quickly (None: none is safe to run)."""
    fr = [str(p) for p in f.frames]
    scan = [str(p) for p in sorted(LED.glob("led_*.fits"))]
    table: dict[str, list[str]] = {
        "alerts": [],
        "calib add": ["--camera", "QHY600PRO", "--readout-mode", "Photographic DSO", "--roi",
                      "0,0,64,40", "--reference", "end", *MODEL],
        "calib export": [],
        "calib import": [str(REPO / "calibrations" / "qhy600pro.toml")],
        "calib list": [],
        "calib retract": ["1", "--reason", "fuzz"],
        "calib show": ["1"],
        "decode": [fr[0]],
        "doctor": [],
        "index": [fr[0]],
        "ledcal fit": ["--pulses", str(LED / "pulses.csv"), *scan],  # 40 frames: a fit in ~1.5 s
        "ledcal plan": ["--exposure-us", "1000", "--line-period-ns", "43194", "--readout", "pairs"],
        "lightcurve": [*fr, "--target", "20,20", *MODEL, "-q"],
        "query": [],
        "rows": [fr[0], *MODEL],
        "stamp": [fr[0], "--out", str(f.tmp / "stamped"), *MODEL],
        "streak": [fr[0], "--point", "10,10", *MODEL],
    }  # fmt: skip
    return table.get(name)


def guard_args(name: str, f: Files) -> list[str]:
    """Arguments that make a looping or heavy command fail fast even if the fuzzed value were
    (wrongly) accepted; empty for the others."""
    return {
        "serve": ["--db", str(f.random)],
        "watch": [str(f.text)],
        "gnss": ["bogus://port", "--no-log"],
        "demo": ["--dir", str(f.text)],
    }.get(name, [])


def without(args: list[str], p: click.Parameter) -> list[str]:
    """``args`` less every occurrence of option ``p`` and its value (the fuzzed value must be
    the only one: click keeps the last of repeated options)."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in p.opts:
            skip = not getattr(p, "is_flag", False)
        elif not any(a.startswith(o + "=") for o in p.opts):
            out.append(a)
    return out


def run(args: list[str], f: Files) -> click.testing.Result:
    """Invoke the CLI in-process; nothing may escape, no traceback, no internal error."""
    res = CliRunner().invoke(main, args, env={"QHYTIME_DB": str(f.db), "QHYTIME_DEBUG": None})
    out = res.output
    assert "Traceback" not in out, f"qhytime {args}:\n{out}"
    assert "internal error" not in out, f"qhytime {args}:\n{out}"
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise AssertionError(f"qhytime {args}: {res.exception!r} escaped") from res.exception
    return res


def assert_refused(res: click.testing.Result, args: list[str], *names: str) -> None:
    assert res.exit_code in (1, 2), f"qhytime {args} exited {res.exit_code}:\n{res.output}"
    assert res.output.strip(), f"qhytime {args}: no message"
    assert any(n in res.output for n in names), f"qhytime {args}: {names} not named in\n{res.output}"


# -- the tree ---------------------------------------------------------------------------------


def test_the_tree_is_walked() -> None:
    """The walk finds the commands the README documents (and any added since)."""
    expected = {"decode", "rows", "stamp", "lightcurve", "streak", "watch", "index", "query",
                "alerts", "gnss", "serve", "doctor", "demo", "calib add", "calib list",
                "ledcal fit", "ledcal plan"}  # fmt: skip
    assert expected <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_numeric_option_has_a_checked_type(name: str) -> None:
    """CLI convention: no bare INT/FLOAT (which take nan, inf and any size)."""
    for p in COMMANDS[name].params:
        assert not isinstance(p.type, click.types.IntParamType | click.types.FloatParamType) or (
            isinstance(p.type, click.types._NumberRangeBase)
            and None not in (p.type.min, p.type.max)
        ), f"{name} {flag_of(p)}: unbounded {p.type!r}"


@pytest.mark.parametrize("group", GROUPS)
def test_unknown_subcommand(group: str, files: Files) -> None:
    args = [*group.split(), "no-such-command"]
    res = run(args, files)
    cmd: click.Command = main
    for word in group.split():
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[word]
    if not {"parse_args", "resolve_command"} & set(vars(type(cmd))):
        assert_refused(res, args, "no-such-command")
    else:  # a group with a default subcommand (ledcal: fit) takes the word as its argument
        assert_refused(res, args, "Usage:")
    assert res.exit_code == 2


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_and_unknown_option(name: str, files: Files) -> None:
    res = run([*name.split(), "--help"], files)
    assert res.exit_code == 0 and "Usage:" in res.output
    args = [*name.split(), "--no-such-option-xyz", *guard_args(name, files)]
    res = run(args, files)
    assert_refused(res, args, "--no-such-option-xyz")
    assert res.exit_code == 2


@pytest.mark.parametrize("name", sorted(n for n in COMMANDS if n not in LOOPING and n != "calib retract"))
def test_base_invocation_succeeds(name: str, files: Files) -> None:
    """The valid invocations the fuzz starts from do succeed (so a refusal below is about the
    fuzzed value). Commands without a known valid invocation are skipped."""
    args = base_args(name, files)
    if args is None:
        pytest.skip(f"no valid invocation known for {name!r}: add one to base_args")
    res = run([*name.split(), *args], files)
    assert res.exit_code == 0, res.output


# -- numbers and choices ------------------------------------------------------------------------


def bad_numbers(t: Number) -> list[str]:
    out = ["nan", "inf", "-inf", "NaN", "1e309", "twelve", "", "0x10"]
    if t.lo is not None:
        out += [repr(t.lo) if t.lo_open else repr(t.lo - 1), "-1e30"]
        if t.lo >= 0:
            out.append("-1")
    if t.hi is not None:
        out += [repr(t.hi) if t.hi_open else repr(t.hi * 2 + 1), "1e30"]
    if t.integer:
        out += ["1.5", "1e3"]
    return out


def good_numbers(t: Number) -> list[str]:
    vals = []
    for v, is_open in ((t.lo, t.lo_open), (t.hi, t.hi_open)):
        if v is not None and not is_open:
            vals.append(str(int(v)) if t.integer else repr(float(v)))
    return vals


NUMERIC = [(n, o.name) for n, c in sorted(COMMANDS.items()) for o in options(c)
           if isinstance(o.type, Number)]  # fmt: skip
NUMERIC_ARGS = [(n, a.name) for n, c in sorted(COMMANDS.items()) for a in c.params
                if isinstance(a, click.Argument) and isinstance(a.type, Number)]  # fmt: skip
CHOICES = [(n, o.name) for n, c in sorted(COMMANDS.items()) for o in options(c)
           if isinstance(o.type, click.Choice)]  # fmt: skip


def param(name: str, pname: str) -> click.Parameter:
    return next(p for p in COMMANDS[name].params if p.name == pname)


@pytest.mark.parametrize("name,pname", NUMERIC, ids=[f"{n}:{p}" for n, p in NUMERIC])
def test_bad_numbers_are_usage_errors(name: str, pname: str, files: Files) -> None:
    p = param(name, pname)
    assert isinstance(p.type, Number)
    flag = flag_of(p)
    base = without(base_args(name, files) or [], p)
    for value in bad_numbers(p.type):
        args = [*name.split(), f"{flag}={value}", *guard_args(name, files), *base]
        res = run(args, files)
        assert_refused(res, args, flag)
        assert res.exit_code == 2, res.output


@pytest.mark.parametrize("name,pname", NUMERIC_ARGS, ids=[f"{n}:{p}" for n, p in NUMERIC_ARGS])
def test_bad_numeric_arguments(name: str, pname: str, files: Files) -> None:
    p = param(name, pname)
    assert isinstance(p.type, Number)
    rest = (base_args(name, files) or [])[1:]  # the base's first item is this argument
    for value in bad_numbers(p.type):
        if value.startswith("-"):
            value = f"-- {value}"  # else it reads as an option
        args = [*name.split(), *rest, *value.split(" ")]
        res = run(args, files)
        assert_refused(res, args, p.human_readable_name, value.split(" ")[-1] or "''")
        assert res.exit_code == 2, res.output


# Commands that loop or start machinery, and options that start it, are not run with valid
# values (their bad values are refused above); the others all are.
RUNNABLE = [(n, p) for n, p in NUMERIC if n not in LOOPING and p not in NOT_RUN_WITH_VALID_VALUES]


@pytest.mark.parametrize("name,pname", RUNNABLE, ids=[f"{n}:{p}" for n, p in RUNNABLE])
def test_declared_extremes_run_cleanly(name: str, pname: str, files: Files) -> None:
    """A value at the bounds the option declares is accepted; the command then does its job or
    fails with a message (exit 0 or 1)."""
    base = base_args(name, files)
    assert base is not None, f"{name}: no valid invocation to start from"
    p = param(name, pname)
    assert isinstance(p.type, Number)
    if pname == "calibration_id":  # a pinned calibration instead of the explicit model
        base = [a for a in base if a not in MODEL]
    if name == "ledcal fit" and pname.startswith(("pulse_", "pps_")):  # instead of --pulses
        other = ["--pulse-start-us", "0", "--pulse-width-us", "100"] if pname.startswith(
            "pulse_") else ["--pps-width-us", "100"]  # fmt: skip
        base = [*other, *base[2:]]
    for value in good_numbers(p.type):
        args = [*name.split(), *without(base, p), f"{flag_of(p)}={value}"]
        res = run(args, files)
        assert res.exit_code in (0, 1), f"qhytime {args} exited {res.exit_code}:\n{res.output}"
        if res.exit_code:
            assert res.output.strip()


@pytest.mark.parametrize("name,pname", CHOICES, ids=[f"{n}:{p}" for n, p in CHOICES])
def test_bad_choices(name: str, pname: str, files: Files) -> None:
    p = param(name, pname)
    flag = flag_of(p)
    for value in ("bogus", ""):
        args = [*name.split(), f"{flag}={value}", *guard_args(name, files),
                *without(base_args(name, files) or [], p)]  # fmt: skip
        res = run(args, files)
        assert_refused(res, args, flag)
        assert res.exit_code == 2


STRINGS = [(n, o.name) for n, c in sorted(COMMANDS.items()) for o in options(c)
           if type(o.type) is click.types.StringParamType]  # fmt: skip


@pytest.mark.parametrize("name,pname", STRINGS, ids=[f"{n}:{p}" for n, p in STRINGS])
def test_empty_strings(name: str, pname: str, files: Files) -> None:
    """An empty value is taken (exit 0) or refused with a message (1 or 2)."""
    base = base_args(name, files)
    if name in LOOPING or pname in NOT_RUN_WITH_VALID_VALUES or base is None:
        base = guard_args(name, files)
        if not base:  # an option that starts machinery (--dask): an empty value alone
            base = [str(files.frames[0])]
    p = param(name, pname)
    args = [*name.split(), *without(base, p), f"{flag_of(p)}="]
    res = run(args, files)
    assert res.exit_code in (0, 1, 2), res.output
    if res.exit_code:
        assert res.output.strip()


# -- option values with their own syntax ----------------------------------------------------

SYNTAX = [
    ("lightcurve", "--target", ["nan,1", "1,inf", "5", "", "a,b", "1,2,3"]),
    ("lightcurve", "--comparison", ["inf,3", "-", "1;2"]),
    ("lightcurve", "--annulus", ["nan,9", "9,5", "-1,5", "0,5", "5,1e9", "7"]),
    ("streak", "--ends", ["nan,1,2,3", "1,2,3,inf", "1,2,3", "", "a,b,c,d"]),
    ("streak", "--point", ["inf,1", "1", "", "x,y"]),
    ("rows", "--rows", ["nan", "5:2", "-1", "0:99999999999", "", "a:b", "1e309", "1,,2"]),
    ("calib add", "--roi", ["-1,0,64,40", "0,0,0,40", "nan,0,64,40", "0,0,64", "", "0,0,1e12,40"]),
    ("query", "--rows", ["nan", "5:2", "-1", "", "a:b"]),
    ("query", "--at", ["not a time", "", "2025-13-45T99:00:00", "nan"]),
    ("query", "--from", ["not a time", ""]),
]


@pytest.mark.parametrize("name,flag,values", SYNTAX, ids=[f"{n}:{f}" for n, f, _ in SYNTAX])
def test_structured_values(name: str, flag: str, values: list[str], files: Files) -> None:
    if name not in COMMANDS or not any(flag in p.opts for p in COMMANDS[name].params):
        pytest.fail(f"{name} {flag} is gone: update SYNTAX")
    p = next(p for p in COMMANDS[name].params if flag in p.opts)
    base = without(base_args(name, files) or [], p)
    extra = ["--file", str(files.frames[0])] if name == "query" and flag != "--rows" else []
    if name == "query" and flag == "--rows":
        extra = ["--file", str(files.frames[0]), "--frame", "0"]
    for value in values:
        args = [*name.split(), *base, *extra, f"{flag}={value}"]
        res = run(args, files)
        assert_refused(res, args, flag, flag.lstrip("-") + "_")  # or the field: roi_x = -1 ...


# -- paths ------------------------------------------------------------------------------------

ROLES: dict[tuple[str, str], str] = {
    ("decode", "paths"): "input",
    ("rows", "paths"): "input",
    ("stamp", "paths"): "input",
    ("stamp", "out_dir"): "outdir",
    ("index", "paths"): "input",
    ("lightcurve", "files"): "input",
    ("lightcurve", "output"): "output",
    ("lightcurve", "plot_path"): "output",
    ("streak", "path"): "input",
    ("streak", "next_path"): "input",
    ("streak", "wcs_path"): "input",
    ("streak", "tle_path"): "input",
    ("streak", "iod_out"): "output",
    ("streak", "ades_out"): "output",
    ("streak", "plot_path"): "output",
    ("calib import", "path"): "input",
    ("calib export", "output"): "output",
    ("ledcal fit", "frames"): "input",
    ("ledcal fit", "pulses_csv"): "input",
    ("ledcal fit", "bias_files"): "input",
    ("ledcal fit", "plot_path"): "output",
    ("ledcal plan", "out_path"): "output",
    ("watch", "folder"): "folder",
    ("watch", "stamp_dir"): "outdir_checked",  # anything else would start watching
    ("demo", "workdir"): "outdir",
}
"""What each path parameter is; a new one not listed here fails test_every_path_has_a_role."""

BAD_KINDS = {
    "input": ["missing", "folder", "empty", "random", "text"],
    "output": ["folder", "under_file"],
    "outdir": ["text", "under_file"],
    "outdir_checked": ["text"],
    "folder": ["missing", "text", "empty"],
}

PATH_PARAMS = [(n, p.name) for n, c in sorted(COMMANDS.items()) for p in c.params
               if isinstance(p.type, click.Path)]  # fmt: skip


def test_every_path_has_a_role() -> None:
    missing = [f"{n}:{p}" for n, p in PATH_PARAMS if (n, p) not in ROLES]
    assert not missing, f"path parameters without a role in ROLES: {missing}"


def path_cases() -> list[tuple[str, str, str]]:
    return [(n, p, k) for n, p in PATH_PARAMS if (n, p) in ROLES for k in BAD_KINDS[ROLES[(n, p)]]]


def path_invocation(name: str, pname: str, value: str, f: Files) -> list[str]:
    """The base invocation with ``value`` in place of (or added as) parameter ``pname``."""
    p = param(name, pname)
    base = base_args(name, f)
    if name == "streak" and pname in ("next_path", "tle_path"):  # the order of the ends from it
        base = [str(f.frames[0]), "--ends", "10,5,40,30", *MODEL]
    if name in LOOPING or base is None:
        base = guard_args(name, f) if name != "watch" or pname != "folder" else []
        if name == "demo" and pname == "workdir":
            base = []
        if name == "watch" and pname == "stamp_dir":  # a stamp folder that click refuses
            base = [str(f.folder)]
    if isinstance(p, click.Argument):
        if name in ("watch",):
            return [name, value]
        rest = [a for a in base if a not in map(str, f.frames) and not a.endswith(".toml")
                and a not in [str(x) for x in sorted(LED.glob("led_*.fits"))]]  # fmt: skip
        return [*name.split(), *rest, value]
    return [*name.split(), *without(base, p), flag_of(p), value]


@pytest.mark.parametrize("name,pname,kind", path_cases(), ids=[f"{n}:{p}:{k}" for n, p, k in path_cases()])
def test_bad_paths(name: str, pname: str, kind: str, files: Files) -> None:
    bad = files.bad(kind, f"{name.replace(' ', '_')}-{pname}")
    args = path_invocation(name, pname, str(bad), files)
    res = run(args, files)
    assert_refused(res, args, str(bad), bad.name, flag_of(param(name, pname)))


DB_KINDS = ["folder", "random", "text", "under_file"]
DB_COMMANDS = sorted(n for n, c in COMMANDS.items() if any(p.name == "db" for p in c.params))


@pytest.mark.parametrize("name", DB_COMMANDS)
def test_bad_database(name: str, files: Files) -> None:
    """``--db`` a folder, random bytes, a text file, a path under a file: exit 1 naming it (the
    base invocation without an explicit model, so that the database is needed)."""
    base = base_args(name, files)
    if name in LOOPING or base is None:
        base = {"watch": [str(files.folder)], "gnss": ["loop://", "--duration", "0.1"],
                "serve": [], "demo": ["--dir", str(files.tmp / "demo")]}.get(name)  # fmt: skip
        assert base is not None, f"{name}: no fail-fast invocation"
    if any(p.name == "calibration_id" for p in COMMANDS[name].params):  # the model options
        base = [a for a in base if a not in MODEL]
    if name == "ledcal fit":
        base.append("--store")  # the fit opens the database only to store
    for kind in DB_KINDS:
        bad = files.bad(kind, f"db-{name.replace(' ', '_')}")
        args = [*name.split(), *base, "--db", str(bad)]
        if name == "serve":
            args += ["--port", "0"]
        res = run(args, files)
        assert_refused(res, args, str(bad))
        assert res.exit_code == 1, res.output


# -- the long-running commands with arguments that make them fail fast ------------------------


GNSS_KINDS = ["missing", "folder", "text"]


@pytest.mark.parametrize("kind", GNSS_KINDS)
def test_gnss_on_a_port_that_cannot_be_opened(kind: str, files: Files) -> None:
    bad = files.bad(kind, "gnss")
    args = ["gnss", str(bad), "--duration", "0.3", "--no-log"]
    res = run(args, files)
    assert_refused(res, args, str(bad))


def test_gnss_unknown_url_scheme(files: Files) -> None:
    args = ["gnss", "bogus://port", "--no-log", "--duration", "0.1"]
    res = run(args, files)
    assert_refused(res, args, "bogus://")
    assert res.exit_code == 2


def test_watch_is_refused_its_own_folder_as_stamp_folder(files: Files) -> None:
    args = ["watch", str(files.folder), "--stamp", str(files.folder)]
    res = run(args, files)
    assert_refused(res, args, "--stamp")
    assert res.exit_code == 2


def test_serve_refuses_a_public_address_without_a_token(files: Files) -> None:
    args = ["serve", "--host", "0.0.0.0", "--port", "0", "--db", str(files.random)]
    res = run(args, files)
    assert_refused(res, args, "token")
    assert res.exit_code == 2


def test_serve_on_a_port_in_use_exits_1(files: Files) -> None:
    """In a subprocess (the server must not run in the test's process), with a timeout."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code = "import sys; from qhytime.cli import main; sys.argv[0] = 'qhytime'; main()"
        env = {**os.environ, "QHYTIME_DB": str(files.tmp / "serve.sqlite")}
        proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--port", str(port)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)  # fmt: skip
        try:
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:  # it did not fail fast: stop it, then fail
                proc.kill()
                proc.wait(10)
                pytest.fail("serve on a port in use did not stop within 60 s")
    text = out.decode(errors="replace")
    assert "Traceback" not in text and str(port) in text
    assert proc.returncode == 1, f"exit {proc.returncode}: {text}"
    assert "cannot listen on" in text and "choose another port" in text, text


# -- hypothesis: any text for any numeric option, parsed as the CLI parses it -------------------


def _valid(text: str, t: Number) -> bool:
    """Whether ``text`` is a value the declaration allows (independent of Number.convert)."""
    s = text.strip()
    try:
        v = float(int(s)) if t.integer else float(s)
    except ValueError:
        return False
    if t.integer and any(c in s for c in ".eE"):
        return False
    if not math.isfinite(v):
        return False
    if t.lo is not None and (v <= t.lo if t.lo_open else v < t.lo):
        return False
    return not (t.hi is not None and (v >= t.hi if t.hi_open else v > t.hi))


NUMBER_TEXT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["nan", "-inf", "1e309", "", " ", "1_000", "0x1f", "1.0", "5e-324", "--"]),
    st.text(max_size=8),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(NUMERIC), text=NUMBER_TEXT)
def test_numeric_parsing_property(case: tuple[str, str], text: str) -> None:
    """Parsing alone (no command runs): a value is accepted exactly when it is a finite number
    within the declared bounds, and a refusal is a usage error naming the option."""
    name, pname = case
    cmd = COMMANDS[name]
    p = param(name, pname)
    assert isinstance(p.type, Number)
    flag = flag_of(p)
    try:
        ctx = cmd.make_context(name, [f"{flag}={text}"])
    except click.MissingParameter as exc:  # our value passed, another is missing
        assert exc.param is not p
        assert _valid(text, p.type), f"{flag}={text!r} accepted"
    except click.UsageError as exc:
        assert isinstance(exc, click.BadParameter) and exc.param is p, exc.format_message()
        assert not _valid(text, p.type), f"{flag}={text!r} refused: {exc.format_message()}"
        assert flag in exc.format_message() or exc.param_hint
    else:
        with ctx:
            assert _valid(text, p.type), f"{flag}={text!r} accepted"
            v = ctx.params[pname]
            assert all(math.isfinite(x) for x in (v if isinstance(v, tuple) else (v,)))

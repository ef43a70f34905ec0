"""What every figure returns (:class:`Result`), what it is given (:class:`Context`), and the
description of the machine a run happened on."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import _data
from benchmarks._timing import run_measured

REPO = Path(__file__).resolve().parents[1]
MIB = 2**20


@dataclass
class Result:
    """One figure of the table: a baseline and qhytime measured in the same run.

    ``unit`` is that of ``baseline`` and ``qhytime``: ``"s"`` (a time) or ``"MiB"`` (a peak
    memory). ``ratio`` is qhytime / baseline; ``target`` the largest ratio allowed (None:
    the figure is reported, not judged). ``peak_mib`` is qhytime's peak memory and
    ``memory`` says how it was measured.
    """

    name: str
    title: str
    baseline_label: str
    unit: str = "s"
    baseline: float | None = None
    qhytime: float | None = None
    target: float | None = None
    target_text: str = ""
    peak_mib: float | None = None
    baseline_peak_mib: float | None = None
    memory: str = ""
    status: str = "ok"
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    load_1min: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.qhytime is None or self.baseline <= 0:
            return None
        return self.qhytime / self.baseline

    @property
    def met(self) -> bool | None:
        r = self.ratio
        if self.target is None or r is None:
            return None
        return r <= self.target

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = self.ratio
        d["met"] = self.met
        return d


def unavailable(name: str, title: str, baseline_label: str, why: str, **kw: Any) -> Result:
    """A figure that cannot be measured here (a missing entry point or extra), and why."""
    return Result(name=name, title=title, baseline_label=baseline_label, status="not available",
                  notes=[why], **kw)  # fmt: skip


@dataclass
class Context:
    """What a figure needs: the mode, where data and scratch files go, how to run qhytime."""

    quick: bool
    data: Path
    work: Path
    repeats: int | None = None
    index_db: str | None = None
    _interpreter: float | None = None

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def reps(self, full: int, quick: int = 1) -> int:
        return self.repeats if self.repeats is not None else (quick if self.quick else full)

    def scratch(self, name: str) -> Path:
        """A fresh, empty folder under the run's scratch folder."""
        p = self.work / name
        if p.exists():
            shutil.rmtree(p)
        p.mkdir(parents=True)
        return p

    # -- qhytime as a user runs it ---------------------------------------------------------
    @property
    def qhytime(self) -> list[str]:
        exe = Path(sys.executable).with_name("qhytime")
        if exe.exists():
            return [str(exe)]
        found = shutil.which("qhytime")
        if found:
            return [found]
        return [
            sys.executable,
            "-c",
            "import sys; from qhytime.cli import main; sys.argv[0] = 'qhytime'; main()",
        ]

    @property
    def env(self) -> dict[str, str]:
        """The environment of qhytime subprocesses: never the user's own database."""
        env = dict(os.environ)
        env["QHYTIME_DB"] = str(self.work / "default.sqlite")
        env.pop("QHYTIME_TOKEN", None)
        return env

    def interpreter_mib(self) -> float:
        """Peak RSS of ``qhytime --version`` (median of 3): the interpreter's own peak."""
        if self._interpreter is None:
            runs = [run_measured([*self.qhytime, "--version"], env=self.env) for _ in range(3)]
            self._interpreter = statistics.median(r.maxrss_mib for r in runs)
        return self._interpreter

    # -- input files -----------------------------------------------------------------------
    def sparse_ser(self, n: int, width: int = 9600, height: int = 100) -> Path:
        p = self.data / f"sparse_{n}x{width}x{height}.ser"
        return _data.cached(p, lambda q: _data.write_sparse_ser(q, n, width, height))

    def fits_strips(self, count: int, width: int, height: int) -> list[Path]:
        folder = self.data / f"strips_{count}x{width}x{height}"
        _data.cached(folder, lambda q: _data.write_fits_strips(q, count, width, height))
        return sorted(folder.glob("*.fits"))

    def full_frames(self, count: int, width: int, height: int) -> list[Path]:
        folder = self.data / f"full_{count}x{width}x{height}"
        _data.cached(folder, lambda q: _data.write_full_frames(q, count, width, height))
        return sorted(folder.glob("*.fits"))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def other_busy_processes() -> list[str]:
    """Other processes that are running a test suite or a benchmark right now (by name)."""
    mine = {os.getpid(), os.getppid()}
    found = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if int(d.name) in mine:
                continue
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
        if any(k in cmd for k in ("pytest", "benchmarks", "bench_", "_pulls.py")):
            found.append(cmd.strip()[:120])
    return found


def machine() -> dict[str, Any]:
    """The machine and software a run measured."""
    import astropy
    import numpy

    import qhytime

    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "host": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "astropy": astropy.__version__,
        "qhytime": qhytime.__version__,
        "commit": (commit + (" + uncommitted changes" if dirty else "")) if commit else None,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }

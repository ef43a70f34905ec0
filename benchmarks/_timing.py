"""Timing and memory helpers of the benchmarks (the harness and the study scripts)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls (seconds): the least disturbed run."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _timed(fn: Callable[[], object], prepare: Callable[[], object] | None) -> float:
    if prepare is not None:
        prepare()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def alternate(
    baseline: Callable[[], object],
    ours: Callable[[], object],
    repeats: int,
    *,
    prepare_baseline: Callable[[], object] | None = None,
    prepare_ours: Callable[[], object] | None = None,
    warm: bool = True,
) -> tuple[float, float]:
    """Best wall times (s) of ``baseline`` and ``ours``, run alternately ``repeats`` times each.

    Baseline, ours, baseline, ours, ...: a disturbance (another process, the page cache, a
    CPU frequency step) hits both sides alike instead of one block of runs. Each side is
    called once first, untimed, unless ``warm`` is False (the page cache is warm and imports
    and compiled statements are done). ``prepare_*`` run before each call, outside the time.
    """
    if warm:
        _timed(baseline, prepare_baseline)
        _timed(ours, prepare_ours)
    tb = to = float("inf")
    for _ in range(repeats):
        tb = min(tb, _timed(baseline, prepare_baseline))
        to = min(to, _timed(ours, prepare_ours))
    return tb, to


def traced_peak_mib(fn: Callable[[], object], prepare: Callable[[], object] | None = None) -> float:
    """Peak of the Python and numpy heap (tracemalloc) during one call of ``fn``, in MiB.

    Memory-mapped file pages are not heap and are not counted; ``prepare`` runs untraced.
    """
    if prepare is not None:
        prepare()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


@dataclass
class Measured:
    """One subprocess run: wall time, peak resident set (``ru_maxrss``), exit code."""

    wall_s: float
    maxrss_mib: float
    returncode: int
    stderr: str


LAUNCHER = Path(__file__).with_name("_launch.py")


def run_measured(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdout: int | None = subprocess.DEVNULL,
    timeout: float = 1800.0,
    stderr_path: str | os.PathLike[str] | None = None,
) -> Measured:
    """Run ``cmd`` and return its wall time and its own peak RSS (``ru_maxrss`` from ``wait4``).

    The command is started by a small launcher (``_launch.py``, see there why): started
    from this process it would inherit this process's peak RSS. A run longer than
    ``timeout`` is killed with its process group (exit code -9).
    """
    with _launched(cmd, env, cwd, stdout, stderr_path) as (proc, report, _):
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return Measured(timeout, float("nan"), -9, f"killed after {timeout} s")
        got, text = report()
    if not got:
        return _launcher_failed(proc, text)
    return Measured(got["wall_s"], got["maxrss_kib"] / 1024, got["returncode"], text)


@contextlib.contextmanager
def _launched(
    cmd: Sequence[str], env: dict[str, str] | None, cwd: str | os.PathLike[str] | None,
    stdout: int | None, stderr_path: str | os.PathLike[str] | None,
) -> Iterator[tuple[subprocess.Popen[bytes], Callable[[], tuple[dict[str, Any], str]], float]]:
    """``cmd`` started by the launcher in a session of its own; a function that reads what
    the launcher reported (once the command has ended, inside the ``with``) and the
    command's stderr; and the ``perf_counter`` just before the start."""
    fd, result = tempfile.mkstemp(suffix=".json", prefix="qhytime-bench-")
    os.close(fd)

    def report() -> tuple[dict[str, Any], str]:
        got = json.loads(Path(result).read_text() or "{}")
        text = Path(stderr_path).read_text(errors="replace") if stderr_path else ""
        return got, text

    try:
        with open(stderr_path or os.devnull, "wb") as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(LAUNCHER), result, *cmd], env=env, cwd=cwd,
                stdout=stdout, stderr=err, start_new_session=True,
            )  # fmt: skip
            yield proc, report, t0
    finally:
        os.unlink(result)


def _launcher_failed(proc: subprocess.Popen[bytes], text: str) -> Measured:
    return Measured(float("nan"), float("nan"), proc.returncode or -1, text or "launcher failed")


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux ``/proc``; empty when unreadable)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        pass
    kids = []
    for d in Path("/proc").glob("[0-9]*"):
        try:  # field 4 of stat is the parent's pid (after the command name in parentheses)
            if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(d.name))
        except (OSError, ValueError, IndexError):
            continue
    return kids


def run_until(
    cmd: Sequence[str],
    done: Callable[[], bool],
    *,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    stdout: int | None = subprocess.DEVNULL,
    timeout: float = 1800.0,
    poll_s: float = 0.05,
    stop_timeout: float = 120.0,
    stderr_path: str | os.PathLike[str] | None = None,
) -> Measured:
    """Run a command that does not end by itself (``qhytime watch``) until ``done()`` holds.

    Started like :func:`run_measured` (by the launcher). ``done`` is called every ``poll_s``
    seconds; once it returns True the command gets SIGTERM and is waited for.
    ``wall_s`` is the time from the start until ``done()`` held; ``maxrss_mib`` the
    command's own peak RSS over its whole life (``wait4``); ``returncode`` its exit code
    after SIGTERM. Not done within ``timeout``, or not stopped ``stop_timeout`` seconds after
    SIGTERM: killed with its process group (exit code -9, ``wall_s`` NaN). Ended by itself
    before ``done()`` held: ``wall_s`` NaN and the exit code, or -1 for 0.
    """
    held: float | None = None
    with _launched(cmd, env, cwd, stdout, stderr_path) as (proc, report, t0):
        try:
            while proc.poll() is None and time.perf_counter() - t0 < timeout:
                if done():
                    held = time.perf_counter() - t0
                    break
                time.sleep(poll_s)
            if held is not None:
                # the command only: the launcher must live on to report its peak RSS
                for child in _children(proc.pid):
                    os.kill(child, signal.SIGTERM)
                proc.wait(timeout=stop_timeout)
            elif proc.poll() is None:
                raise subprocess.TimeoutExpired(cmd, timeout)
        except BaseException as exc:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            if isinstance(exc, subprocess.TimeoutExpired):
                return Measured(float("nan"), float("nan"), -9,
                                f"killed after {exc.timeout} s")  # fmt: skip
            raise
        got, text = report()
    if not got:
        return _launcher_failed(proc, text)
    if held is None:
        return Measured(float("nan"), got["maxrss_kib"] / 1024, got["returncode"] or -1,
                        text or "ended before the condition held")  # fmt: skip
    return Measured(held, got["maxrss_kib"] / 1024, got["returncode"], text)


def vm_hwm_mib(pid: int) -> float | None:
    """Peak resident set (``VmHWM``) of a running process, in MiB (None when unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None

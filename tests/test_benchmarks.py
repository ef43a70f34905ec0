"""The benchmark command runs and writes its JSON (structure only: no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_quick_run_writes_the_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = run("--quick", "--only", "calib_lookup", "--only", "pixel_times", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["mode"] == "quick"
    assert report["figures_run"] == ["calib_lookup", "pixel_times"]
    for key in ("cpu", "cores", "ram_gib", "python", "numpy", "astropy", "qhytime", "date"):
        assert report["machine"][key], key
    assert len(report["load_before"]) == 3 and len(report["load_after"]) == 3
    assert report["duration_s"] > 0
    figures = {f["name"]: f for f in report["figures"]}
    assert set(figures) == {"calib_lookup", "pixel_times"}
    for name, f in figures.items():
        assert f["status"] == "ok", f["notes"]
        assert f["unit"] == "s"
        assert isinstance(f["baseline"], float) and f["baseline"] > 0
        assert isinstance(f["qhytime"], float) and f["qhytime"] > 0
        assert isinstance(f["ratio"], float)
        assert f["ratio"] == pytest.approx(f["qhytime"] / f["baseline"], rel=1e-12)
        assert isinstance(f["target"], float) and f["target_text"]
        assert f["met"] is (f["ratio"] <= f["target"])
        assert isinstance(f["peak_mib"], float) and f["peak_mib"] >= 0
        assert f["memory"] == "tracemalloc"
        assert f["title"] in proc.stdout, name
    assert figures["calib_lookup"]["target"] == 2.0
    assert figures["pixel_times"]["target"] == 3.0


def test_unknown_figure_is_a_usage_error(tmp_path: Path) -> None:
    proc = run("--only", "no_such_figure", "--json", str(tmp_path / "r.json"))
    assert proc.returncode == 2
    assert "no_such_figure" in proc.stderr
    assert not (tmp_path / "r.json").exists()

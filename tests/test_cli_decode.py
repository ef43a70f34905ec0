"""`qhytime decode`: the JSON-lines contract, the table, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from qhytime.cli import main

STAMP_KEYS = {"flag", "state", "seconds", "ticks", "utc"}
FRAME_KEYS = {
    "file", "frame", "status", "reasons", "sequence", "width", "height",
    "latitude_deg", "longitude_deg", "pps_count", "start", "end", "now",
}  # fmt: skip


def _run(*args: str) -> tuple[int, list[dict[str, Any]], str]:
    res = CliRunner().invoke(main, list(args))
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    return res.exit_code, lines, res.stdout


def test_json_has_exactly_the_contract_keys(data_dir: Path, truth: dict[str, Any]) -> None:
    f = str(data_dir / "fits16_003.fits")
    code, (obj,), _ = _run("decode", "--json", f)
    assert code == 0
    assert set(obj) == FRAME_KEYS
    assert obj["file"] == f and obj["frame"] == 0 and obj["status"] == "ok" and obj["reasons"] == []
    for s in ("start", "end", "now"):
        assert set(obj[s]) == STAMP_KEYS
    t = next(x for x in truth["frames"] if x["file"] == "fits16_003.fits")
    assert obj["end"]["utc"] == t["end"]["utc"] == "2025-08-02T01:44:53.180738213"


def test_nominal_clock_option(data_dir: Path, truth: dict[str, Any]) -> None:
    _, (obj,), _ = _run("decode", "--json", "--nominal-clock", str(data_dir / "fits16_003.fits"))
    t = next(x for x in truth["frames"] if x["file"] == "fits16_003.fits")
    assert obj["end"]["utc"] == t["end"]["utc_nominal"]


def test_error_line_and_exit_code(data_dir: Path) -> None:
    code, lines, _ = _run(
        "decode", "--json", str(data_dir / "bad_text.fits"), str(data_dir / "fits16_000.fits")
    )
    assert code == 1
    assert lines[0]["status"] == "error" and lines[0]["reasons"]
    assert set(lines[0]) == {"file", "frame", "status", "reasons"}
    assert lines[1]["status"] == "ok"


def test_invalid_frames_do_not_fail_the_command(data_dir: Path) -> None:
    code, (obj,), _ = _run("decode", "--json", str(data_dir / "bad_zero.fits"))
    assert (
        code == 0
        and obj["status"] == "invalid"
        and set(obj) == {"file", "frame", "status", "reasons"}
    )


def test_truncated_exit_code(data_dir: Path) -> None:
    code, lines, _ = _run("decode", "--json", str(data_dir / "bad_truncated.ser"))
    assert code == 1 and [x["status"] for x in lines] == ["ok", "ok", "ok", "error"]


def test_usage_errors_exit_2() -> None:
    assert CliRunner().invoke(main, ["decode"]).exit_code == 2
    assert CliRunner().invoke(main, ["decode", "--bogus", "x"]).exit_code == 2


def test_table_output(data_dir: Path) -> None:
    code, _, out = _run("decode", str(data_dir / "fits8_000.fits"))
    assert code == 0
    assert "2025-08-02T01:45:21.730592600" in out and "invalid" in out
    assert "receiver_state" in out

"""`qhytime decode`: the JSON-lines contract, the table, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
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


def test_summary_line_ends_the_table(data_dir: Path) -> None:
    code, _, out = _run("decode", str(data_dir / "fits16_000.fits"), str(data_dir / "fits8_000.fits"))
    assert code == 0 and out.rstrip().splitlines()[-1] == "2 frames: 1 ok, 1 invalid; 0 errors"
    code, _, out = _run("decode", str(data_dir / "bad_truncated.ser"))
    assert code == 1
    assert out.rstrip().splitlines()[-1] == (
        "3 frames: 3 ok, 0 invalid; 1 error (a file or file tail that could not be read)"
    )


def test_folder_expands_to_its_frames_in_name_order(data_dir: Path, tmp_path: Path) -> None:
    code, lines, _ = _run("decode", "--json", str(data_dir / "led_pairs"))
    assert code == 0 and len(lines) == 40 and all(x["status"] == "ok" for x in lines)
    assert [Path(x["file"]).name for x in lines] == sorted(Path(x["file"]).name for x in lines)
    res = CliRunner().invoke(main, ["decode", str(tmp_path)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert str(tmp_path) in res.stdout and "holds no FITS or SER files" in res.stdout


def test_ser_after_ser_is_not_backwards(data_dir: Path) -> None:
    ser = str(data_dir / "video16.ser")
    code, lines, _ = _run("decode", "--json", ser, ser)
    assert code == 0 and len(lines) == 50 and {x["status"] for x in lines} == {"ok"}


def test_compressed_fits(data_dir: Path, tmp_path: Path, truth: dict[str, Any]) -> None:
    import gzip

    import numpy as np
    from astropy.io import fits

    with fits.open(data_dir / "fits16_000.fits") as hdul:
        img, hdr = np.asarray(hdul[0].data).copy(), hdul[0].header.copy()
    fits.CompImageHDU(img, header=hdr, compression_type="RICE_1").writeto(tmp_path / "r.fits")
    (tmp_path / "g.fits.gz").write_bytes(gzip.compress((data_dir / "fits16_000.fits").read_bytes()))
    t = next(x for x in truth["frames"] if x["file"] == "fits16_000.fits")
    for name in ("r.fits", "g.fits.gz"):
        code, (obj,), _ = _run("decode", "--json", str(tmp_path / name))
        assert code == 0 and obj["status"] == "ok" and obj["end"]["utc"] == t["end"]["utc"]


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [("BITPIX", "0", "BITPIX = 0"), ("NAXIS", "400000000", "NAXIS = 400000000"),
     ("BZERO", "'abc'", "BZERO = 'abc'"), ("NAXIS1", "-1", "NAXIS1 = -1"),
     ("BITPIX", "-1", "BITPIX = -1"), ("NAXIS", "F", "NAXIS = False"),
     ("ROWORDER", "'TOP-DOWN", "ROWORDER cannot be parsed")],
)  # fmt: skip
def test_damaged_headers_in_decode_and_rows(
    data_dir: Path, tmp_path: Path, key: str, value: str, words: str
) -> None:
    from test_readers import _edit_card

    p = _edit_card(data_dir / "fits16_000.fits", tmp_path / "bad.fits", key, value)
    res = CliRunner().invoke(main, ["decode", str(p)])
    assert res.exit_code == 1 and "Traceback" not in res.output and "internal error" not in res.output
    assert str(p) in res.stdout and words in res.stdout
    res = CliRunner().invoke(main, ["rows", str(p), "--offset0-us", "1974.286",
                                    "--line-period-ns", "43194", "--exposure-s", "0.25"])  # fmt: skip
    assert res.exit_code == 1 and "Traceback" not in res.output and "internal error" not in res.output
    assert str(p) in res.stderr and words in res.stderr

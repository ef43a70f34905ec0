"""``--at``: which rows of which frames were exposed at an instant, at the window boundaries
(a row is exposed at t when start <= t < end), against hand-worked cases on pairs and 2CMS.

The frames are simulated with a pps count of exactly 10,000,000 and whole-100-ns instants,
so the stamps are exact: the end stamp of frame k is T + k x interval with T = 2025-08-02
01:44:51 UTC. The calibration: offset0 1000 us from the end stamp, line period 10 us,
exposure 5 ms. By hand (ns after T):

pairs, rows 2k and 2k+1 end together:  end(y) = 1,000,000 + 20,000 x floor(y/2)
2CMS, one row at a time:               end(y) = 1,000,000 + 10,000 x y
start(y) = end(y) - 5,000,000; mid(y) = end(y) - 2,500,000.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qhytime.calibration import Calibration
from qhytime.cli import main
from qhytime.framerows import setting_from_reader
from qhytime.readers import open_frames
from qhytime.service.index import FrameIndex, parse_iso_ns
from qhytime.simulate import CameraSim

T = parse_iso_ns("2025-08-02T01:44:51Z")
MS = 1_000_000


def sim(readout: str, **kw: Any) -> CameraSim:
    base: dict[str, Any] = dict(width=64, height=8, exposure_us=5000.0, pps_count=10_000_000,
                                t0_unix_ns=T, frame_interval_us=5000.0, readout=readout,
                                offset0_us=1000.0, line_period_ns=10_000.0, now_delay_us=1000.0)  # fmt: skip
    base.update(kw)
    return CameraSim(**base)


def calibrate(index: FrameIndex, path: Path) -> None:
    with open_frames(path) as r:
        setting = setting_from_reader(r, 0)
    index.store.add(Calibration(setting=setting, reference="end", offset0_us=1000.0,
                                offset0_sigma_us=0.1, line_period_ns=10_000.0, method="manual"))  # fmt: skip


def rows_at(index: FrameIndex, t: int) -> list[tuple[str, int, list[int]]]:
    return [(Path(f.file).name, f.frame, rt.rows.tolist()) for f, rt in index.at(t)]


@pytest.fixture()
def pairs_index(db_url: str, tmp_path: Path) -> Any:
    path = sim("pairs").write_fits(tmp_path, 1, prefix="pairs")[0]
    with FrameIndex(db_url) as index:
        calibrate(index, path)
        assert index.ingest(path).calibration_id is not None
        yield index


PAIRS_CASES = [
    (-4 * MS - 1, []),  # before any row starts
    (-4 * MS, [0, 1]),  # rows 0,1 start: inclusive
    (-3_980_000 - 1, [0, 1]),
    (-3_980_000, [0, 1, 2, 3]),
    (1 * MS - 1, list(range(8))),  # every row exposing
    (1 * MS, [2, 3, 4, 5, 6, 7]),  # rows 0,1 end: exclusive
    (1_040_000, [6, 7]),
    (1_060_000 - 1, [6, 7]),
    (1_060_000, []),  # the last pair has ended
]


def test_pairs_window_boundaries(pairs_index: FrameIndex) -> None:
    for dt, rows in PAIRS_CASES:
        got = rows_at(pairs_index, T + dt)
        assert got == ([("pairs_0000.fits", 0, rows)] if rows else []), dt


def test_pairs_row_times_by_hand(pairs_index: FrameIndex) -> None:
    ((_f, rt),) = list(pairs_index.at(T + 1 * MS))
    assert rt.rows.tolist() == [2, 3, 4, 5, 6, 7]
    ends = [1_020_000, 1_020_000, 1_040_000, 1_040_000, 1_060_000, 1_060_000]
    assert (rt.end_ns[0] - T).tolist() == ends
    assert (rt.start_ns[0] - T).tolist() == [e - 5 * MS for e in ends]
    assert (rt.mid_ns[0] - T).tolist() == [e - 2_500_000 for e in ends]


def test_2cms_window_boundaries(db_url: str, tmp_path: Path) -> None:
    path = sim("2cms").write_fits(tmp_path, 1, prefix="cms")[0]
    with FrameIndex(db_url) as index:
        calibrate(index, path)
        index.ingest(path)
        cases = [
            (-4 * MS - 1, []),
            (-4 * MS, [0]),
            (-4 * MS + 10_000 - 1, [0]),
            (-4 * MS + 10_000, [0, 1]),
            (1 * MS - 1, list(range(8))),
            (1 * MS, list(range(1, 8))),  # row 0 ends at exactly t: not exposed
            (1_010_000, list(range(2, 8))),
            (1_070_000 - 1, [7]),
            (1_070_000, []),
        ]
        for dt, rows in cases:
            assert rows_at(index, T + dt) == ([("cms_0000.fits", 0, rows)] if rows else []), dt
        ((_, rt),) = list(index.at(T + 1 * MS))
        assert (rt.end_ns[0] - T).tolist() == [1 * MS + 10_000 * y for y in range(1, 8)]


def test_2cms_binned_and_cropped_rows_are_intervals(db_url: str, tmp_path: Path) -> None:
    """Binning 2, crop origin 2: image row r spans sensor rows 2+2r and 3+2r, so it is exposed
    from the start of the first to the end of the second (ns after T):
    r=0 [-3,980,000, 1,030,000)  r=1 [-3,960,000, 1,050,000)  r=2 [-3,940,000, 1,070,000)
    r=3 [-3,920,000, 1,090,000)."""
    path = sim("2cms", height=4, crop_y=2, binning=2).write_fits(tmp_path, 1, prefix="bin")[0]
    with FrameIndex(db_url) as index:
        calibrate(index, path)
        index.ingest(path)
        cases = [
            (-3_980_000 - 1, []),
            (-3_980_000, [0]),
            (-3_960_000, [0, 1]),
            (1_030_000 - 1, [0, 1, 2, 3]),
            (1_030_000, [1, 2, 3]),
            (1_089_999, [3]),
            (1_090_000, []),
        ]
        for dt, rows in cases:
            assert rows_at(index, T + dt) == ([("bin_0000.fits", 0, rows)] if rows else []), dt
        ((_, rt),) = list(index.at(T))
        assert (rt.start_ns[0] - T).tolist() == [-3_980_000, -3_960_000, -3_940_000, -3_920_000]
        assert (rt.end_ns[0] - T).tolist() == [1_030_000, 1_050_000, 1_070_000, 1_090_000]
        # the middle of a binned row is the mean of its rows' middles
        assert (rt.mid_ns[0] - T).tolist() == [-1_475_000, -1_455_000, -1_435_000, -1_415_000]


def test_consecutive_frames_of_a_ser_at_their_boundary(db_url: str, tmp_path: Path) -> None:
    """Frames every 5 ms with 5 ms exposures: frame 1's rows 0,1 start exactly when frame 0's
    rows 0,1 end (T + 1 ms); frame 0's later rows are still exposing."""
    s = sim("pairs")
    path = s.write_ser(tmp_path / "v.ser", 3)
    with FrameIndex(db_url) as index:
        calibrate(index, path)
        index.ingest(path, exposure_ns=5 * MS)
        assert rows_at(index, T + 1 * MS) == [("v.ser", 0, [2, 3, 4, 5, 6, 7]), ("v.ser", 1, [0, 1])]
        assert rows_at(index, T + 1 * MS - 1) == [("v.ser", 0, list(range(8)))]
        assert rows_at(index, T + 6 * MS) == [("v.ser", 1, [2, 3, 4, 5, 6, 7]), ("v.ser", 2, [0, 1])]
        assert rows_at(index, T + 11_060_000) == []


def test_at_cli_json_contract(tmp_path: Path) -> None:
    path = sim("pairs").write_fits(tmp_path / "cap", 1, prefix="pairs")[0]
    db = str(tmp_path / "i.sqlite")
    with FrameIndex(db) as index:
        calibrate(index, path)
        index.ingest(path)
    runner = CliRunner()
    for text in ("2025-08-02T01:44:51.001Z", "2025-08-02T01:44:51.001000000"):  # with or without Z
        out = runner.invoke(main, ["query", "--at", text, "--json"], env={"QHYTIME_DB": db})
        assert out.exit_code == 0, out.output
        (obj,) = [json.loads(line) for line in out.stdout.splitlines()]
        assert obj["frame"] == 0 and obj["file"].endswith("pairs_0000.fits")
        assert [r["row"] for r in obj["rows"]] == [2, 3, 4, 5, 6, 7]
        r = obj["rows"][0]
        assert set(r) == {"row", "start", "mid", "end", "start_ns", "mid_ns", "end_ns", "sigma_ns"}
        assert (r["start_ns"] - T, r["mid_ns"] - T, r["end_ns"] - T) == (-3_980_000, -1_480_000,
                                                                         1_020_000)  # fmt: skip
        assert r["end"] == "2025-08-02T01:44:51.001020000"
    out = runner.invoke(main, ["query", "--at", "2025-08-02T01:44:51.00106Z", "--json"],
                        env={"QHYTIME_DB": db})  # fmt: skip
    assert (out.exit_code, out.stdout) == (0, "")


def test_untrusted_frames_answer_only_when_allowed(db_url: str, tmp_path: Path) -> None:
    path = sim("pairs", receiver_state=2).write_fits(tmp_path, 1, prefix="unlocked")[0]
    with FrameIndex(db_url) as index:
        calibrate(index, path)
        index.ingest(path)
        assert list(index.at(T)) == []
        ((f, rt),) = list(index.at(T, allow_invalid=True))
        assert f.status == "invalid" and f.reasons[0].startswith("receiver_state")
        assert rt.rows.tolist() == list(range(8))

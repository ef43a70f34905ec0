"""Decoding the independent encoder's reference frames reproduces truth.json exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qhytime.decode import decode_file, decode_paths
from qhytime.errors import FrameReadError
from qhytime.gpsblock import STAMP_NAMES
from qhytime.validity import reason_code


def _truth_files(truth: dict[str, Any]) -> list[str]:
    return sorted({f["file"] for f in truth["frames"]})


@pytest.mark.parametrize("nominal", [False, True])
def test_every_field_and_time_matches_truth(
    truth: dict[str, Any], data_dir: Path, nominal: bool
) -> None:
    decoded = {
        name: decode_file(data_dir / name, nominal_clock=nominal) for name in _truth_files(truth)
    }
    checked = 0
    for t in truth["frames"]:
        rec = decoded[t["file"]].frame(t["frame"])
        blk = rec.block
        assert blk is not None, (t["file"], t["frame"], rec.reasons)
        assert (blk.sequence, blk.width, blk.height, blk.pps_count) == (
            t["sequence"],
            t["width"],
            t["height"],
            t["pps_count"],
        )
        # positions: the block's resolution is 1e-5' (lat) / 1e-4' (lon): < 2e-6 deg
        assert blk.latitude_deg == pytest.approx(t["latitude_deg"], abs=2e-6)
        assert blk.longitude_deg == pytest.approx(t["longitude_deg"], abs=2e-6)
        for s in STAMP_NAMES:
            st = rec.stamps[s]
            assert (st.stamp.flag, st.stamp.state, st.stamp.seconds, st.stamp.ticks) == (
                t[s]["flag"],
                t[s]["state"],
                t[s]["seconds"],
                t[s]["ticks"],
            )
            # tolerance 0 ns: the ISO string and the integer must be exact
            assert st.utc == t[s]["utc_nominal" if nominal else "utc"]
            if not nominal:
                assert st.unix_ns == t[s]["unix_ns"]
        checked += 1
    assert checked == len(truth["frames"]) == 35


def test_status_of_reference_frames(truth: dict[str, Any], data_dir: Path) -> None:
    files = [data_dir / f for f in _truth_files(truth)]
    recs = {(Path(r.file).name, r.frame): r for r in decode_paths(files)}
    for t in truth["frames"]:
        rec = recs[(t["file"], t["frame"])]
        if t["start"]["state"] == 3:
            assert rec.status == "ok", rec.reasons
        else:  # fits8_*: receiver state 2, time reported but flagged
            assert rec.status == "invalid"
            assert [reason_code(r) for r in rec.reasons] == ["receiver_state"]
            assert "state 2" in rec.reasons[0]
            assert rec.stamps["end"].utc == t["end"]["utc"]


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("bad_noblock.fits", "no_gps_block"),
        ("bad_zero.fits", "no_gps_block"),
        ("bad_ticks.fits", "ticks_out_of_range"),
    ],
)
def test_bad_frames_refused_with_reason(data_dir: Path, name: str, code: str) -> None:
    (rec,) = list(decode_paths([data_dir / name]))
    assert rec.status == "invalid"
    assert code in [reason_code(r) for r in rec.reasons]
    if code == "no_gps_block":
        assert rec.block is None and not rec.stamps


def test_bad_ticks_also_reports_end_before_start(data_dir: Path) -> None:
    (rec,) = list(decode_paths([data_dir / "bad_ticks.fits"]))
    assert {reason_code(r) for r in rec.reasons} == {"ticks_out_of_range", "end_before_start"}


def test_truncated_ser_yields_complete_frames_then_error(
    truth: dict[str, Any], data_dir: Path
) -> None:
    recs = list(decode_paths([data_dir / "bad_truncated.ser"]))
    (expect,) = [b for b in truth["bad"] if b["file"] == "bad_truncated.ser"]
    good = [r for r in recs if r.status == "ok"]
    assert len(good) == expect["complete_frames"] == 3
    assert recs[-1].status == "error" and recs[-1].frame == 3
    assert "truncated" in recs[-1].reasons[0] and "frames 3..24 are missing" in recs[-1].reasons[0]
    # the complete frames are the same as in the full video
    video = {t["frame"]: t for t in truth["frames"] if t["file"] == "video16.ser"}
    for r in good:
        assert r.stamps["now"].utc == video[r.frame]["now"]["utc"]


def test_text_file_is_not_fits(data_dir: Path) -> None:
    with pytest.raises(FrameReadError) as info:
        decode_file(data_dir / "bad_text.fits")
    assert info.value.path.endswith("bad_text.fits")
    assert "FITS" in info.value.reason
    (rec,) = list(decode_paths([data_dir / "bad_text.fits"]))
    assert rec.status == "error" and rec.frame is None and rec.reasons


def test_batch_goes_on_after_bad_files(data_dir: Path) -> None:
    files = [
        data_dir / n
        for n in ("bad_text.fits", "fits16_000.fits", "bad_truncated.ser", "fits16_001.fits")
    ]
    statuses = [(Path(r.file).name, r.status) for r in decode_paths(files)]
    assert statuses[0] == ("bad_text.fits", "error")
    assert ("fits16_000.fits", "ok") in statuses
    assert statuses[-1] == ("fits16_001.fits", "ok")


def test_unexpected_failure_of_one_file_does_not_end_the_batch(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import qhytime.decode as dec

    real = dec.open_frames

    def flaky(path: str):  # type: ignore[no-untyped-def]
        if path.endswith("fits16_001.fits"):
            raise RuntimeError("disk on fire")
        return real(path)

    monkeypatch.setattr(dec, "open_frames", flaky)
    files = [str(data_dir / f"fits16_00{i}.fits") for i in range(3)]
    recs = list(decode_paths(files))
    assert [r.status for r in recs] == ["ok", "error", "invalid"]
    assert "RuntimeError: disk on fire" in recs[1].reasons[0]
    assert recs[1].file.endswith("fits16_001.fits") and recs[1].frame is None
    # the unread frame 1001 is a hole in the sequence, and said so
    assert recs[2].reasons == [
        "sequence_gap: 1 frame(s) missing before sequence 1002 (previous 1000)"
    ]


def test_ser_after_ser_starts_a_new_sequence(data_dir: Path) -> None:
    # each multi-frame file is a sequence of its own: frame 0 of the second copy is not
    # "backwards" from the first's frame 24
    recs = list(decode_paths([data_dir / "video16.ser", data_dir / "video16.ser"]))
    assert len(recs) == 50 and all(r.status == "ok" for r in recs)
    # and a single-frame FITS after a SER is not compared with the SER either
    recs = list(decode_paths([data_dir / "video16.ser", data_dir / "fits16_000.fits"]))
    assert recs[-1].status == "ok" and recs[-1].reasons == []


def test_single_frame_fits_in_order_are_one_sequence(data_dir: Path) -> None:
    files = [data_dir / f"fits16_00{i}.fits" for i in (0, 1, 3, 2, 4)]
    codes = [[reason_code(x) for x in r.reasons] for r in decode_paths(files)]
    # 1001 -> 1003 is a gap (the frame keeps its time), 1003 -> 1002 goes backwards
    assert codes[:3] == [[], [], ["sequence_gap"]]
    assert "sequence_backwards" in codes[3]

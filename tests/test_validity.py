"""Every validity reason, triggered by blocks built by hand."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qhytime.decode import decode_file, decode_paths, decode_reader
from qhytime.gpsblock import GpsBlock, Stamp, embed_block
from qhytime.readers import ArrayReader
from qhytime.simulate import CameraSim
from qhytime.timebase import GPS_EPOCH_UNIX_S, iso_to_unix_ns
from qhytime.validity import reason_code, rolling_median, run_ids, sequence_reasons

from conftest import make_block, make_series_block


def _decode(*blocks: GpsBlock) -> list[list[str]]:
    stack = np.zeros((len(blocks), 96, 320), dtype=np.uint16)
    for img, blk in zip(stack, blocks, strict=True):
        embed_block(img, blk)
    d = decode_reader(ArrayReader(stack))
    return [[reason_code(r) for r in rs] for rs in d.reasons]


def _gps_seconds(iso: str) -> int:
    return iso_to_unix_ns(iso) // 10**9 - GPS_EPOCH_UNIX_S


def test_good_block_has_no_reasons() -> None:
    assert _decode(make_block()) == [[]]


@pytest.mark.parametrize("state", [0, 1, 2])
def test_unlocked_states(state: int) -> None:
    flag = (state << 4) | 0x03
    blk = make_block(end=Stamp(flag, 940815891, 9800485))
    assert _decode(blk) == [["receiver_state"]]


@pytest.mark.parametrize(
    ("pps", "code"),
    [(0, "pps_count_out_of_range"), (9_998_999, "pps_count_out_of_range"),
     (10_001_001, "pps_count_out_of_range"), (10_000_500, "pps_lost")],
)  # fmt: skip
def test_pps_count(pps: int, code: str) -> None:
    blk = make_block(pps_count=pps, start=Stamp(0x33, 940815891, 1), end=Stamp(0x33, 940815891, 2),
                     now=Stamp(0x33, 940815891, 3))  # fmt: skip
    assert _decode(blk) == [[code]]


def test_pps_range_edges_are_good() -> None:
    assert _decode(make_block(pps_count=9_999_000)) == [[]]
    assert _decode(make_block(pps_count=10_001_000)) == [[]]


def test_ticks_equal_to_pps_is_out_of_range() -> None:
    blk = make_block(now=Stamp(0x33, 940815891, 9_999_612))
    assert _decode(blk) == [["ticks_out_of_range"]]


def test_end_before_start() -> None:
    blk = make_block(end=Stamp(0x33, 940815891, 7300583))
    assert _decode(blk) == [["end_before_start"]]


def test_leap_second_vicinity() -> None:
    s = _gps_seconds("2016-12-31T23:59:59")
    blk = make_block(start=Stamp(0x33, s, 9_000_000), end=Stamp(0x33, s + 1, 1000),
                     now=Stamp(0x33, s + 1, 2000))  # fmt: skip
    assert _decode(blk) == [["leap_second"]]


def test_sequence_gap_repeat_backwards_across_frames() -> None:
    # frame k of the camera (its time) with sequence number s: 14 is repeated (a stale
    # block, same time), 3 follows (the camera restarted)
    frames = [(0, 10), (1, 11), (4, 14), (4, 14), (5, 3)]
    reasons = _decode(*(make_series_block(k, sequence=s) for k, s in frames))
    # in one multi-frame file the numbers also place the frames on the camera's cadence: the
    # frame after a restart is off it too
    assert reasons == [[], [], ["sequence_gap"], ["sequence_repeat"],
                       ["sequence_backwards", "cadence"]]  # fmt: skip


def test_sequence_wraps_at_2_32() -> None:
    r = sequence_reasons(np.array([2**32 - 1, 0]), np.array([8, 8]), np.array([8, 8]))
    assert r == [[], []]


def test_sequence_not_compared_across_different_runs() -> None:
    r = sequence_reasons(np.array([5, 100]), np.array([8, 16]), np.array([8, 8]))
    assert r == [[], []]


def test_sequence_continues_from_previous_file() -> None:
    r = sequence_reasons(np.array([12]), np.array([8]), np.array([8]), previous=(10, 8, 8))
    assert "1 frame(s) missing before sequence 12 (previous 10)" in r[0][0]


def test_reason_texts_say_what_is_wrong() -> None:
    stack = np.zeros((1, 96, 320), dtype=np.uint16)
    embed_block(stack[0], make_block(pps_count=0, start=Stamp(0x13, 940815891, 5)))
    (reasons,) = decode_reader(ArrayReader(stack)).reasons
    text = " ".join(reasons)
    assert "state 1 (not locked, searching)" in text
    assert "pps count 0 is outside 9999000..10001000" in text


# -- consistency within a frame -----------------------------------------------------------


def _shift(stamp: Stamp, ns: int, pps: int = 9999612) -> Stamp:
    """The stamp moved by ``ns`` (ticks at the measured rate, exact to the tick)."""
    ticks = stamp.ticks + ns * pps // 10**9
    return Stamp(stamp.flag, stamp.seconds + ticks // pps, ticks % pps)


def _decode_exp(blocks: list[GpsBlock], exposure_ns: int | None) -> list[list[str]]:
    stack = np.zeros((len(blocks), 96, 320), dtype=np.uint16)
    for img, blk in zip(stack, blocks, strict=True):
        embed_block(img, blk)
    d = decode_reader(ArrayReader(stack, exposure_ns=exposure_ns))
    return [[reason_code(r) for r in rs] for rs in d.reasons]


@pytest.mark.parametrize(
    ("start_shift_s", "exposure_ns", "codes"),
    [(0, 250_000_000, []),             # the reference frame: end - start = exposure
     (-1, 250_000_000, ["stamp_spacing"]),       # start 1 s early
     (-2**20, 250_000_000, ["stamp_spacing"]),
     (0, None, []),
     (-1, None, ["stamp_spacing"]),   # lone frame, no exposure: 1.25 s cannot be confirmed
     (0, 30_000_000_000, ["stamp_spacing"])],    # 0.25 s apart, exposure 30 s
)  # fmt: skip
def test_start_end_spacing_against_the_exposure(
    start_shift_s: int, exposure_ns: int | None, codes: list[str]
) -> None:
    base = make_block()
    blk = make_block(start=Stamp(0x33, base.start.seconds + start_shift_s, base.start.ticks))
    assert _decode_exp([blk], exposure_ns) == [codes]


def test_vsync_edge_stamps_and_long_exposures_are_good() -> None:
    base = make_block()
    # start and end the two edges of the 0.4 us VSYNC pulse, whatever the exposure
    edges = make_block(start=_shift(base.end, -400))
    assert _decode_exp([edges], 250_000_000) == [[]]
    assert _decode_exp([edges], None) == [[]]
    # a 120 s exposure, start = end - exposure
    long = make_block(start=_shift(base.end, -120 * 10**9))
    assert _decode_exp([long], 120 * 10**9) == [[]]


@pytest.mark.parametrize(("now_ns", "bad"), [(937_537, False), (-400, False), (499_000_000, False),
                                              (1_000_937_537, True), (-999_000_000, True)])  # fmt: skip
def test_now_follows_end(now_ns: int, bad: bool) -> None:
    base = make_block()
    blk = make_block(now=_shift(base.end, now_ns))
    assert _decode_exp([blk], 250_000_000) == [["stamp_spacing"] if bad else []]


def test_end_stamp_in_2093_is_caught() -> None:
    # the issue's example: bit 7 of the end seconds' first byte flipped
    base = make_block()
    blk = make_block(end=Stamp(0x33, base.end.seconds ^ (1 << 31), base.end.ticks))
    assert "stamp_spacing" in _decode_exp([blk], 250_000_000)[0]


def test_dates_before_2015() -> None:
    base = make_block()
    old = -(1024 * 7 * 86400)  # the GPS week rollover: 19.6 years early
    blk = make_block(**{s: Stamp(0x33, getattr(base, s).seconds + old, getattr(base, s).ticks)
                        for s in ("start", "end", "now")})  # fmt: skip
    assert _decode_exp([blk], 250_000_000) == [["date_out_of_range"]]


@pytest.mark.parametrize(
    ("lat", "lon", "bad"),
    [(521290180, 1000523572, False),   # 52 deg 12.9018' N, 0 deg 52.3572' W
     (1900000000, 1180000000, False),  # 90 S, 180 W
     (526000000, 0, True),             # 60.0 minutes
     (910000000, 0, True),             # 91 degrees
     (2000000000, 0, True),            # sign digit 2
     (0, 181000000, True),             # 181 degrees
     (0, 1796000000 - 1000000000 + 600000, True),  # 79 deg 60.0000'
     (900000001, 0, True)],            # 90 deg and a bit
)  # fmt: skip
def test_position_digits(lat: int, lon: int, bad: bool) -> None:
    blk = make_block(latitude_raw=lat, longitude_raw=lon)
    assert _decode_exp([blk], 250_000_000) == [["position_out_of_range"] if bad else []]


# -- consistency across a sequence --------------------------------------------------------


def _series(n: int, **kw: Any) -> list[GpsBlock]:
    return [make_series_block(i, **kw) for i in range(n)]


@pytest.mark.parametrize("stamp", ["start", "end"])
@pytest.mark.parametrize("shift_ns", [1_000_000, -1_000_000, 2**14 * 100, 10**9])
def test_one_ms_on_start_or_end_in_a_sequence_is_caught(stamp: str, shift_ns: int) -> None:
    blocks = _series(9)
    blocks[4] = replace(blocks[4], **{stamp: _shift(getattr(blocks[4], stamp), shift_ns)})
    reasons = _decode_exp(blocks, 250_000_000)
    assert reasons[4] and all(r == [] for k, r in enumerate(reasons) if k != 4), reasons


def test_now_beyond_its_jitter_in_a_sequence_is_caught() -> None:
    blocks = _series(9)
    blocks[4] = replace(blocks[4], now=_shift(blocks[4].now, 16_000_000))
    reasons = _decode_exp(blocks, 250_000_000)
    assert reasons[4] == ["spacing_jump"] and not any(reasons[:4] + reasons[5:])


def test_pps_and_position_steady() -> None:
    blocks = _series(7)
    blocks[2] = replace(blocks[2], pps_count=blocks[2].pps_count + 512)
    blocks[5] = replace(blocks[5], latitude_raw=blocks[5].latitude_raw + 10**7)  # 1 degree
    reasons = _decode_exp(blocks, 250_000_000)
    assert reasons == [[], [], ["pps_count_jump"], [], [], ["position_jump"], []]


def test_whole_seconds_step_in_a_video_is_caught() -> None:
    # all three stamps of frames 5.. one second late (a receiver's leap-second count arriving)
    blocks = _series(10)
    for k in range(5, 10):
        b = blocks[k]
        blocks[k] = replace(b, **{s: _shift(getattr(b, s), 10**9) for s in ("start", "end", "now")})
    reasons = _decode_exp(blocks, 250_000_000)
    assert reasons[4] == ["cadence"] and reasons[5] == ["cadence"]


def test_time_going_backwards_in_fits_files(tmp_path: Path) -> None:
    from astropy.io import fits

    # frames 2 and 3 carry each other's times: sequence numbers advance, time goes back
    blocks = _series(5)
    b2, b3 = blocks[2], blocks[3]
    times = ("start", "end", "now")
    blocks[2] = replace(b2, **{s: getattr(b3, s) for s in times})
    blocks[3] = replace(b3, **{s: getattr(b2, s) for s in times})
    paths = []
    for k, blk in enumerate(blocks):
        img = np.zeros((96, 320), dtype=np.uint16)
        embed_block(img, blk)
        hdu = fits.PrimaryHDU(img)
        hdu.header["EXPTIME"] = 0.25
        paths.append(tmp_path / f"f{k}.fits")
        hdu.writeto(paths[-1])
    recs = list(decode_paths(paths))
    codes = [[reason_code(r) for r in rec.reasons] for rec in recs]
    assert codes == [[], [], ["cadence"], ["cadence"], []]


def test_exposure_change_and_edge_stamps_in_a_sequence_are_good() -> None:
    # frames 0..3 at 0.25 s, 4..8 at 0.1 s: end - start steps, no frame is off
    blocks = _series(9)
    for k in range(4, 9):
        blocks[k] = replace(blocks[k], start=_shift(blocks[k].end, -100_000_000))
    assert _decode_exp(blocks, None) == [[]] * 9


def test_own_time_trusted_for_new_codes() -> None:
    from qhytime.validity import REASON_CODES, SEQUENCE_CONTEXT_CODES, own_time_trusted

    assert SEQUENCE_CONTEXT_CODES == {"sequence_gap"}
    for code in REASON_CODES:
        assert own_time_trusted([f"{code}: x"]) is (code == "sequence_gap")


def test_rolling_median_and_runs() -> None:
    assert rolling_median([1.0, 9.0, 1.0]).tolist() == [1.0, 1.0, 1.0]
    assert rolling_median([1.0, 1.0, 2.0, 50.0, 2.0, 3.0, 3.0]).tolist()[3] == 2.0
    assert run_ids([1, 2, 3, 1, 2], [8, 8, 8, 8, 8], [4, 4, 4, 4, 4]).tolist() == [0] * 5
    assert run_ids([1, 2, 3], [8, 9, 9], [4, 4, 4]).tolist() == [0, 1, 1]


# -- legitimate captures stay ok -----------------------------------------------------------


@pytest.mark.parametrize(
    ("interval_us", "exposure_us", "n"),
    [(1_000.0, 900.0, 200),          # 1000 frames/s
     (20_000.0, 20_000.0, 50),       # exposure = frame period (long-exposure mode)
     (400_000.0, 250_000.0, 10),     # the simulator's default, across whole seconds
     (31_000_000.0, 30_000_000.0, 4)],  # 30 s exposures
)  # fmt: skip
def test_simulated_captures_are_good(
    tmp_path: Path, interval_us: float, exposure_us: float, n: int
) -> None:
    sim = CameraSim(width=64, height=8, exposure_us=exposure_us, frame_interval_us=interval_us,
                    t0_unix_ns=1_754_099_091_999_000_000)  # fmt: skip
    ser = sim.write_ser(tmp_path / "v.ser", n, noise=False)
    d = decode_file(ser)
    assert d.ok.all(), [r for r in d.reasons if r][:2]
    fits_paths = sim.write_fits(tmp_path / "f", min(n, 8))
    recs = list(decode_paths(fits_paths))
    assert all(r.status == "ok" for r in recs), [r.reasons for r in recs if r.reasons][:2]
    # start = VSYNC - exposure, end = VSYNC, now = VSYNC + 1 ms as the simulator writes them
    vsync = [sim.block_for(i)[1] for i in range(n)]
    assert (d.unix_ns["end"] - np.asarray(vsync)).max() <= 0


def test_reference_series_and_video_are_good(data_dir: Path) -> None:
    recs = list(decode_paths([data_dir / f"fits16_00{i}.fits" for i in range(6)]
                             + [data_dir / "video16.ser", data_dir / "video16.ser"]))  # fmt: skip
    assert len(recs) == 56 and all(r.status == "ok" for r in recs)


def test_a_lone_long_exposure_is_confirmed_by_the_exposure_given(tmp_path: Path) -> None:
    from astropy.io import fits

    from qhytime.framerows import frame_row_times
    from qhytime.rowmodel import RowModel

    shot = CameraSim(width=64, height=8, exposure_us=2e6).frame(0)
    fits.PrimaryHDU(shot.image).writeto(tmp_path / "x.fits")  # no EXPTIME
    (reasons,) = decode_file(tmp_path / "x.fits").reasons
    assert [reason_code(r) for r in reasons] == ["stamp_spacing"] and "lone frame" in reasons[0]
    model = RowModel.from_us(offset0_us=1974.286, line_period_ns=43194)
    frt = frame_row_times(tmp_path / "x.fits", model=model, exposure_ns=2_000_000_000)
    assert frt.record.status == "ok"

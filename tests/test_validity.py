"""Every validity reason, triggered by blocks built by hand."""

from __future__ import annotations

import numpy as np
import pytest

from qhytime.decode import decode_reader
from qhytime.gpsblock import GpsBlock, Stamp, embed_block
from qhytime.readers import ArrayReader
from qhytime.timebase import GPS_EPOCH_UNIX_S, iso_to_unix_ns
from qhytime.validity import reason_code, sequence_reasons

from conftest import make_block


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
    assert _decode(
        make_block(pps_count=9_999_000), make_block(sequence=1001, pps_count=10_001_000)
    ) == [[], []]


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
    seqs = [10, 11, 14, 14, 3]
    reasons = _decode(*(make_block(sequence=s) for s in seqs))
    assert reasons == [[], [], ["sequence_gap"], ["sequence_repeat"], ["sequence_backwards"]]


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

"""GPS block codec: hand-worked examples from the spec and hypothesis round trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from qhytime.errors import GpsBlockError
from qhytime.gpsblock import (
    BLOCK_SIZE,
    FIELD_MAX,
    FIELD_NAMES,
    GpsBlock,
    GpsBlockArray,
    block_bytes_from_rows,
    decode_image,
    decode_stack,
    embed_block,
    latitude_deg_from_raw,
    latitude_raw_from_deg,
    longitude_deg_from_raw,
    longitude_raw_from_deg,
    receiver_state,
)

from conftest import make_block

field_values = st.fixed_dictionaries({n: st.integers(0, FIELD_MAX[n]) for n in FIELD_NAMES})


def test_hand_decoded_bytes() -> None:
    # Bytes written out by hand from the spec table (big-endian fields).
    raw = bytes.fromhex(
        "0007a120"  # sequence 500000
        "00"  # spare
        "01e0" "0028"  # width 480, height 40
        "1f1241c4"  # latitude 521290180
        "3ba2c734"  # longitude 1000523572
        "33" "3813b64f" "6f87f4"  # start: flag 0x33, seconds 940815951, ticks 7309300
        "33" "3813b64f" "72952d"  # end
        "33" "3813b64f" "72bc26"  # now
        "9894fc"  # pps 9999612
    )  # fmt: skip
    blk = GpsBlock.from_bytes(raw)
    assert blk.sequence == 500000 and blk.spare == 0
    assert (blk.width, blk.height) == (480, 40)
    assert blk.start.flag == 0x33 and blk.start.state == 3
    assert blk.start.seconds == 940815951 and blk.start.ticks == 7309300
    assert blk.end.ticks == 0x72952D and blk.now.ticks == 0x72BC26
    assert blk.pps_count == 9999612
    assert blk.latitude_deg == pytest.approx(52.21503, abs=1e-9)
    assert blk.longitude_deg == pytest.approx(-0.87262, abs=1e-9)
    assert blk.to_bytes() == raw


def test_spec_position_examples() -> None:
    assert latitude_deg_from_raw(1351234567) == pytest.approx(-(35 + 12.34567 / 60), abs=1e-12)
    assert longitude_deg_from_raw(149123456) == pytest.approx(149 + 12.3456 / 60, abs=1e-12)
    assert latitude_raw_from_deg(-(35 + 12.34567 / 60)) == 1351234567
    assert longitude_raw_from_deg(149 + 12.3456 / 60) == 149123456
    # 149 deg must not become 49 deg (a known decoder bug)
    assert longitude_deg_from_raw(1149000000) == -149.0


def test_receiver_state_bits() -> None:
    assert [receiver_state(f) for f in (0x00, 0x13, 0x23, 0x33, 0xF3)] == [0, 1, 2, 3, 3]


@given(field_values)
@example({n: FIELD_MAX[n] for n in FIELD_NAMES})
@example({n: 0 for n in FIELD_NAMES})
def test_encode_decode_is_identity(fields: dict[str, int]) -> None:
    blk = GpsBlock.from_fields(fields)
    raw = blk.to_bytes()
    assert len(raw) == BLOCK_SIZE
    assert GpsBlock.from_bytes(raw) == blk
    assert GpsBlock.from_bytes(raw).fields() == fields


@given(st.lists(field_values, min_size=1, max_size=20))
def test_vectorised_decode_equals_scalar(rows: list[dict[str, int]]) -> None:
    blocks = [GpsBlock.from_fields(f) for f in rows]
    raw = np.stack([np.frombuffer(b.to_bytes(), np.uint8) for b in blocks])
    arr = GpsBlockArray.from_bytes(raw)
    assert list(arr) == blocks
    assert np.array_equal(arr.to_bytes(), raw)


@given(
    st.integers(0, 90 * 60 * 100_000).map(lambda m: m / 100_000 / 60),
    st.booleans(),
)
def test_latitude_degrees_round_trip(deg: float, south: bool) -> None:
    value = -deg if south and deg else deg
    raw = latitude_raw_from_deg(value)
    assert latitude_deg_from_raw(raw) == pytest.approx(value, abs=1e-9)


@given(
    st.integers(0, 180 * 60 * 10_000).map(lambda m: m / 10_000 / 60),
    st.booleans(),
)
def test_longitude_degrees_round_trip(deg: float, west: bool) -> None:
    value = -deg if west and deg else deg
    raw = longitude_raw_from_deg(value)
    assert longitude_deg_from_raw(raw) == pytest.approx(value, abs=1e-9)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("flipped", [False, True])
def test_embed_and_decode_image(dtype: type, flipped: bool) -> None:
    blk = make_block(width=64, height=6)
    img = np.full((6, 64), 7, dtype=dtype)
    embed_block(img, blk, flipped=flipped)
    assert decode_image(img, flipped=flipped) == blk
    # pixels beyond the block are untouched
    n_px = BLOCK_SIZE if dtype == np.uint8 else BLOCK_SIZE // 2
    row = img[-1 if flipped else 0]
    assert (row[n_px:] == 7).all()


def test_sixteen_bit_pixels_are_little_endian_pairs() -> None:
    blk = make_block()
    raw = np.frombuffer(blk.to_bytes(), np.uint8)
    img = np.zeros((2, 40), dtype=np.uint16)
    embed_block(img, blk)
    assert img[0, 0] == raw[0] | (raw[1] << 8)
    assert block_bytes_from_rows(img[0]).tobytes() == blk.to_bytes()


def test_decode_stack_one_pass() -> None:
    stack = np.zeros((5, 3, 40), dtype=np.uint16)
    blocks = [make_block(sequence=i) for i in range(5)]
    for img, blk in zip(stack, blocks, strict=True):
        embed_block(img, blk)
    arr = decode_stack(stack)
    assert arr.sequence.tolist() == [0, 1, 2, 3, 4]
    assert list(arr) == blocks


def test_errors() -> None:
    with pytest.raises(GpsBlockError, match="short_block"):
        GpsBlock.from_bytes(b"\x00" * 43)
    with pytest.raises(GpsBlockError, match="does not fit"):
        make_block(pps_count=1 << 24).to_bytes()
    with pytest.raises(GpsBlockError, match="float"):
        block_bytes_from_rows(np.zeros(64, dtype=np.float32))
    with pytest.raises(GpsBlockError, match="latitude"):
        latitude_raw_from_deg(91.0)
    with pytest.raises(ValueError):  # GpsBlockError is a ValueError
        GpsBlock.from_bytes(b"")

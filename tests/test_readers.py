"""FITS, SER and array readers: layouts, byte orders, flips, keywords, truncation."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from qhytime.decode import decode_file, decode_reader
from qhytime.errors import FrameReadError, QhytimeError, TruncatedFileError
from qhytime.gpsblock import GpsBlock, Stamp, embed_block
from qhytime.readers import (
    ArrayReader,
    FitsReader,
    SerReader,
    frames_from_buffer,
    open_frames,
    write_ser,
)
from qhytime.readers.serfile import HEADER_SIZE, dotnet_ticks_to_unix_ns
from qhytime.validity import reason_code

from conftest import make_block


def _stack(n: int, h: int = 12, w: int = 64, dtype: Any = np.uint16, seq0: int = 100) -> np.ndarray:
    rng = np.random.default_rng(1)
    stack = rng.integers(0, 4000, size=(n, h, w)).astype(dtype)
    for i in range(n):
        embed_block(stack[i], make_block(sequence=seq0 + i, width=w, height=h))
    return stack


# -- FITS ---------------------------------------------------------------------------------


def test_reference_fits16_pixels_and_bzero(data_dir: Path) -> None:
    with FitsReader(data_dir / "fits16_000.fits") as r:
        assert (len(r), r.width, r.height, r.bit_depth) == (1, 320, 96, 16)
        img = r.image(0)
        assert img.dtype == np.uint16 and img.shape == (96, 320)
        raw = fits.getdata(data_dir / "fits16_000.fits", do_not_scale_image_data=True)
        assert np.array_equal(img.astype(np.int32), raw.astype(np.int32) + 32768)
        (frame,) = list(r)
        assert frame.block is not None and frame.block.sequence == 1000
        assert frame.metadata["EXPTIME"] == 0.25 and frame.origin == "pixels"


def test_reference_fits8(data_dir: Path) -> None:
    with open_frames(data_dir / "fits8_000.fits") as r:
        assert isinstance(r, FitsReader) and r.bit_depth == 8
        (frame,) = list(r)
        assert frame.block is not None and frame.block.sequence == 77


def test_fits_block_rows_only(data_dir: Path) -> None:
    with FitsReader(data_dir / "fits16_000.fits") as r:
        rows = r._rows(0)
        assert rows.shape == (1, 320)
        assert r.block_bytes().shape == (1, 44)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_fits_roworder_top_down(tmp_path: Path, dtype: Any) -> None:
    img = _stack(1, dtype=dtype)[0][::-1].copy()  # block now in the last stored row
    hdu = fits.PrimaryHDU(img)
    hdu.header["ROWORDER"] = "TOP-DOWN"
    hdu.writeto(tmp_path / "td.fits")
    (rec,) = list(decode_file(tmp_path / "td.fits").frames())
    assert rec.status == "ok" and rec.flipped and rec.origin == "pixels:last row"


def test_fits_software_flip_is_found_and_said(tmp_path: Path) -> None:
    img = _stack(1)[0][::-1].copy()
    fits.PrimaryHDU(img).writeto(tmp_path / "flip.fits")
    (rec,) = list(decode_file(tmp_path / "flip.fits").frames())
    assert rec.block is not None and rec.flipped and rec.origin == "pixels:last row"


def test_fits_cube_is_many_frames(tmp_path: Path) -> None:
    fits.PrimaryHDU(_stack(4)).writeto(tmp_path / "cube.fits")
    d = decode_file(tmp_path / "cube.fits")
    assert len(d) == 4 and d.scan.blocks.sequence.tolist() == [100, 101, 102, 103]
    assert all(not r for r in d.reasons)


def test_fits_float_data_has_no_block(tmp_path: Path) -> None:
    fits.PrimaryHDU(_stack(1)[0].astype(np.float32)).writeto(tmp_path / "f.fits")
    (rec,) = list(decode_file(tmp_path / "f.fits").frames())
    assert rec.status == "invalid" and "BITPIX -32" in rec.reasons[0]


def test_fits_binned_frame_has_no_block(tmp_path: Path) -> None:
    img = _stack(1, h=12, w=64)[0]
    binned = img.reshape(6, 2, 32, 2).sum(axis=(1, 3)).astype(np.uint16)
    fits.PrimaryHDU(binned).writeto(tmp_path / "b.fits")
    (rec,) = list(decode_file(tmp_path / "b.fits").frames())
    assert [reason_code(x) for x in rec.reasons] == ["no_gps_block"]


def test_fits_nina_keywords_when_pixels_hold_no_block(tmp_path: Path) -> None:
    hdu = fits.PrimaryHDU(np.zeros((12, 64), dtype=np.uint16))
    h = hdu.header
    h["GPS_SEQ"], h["GPS_PPS"], h["GPS_LAT"], h["GPS_LON"] = 55, 9999612, -35.2057612, 149.20576
    for letter, us in (("S", 730058.4), ("E", 980048.5), ("N", 980986.0)):
        h[f"GPS_{letter}FLG"], h[f"GPS_{letter}SEC"], h[f"GPS_{letter}US"] = 3, 940815891, us
    hdu.writeto(tmp_path / "nina.fits")
    (rec,) = list(decode_file(tmp_path / "nina.fits").frames())
    assert rec.status == "ok" and rec.origin == "keywords:N.I.N.A."
    assert rec.block is not None and rec.block.sequence == 55
    assert rec.stamps["start"].utc == "2025-08-02T01:44:51.730086727"
    assert rec.block.latitude_deg == pytest.approx(-35.2057612, abs=2e-7)


def test_fits_indi_keywords(tmp_path: Path) -> None:
    hdu = fits.PrimaryHDU(np.zeros((12, 64), dtype=np.uint16))
    h = hdu.header
    h["GPS_Seq"], h["GPS_PPSC"], h["GPS_LAT"], h["GPS_LONG"] = 9, 10_000_000, 10.5, -20.25
    for letter in "SEN":
        h[f"GPS_{letter}Flg"], h[f"GPS_{letter}S"], h[f"GPS_{letter}U"] = 0x33, 940815891, 250000
        h[f"GPS_{letter}T"] = "2025-08-02T01:44:51.25"
    hdu.writeto(tmp_path / "indi.fits")
    (rec,) = list(decode_file(tmp_path / "indi.fits").frames())
    assert rec.origin == "keywords:INDI" and rec.status == "ok"
    assert rec.stamps["now"].utc == "2025-08-02T01:44:51.250000000"


@pytest.mark.parametrize(
    ("date_obs", "status", "start"),
    [("2025-08-02T01:44:51.7300584", "ok", "2025-08-02T01:44:51.730058400"),
     ("0001-01-01T00:00:00", "invalid", None)],
)  # fmt: skip
def test_fits_sharpcap_date_obs(
    tmp_path: Path, date_obs: str, status: str, start: str | None
) -> None:
    hdu = fits.PrimaryHDU(np.zeros((12, 64), dtype=np.uint16))
    hdu.header["SWCREATE"], hdu.header["INSTRUME"] = "SharpCap v4.1", "QHY174M-GPS"
    hdu.header["DATE-OBS"], hdu.header["EXPTIME"] = date_obs, 0.02
    hdu.writeto(tmp_path / "sc.fits")
    (rec,) = list(decode_file(tmp_path / "sc.fits").frames())
    assert (
        rec.status == status
        and rec.origin is not None
        and rec.origin.startswith("keywords:SharpCap")
    )
    if start is not None:
        assert rec.stamps["start"].utc == start
        assert rec.stamps["end"].utc == "2025-08-02T01:44:51.750058400"
    else:
        assert "state 0" in rec.reasons[0]


def test_fits_date_obs_of_other_programs_is_not_gps(tmp_path: Path) -> None:
    hdu = fits.PrimaryHDU(np.zeros((12, 64), dtype=np.uint16))
    hdu.header["SWCREATE"], hdu.header["DATE-OBS"] = "SharpCap v4.1", "2025-08-02T01:44:51"
    hdu.header["INSTRUME"] = "ZWO ASI294MM"
    hdu.writeto(tmp_path / "zwo.fits")
    (rec,) = list(decode_file(tmp_path / "zwo.fits").frames())
    assert rec.block is None and rec.status == "invalid"


def test_fits_truncated_cube_keeps_complete_frames(tmp_path: Path) -> None:
    fits.PrimaryHDU(_stack(3)).writeto(tmp_path / "c.fits")
    data = (tmp_path / "c.fits").read_bytes()
    (tmp_path / "t.fits").write_bytes(data[: 2880 + 2 * 12 * 64 * 2 + 100])
    with FitsReader(tmp_path / "t.fits") as r:
        assert len(r) == 2 and r.declared_frames == 3
        assert isinstance(r.truncation, TruncatedFileError)
        with pytest.raises(TruncatedFileError):
            r.image(2)
        assert r.image(1).shape == (12, 64)


@pytest.mark.parametrize("content", [b"", b"hello world", b"SIMPLE  = broken"])
def test_unreadable_files_name_the_file(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "x.fits"
    p.write_bytes(content)
    with pytest.raises(FrameReadError) as info:
        open_frames(p)
    assert str(p) in str(info.value)


# -- SER ----------------------------------------------------------------------------------


def test_reference_ser_header_trailer_and_blocks(truth: dict[str, Any], data_dir: Path) -> None:
    with SerReader(data_dir / "video16.ser") as r:
        assert (len(r), r.width, r.height, r.bit_depth) == (25, 480, 40, 16)
        assert r.instrument == "QHY600PRO" and r.has_trailer and r.truncation is None
        stamps = r.timestamps_unix_ns
        assert stamps is not None
        frames = [t for t in truth["frames"] if t["file"] == "video16.ser"]
        # the trailer holds the start stamps as UTC .NET ticks (100 ns resolution)
        for t in frames:
            assert abs(int(stamps[t["frame"]]) - t["start"]["unix_ns"]) < 100
        assert r.image(3).shape == (40, 480)


@pytest.mark.parametrize("flag", [0, 1])
@pytest.mark.parametrize("big_endian_data", [False, True])
def test_ser_byte_order_decided_by_block(tmp_path: Path, flag: int, big_endian_data: bool) -> None:
    stack = _stack(5)
    p = tmp_path / "v.ser"
    write_ser(p, stack, little_endian_flag=flag, big_endian_data=big_endian_data)
    with SerReader(p) as r:
        assert r.little_endian is (not big_endian_data)
        assert np.array_equal(r.image(2), stack[2])  # pixel values whatever the flag says
        d = decode_reader(r)
    assert d.scan.blocks.sequence.tolist() == [100, 101, 102, 103, 104]
    assert all(not x for x in d.reasons)


def test_ser_byte_order_without_blocks_follows_flag(tmp_path: Path) -> None:
    p = tmp_path / "noblock.ser"
    write_ser(p, np.zeros((2, 4, 64), dtype=np.uint16), little_endian_flag=0)
    assert SerReader(p).little_endian is False


def test_ser_eight_bit(tmp_path: Path) -> None:
    stack = _stack(3, dtype=np.uint8)
    write_ser(tmp_path / "v8.ser", stack)
    d = decode_file(tmp_path / "v8.ser")
    assert d.scan.blocks.sequence.tolist() == [100, 101, 102] and all(not x for x in d.reasons)


def test_ser_truncated_synthetic(tmp_path: Path) -> None:
    stack = _stack(6)
    ts = np.arange(6, dtype=np.int64) * 10**8 + 1_754_099_091 * 10**9
    write_ser(tmp_path / "full.ser", stack, timestamps_unix_ns=ts)
    data = (tmp_path / "full.ser").read_bytes()
    frame_bytes = 12 * 64 * 2
    (tmp_path / "cut.ser").write_bytes(data[: HEADER_SIZE + 4 * frame_bytes + 7])
    with SerReader(tmp_path / "full.ser") as r:
        assert r.timestamps_unix_ns is not None
        assert r.timestamps_unix_ns.tolist() == ts.tolist()
    with SerReader(tmp_path / "cut.ser") as r:
        assert len(r) == 4 and r.declared_frames == 6 and not r.has_trailer
        assert r.truncation is not None and r.truncation.complete_frames == 4
        assert "frames 4..5 are missing" in r.truncation.reason
        with pytest.raises(TruncatedFileError) as info:
            r.image(5)
        assert info.value.frame == 5 and "cut.ser" in str(info.value)
        assert [f.block.sequence for f in r if f.block] == [100, 101, 102, 103]


def test_ser_reference_truncated(data_dir: Path) -> None:
    with SerReader(data_dir / "bad_truncated.ser") as r:
        assert len(r) == 3 and r.declared_frames == 25


def test_ser_bad_header(tmp_path: Path) -> None:
    p = tmp_path / "bad.ser"
    p.write_bytes(b"LUCAM-RECORDER" + b"\0" * 10)
    with pytest.raises(FrameReadError, match="not a SER file"):
        SerReader(p)


def test_dotnet_ticks() -> None:
    # 2025-08-02T01:45:51.7309583 UTC in .NET ticks, worked out by hand:
    # (1754099151 s * 10^7 + 7309583) + 621355968000000000
    assert dotnet_ticks_to_unix_ns(638896959517309583) == 1754099151730958300


# -- arrays and buffers -------------------------------------------------------------------


def test_array_reader_and_buffer() -> None:
    stack = _stack(3)
    r = ArrayReader(stack)
    assert [f.block.sequence for f in r if f.block] == [100, 101, 102]
    buf = stack.astype("<u2").tobytes()
    rb = frames_from_buffer(buf, 64, 12, 16)
    assert np.array_equal(rb.image(1), stack[1])
    with pytest.raises(FrameReadError, match="whole number"):
        frames_from_buffer(buf[:-1], 64, 12, 16)
    with pytest.raises(FrameReadError):
        ArrayReader(np.zeros((4, 4), dtype=np.float32))


def test_errors_pickle_and_have_builtin_bases() -> None:
    err = TruncatedFileError(
        "truncated: x", path="a.ser", frame=3, complete_frames=3, declared_frames=9
    )
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, TruncatedFileError) and isinstance(back, OSError)
    assert isinstance(back, QhytimeError)
    assert (back.path, back.frame, back.complete_frames, str(back)) == ("a.ser", 3, 3, str(err))


def test_block_block_equality_helper() -> None:
    blk = make_block()
    assert GpsBlock.from_bytes(blk.to_bytes()).start == Stamp(0x33, 940815891, 7300584)

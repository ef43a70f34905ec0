"""FITS, SER and array readers: layouts, byte orders, flips, keywords, truncation."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from qhytime.decode import decode_file, decode_paths, decode_reader
from qhytime.errors import FrameReadError, QhytimeError, TruncatedFileError
from qhytime.gpsblock import GpsBlock, Stamp, embed_block
from qhytime.readers import (
    ArrayReader,
    FitsReader,
    SerReader,
    expand_paths,
    frames_from_buffer,
    open_frames,
    write_ser,
)
from qhytime.readers.serfile import HEADER_SIZE, dotnet_ticks_to_unix_ns
from qhytime.validity import reason_code

from conftest import make_block, make_series_block


def _stack(n: int, h: int = 12, w: int = 64, dtype: Any = np.uint16, seq0: int = 100) -> np.ndarray:
    rng = np.random.default_rng(1)
    stack = rng.integers(0, 4000, size=(n, h, w)).astype(dtype)
    for i in range(n):
        embed_block(stack[i], make_series_block(i, sequence=seq0 + i, width=w, height=h))
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


# -- compressed FITS ------------------------------------------------------------------------


def _reference_image(data_dir: Path) -> tuple[np.ndarray, fits.Header]:
    with fits.open(data_dir / "fits16_000.fits") as hdul:
        return np.asarray(hdul[0].data).copy(), hdul[0].header.copy()


@pytest.mark.parametrize("ctype", ["RICE_1", "GZIP_2", "HCOMPRESS_1"])
def test_tile_compressed_fits_reads_bit_exact(
    tmp_path: Path, data_dir: Path, truth: dict[str, Any], ctype: str
) -> None:
    img, hdr = _reference_image(data_dir)
    path = tmp_path / "c.fits.fz"
    fits.CompImageHDU(img, header=hdr, compression_type=ctype).writeto(path)
    with open_frames(path) as r:
        assert isinstance(r, FitsReader) and r.compression == ctype
        assert (len(r), r.width, r.height, r.bit_depth) == (1, 320, 96, 16)
        assert np.array_equal(r.image(0), img) and r.image(0).dtype == np.uint16
        assert r.metadata(0)["EXPTIME"] == 0.25 and r.header["NAXIS1"] == 320
        d = decode_reader(r)
    (t,) = [x for x in truth["frames"] if x["file"] == "fits16_000.fits"]
    rec = d.frame(0)
    assert rec.status == "ok", rec.reasons
    for s in ("start", "end", "now"):
        assert rec.stamps[s].unix_ns == t[s]["unix_ns"]


def test_tile_compressed_cube_and_lossy_compression(tmp_path: Path) -> None:
    stack = _stack(3)
    fits.CompImageHDU(stack, compression_type="RICE_1").writeto(tmp_path / "cube.fits")
    d = decode_file(tmp_path / "cube.fits")
    assert d.scan.blocks.sequence.tolist() == [100, 101, 102] and all(not r for r in d.reasons)
    lossy = fits.CompImageHDU(
        stack[0].astype(np.int32), compression_type="HCOMPRESS_1", hcomp_scale=4.0
    )
    lossy.writeto(tmp_path / "lossy.fits")
    (rec,) = list(decode_file(tmp_path / "lossy.fits").frames())
    assert rec.status == "invalid" and rec.block is None


def test_gzip_fits_reads_the_reference_frame(
    tmp_path: Path, data_dir: Path, truth: dict[str, Any]
) -> None:
    path = tmp_path / "f.fits.gz"
    path.write_bytes(gzip.compress((data_dir / "fits16_000.fits").read_bytes()))
    img, _ = _reference_image(data_dir)
    with open_frames(path) as r:
        assert r.compression == "gzip" and np.array_equal(r.image(0), img)
        d = decode_reader(r)
    (t,) = [x for x in truth["frames"] if x["file"] == "fits16_000.fits"]
    assert d.frame(0).status == "ok"
    assert d.frame(0).stamps["end"].utc == t["end"]["utc"]


def test_gzip_cube_truncated_keeps_complete_frames(tmp_path: Path) -> None:
    stack = _stack(4)
    fits.PrimaryHDU(stack).writeto(tmp_path / "cube.fits")
    raw = (tmp_path / "cube.fits").read_bytes()
    # a gzip stream cut after 2.5 frames of data: frames 0 and 1 are complete
    cut = gzip.compress(raw)
    whole = tmp_path / "cube.fits.gz"
    whole.write_bytes(cut)
    with open_frames(whole) as r:
        assert len(r) == 4 and r.truncation is None
        assert np.array_equal(r.image(3), stack[3]) and np.array_equal(r.image(1), stack[1])
    short = gzip.compress(raw[: 2880 + int(2.5 * 12 * 64 * 2)])
    (tmp_path / "short.fits.gz").write_bytes(short[: len(short) - 20])  # no gzip trailer
    recs = list(decode_paths([tmp_path / "short.fits.gz"]))
    assert [r.status for r in recs] == ["ok", "ok", "error"]
    assert "frames 2..3 are missing" in recs[-1].reasons[0]


@pytest.mark.parametrize(
    ("content", "words"),
    [(b"hello world" * 10, "holds neither FITS nor SER"),
     (b"LUCAM-RECORDER" + bytes(200), "decompress it first")],
)  # fmt: skip
def test_gzip_of_something_else_is_refused(tmp_path: Path, content: bytes, words: str) -> None:
    p = tmp_path / "x.fits.gz"
    p.write_bytes(gzip.compress(content))
    with pytest.raises(FrameReadError, match=words) as info:
        open_frames(p)
    assert str(p) in str(info.value)


def test_damaged_gzip_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "x.fits.gz"
    p.write_bytes(b"\x1f\x8b" + bytes(range(100)))
    with pytest.raises(FrameReadError, match="cannot be decompressed"):
        open_frames(p)


def test_image_in_an_extension_and_hdu_choice(tmp_path: Path) -> None:
    stack = _stack(1)
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(stack[0], name="SCI")])
    hdul.writeto(tmp_path / "ext.fits")
    with FitsReader(tmp_path / "ext.fits") as r:
        assert r.block_bytes().shape == (1, 44) and np.array_equal(r.image(0), stack[0])
    with pytest.raises(FrameReadError, match="HDU 0 holds no 2-D or 3-D image"):
        FitsReader(tmp_path / "ext.fits", hdu=0)
    with pytest.raises(FrameReadError, match="no HDU 5"):
        FitsReader(tmp_path / "ext.fits", hdu=5)


@pytest.mark.parametrize(
    ("bitpix", "bzero", "bscale", "dtype"),
    [(8, 0, 1, np.uint8), (16, 0, 1, np.int16), (16, 32768, 1, np.uint16), (32, 0, 1, np.int32),
     (-32, 0, 1, np.float32), (16, 100, 2, np.float32)],
)  # fmt: skip
def test_pixel_values_as_astropy_gives_them(
    tmp_path: Path, bitpix: int, bzero: int, bscale: int, dtype: Any
) -> None:
    rng = np.random.default_rng(3)
    stored = {8: ">u1", 16: ">i2", 32: ">i4", -32: ">f4"}[bitpix]
    raw = rng.integers(0, 120, size=(6, 40)).astype(stored)
    hdu = fits.PrimaryHDU(raw)
    hdu.header["BZERO"], hdu.header["BSCALE"] = bzero, bscale
    hdu.writeto(tmp_path / "p.fits", output_verify="silentfix")
    want = fits.getdata(tmp_path / "p.fits")
    with FitsReader(tmp_path / "p.fits") as r:
        got = r.image(0)
        assert got.dtype == np.dtype(dtype) == want.dtype.newbyteorder("=")
        assert np.array_equal(got, want)
        if bscale != 1:
            assert r.pixel_block_problem() is not None and "scaled" in r.pixel_block_problem()


# -- header values checked before use ---------------------------------------------------


def _edit_card(src: Path, dst: Path, key: str, value: str) -> Path:
    """Replace (or add before END) one card of the primary header, as raw text."""
    b = bytearray(src.read_bytes())
    card = f"{key:<8}= {value}".ljust(80).encode()
    for i in range(0, 2880, 80):
        if b[i : i + 8].decode().strip() == key:
            b[i : i + 80] = card
            break
    else:
        i = bytes(b).index(b"END     ")
        b[i + 80 : i + 160] = b[i : i + 80]
        b[i : i + 80] = card
    dst.write_bytes(bytes(b))
    return dst


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [("BITPIX", "0", "BITPIX = 0 is not one of 8, 16"),
     ("BITPIX", "-1", "BITPIX = -1 is not one of"),
     ("BZERO", "'abc'", "BZERO = 'abc' is not a finite number"),
     ("BZERO", "1.0E999", "BZERO = inf is not a finite number"),
     ("BSCALE", "0", "BSCALE = 0"),
     ("NAXIS1", "-1", "NAXIS1 = -1 is outside 0..16777216"),
     ("NAXIS1", "100000000000", "NAXIS1 = 100000000000 is outside"),
     ("NAXIS", "F", "NAXIS = False is not a whole number"),
     ("NAXIS", "400000000", "NAXIS = 400000000 is outside 0..999"),
     ("NAXIS", "1000", "NAXIS = 1000 is outside 0..999"),
     ("NAXIS2", "'wide'", "NAXIS2 = 'wide' is not a whole number"),
     ("ROWORDER", "'TOP-DOWN", "header card ROWORDER cannot be parsed"),
     ("ROWORDER", "'SIDEWAYS'", "ROWORDER = 'SIDEWAYS' is not TOP-DOWN or BOTTOM-UP"),
     ("ROWORDER", "7", "ROWORDER = 7 is not TOP-DOWN or BOTTOM-UP"),
     ("EXPTIME", "'abc'", "EXPTIME = 'abc' is not an exposure in seconds"),
     ("EXPTIME", "-1.0", "EXPTIME = -1.0 is not an exposure"),
     ("XBINNING", "0", "XBINNING = 0 is not a binning factor 1..64"),
     ("XBINNING", "1000000000", "XBINNING = 1000000000 is not a binning factor"),
     ("XBINNING", "2.5", "XBINNING = 2.5 is not a binning factor"),
     ("CROPOFFY", "-3", "CROPOFFY = -3 is not a crop origin"),
     ("QHY_LP", "0", "QHY_LP = 0 is not a line period"),
     ("READOUTM", "5", "READOUTM = 5 is not a readout mode name")],
)  # fmt: skip
def test_damaged_header_values_are_clear_errors(
    tmp_path: Path, data_dir: Path, key: str, value: str, words: str
) -> None:
    p = _edit_card(data_dir / "fits16_000.fits", tmp_path / "bad.fits", key, value)
    with pytest.raises(FrameReadError) as info:
        open_frames(p)
    assert words in str(info.value) and str(p) in str(info.value)
    (rec,) = list(decode_paths([p]))
    assert rec.status == "error" and words in rec.reasons[0]


def test_header_without_end_or_cut_short(tmp_path: Path, data_dir: Path) -> None:
    raw = (data_dir / "fits16_000.fits").read_bytes()
    no_end = raw.replace(b"END" + b" " * 77, b"COMMENT".ljust(80))
    (tmp_path / "noend.fits").write_bytes(no_end)
    with pytest.raises(FrameReadError, match="no END card"):
        open_frames(tmp_path / "noend.fits")
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(_stack(1)[0])])
    hdul.writeto(tmp_path / "ext.fits")
    cut = (tmp_path / "ext.fits").read_bytes()[: 2880 + 1000]
    (tmp_path / "cut.fits").write_bytes(cut)
    with pytest.raises(FrameReadError, match="ends inside the header of HDU 1"):
        open_frames(tmp_path / "cut.fits")


def test_absurd_cube_is_truncated_not_allocated(tmp_path: Path, data_dir: Path) -> None:
    p = _edit_card(data_dir / "fits16_000.fits", tmp_path / "a.fits", "NAXIS", "3")
    p = _edit_card(p, tmp_path / "b.fits", "NAXIS3", "2000000000")
    with open_frames(p) as r:  # 2e9 frames of 61440 bytes announced: 1 present
        assert len(r) == 1 and r.declared_frames == 2_000_000_000
        assert r.truncation is not None and "frames 1..1999999999 are missing" in r.truncation.reason


def test_checked_metadata_types(tmp_path: Path, data_dir: Path) -> None:
    p = _edit_card(data_dir / "fits16_000.fits", tmp_path / "a.fits", "XBINNING", "2.0")
    p = _edit_card(p, tmp_path / "b.fits", "QHYSTRM", "'live'")
    with open_frames(p) as r:
        meta = r.metadata(0)
        assert meta["XBINNING"] == 2 and isinstance(meta["XBINNING"], int)
        assert meta["QHYSTRM"] == "live" and r.exposure_ns == 250_000_000


# -- SER header values --------------------------------------------------------------------


def _ser_field(src: Path, dst: Path, offset: int, value: int) -> Path:
    b = bytearray(src.read_bytes())
    b[offset : offset + 4] = struct.pack("<i", value)
    dst.write_bytes(bytes(b))
    return dst


@pytest.mark.parametrize(
    ("offset", "value", "words"),
    [(18, 7, "ColorID 7 is not a SER colour code"),
     (22, 5, "LittleEndian 5 is neither 0 nor 1"),
     (26, -5, "ImageWidth -5 is outside"),
     (26, 10**9, "ImageWidth 1000000000 is outside"),
     (30, 0, "ImageHeight 0 is outside"),
     (34, 0, "PixelDepthPerPlane 0 is outside 1..16"),
     (34, 17, "PixelDepthPerPlane 17 is outside 1..16"),
     (38, -1, "FrameCount -1 is negative"),
     (38, 0, "the header announces 0 frames but the file holds")],
)  # fmt: skip
def test_damaged_ser_header_is_a_clear_error(
    tmp_path: Path, data_dir: Path, offset: int, value: int, words: str
) -> None:
    p = _ser_field(data_dir / "video16.ser", tmp_path / "bad.ser", offset, value)
    with pytest.raises(FrameReadError, match=words) as info:
        open_frames(p)
    assert str(p) in str(info.value)


def test_ser_pixel_depth_lie_flags_every_frame(tmp_path: Path, data_dir: Path) -> None:
    # PixelDepth 8 on 16-bit data: frame 6 would be frame 3's block, "ok" with no error
    p = _ser_field(data_dir / "video16.ser", tmp_path / "d8.ser", 34, 8)
    d = decode_file(p)
    assert len(d) == 25 and not d.ok.any()
    assert all("file_structure" in [reason_code(x) for x in r] for r in d.reasons)
    assert any("PixelDepthPerPlane 8 is wrong" in x for x in d.reasons[6])


def test_ser_half_recorded_16_bit_is_truncated_not_8_bit(tmp_path: Path, data_dir: Path) -> None:
    # A 16-bit file holding exactly half the frames its header announces is the size the
    # announced frames would take in 8-bit samples: the blocks, every frame in sequence at
    # the 16-bit spacing, say it is cut short (e.g. still being written with its count).
    src = data_dir / "video16.ser"
    with open_frames(src) as r:
        body = HEADER_SIZE + len(r) * r.frame_bytes
        n = len(r)
    p = tmp_path / "half.ser"
    p.write_bytes(_ser_field(src, tmp_path / "c.ser", 38, 2 * n).read_bytes()[:body])
    d, whole = decode_file(p), decode_file(src)
    assert len(d) == n and d.ok.all()
    assert d.unix_ns["end"].tolist() == whole.unix_ns["end"].tolist()
    with open_frames(p) as r:
        assert r.structure_problem() is None and r.truncation is not None
        assert r.truncation.complete_frames == n and r.truncation.declared_frames == 2 * n


@pytest.mark.parametrize("dropped_after", [None, 0, 1, 4])
def test_ser_half_recorded_with_a_dropped_frame_is_truncated(
    tmp_path: Path, dropped_after: int | None
) -> None:
    # A frame the camera dropped (a sequence step of 2) right after frame 0 still leaves
    # every other step of 1 at the 16-bit spacing, none at the 8-bit one.
    seqs = [i + (dropped_after is not None and i > dropped_after) for i in range(20)]
    frames = np.zeros((20, 4, 64), dtype=np.uint16)
    for img, k in zip(frames, seqs, strict=True):
        embed_block(img, make_series_block(k, width=64, height=4))
    p = tmp_path / "drop.ser"
    write_ser(p, frames)
    with open(p, "r+b") as fh:
        fh.truncate(HEADER_SIZE + 10 * 64 * 4 * 2)  # 10 of the 20 frames written so far
    with open_frames(p) as r:
        assert len(r) == 10 and r.structure_problem() is None and r.truncation is not None
    d = decode_file(p)
    assert [reason_code(x) for r in d.reasons for x in r] == (
        [] if dropped_after is None else ["sequence_gap"]
    )


def test_ser_8_bit_data_announced_as_16_bit_is_flagged(tmp_path: Path) -> None:
    # The same size the other way round: 8-bit frames under a 16-bit header read as half
    # the frames, each holding every other block; the blocks in sequence at the 8-bit
    # spacing say the header is wrong.
    frames = np.zeros((8, 4, 64), dtype=np.uint8)
    for i, img in enumerate(frames):
        embed_block(img, make_series_block(i, width=64, height=4))
    p = tmp_path / "d16.ser"
    write_ser(p, frames)
    p = _ser_field(p, tmp_path / "lie.ser", 34, 16)
    d = decode_file(p)
    assert len(d) == 4 and not d.ok.any()
    assert all("file_structure" in [reason_code(x) for x in r] for r in d.reasons)
    assert "the size fits 8-bit samples: PixelDepthPerPlane 16 is wrong" in d.reasons[0][0]


@pytest.mark.parametrize(
    ("offset", "value", "code"),
    [(38, 24, "file_structure"), (26, 479, "file_structure"), (30, 39, "file_structure"),
     (30, 41, "no_gps_block")],  # 41 rows: the file reads as truncated, no frame matches
)  # fmt: skip
def test_ser_size_must_match_the_header(
    tmp_path: Path, data_dir: Path, offset: int, value: int, code: str
) -> None:
    p = _ser_field(data_dir / "video16.ser", tmp_path / "s.ser", offset, value)
    d = decode_file(p)
    assert len(d) and not d.ok.any()
    assert all(code in [reason_code(x) for x in r] for r in d.reasons)


def test_ser_endianness_flag_does_not_change_the_times(
    tmp_path: Path, data_dir: Path, truth: dict[str, Any]
) -> None:
    p = _ser_field(data_dir / "video16.ser", tmp_path / "le0.ser", 22, 0)
    d = decode_file(p)
    want = [t["end"]["unix_ns"] for t in truth["frames"] if t["file"] == "video16.ser"]
    assert d.ok.all() and d.unix_ns["end"].tolist() == want


# -- folders --------------------------------------------------------------------------------


def test_expand_paths_and_folders_in_decode_paths(tmp_path: Path, data_dir: Path) -> None:
    for name in ("fits16_001.fits", "fits16_000.fits"):
        (tmp_path / name).write_bytes((data_dir / name).read_bytes())
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "empty").mkdir()
    assert expand_paths([tmp_path]) == [str(tmp_path / "fits16_000.fits"), str(tmp_path / "fits16_001.fits")]
    recs = list(decode_paths([tmp_path, tmp_path / "empty"]))
    assert [(Path(r.file).name, r.status) for r in recs] == [
        ("fits16_000.fits", "ok"), ("fits16_001.fits", "ok"), ("empty", "error")
    ]
    assert "holds no FITS or SER files" in recs[-1].reasons[0]
    with pytest.raises(FrameReadError, match="is a folder"):
        open_frames(tmp_path)

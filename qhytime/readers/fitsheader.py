"""FITS headers read safely: every value checked before it is used.

A FITS header is text that anyone can edit, and a damaged one must never make qhytime
hang, allocate without bound or fail with a traceback. This module walks a file's HDUs
the way the FITS standard lays them out (2880-byte blocks of 80-byte cards, each header
ended by ``END``, each data part padded to whole blocks), reads each header once
(:class:`RawHeader`: the standard's plain fixed-form values directly, anything else through
:class:`astropy.io.fits.Header`), and checks the mandatory keywords before anything is
computed from them:

- ``BITPIX`` one of 8, 16, 32, 64, -32, -64;
- ``NAXIS`` a whole number within the standard's 0..999 (checked before any axis is
  looked at: ``NAXIS = 400000000`` is an error, not a loop);
- ``NAXISn`` whole numbers >= 0; image axes at most :data:`MAX_AXIS_LEN` pixels;
- ``PCOUNT``/``GCOUNT`` of extensions, and ``ZBITPIX``/``ZNAXIS``/``ZNAXISn``/``ZCMPTYPE``
  of tile-compressed images;
- ``BZERO``/``BSCALE`` finite numbers (``BSCALE`` not zero), ``ROWORDER`` ``TOP-DOWN`` or
  ``BOTTOM-UP``;
- the keywords qhytime times frames with (exposure, binning, crop, line period, ...) of
  the right type and within range (:func:`checked_metadata`).

Every failure is a :class:`~qhytime.errors.FrameReadError` that names the file, the
keyword, its value and what it should be. Sizes are computed with Python integers, and
data is never read beyond what the file holds.

Gzip-compressed files (``.fits.gz``) are read through a forward-only ``zlib`` stream
(:class:`GzipSource`), so a compressed cube is never held in memory, and a truncated one
keeps the frames that are complete.
"""

from __future__ import annotations

import math
import os
import re
import warnings
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qhytime.errors import FrameReadError
from qhytime.readers.base import open_regular

if TYPE_CHECKING:
    from astropy.io.fits import Header

BLOCK_BYTES = 2880
"""A FITS file is made of blocks of this many bytes."""
CARD_BYTES = 80
MAX_NAXIS = 999
"""The FITS standard's largest NAXIS."""
MAX_AXIS_LEN = 1 << 24
"""Longest image row or column accepted (16,777,216 pixels): longer is a damaged header."""
MAX_PLANES = (1 << 31) - 1
"""Most frames in one FITS cube."""
MAX_HEADER_BLOCKS = 1000
"""A header longer than this (2.88 MB, 36,000 cards) without END is not a FITS header."""
MAX_HDUS = 1000
"""At most this many HDUs are walked looking for the image."""
BITPIX_VALUES = (8, 16, 32, 64, -32, -64)
ROWORDER_VALUES = ("BOTTOM-UP", "TOP-DOWN")
COMPRESSION_TYPES = (
    "RICE_1", "RICE_ONE", "GZIP_1", "GZIP_2", "PLIO_1", "HCOMPRESS_1", "NOCOMPRESS",
)  # fmt: skip
GZIP_MAGIC = b"\x1f\x8b"

_MISSING = object()
_NOT_FIXED = object()
_INT = re.compile(r"[+-]?[0-9]+")
_REAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[EeDd][+-]?[0-9]+)?")


def _fixed_value(card: str) -> Any:
    """The value of a card in the FITS standard's plain forms (logical, integer, real,
    string), or ``_NOT_FIXED`` for anything else (astropy then reads it)."""
    if card[8:10] != "= ":
        return _NOT_FIXED
    s = card[10:].lstrip()
    if s.startswith("'"):
        parts, j = [], 1
        while True:
            k = s.find("'", j)
            if k < 0:
                return _NOT_FIXED  # no closing quote: let astropy judge it
            if s[k + 1 : k + 2] == "'":
                parts.append(s[j : k + 1])
                j = k + 2
                continue
            parts.append(s[j:k])
            rest = s[k + 1 :].strip()
            break
        text = "".join(parts).rstrip()
        if (rest and not rest.startswith("/")) or text.endswith("&"):
            return _NOT_FIXED  # trailing junk, or a long string continued on CONTINUE cards
        return text
    v = s.split("/", 1)[0].strip()
    if v in ("T", "F"):
        return v == "T"
    if _INT.fullmatch(v):
        return int(v)
    if _REAL.fullmatch(v):
        return float(v.replace("D", "E").replace("d", "e"))
    return _NOT_FIXED


class RawHeader(Mapping[str, Any]):
    """A header's cards as written, values read on demand.

    Values in the FITS standard's plain fixed forms (logical, integer, real, string) are
    read directly; anything else goes to :class:`astropy.io.fits.Header` (built once, on
    first need), which also raises for a card that does not parse. Keywords are
    case-insensitive and the first card of a keyword wins, as in astropy.

    Examples
    --------
    >>> h = RawHeader("SIMPLE  =                    T".ljust(80) + "EXPTIME =                 0.25 / s".ljust(80)
    ...               + "INSTRUME= 'QHY600PRO'".ljust(80) + "END".ljust(80))
    >>> h["SIMPLE"], h["exptime"], h.get("INSTRUME"), "NAXIS" in h
    (True, 0.25, 'QHY600PRO', False)
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._cards: dict[str, str] = {}
        for i in range(0, len(text) - CARD_BYTES + 1, CARD_BYTES):
            card = text[i : i + CARD_BYTES]
            key = card[:8].rstrip().upper()
            if key == "END":
                break
            if key and key not in self._cards:
                self._cards[key] = card
        self._astropy: Header | None = None
        self._values: dict[str, Any] = {}

    @property
    def astropy(self) -> Header:
        """The same header as an :class:`astropy.io.fits.Header`."""
        if self._astropy is None:
            from astropy.io.fits import Header

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # astropy's notes on odd cards: our checks decide
                self._astropy = Header.fromstring(self.text)
        return self._astropy

    def __getitem__(self, key: str) -> Any:
        k = key.upper()
        if k in self._values:
            return self._values[k]
        card = self._cards.get(k)
        if card is None:
            raise KeyError(key)
        v = _fixed_value(card)
        if v is _NOT_FIXED:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                v = self.astropy[k]
        self._values[k] = v
        return v

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.upper() in self._cards

    def __iter__(self) -> Iterator[str]:
        return iter(self._cards)

    def __len__(self) -> int:
        return len(self._cards)


# -- where the bytes come from ------------------------------------------------------------


class ByteSource:
    """Random reads of a file's bytes (``read_at``); :class:`FileSource` or :class:`GzipSource`."""

    compressed = False

    def read_at(self, offset: int, n: int) -> bytes:  # pragma: no cover - interface
        """Up to ``n`` bytes from ``offset`` (fewer at the end of the data)."""
        raise NotImplementedError

    def available(self, limit: int) -> int:  # pragma: no cover - interface
        """Bytes the file holds, counted up to ``limit``."""
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - interface
        """Release the file."""


class FileSource(ByteSource):
    """An uncompressed file.

    Examples
    --------
    >>> src = FileSource("tests/data/fits16_000.fits")
    >>> src.read_at(0, 9), src.available(10**9)
    (b'SIMPLE  =', 66240)
    >>> src.close()
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fh = open_regular(path)
        self.size = os.fstat(self._fh.fileno()).st_size

    def read_at(self, offset: int, n: int) -> bytes:
        if offset >= self.size or n <= 0:
            return b""
        self._fh.seek(offset)
        return self._fh.read(min(n, self.size - offset))

    def available(self, limit: int) -> int:
        return min(self.size, limit)

    def close(self) -> None:
        self._fh.close()


class GzipSource(ByteSource):
    """A gzip-compressed file, decompressed on the fly (forward reads; a backward read
    starts again from the top). A truncated or damaged stream ends where the last good
    byte was decompressed; :attr:`damage` then says why.

    Examples
    --------
    >>> import gzip, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.gz")
    >>> with gzip.open(path, "wb") as fh:
    ...     _ = fh.write(b"0123456789" * 1000)
    >>> src = GzipSource(path)
    >>> src.read_at(5, 4), src.available(10**6), src.damage
    (b'5678', 10000, None)
    >>> src.close()
    """

    compressed = True
    _CHUNK = 1 << 20

    def __init__(self, path: str) -> None:
        self.path = path
        self._fh = open_regular(path)
        self.damage: str | None = None
        self._restart()

    def _restart(self) -> None:
        self._fh.seek(0)
        self._z = zlib.decompressobj(wbits=31)
        self._pos = 0  # decompressed offset of self._buf[0]
        self._buf = b""
        self._pending = b""  # compressed bytes not yet given to zlib
        self._ended = False

    def _more(self) -> bool:
        """Decompress up to one chunk more into the buffer; False at the end."""
        while not self._ended:
            if self._z.unconsumed_tail:
                data = self._z.unconsumed_tail
            elif self._pending:
                data, self._pending = self._pending, b""
            else:
                data = self._fh.read(self._CHUNK)
                if not data:
                    if not self._z.eof:
                        self.damage = "the gzip stream ends early (file truncated)"
                    self._ended = True
                    return False
            try:
                out = self._z.decompress(data, self._CHUNK)
            except zlib.error as exc:
                self.damage = f"the gzip stream is damaged ({exc})"
                self._ended = True
                return False
            if self._z.eof:
                rest = self._z.unused_data
                if rest.startswith(GZIP_MAGIC):  # another gzip member follows
                    self._z = zlib.decompressobj(wbits=31)
                    self._pending = rest
                else:
                    self._ended = True
            if out:
                self._buf += out
                return True
        return False

    def read_at(self, offset: int, n: int) -> bytes:
        if n <= 0:
            return b""
        if offset < self._pos:
            self._restart()
        out = bytearray()
        while len(out) < n:
            rel = offset + len(out) - self._pos
            if rel < len(self._buf):
                take = self._buf[rel : rel + n - len(out)]
                out += take
                continue
            # drop what lies before the wanted offset, then decompress more
            self._pos += len(self._buf)
            self._buf = b""
            if not self._more():
                break
        return bytes(out)

    def available(self, limit: int) -> int:
        if limit <= 0:
            return 0
        got = self.read_at(limit - 1, 1)
        if got:
            return limit
        return self._pos + len(self._buf)

    def close(self) -> None:
        self._fh.close()


def open_source(path: str) -> ByteSource:
    """A :class:`FileSource`, or a :class:`GzipSource` for a gzip-compressed file.

    Raises
    ------
    FrameReadError
        When the file cannot be opened or is not a regular file.

    Examples
    --------
    >>> src = open_source("tests/data/fits16_000.fits")
    >>> type(src).__name__, src.compressed
    ('FileSource', False)
    >>> src.close()
    """
    try:
        with open_regular(path) as fh:
            magic = fh.read(2)
        return GzipSource(path) if magic == GZIP_MAGIC else FileSource(path)
    except FrameReadError:
        raise
    except OSError as exc:
        raise FrameReadError(f"cannot read file: {exc.strerror or exc}", path=path) from exc


# -- checked keyword values -------------------------------------------------------------


def _fail(path: str, hdu: int, text: str) -> FrameReadError:
    where = "" if hdu == 0 else f" (HDU {hdu})"
    return FrameReadError(f"{text}{where}; the FITS header is damaged or not a camera frame", path=path)


def _value(header: Mapping[str, Any], key: str, path: str, hdu: int = 0) -> Any:
    """The value of ``key``, ``_MISSING`` when absent; an unparsable card is an error."""
    try:
        return header[key]
    except KeyError:
        return _MISSING
    except Exception as exc:  # astropy's VerifyError and friends for a broken card
        raise _fail(path, hdu, f"header card {key} cannot be parsed (its value is not valid FITS)") from exc


def _int(header: RawHeader, key: str, lo: int, hi: int, path: str, hdu: int, what: str = "") -> int:
    v = _value(header, key, path, hdu)
    if v is _MISSING:
        raise _fail(path, hdu, f"mandatory keyword {key} is missing")
    if isinstance(v, bool) or not isinstance(v, int):
        raise _fail(path, hdu, f"{key} = {v!r} is not a whole number")
    if not lo <= v <= hi:
        raise _fail(path, hdu, f"{key} = {v} is outside {lo}..{hi}{what}")
    return int(v)


def _real(header: RawHeader, key: str, default: float, path: str, hdu: int) -> float | int:
    v = _value(header, key, path, hdu)
    if v is _MISSING:
        return default
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise _fail(path, hdu, f"{key} = {v!r} is not a finite number")
    return v


# -- HDUs -------------------------------------------------------------------------------


@dataclass
class ImageHdu:
    """The image HDU qhytime reads frames from, with every structural value checked.

    Attributes
    ----------
    index : int
        Position in the file (0 = primary).
    header : RawHeader
        The HDU's header as stored (a tile-compressed image keeps its ``Z`` keywords);
        ``header.astropy`` is the :class:`astropy.io.fits.Header`.
    data_offset : int
        Byte offset of the data (of the compressed table for tile-compressed images).
    data_bytes : int
        Bytes the header announces for the data (unpadded).
    bitpix : int
        Pixel type (``ZBITPIX`` for tile-compressed images).
    shape : tuple of int
        numpy order: ``(planes, height, width)``.
    bzero, bscale : number
    compression : str or None
        ``ZCMPTYPE`` of a tile-compressed image.
    lossy : str or None
        Why the compression does not keep the pixels exactly, if it does not.
    """

    index: int
    header: RawHeader
    data_offset: int
    data_bytes: int
    bitpix: int
    shape: tuple[int, int, int]
    bzero: float | int
    bscale: float | int
    compression: str | None = None
    lossy: str | None = None


def _read_header(src: ByteSource, offset: int, path: str, hdu: int) -> tuple[RawHeader, int] | None:
    """Read the header starting at ``offset``; ``(header, data offset)``, or None at the
    end of the file."""
    blocks: list[bytes] = []
    for k in range(MAX_HEADER_BLOCKS):
        blk = src.read_at(offset + k * BLOCK_BYTES, BLOCK_BYTES)
        if k == 0 and not blk:
            return None
        if len(blk) < BLOCK_BYTES:
            if hdu == 0 and k == 0:
                raise FrameReadError(
                    f"not a FITS file: {len(blk)} bytes, less than one 2880-byte header block",
                    path=path,
                )
            raise FrameReadError(
                f"truncated: the file ends inside the header of HDU {hdu} (no END card)",
                path=path,
            )
        blocks.append(blk)
        if any(blk[i : i + 8] == b"END     " for i in range(0, BLOCK_BYTES, CARD_BYTES)):
            break
    else:
        raise _fail(
            path, hdu, f"not a FITS header: no END card in the first {MAX_HEADER_BLOCKS} blocks"
        )
    raw = b"".join(blocks)
    return RawHeader(raw.decode("ascii", errors="replace")), offset + len(raw)


def _axes(header: RawHeader, prefix: str, n: int, path: str, hdu: int) -> list[int]:
    out = []
    for k in range(1, n + 1):
        hi = MAX_AXIS_LEN if k <= 2 else MAX_PLANES
        out.append(_int(header, f"{prefix}{k}", 0, hi, path, hdu, " pixels"))
    return out


def _structure(header: RawHeader, index: int, path: str) -> tuple[int, int, list[int], bool]:
    """Check the mandatory keywords: ``(bitpix, data bytes, axes, is_extension)``."""
    xt = _value(header, "XTENSION", path, index)
    if index == 0:
        if "SIMPLE" not in header:
            raise _fail(path, index, "the primary header has no SIMPLE card")
        extension = False
    else:
        if not isinstance(xt, str):
            raise _fail(path, index, f"XTENSION = {xt!r} is not a string naming the extension")
        extension = True
    bitpix = _value(header, "BITPIX", path, index)
    if not isinstance(bitpix, int) or isinstance(bitpix, bool) or bitpix not in BITPIX_VALUES:
        shown = "missing" if bitpix is _MISSING else f"= {bitpix!r}"
        raise _fail(path, index, f"BITPIX {shown} is not one of 8, 16, 32, 64, -32, -64")
    naxis = _int(header, "NAXIS", 0, MAX_NAXIS, path, index, " (the FITS standard's limit)")
    axes = _axes(header, "NAXIS", naxis, path, index)
    pcount, gcount = 0, 1
    groups = _value(header, "GROUPS", path, index) is True and index == 0 and naxis and axes[0] == 0
    if extension or groups:
        pcount = _int(header, "PCOUNT", 0, 1 << 62, path, index)
        gcount = _int(header, "GCOUNT", 0, 1 << 31, path, index)
    count = 0
    if naxis:
        count = 1
        for a in axes[1:] if groups else axes:
            count *= a
    data_bytes = abs(int(bitpix)) // 8 * gcount * (pcount + count) if naxis else 0
    return int(bitpix), data_bytes, axes, extension


def _scaling(header: RawHeader, path: str, index: int) -> tuple[float | int, float | int]:
    bzero = _real(header, "BZERO", 0, path, index)
    bscale = _real(header, "BSCALE", 1, path, index)
    if bscale == 0:
        raise _fail(path, index, "BSCALE = 0 would make every pixel the same value")
    return bzero, bscale


def _image_shape(axes: list[int]) -> tuple[int, int, int]:
    return (axes[2] if len(axes) == 3 else 1, axes[1], axes[0])


def _compressed(header: RawHeader, index: int, path: str, offset: int, nbytes: int) -> ImageHdu | None:
    zbitpix = _value(header, "ZBITPIX", path, index)
    if not isinstance(zbitpix, int) or isinstance(zbitpix, bool) or zbitpix not in BITPIX_VALUES:
        raise _fail(path, index, f"ZBITPIX = {zbitpix!r} is not one of 8, 16, 32, 64, -32, -64")
    znaxis = _int(header, "ZNAXIS", 0, MAX_NAXIS, path, index, " (the FITS standard's limit)")
    zaxes = _axes(header, "ZNAXIS", znaxis, path, index)
    ctype = _value(header, "ZCMPTYPE", path, index)
    if not isinstance(ctype, str) or ctype.strip().upper() not in COMPRESSION_TYPES:
        raise _fail(path, index, f"ZCMPTYPE = {ctype!r} is not a known tile compression")
    if znaxis not in (2, 3) or not zaxes[0] or not zaxes[1]:
        return None
    bzero, bscale = _scaling(header, path, index)
    lossy = None
    kind = ctype.strip().upper()
    if kind == "HCOMPRESS_1":
        scale = _value(header, "ZVAL1", path, index)
        if isinstance(scale, int | float) and not isinstance(scale, bool) and scale != 0:
            lossy = f"HCOMPRESS with scale {scale} is lossy"
    if int(zbitpix) < 0:
        lossy = lossy or "floating-point tile compression quantizes the pixels"
    return ImageHdu(
        index=index, header=header, data_offset=offset, data_bytes=nbytes,
        bitpix=int(zbitpix), shape=_image_shape(zaxes), bzero=bzero, bscale=bscale,
        compression=kind, lossy=lossy,
    )  # fmt: skip


def find_image(src: ByteSource, path: str, hdu: int | None = None) -> ImageHdu:
    """Walk the HDUs to the first 2-D or 3-D image (or HDU ``hdu``), checking each header.

    Raises
    ------
    FrameReadError
        A damaged header (naming keyword and value), a file with no such image.

    Examples
    --------
    >>> src = FileSource("tests/data/fits16_000.fits")
    >>> img = find_image(src, "fits16_000.fits")
    >>> img.index, img.bitpix, img.shape, img.bzero, img.data_offset
    (0, 16, (1, 96, 320), 32768, 2880)
    >>> src.close()
    """
    offset = 0
    for index in range(MAX_HDUS):
        got = _read_header(src, offset, path, index)
        if got is None:
            break
        header, data_offset = got
        bitpix, nbytes, axes, extension = _structure(header, index, path)
        wanted = hdu is None or index == hdu
        if wanted:
            xt = str(_value(header, "XTENSION", path, index)).strip().upper() if extension else ""
            if xt == "BINTABLE" and _value(header, "ZIMAGE", path, index) is True:
                found = _compressed(header, index, path, data_offset, nbytes)
                if found is not None:
                    return found
            elif xt in ("", "IMAGE") and len(axes) in (2, 3) and axes[0] and axes[1]:
                bzero, bscale = _scaling(header, path, index)
                return ImageHdu(
                    index=index, header=header, data_offset=data_offset, data_bytes=nbytes,
                    bitpix=bitpix, shape=_image_shape(axes), bzero=bzero, bscale=bscale,
                )  # fmt: skip
            if hdu is not None:
                raise FrameReadError(f"HDU {hdu} holds no 2-D or 3-D image", path=path)
        padded = -(-nbytes // BLOCK_BYTES) * BLOCK_BYTES
        offset = data_offset + padded
    if hdu is not None:
        raise FrameReadError(f"the file has no HDU {hdu}", path=path)
    raise FrameReadError("FITS file holds no 2-D or 3-D image", path=path)


# -- the keywords qhytime times frames with ---------------------------------------------

# key -> (kind, lo, hi, what it is)
_CHECKED: dict[str, tuple[str, float, float, str]] = {
    "QHY_EXP": ("real", 0.0, 86_400.0, "an exposure in seconds (0..86400)"),
    "EXPTIME": ("real", 0.0, 86_400.0, "an exposure in seconds (0..86400)"),
    "EXPOSURE": ("real", 0.0, 86_400.0, "an exposure in seconds (0..86400)"),
    "QHY_LP": ("real", 0.0, 1e6, "a line period in ns (> 0, <= 1e6)"),
    "QHY_OFF0": ("real", -1e8, 1e8, "an offset in us (-1e8..1e8)"),
    "XBINNING": ("int", 1, 64, "a binning factor 1..64"),
    "YBINNING": ("int", 1, 64, "a binning factor 1..64"),
    "CROPOFFX": ("int", 0, 1_000_000, "a crop origin in sensor pixels (0..1000000)"),
    "CROPOFFY": ("int", 0, 1_000_000, "a crop origin in sensor rows (0..1000000)"),
    "USBTRAFF": ("int", 0, 1_000_000, "a USB_TRAFFIC setting (0..1000000)"),
    "READOUTM": ("str", 0, 0, "a readout mode name"),
    "INSTRUME": ("str", 0, 0, "a camera name"),
    "QHYSTRM": ("str", 0, 0, "a stream mode name"),
    "ROWORDER": ("roworder", 0, 0, "TOP-DOWN or BOTTOM-UP"),
    # what a file stamped by qhytime keeps of its source ("unknown" where it said nothing)
    "QT_MODE": ("str", 0, 0, "a readout mode name"),
    "QT_CROPX": ("int?", 0, 1_000_000, "a crop origin in sensor pixels or 'unknown'"),
    "QT_CROPY": ("int?", 0, 1_000_000, "a crop origin in sensor rows or 'unknown'"),
    "QT_BIN": ("int?", 1, 64, "a binning factor 1..64 or 'unknown'"),
    "QT_EXPNS": ("int?", 1, 86_400 * 10**9, "an exposure in ns or 'unknown'"),
    "QT_LP": ("real", 0.0, 1e6, "a line period in ns (> 0, <= 1e6)"),
}
_PASSED = ("DATE-OBS", "GAIN", "OFFSET")
# A stamped file's own keywords (what its source said; qhytime.framerows checks them, and
# reads 'unknown' as no value): passed through.
_PASSED += ("QT_MODE", "QT_CROPX", "QT_CROPY", "QT_BIN", "QT_EXPNS", "QT_LP")


def checked_metadata(header: RawHeader, path: str, hdu: int = 0) -> dict[str, Any]:
    """The timing keywords of a header, each checked (type, finite, range).

    Numbers come back as ``int`` or ``float``, whole-number keywords as ``int``; absent
    keywords are left out. ``DATE-OBS``, ``GAIN`` and ``OFFSET`` are passed through when
    their cards parse.

    Raises
    ------
    FrameReadError
        Naming the keyword, its value and what it should be.

    Examples
    --------
    >>> from astropy.io.fits import Header
    >>> checked_metadata(Header({"EXPTIME": 0.25, "XBINNING": 2.0}), "f.fits")
    {'EXPTIME': 0.25, 'XBINNING': 2}
    >>> checked_metadata(Header({"XBINNING": 0}), "f.fits")
    Traceback (most recent call last):
    ...
    qhytime.errors.FrameReadError: f.fits: header keyword XBINNING = 0 is not a binning factor 1..64; fix the keyword (or remove it) and try again
    """
    out: dict[str, Any] = {}
    for key, (kind, lo, hi, what) in _CHECKED.items():
        v = _value(header, key, path, hdu)
        if v is _MISSING:
            continue
        if kind == "int?" and isinstance(v, str) and v.strip().lower() == "unknown":
            out[key] = v
            continue
        if kind in ("str", "roworder"):
            ok = isinstance(v, str) and (
                kind == "str" or v.strip().upper() in ROWORDER_VALUES
            )
        elif isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            ok = False
        elif kind in ("int", "int?"):
            ok = v == int(v) and lo <= v <= hi
            v = int(v) if ok else v
        else:
            ok = lo <= v <= hi and not (key in ("QHY_LP", "QT_LP") and v <= 0)
        if not ok:
            raise FrameReadError(
                f"header keyword {key} = {v!r} is not {what}; fix the keyword (or remove it) "
                "and try again",
                path=path,
            )
        out[key] = v
    for key in _PASSED:
        try:
            v = header[key]
        except Exception:  # absent or unparsable: not used for timing
            continue
        out[key] = v
    return out

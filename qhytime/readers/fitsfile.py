"""FITS frames: headers parsed once and checked, only the block rows read for blocks.

A 2-D image HDU is one frame; a 3-D cube (NAXIS3 > 1) is one frame per plane. Three kinds
of file are read:

- plain FITS: the header is parsed once with :class:`astropy.io.fits.Header` and checked
  (:mod:`qhytime.readers.fitsheader`), then the pixels are read straight from the file at
  the offset the standard gives (big-endian, NAXIS1 fastest): the block row of a frame is
  one small read, a cube's block rows one memory-mapped gather;
- gzip-compressed FITS (``.fits.gz``): the same, through a forward-only decompression
  stream (a truncated file keeps its complete frames);
- tile-compressed images (``ZIMAGE = T``, e.g. RICE): the header is checked first, then
  astropy's ``CompImageHDU`` decompresses the block rows (bit-exact for integer data).

Pixel values are those astropy gives (``BZERO``/``BSCALE`` applied): 16-bit data stored as
BITPIX=16 with BZERO=32768 reads as the camera's unsigned values. Only raw integer data
(BITPIX 8 or 16, BSCALE 1, BZERO 0 or the unsigned offset) can hold a GPS block.
``ROWORDER = 'TOP-DOWN'`` puts the block in the last stored row. Frames without a pixel
block fall back to the GPS keywords of N.I.N.A., INDI or SharpCap
(:mod:`qhytime.fitskeys`).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qhytime.errors import FrameReadError, TruncatedFileError
from qhytime.fitskeys import block_from_keywords
from qhytime.gpsblock import BLOCK_SIZE, GpsBlock, block_bytes_from_rows
from qhytime.readers.base import FrameReader
from qhytime.readers.fitsheader import ByteSource, FileSource, checked_metadata, find_image
from qhytime.readers.fitsheader import open_source as _open_source

FITS_MAGIC = b"SIMPLE  ="

_STORED = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
_UNSIGNED_ZERO = {8: -128, 16: 1 << 15, 32: 1 << 31, 64: 1 << 63}


class FitsReader(FrameReader):
    """Read frames and GPS blocks from a FITS file (plain, ``.gz`` or tile-compressed).

    Parameters
    ----------
    path : str or os.PathLike
    hdu : int, optional
        The HDU to read; by default the first HDU with 2-D or 3-D image data.

    Raises
    ------
    FrameReadError
        When the file is not FITS, a header value is damaged (the message names the
        keyword and value), or the file has no image.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from astropy.io import fits
    >>> path = os.path.join(tempfile.mkdtemp(), "f.fits")
    >>> fits.PrimaryHDU(np.zeros((4, 32), dtype=np.uint16)).writeto(path)
    >>> with FitsReader(path) as reader:
    ...     print(len(reader), reader.width, reader.height, reader.bit_depth)
    1 32 4 16
    """

    kind = "fits"

    def __init__(self, path: str | os.PathLike[str], *, hdu: int | None = None) -> None:
        super().__init__(os.fspath(path))
        self._src: ByteSource = _open_source(self.path)
        self._hdul: Any = None
        self._ahdu: Any = None
        self._mm: np.memmap[Any, Any] | None = None
        try:
            self._open(hdu)
        except BaseException:
            self._src.close()
            raise

    def _open(self, hdu: int | None) -> None:
        src = self._src
        if src.read_at(0, len(FITS_MAGIC)) != FITS_MAGIC:
            damage = getattr(src, "damage", None)
            inside = " inside the gzip stream" if src.compressed else ""
            raise FrameReadError(
                f"not a FITS file (no SIMPLE card{inside})" + (f": {damage}" if damage else ""),
                path=self.path,
            )
        img = find_image(src, self.path, hdu)
        self._img = img
        self._meta = checked_metadata(img.header, self.path, img.index)
        planes, self._height, self._width = img.shape
        self._planes = planes
        self._declared = planes
        self._bitpix = img.bitpix
        self._depth = abs(img.bitpix)
        self._bps = abs(img.bitpix) // 8
        self._plane_bytes = self._height * self._width * self._bps
        if img.compression is not None:
            need = img.data_offset + img.data_bytes
            have = src.available(need)
            self._n = planes if have >= need else 0
            if have < need:
                self._truncate(
                    f"truncated: the tile-compressed image's table needs {img.data_bytes} bytes "
                    f"but only {max(have - img.data_offset, 0)} are present; no frame can be "
                    "decompressed"
                )
            return
        need = img.data_offset + planes * self._plane_bytes
        have = max(src.available(need) - img.data_offset, 0)
        complete = min(planes, have // self._plane_bytes)
        self._n = int(complete)
        if complete < planes:
            damage = getattr(src, "damage", None)
            self._truncate(
                f"truncated: the header announces {planes} frame(s) of {self._plane_bytes} bytes "
                f"but only {have} data bytes are present"
                + (f" ({damage})" if damage else "")
                + f"; frames {complete}..{planes - 1} are missing"
            )

    def _truncate(self, reason: str) -> None:
        self.truncation = TruncatedFileError(
            reason,
            path=self.path,
            frame=self._n,
            complete_frames=self._n,
            declared_frames=self._planes,
        )

    # -- geometry ----------------------------------------------------------------------
    @property
    def header(self) -> Any:
        """The image HDU's :class:`astropy.io.fits.Header` (of the uncompressed image for a
        tile-compressed one)."""
        if self._img.compression is not None:
            return self._astropy_hdu().header
        return self._img.header.astropy

    @property
    def compression(self) -> str | None:
        """``"gzip"`` for a .gz file, the tile compression (e.g. ``"RICE_1"``), or None."""
        if self._img.compression is not None:
            return self._img.compression
        return "gzip" if self._src.compressed else None

    @property
    def stored_top_down(self) -> bool:
        return str(self._meta.get("ROWORDER", "")).strip().upper() == "TOP-DOWN"

    @property
    def exposure_ns(self) -> int | None:
        """Exposure from ``QHY_EXP``, else ``EXPTIME``, else ``EXPOSURE`` (checked; None
        when none is given or it is 0)."""
        for key in ("QHY_EXP", "EXPTIME", "EXPOSURE"):
            v = self._meta.get(key)
            if v is not None and v > 0:
                return round(v * 1e9)
        return None

    # -- data ------------------------------------------------------------------------------
    def _raw_scaling(self) -> bool:
        """True when the stored integers are the camera's raw values (no real scaling)."""
        z, s, bp = self._img.bzero, self._img.bscale, self._bitpix
        return bp in (8, 16) and s == 1 and z in (0, _UNSIGNED_ZERO[bp])

    def _physical(self, a: NDArray[Any]) -> NDArray[Any]:
        """Stored big-endian values -> the values astropy gives (BZERO/BSCALE applied)."""
        bp, z, s = self._bitpix, self._img.bzero, self._img.bscale
        if s == 1 and bp > 0 and z == _UNSIGNED_ZERO[bp]:
            if bp == 8:
                return (a ^ np.uint8(0x80)).view(np.int8)
            u = a.view(f">u{self._bps}") ^ np.array(1 << (8 * self._bps - 1), dtype=f"u{self._bps}")
            return u.astype(f"u{self._bps}")
        if s == 1 and z == 0:
            return a.astype(a.dtype.newbyteorder("="))
        small = abs(bp) <= 16 or bp == -32
        ftype = np.float32 if small and abs(s) < 1e30 and abs(z) < 1e30 else np.float64
        with np.errstate(over="ignore", invalid="ignore"):  # the file's values, as astropy
            return a.astype(ftype) * ftype(s) + ftype(z)

    def _memmap(self) -> np.memmap[Any, Any]:
        if self._mm is None:
            # the file checked and opened at construction (a name replaced since, e.g. by a
            # FIFO, is never opened); after close() the name is opened again
            fh = getattr(self._src, "_fh", None)
            self._mm = np.memmap(
                fh if fh is not None and not fh.closed else self.path,
                dtype=_STORED[self._bitpix], mode="r",
                offset=self._img.data_offset, shape=(self._n, self._height, self._width),
            )  # fmt: skip
        return self._mm

    def _astropy_hdu(self) -> Any:
        """The tile-compressed HDU through astropy (its header was checked first)."""
        if self._ahdu is None:
            from astropy.io import fits

            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._hdul = fits.open(self.path, mode="readonly", lazy_load_hdus=True)
                    hdu = self._hdul[self._img.index]
            except Exception as exc:
                raise FrameReadError(
                    f"the tile-compressed image cannot be opened: {exc}", path=self.path
                ) from exc
            if not isinstance(hdu, fits.CompImageHDU):
                raise FrameReadError(
                    f"HDU {self._img.index} is not a tile-compressed image", path=self.path
                )
            self._ahdu = hdu
        return self._ahdu

    def _decompress(self, index: Any, row: Any) -> NDArray[Any]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                section = self._astropy_hdu().section
                if self._img.header.get("ZNAXIS") == 2:
                    return np.asarray(section[row, :] if row is not None else section[:, :])
                if row is None:
                    return np.asarray(section[index, :, :])
                return np.asarray(section[index, row, :])
        except FrameReadError:
            raise
        except Exception as exc:  # a damaged tile: zlib/RICE errors, short heaps, ...
            raise FrameReadError(
                f"the tile-compressed image cannot be decompressed: {exc}", path=self.path
            ) from exc

    def _rows(self, row: int) -> NDArray[Any]:
        """Stored row ``row`` of every complete frame, ``(N, W)``, reading only that row."""
        n, w = self._n, self._width
        if n == 0:
            return np.zeros((0, w), dtype=np.uint16)
        r = row % self._height
        if self._img.compression is not None:
            rows = self._decompress(slice(0, n), slice(r, r + 1))
            return rows.reshape(n, w)
        row_bytes = w * self._bps
        stored = np.dtype(_STORED[self._bitpix])
        if n > 1 and isinstance(self._src, FileSource):
            raw = np.ascontiguousarray(self._memmap()[:, r, :])
        else:
            base = self._img.data_offset + r * row_bytes
            chunks = [self._src.read_at(base + i * self._plane_bytes, row_bytes) for i in range(n)]
            if any(len(c) != row_bytes for c in chunks):
                raise FrameReadError("the file changed or ended while being read", path=self.path)
            raw = np.frombuffer(b"".join(chunks), dtype=stored).reshape(n, w)
        return self._physical(raw)

    def pixel_block_problem(self) -> str | None:
        if self._img.lossy:
            return f"no_gps_block: {self._img.lossy}: the block bytes are not kept"
        if self._bitpix not in (8, 16):
            return (
                f"no_gps_block: BITPIX {self._bitpix} pixels cannot hold a raw GPS block "
                "(processed, calibrated or stacked data)"
            )
        if not self._raw_scaling():
            return (
                f"no_gps_block: scaled pixels (BZERO = {self._img.bzero}, BSCALE = "
                f"{self._img.bscale}) cannot hold a raw GPS block"
            )
        if self._width * self._bps < BLOCK_SIZE:
            return f"no_gps_block: rows of {self._width} pixels are too short to hold a GPS block"
        return None

    def block_bytes(self, *, last_row: bool = False) -> NDArray[np.uint8]:
        return block_bytes_from_rows(self._rows(-1 if last_row else 0))

    def image(self, index: int) -> NDArray[Any]:
        i = self._check_index(index)
        if self._img.compression is not None:
            return self._decompress(i, None).reshape(self._height, self._width)
        if isinstance(self._src, FileSource):
            return self._physical(np.asarray(self._memmap()[i]))
        raw = self._src.read_at(self._img.data_offset + i * self._plane_bytes, self._plane_bytes)
        if len(raw) != self._plane_bytes:
            raise FrameReadError("the file changed or ended while being read", path=self.path)
        arr = np.frombuffer(raw, dtype=_STORED[self._bitpix]).reshape(self._height, self._width)
        return self._physical(arr)

    def keyword_blocks(self) -> list[tuple[GpsBlock, str] | None]:
        found = block_from_keywords(self._img.header, self._width, self._height)
        return [found] * self._n

    def metadata(self, index: int) -> dict[str, Any]:
        self._check_index(index)
        out: dict[str, Any] = {"format": "FITS", "bitpix": self._bitpix}
        out.update(self._meta)
        return out

    def close(self) -> None:
        self._mm = None
        self._ahdu = None
        if self._hdul is not None:
            self._hdul.close()
            self._hdul = None
        self._src.close()

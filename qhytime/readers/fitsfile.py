"""FITS frames through astropy.io.fits, memory-mapped; only the block rows are read for blocks.

A 2-D image HDU is one frame; a 3-D cube (NAXIS3 > 1) is one frame per plane. 16-bit data
stored as BITPIX=16 with BZERO=32768 is read as the camera's unsigned values. ``ROWORDER =
'TOP-DOWN'`` puts the block in the last stored row. Frames without a pixel block fall back
to the GPS keywords of N.I.N.A. or INDI (see :mod:`qhytime.fitskeys`).
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

FITS_MAGIC = b"SIMPLE  ="

_META_KEYS = (
    "EXPTIME", "EXPOSURE", "QHY_EXP", "QHY_LP", "QHY_OFF0", "READOUTM", "CROPOFFX", "CROPOFFY",
    "XBINNING", "YBINNING", "ROWORDER", "INSTRUME", "DATE-OBS", "USBTRAFF", "GAIN", "OFFSET",
)  # fmt: skip


class FitsReader(FrameReader):
    """Read frames and GPS blocks from a FITS file.

    Parameters
    ----------
    path : str or os.PathLike
    hdu : int, optional
        The HDU to read; by default the first HDU with 2-D or 3-D image data.

    Raises
    ------
    FrameReadError
        When the file is not FITS, has no image, or its data is not integer pixels.

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
        from astropy.io import fits

        super().__init__(os.fspath(path))
        try:
            with open(self.path, "rb") as fh:
                magic = fh.read(len(FITS_MAGIC))
        except OSError as exc:
            raise FrameReadError(
                f"cannot read file: {exc.strerror or exc}", path=self.path
            ) from exc
        if magic != FITS_MAGIC:
            raise FrameReadError("not a FITS file (no SIMPLE card)", path=self.path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # astropy's repair notes become our errors
                self._hdul = fits.open(self.path, mode="readonly", lazy_load_hdus=True)
                self._hdu = self._find_image(hdu)
                self._header = self._hdu.header
                info = self._hdu.fileinfo()
        except FrameReadError:
            raise
        except Exception as exc:  # astropy raises OSError, ValueError, IndexError, ...
            raise FrameReadError(f"not a readable FITS file: {exc}", path=self.path) from exc
        shape = tuple(int(self._header[f"NAXIS{k}"]) for k in range(self._header["NAXIS"], 0, -1))
        self._planes = shape[0] if len(shape) == 3 else 1
        self._height, self._width = shape[-2], shape[-1]
        self._declared = self._planes
        bitpix = int(self._header["BITPIX"])
        self._bitpix = bitpix
        if bitpix not in (8, 16):
            self._depth = abs(bitpix)
        else:
            bzero = float(self._header.get("BZERO", 0))
            self._depth = 16 if bitpix == 16 and bzero in (0.0, 32768.0) else abs(bitpix)
        plane_bytes = self._height * self._width * abs(bitpix) // 8
        have = os.path.getsize(self.path) - int(info["datLoc"])
        complete = min(self._planes, max(have, 0) // plane_bytes)
        self._n = int(complete)
        if complete < self._planes:
            self.truncation = TruncatedFileError(
                f"truncated: the header announces {self._planes} frame(s) of {plane_bytes} bytes "
                f"but only {max(have, 0)} data bytes are present; frames {complete}.."
                f"{self._planes - 1} are missing",
                path=self.path,
                frame=int(complete),
                complete_frames=int(complete),
                declared_frames=self._planes,
            )

    def _find_image(self, hdu: int | None) -> Any:
        if hdu is not None:
            return self._hdul[hdu]
        for candidate in self._hdul:
            naxis = int(candidate.header.get("NAXIS", 0))
            if candidate.is_image and naxis in (2, 3) and candidate.header.get("NAXIS1", 0):
                return candidate
        raise FrameReadError("FITS file holds no 2-D or 3-D image", path=self.path)

    # -- geometry ----------------------------------------------------------------------
    @property
    def header(self) -> Any:
        """The image HDU's :class:`astropy.io.fits.Header`."""
        return self._header

    @property
    def stored_top_down(self) -> bool:
        return str(self._header.get("ROWORDER", "")).strip().upper() == "TOP-DOWN"

    # -- data ------------------------------------------------------------------------------
    def _rows(self, row: int) -> NDArray[Any]:
        """Stored row ``row`` of every complete frame, ``(N, W)``, reading only that row."""
        if self._n == 0:
            return np.zeros((0, self._width), dtype=np.uint16)
        section = self._hdu.section
        if self._planes == 1 and self._header["NAXIS"] == 2:
            rows = section[row : row + 1 if row != -1 else None, :]
        else:
            rows = section[: self._n, row, :]
        return np.asarray(rows).reshape(self._n, self._width)

    def pixel_block_problem(self) -> str | None:
        if self._bitpix not in (8, 16):
            return (
                f"no_gps_block: BITPIX {self._bitpix} pixels cannot hold a raw GPS block "
                "(processed, calibrated or stacked data)"
            )
        if self._width * (self._bitpix // 8) < BLOCK_SIZE:
            return f"no_gps_block: rows of {self._width} pixels are too short to hold a GPS block"
        return None

    def block_bytes(self, *, last_row: bool = False) -> NDArray[np.uint8]:
        return block_bytes_from_rows(self._rows(-1 if last_row else 0))

    def image(self, index: int) -> NDArray[Any]:
        i = self._check_index(index)
        if self._planes == 1 and self._header["NAXIS"] == 2:
            return np.asarray(self._hdu.section[:, :])
        return np.asarray(self._hdu.section[i, :, :])

    def keyword_blocks(self) -> list[tuple[GpsBlock, str] | None]:
        found = block_from_keywords(self._header, self._width, self._height)
        return [found] * self._n

    def metadata(self, index: int) -> dict[str, Any]:
        self._check_index(index)
        out: dict[str, Any] = {"format": "FITS", "bitpix": self._bitpix}
        for key in _META_KEYS:
            if key in self._header:
                out[key] = self._header[key]
        return out

    def close(self) -> None:
        self._hdul.close()

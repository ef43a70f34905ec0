"""Frame readers with one interface: iterate frames -> image + GPS block + source metadata.

:func:`open_frames` picks the reader from the file's first bytes.
"""

from __future__ import annotations

import os

from qhytime.errors import FrameReadError
from qhytime.readers.arrays import ArrayReader, frames_from_buffer
from qhytime.readers.base import BlockScan, Frame, FrameReader
from qhytime.readers.fitsfile import FITS_MAGIC, FitsReader
from qhytime.readers.serfile import SER_MAGIC, SerReader, write_ser

__all__ = [
    "ArrayReader",
    "BlockScan",
    "FitsReader",
    "Frame",
    "FrameReader",
    "SerReader",
    "frames_from_buffer",
    "open_frames",
    "write_ser",
]


def open_frames(path: str | os.PathLike[str]) -> FrameReader:
    """Open a FITS or SER file with the right reader, chosen by its content.

    Raises
    ------
    FrameReadError
        When the file cannot be read or is neither FITS nor SER.

    Examples
    --------
    >>> open_frames("/nonexistent.fits")
    Traceback (most recent call last):
    ...
    qhytime.errors.FrameReadError: /nonexistent.fits: cannot read file: No such file or directory
    """
    p = os.fspath(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise FrameReadError(f"cannot read file: {exc.strerror or exc}", path=p) from exc
    if head.startswith(FITS_MAGIC):
        return FitsReader(p)
    if head.startswith(SER_MAGIC):
        return SerReader(p)
    if not head:
        raise FrameReadError("empty file", path=p)
    raise FrameReadError("not a FITS or SER file (unknown first bytes)", path=p)

"""Frame readers with one interface: iterate frames -> image + GPS block + source metadata.

:func:`open_frames` picks the reader from the file's first bytes: FITS (plain,
gzip-compressed ``.fits.gz``, or with a tile-compressed image such as RICE) or SER.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from qhytime.errors import FrameReadError
from qhytime.readers.arrays import ArrayReader, frames_from_buffer
from qhytime.readers.base import (
    BlockScan,
    Frame,
    FrameReader,
    open_regular,
    require_regular_file,
)
from qhytime.readers.fitsfile import FITS_MAGIC, FitsReader
from qhytime.readers.fitsheader import GZIP_MAGIC, GzipSource
from qhytime.readers.serfile import SER_MAGIC, SerReader, write_ser

__all__ = [
    "FRAME_SUFFIXES",
    "ArrayReader",
    "BlockScan",
    "FitsReader",
    "Frame",
    "FrameReader",
    "SerReader",
    "expand_paths",
    "frames_from_buffer",
    "open_frames",
    "open_regular",
    "require_regular_file",
    "write_ser",
]


FRAME_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fz", ".ser")
"""File names a folder is searched for (any case)."""


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Files as given, folders replaced by their FITS/SER files in name order (not recursive).

    A folder without such files is kept as given, so that the caller reports it. Only
    regular files are taken from a folder (a FIFO, socket or device there is skipped); a
    path given explicitly is kept, and the reader then says what is wrong with it.

    Examples
    --------
    >>> expand_paths(["a.fits", "b.ser"])
    ['a.fits', 'b.ser']
    >>> expand_paths(["tests/data/led_pairs"])[:2]
    ['tests/data/led_pairs/led_000.fits', 'tests/data/led_pairs/led_001.fits']
    """
    out: list[str] = []
    for p in paths:
        name = os.fspath(p)
        if os.path.isdir(name):
            found = sorted(
                str(c)
                for c in Path(name).iterdir()
                if c.is_file() and c.name.lower().endswith(FRAME_SUFFIXES)
            )
            out.extend(found or [name])
        else:
            out.append(name)
    return out


def open_frames(path: str | os.PathLike[str]) -> FrameReader:
    """Open a FITS or SER file with the right reader, chosen by its content.

    A gzip-compressed file is looked into: a FITS file inside is read on the fly.

    Raises
    ------
    FrameReadError
        When the file cannot be read, is not a regular file (a FIFO, socket, device or
        folder is refused at once, never opened) or is neither FITS nor SER.

    Examples
    --------
    >>> open_frames("/nonexistent.fits")
    Traceback (most recent call last):
    ...
    qhytime.errors.FrameReadError: /nonexistent.fits: cannot read file: No such file or directory
    """
    p = os.fspath(path)
    try:
        with open_regular(p) as fh:  # a FIFO, socket, device or folder: refused, never opened
            head = fh.read(16)
    except FrameReadError:
        raise
    except OSError as exc:
        raise FrameReadError(f"cannot read file: {exc.strerror or exc}", path=p) from exc
    if head.startswith(FITS_MAGIC):
        return FitsReader(p)
    if head.startswith(SER_MAGIC):
        return SerReader(p)
    if not head:
        raise FrameReadError("empty file", path=p)
    if head.startswith(GZIP_MAGIC):
        src = GzipSource(p)
        try:
            inner = src.read_at(0, 16)
        finally:
            src.close()
        if inner.startswith(FITS_MAGIC):
            return FitsReader(p)
        if inner.startswith(SER_MAGIC):
            why = "holds a SER file: decompress it first (SER files are read memory-mapped)"
        elif not inner and src.damage:
            why = f"cannot be decompressed: {src.damage}"
        else:
            why = "holds neither FITS nor SER"
        raise FrameReadError(f"gzip-compressed file {why}", path=p)
    raise FrameReadError("not a FITS or SER file (unknown first bytes)", path=p)

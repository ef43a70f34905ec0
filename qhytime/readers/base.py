"""The one interface every frame reader offers: frames as image + GPS block + source metadata."""

from __future__ import annotations

import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from qhytime.errors import FrameReadError, TruncatedFileError
from qhytime.gpsblock import BLOCK_SIZE, GpsBlock, GpsBlockArray
from qhytime.validity import block_presence

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _not_regular(mode: int, path: str) -> FrameReadError:
    if stat.S_ISDIR(mode):
        return FrameReadError(
            "is a folder, not a regular file: give its FITS/SER files (decode_paths and the "
            "command line take folders)",
            path=path,
        )
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    return FrameReadError(
        f"is {kind}, not a regular file: frames are read from FITS/SER files only "
        "(save the data to a file and give that)",
        path=path,
    )


def require_regular_file(path: str | os.PathLike[str]) -> os.stat_result:
    """The ``os.stat`` of ``path``, or a clear error when it is not a regular file.

    A FIFO, socket, device or folder is refused before anything opens it (opening a FIFO
    for reading waits for a writer: it would hang). Symbolic links are followed.

    Raises
    ------
    FrameReadError
        When ``path`` cannot be looked at or is not a regular file.

    Examples
    --------
    >>> require_regular_file("tests/data/video16.ser").st_size > 0
    True
    >>> require_regular_file("/dev/null")
    Traceback (most recent call last):
    ...
    qhytime.errors.FrameReadError: /dev/null: is a character device, not a regular file: \
frames are read from FITS/SER files only (save the data to a file and give that)
    """
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        raise FrameReadError(f"cannot read file: {exc.strerror or exc}", path=p) from exc
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(st.st_mode, p)
    return st


_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def open_regular(path: str | os.PathLike[str]) -> IO[bytes]:
    """Open a regular file for binary reading; never blocks on a FIFO or device.

    ``path`` is checked with :func:`require_regular_file`, opened without blocking, and the
    opened descriptor is checked again (the name may have been replaced in between).

    Raises
    ------
    FrameReadError
        When ``path`` cannot be opened or is not a regular file.

    Examples
    --------
    >>> with open_regular("tests/data/video16.ser") as fh:
    ...     fh.read(14)
    b'LUCAM-RECORDER'
    """
    p = os.fspath(path)
    require_regular_file(p)
    flags = os.O_RDONLY | _NONBLOCK | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(p, flags)
    except OSError as exc:
        raise FrameReadError(f"cannot read file: {exc.strerror or exc}", path=p) from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(mode, p)
        if _NONBLOCK:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@dataclass
class BlockScan:
    """The GPS blocks of every complete frame of a file, found in one vectorised pass.

    Attributes
    ----------
    blocks : GpsBlockArray
        What was read where the block belongs (garbage where ``present`` is False).
    present : numpy.ndarray of bool
        Which frames hold a block.
    why_absent : list of str or None
        A ``no_gps_block`` reason for each frame without a block.
    origin : list of str
        Where each block came from: ``"pixels"``, ``"pixels:last row"`` (a flipped frame)
        or ``"keywords:<writer>"``.
    flipped : numpy.ndarray of bool
        True where the block was in the last stored row.
    """

    blocks: GpsBlockArray
    present: NDArray[np.bool_]
    why_absent: list[str | None]
    origin: list[str]
    flipped: NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.blocks)


@dataclass
class Frame:
    """One frame of a file: where it is, its GPS block and a lazy image.

    Attributes
    ----------
    path : str
        The file as given.
    index : int
        0-based frame number in the file.
    block : GpsBlock or None
        The decoded block, None when the frame has none (see ``why_no_block``).
    why_no_block : str or None
    origin : str
        Where the block came from (see :class:`BlockScan`).
    flipped : bool
        True when rows are stored top-down (block in the last stored row).
    metadata : dict
        Reader-specific facts: FITS header cards, SER header and trailer time, ...
    """

    path: str
    index: int
    block: GpsBlock | None
    why_no_block: str | None
    origin: str
    flipped: bool
    metadata: Mapping[str, Any] = field(default_factory=dict)
    _reader: FrameReader | None = field(default=None, repr=False)

    @property
    def image(self) -> NDArray[Any]:
        """The frame's pixels (read on first access)."""
        if self._reader is None:
            raise FrameReadError("image not available", path=self.path, frame=self.index)
        return self._reader.image(self.index)


class FrameReader(ABC):
    """Base of the FITS, SER and array readers.

    A reader knows its complete frames (``len(reader)``), how many the file announces
    (``declared_frames``) and, when the file ends early, a :class:`TruncatedFileError`
    in ``truncation`` (never raised by iteration: the complete frames stay readable).
    """

    kind: str = "frames"

    def __init__(self, path: str) -> None:
        self.path = str(path)
        self.truncation: TruncatedFileError | None = None

    # -- geometry: each reader sets these in its __init__ ---------------------------------
    _width: int
    _height: int
    _depth: int
    _n: int
    _declared: int

    @property
    def width(self) -> int:
        """Frame width in pixels."""
        return self._width

    @property
    def height(self) -> int:
        """Frame height in pixels."""
        return self._height

    @property
    def bit_depth(self) -> int:
        """Bits per pixel of the stored data (8 or 16 for raw camera frames)."""
        return self._depth

    def __len__(self) -> int:
        """Number of complete frames."""
        return self._n

    @property
    def declared_frames(self) -> int:
        """Frames the file announces (more than ``len(self)`` when truncated)."""
        return self._declared

    # -- what each reader supplies --------------------------------------------------------
    @abstractmethod
    def block_bytes(self, *, last_row: bool = False) -> NDArray[np.uint8]:
        """The 44 bytes where the block sits, for every complete frame, ``(N, 44)``."""

    @abstractmethod
    def image(self, index: int) -> NDArray[Any]:
        """Pixels of frame ``index`` as stored (row 0 first)."""

    def metadata(self, index: int) -> dict[str, Any]:
        """Facts about frame ``index`` beyond its pixels."""
        return {}

    @property
    def stored_top_down(self) -> bool:
        """True when the file says its rows are stored top-down (block in the last row)."""
        return False

    def pixel_block_problem(self) -> str | None:
        """Why this file's pixels cannot hold a block at all (e.g. float data), or None."""
        return None

    def structure_problem(self) -> str | None:
        """A ``file_structure`` reason when the file's layout contradicts its header (every
        frame's time is then suspect), or None."""
        return None

    @property
    def exposure_ns(self) -> int | None:
        """The exposure the file gives (checked), in ns; None when it gives none."""
        return None

    def keyword_blocks(self) -> list[tuple[GpsBlock, str] | None]:
        """Blocks rebuilt from header keywords, per frame (None where there are none)."""
        return [None] * len(self)

    ranged_blocks: bool = False
    """True when :meth:`block_bytes_range` reads only the frames asked for (SER and array
    readers): a long file can then be decoded in chunks (:func:`qhytime.decode.decode_chunks`)."""

    def block_bytes_range(self, lo: int, hi: int, *, last_row: bool = False) -> NDArray[np.uint8]:
        """The block bytes of frames ``lo..hi-1``, ``(hi - lo, 44)`` (by default a slice of
        :meth:`block_bytes`; readers with random access read only those frames)."""
        return self.block_bytes(last_row=last_row)[lo:hi]

    def _keyword_blocks_range(self, lo: int, hi: int) -> list[tuple[GpsBlock, str] | None]:
        if type(self).keyword_blocks is FrameReader.keyword_blocks:
            return [None] * (hi - lo)  # no header keywords: no list of the whole file
        return self.keyword_blocks()[lo:hi]

    # -- shared behaviour ---------------------------------------------------------------
    def scan_blocks(
        self, lo: int = 0, hi: int | None = None, *, main: NDArray[np.uint8] | None = None
    ) -> BlockScan:
        """Find the GPS block of every complete frame (of frames ``lo..hi-1`` when given) in
        one pass over the block bytes.

        The block is looked for in the row the file's row order says; frames without it
        there are tried in the other end row (a software flip), then in header keywords.
        Each frame's result depends on that frame alone: a range gives the same as the
        whole file's scan sliced. ``main``, when given, is the block bytes of those frames'
        row the file's order says (read before: :meth:`block_bytes_range` with
        ``last_row=self.stored_top_down``), used instead of reading them again.
        """
        n_all = len(self)
        whole = lo == 0 and (hi is None or hi >= n_all)
        hi = n_all if hi is None else min(int(hi), n_all)
        lo = max(0, min(int(lo), hi))

        def raw(last_row: bool) -> NDArray[np.uint8]:
            if main is not None and last_row == self.stored_top_down:
                return main
            if whole:
                return self.block_bytes(last_row=last_row)
            return self.block_bytes_range(lo, hi, last_row=last_row)

        top_down = self.stored_top_down
        problem = self.pixel_block_problem()
        m = hi - lo
        if problem is None:
            blocks = GpsBlockArray.from_bytes(raw(top_down))
            present, why = block_presence(blocks, self.width, self.height)
        else:
            blocks = GpsBlockArray.from_bytes(np.zeros((m, BLOCK_SIZE), dtype=np.uint8))
            present, why = np.zeros(m, dtype=bool), [problem] * m
        n = len(blocks)
        flipped = np.full(n, top_down, dtype=bool)
        origin = ["pixels:last row" if top_down else "pixels"] * n
        if n and problem is None and not present.all():
            other = GpsBlockArray.from_bytes(raw(not top_down))
            o_present, _ = block_presence(other, self.width, self.height)
            use = o_present & ~present
            if use.any():
                fields = {
                    name: np.where(use, other.field(name), blocks.field(name))
                    for name in blocks._fields
                }
                blocks = GpsBlockArray(fields)
                for i in np.flatnonzero(use):
                    flipped[i] = not top_down
                    origin[i] = "pixels:first row" if top_down else "pixels:last row"
                    why[i] = None
                present = present | use
        if n and not present.all():
            kw = self.keyword_blocks() if whole else self._keyword_blocks_range(lo, hi)
            missing = np.flatnonzero(~present)
            found = [i for i in missing if kw[i] is not None]
            if found:
                arrays = {name: blocks.field(name).copy() for name in blocks._fields}
                for i in found:
                    blk, writer = kw[i]  # type: ignore[misc]
                    for name, value in blk.fields().items():
                        arrays[name][i] = value
                    origin[i] = f"keywords:{writer}"
                    why[i] = None
                    present[i] = True
                blocks = GpsBlockArray(arrays)
        return BlockScan(
            blocks=blocks, present=present, why_absent=why, origin=origin, flipped=flipped
        )

    def __iter__(self) -> Iterator[Frame]:
        scan = self.scan_blocks()
        for i in range(len(self)):
            yield Frame(
                path=self.path,
                index=i,
                block=scan.blocks[i] if scan.present[i] else None,
                why_no_block=scan.why_absent[i],
                origin=scan.origin[i],
                flipped=bool(scan.flipped[i]),
                metadata=self.metadata(i),
                _reader=self,
            )

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the file (readers that hold one override this)."""

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_index(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            if self.truncation is not None and index < self.declared_frames:
                raise TruncatedFileError(
                    self.truncation.reason,
                    path=self.path,
                    frame=index,
                    complete_frames=len(self),
                    declared_frames=self.declared_frames,
                )
            raise FrameReadError(
                f"frame index {index} out of range: the file has {len(self)} frame(s)",
                path=self.path,
                frame=index,
            )
        return index % len(self)

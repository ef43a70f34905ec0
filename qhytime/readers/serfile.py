"""SER video files: a small reader on ``numpy.memmap``.

Layout: a 178-byte little-endian header (``LUCAM-RECORDER``, LuID, ColorID, LittleEndian,
width, height, bits per plane, frame count, observer, instrument, telescope, local and
UTC start times as .NET ticks), the frames back to back, then optionally one int64 UTC
time per frame (.NET ticks: 100 ns since 0001-01-01).

The ``LittleEndian`` flag is written inverted by some programs, so for 16-bit data the
byte order is decided by which order yields a GPS block whose width/height fields match
the header; the flag decides only when no frame holds a block.

Every header value is checked before use: ColorID a SER colour code, LittleEndian 0 or 1,
width and height 1..:data:`MAX_SIDE`, PixelDepthPerPlane 1..16, FrameCount >= 0 (a damaged
one is a :class:`~qhytime.errors.FrameReadError`). The file's size must then be header +
frames x frame bytes, with or without the 8-byte-per-frame time trailer: a file shorter
than that is truncated (its complete frames stay good); any other size means the header
does not describe the data (e.g. ``PixelDepth`` 8 on 16-bit data, where frame 6 would read
frame 3's block), and every frame gets a ``file_structure`` reason. A shorter size that
another sample size would fit exactly (a 16-bit file holding half its announced frames
fits 8-bit samples) is decided by the GPS blocks: the header stands unless the first
frames' blocks run in sequence only at the other spacing.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from qhytime.atomic import atomic_open
from qhytime.errors import FrameReadError, TruncatedFileError
from qhytime.gpsblock import BLOCK_SIZE, GpsBlockArray
from qhytime.readers.base import FrameReader, open_regular
from qhytime.validity import block_presence

SER_MAGIC = b"LUCAM-RECORDER"
HEADER_SIZE = 178
GATHER_FRAMES = 1024
"""Frames whose block bytes are gathered at a time (and their pages then given back)."""
_FAULT_AROUND = 65536
"""Bytes around a page fault the kernel maps with it (Linux ``fault_around_bytes``)."""
DOTNET_UNIX_EPOCH_TICKS = 621_355_968_000_000_000
""".NET ticks (100 ns since 0001-01-01) of 1970-01-01T00:00:00."""

COLOR_NAMES = {
    0: "MONO", 8: "BAYER_RGGB", 9: "BAYER_GRBG", 10: "BAYER_GBRG", 11: "BAYER_BGGR",
    16: "BAYER_CYYM", 17: "BAYER_YCMY", 18: "BAYER_YMCY", 19: "BAYER_MYYC",
    100: "RGB", 101: "BGR",
}  # fmt: skip
_HEADER = struct.Struct("<14s7i40s40s40sqq")
MAX_SIDE = 1 << 20
"""Widest or tallest SER frame accepted (1,048,576 pixels): more is a damaged header."""


def dotnet_ticks_to_unix_ns(ticks: Any) -> Any:
    """Unix ns of .NET ticks (as in SER headers and trailers).

    Examples
    --------
    >>> dotnet_ticks_to_unix_ns(621_355_968_000_000_001)
    100
    """
    t = np.asarray(ticks, dtype=np.int64)
    out = (t - DOTNET_UNIX_EPOCH_TICKS) * 100
    return int(out) if out.ndim == 0 else out


def unix_ns_to_dotnet_ticks(unix_ns: Any) -> Any:
    """.NET ticks of unix ns (truncated to 100 ns)."""
    t = np.asarray(unix_ns, dtype=np.int64)
    out = t // 100 + DOTNET_UNIX_EPOCH_TICKS
    return int(out) if out.ndim == 0 else out


class SerReader(FrameReader):
    """Read frames, GPS blocks and the timestamp trailer of a SER file.

    Parameters
    ----------
    path : str or os.PathLike
        The file (a regular file: a FIFO, socket, device or folder is refused).
    little_endian : bool, optional
        Force the 16-bit byte order; by default it is decided from the GPS blocks.
    recording : bool
        The file may still be being recorded: capture programs write the header with a
        frame count of 0 (or one they update now and then) and append frames, then fill in
        the count and the time trailer when they finish. Unless the file already holds
        exactly the frames its header announces (with or without the trailer: a finished
        file, read as usual), its frames are counted from its size: every complete frame
        is read, a partial frame at the end is left out, the header count (0, smaller or
        larger) is not an error, no ``truncation`` is set and no trailer is read.
        ``counted_by_size`` then says so. Open the file again to see the frames written
        since. The header's geometry is trusted: a size that contradicts it cannot be told
        from a recording, so use this only for files still being written.

    Attributes
    ----------
    counted_by_size : bool
        True when the frames were counted from the file's size (``recording`` and the file
        does not look finished); ``declared_frames`` is then the header's count as written.

    Raises
    ------
    FrameReadError
        When the file is not a regular file, not a SER file or its header is inconsistent.

    Notes
    -----
    A truncated file does not raise: ``len(reader)`` counts its complete frames and
    ``reader.truncation`` holds the error for the missing ones.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny.ser")
    >>> write_ser(path, np.zeros((3, 4, 32), dtype=np.uint16))
    >>> reader = SerReader(path)
    >>> len(reader), reader.width, reader.height, reader.bit_depth
    (3, 32, 4, 16)

    A file being recorded: the header says 0 frames, two and a half are written so far.

    >>> with open(path, "r+b") as fh:
    ...     _ = fh.seek(38)                       # FrameCount, as a capture program leaves it
    ...     _ = fh.write((0).to_bytes(4, "little"))
    ...     _ = fh.truncate(178 + 2 * 256 + 100)   # frames of 4 x 32 x 2 bytes
    >>> with SerReader(path, recording=True) as rec:
    ...     len(rec), rec.declared_frames, rec.counted_by_size, rec.truncation
    (2, 0, True, None)
    """

    kind = "ser"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        little_endian: bool | None = None,
        recording: bool = False,
    ) -> None:
        super().__init__(os.fspath(path))
        fh = open_regular(self.path)  # a FIFO, socket or device is refused, never opened
        try:
            self._read_layout(fh, recording)
        finally:
            fh.close()  # the memmap keeps its own reference to the file
        self._little_endian = little_endian
        if self.bytes_per_sample == 1:
            self._little_endian = True  # irrelevant for 8-bit data

    def _read_layout(self, fh: IO[bytes], recording: bool) -> None:
        try:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(HEADER_SIZE)
        except OSError as exc:
            raise FrameReadError(
                f"cannot read file: {exc.strerror or exc}", path=self.path
            ) from exc
        if len(head) < HEADER_SIZE or not head.startswith(SER_MAGIC):
            raise FrameReadError(
                "not a SER file (no LUCAM-RECORDER header of 178 bytes)", path=self.path
            )
        (_, self.lu_id, self.color_id, self.little_endian_flag, w, h, depth, count,
         observer, instrument, telescope, t_local, t_utc) = _HEADER.unpack(head)  # fmt: skip
        self._check_header(w, h, depth, count)
        self._width, self._height, self._depth = int(w), int(h), int(depth)
        self.observer = observer.rstrip(b"\0").decode("latin-1")
        self.instrument = instrument.rstrip(b"\0").decode("latin-1")
        self.telescope = telescope.rstrip(b"\0").decode("latin-1")
        self.start_local_ticks, self.start_utc_ticks = int(t_local), int(t_utc)
        self.planes = 3 if self.color_id >= 100 else 1
        self.bytes_per_sample = 1 if depth <= 8 else 2
        self.frame_bytes = w * h * self.planes * self.bytes_per_sample
        self.file_size = size
        self._declared = int(count)
        available = (size - HEADER_SIZE) // self.frame_bytes
        body = count * self.frame_bytes
        finished = count > 0 and (
            size - HEADER_SIZE == body
            or (size - HEADER_SIZE == body + 8 * count
                # while recording, the next frame may be exactly as far in as a trailer
                # would be: a finished file's trailer is times, in order
                and (not recording or _trailer_is_times(fh, HEADER_SIZE + body, count)))
        )  # fmt: skip
        self.counted_by_size = bool(recording and not finished)
        if self.counted_by_size:
            self._n = int(available)
            self._structure: str | None = None
            count = 0  # no trailer is looked for
        else:
            self._n = int(min(available, count))
            self._structure = self._structure_check(fh, size, count)
        if self._n < count:
            partial = (size - HEADER_SIZE) - self._n * self.frame_bytes
            self.truncation = TruncatedFileError(
                f"truncated: the header announces {count} frames of {self.frame_bytes} bytes but "
                f"the file ends {partial} bytes into frame {self._n}; frames {self._n}.."
                f"{count - 1} are missing, frames 0..{self._n - 1} are complete",
                path=self.path,
                frame=self._n,
                complete_frames=self._n,
                declared_frames=int(count),
            )
        elif count == 0 and self._structure is not None:
            raise FrameReadError(
                f"the header announces 0 frames but the file holds {size - HEADER_SIZE} bytes "
                "after the header: the frame count is damaged (a file still being recorded "
                "is read with recording=True)",
                path=self.path,
            )
        trailer_at = HEADER_SIZE + count * self.frame_bytes
        self.has_trailer = self._n == count and size >= trailer_at + 8 * count and count > 0
        self._data = (
            np.memmap(fh, dtype=np.uint8, mode="r", offset=HEADER_SIZE,
                      shape=(self._n, self.frame_bytes))
            if self._n > 0 else np.zeros((0, self.frame_bytes), dtype=np.uint8)
        )  # fmt: skip
        self._trailer: NDArray[np.int64] | None = None
        self._declared_count = int(count)
        if self.has_trailer:  # mapped, not read: a long file's trailer is read where used
            self._trailer = np.memmap(fh, dtype="<i8", mode="r", offset=trailer_at, shape=(count,))

    # -- header and structure ----------------------------------------------------------
    def _check_header(self, w: int, h: int, depth: int, count: int) -> None:
        """Every header value qhytime uses, checked before use."""
        problems = []
        if self.color_id not in COLOR_NAMES:
            problems.append(f"ColorID {self.color_id} is not a SER colour code")
        if self.little_endian_flag not in (0, 1):
            problems.append(f"LittleEndian {self.little_endian_flag} is neither 0 nor 1")
        if not 1 <= w <= MAX_SIDE:
            problems.append(f"ImageWidth {w} is outside 1..{MAX_SIDE}")
        if not 1 <= h <= MAX_SIDE:
            problems.append(f"ImageHeight {h} is outside 1..{MAX_SIDE}")
        if not 1 <= depth <= 16:
            problems.append(f"PixelDepthPerPlane {depth} is outside 1..16")
        if count < 0:
            problems.append(f"FrameCount {count} is negative")
        if problems:
            raise FrameReadError(
                "damaged SER header: " + "; ".join(problems) + ": the file cannot be read safely",
                path=self.path,
            )

    def _structure_check(self, fh: IO[bytes], size: int, count: int) -> str | None:
        """SER size = header + frames x frame bytes (+ 8 bytes per frame of trailer).

        A file shorter than that is truncated, unless its size is exactly what another
        sample size would make of the announced frames and the GPS blocks say so: a 16-bit
        file holding half its announced frames (cut short, or still being written with
        its final count) fits 8-bit samples too, and only the blocks tell which it is.
        """
        data = size - HEADER_SIZE
        body = count * self.frame_bytes
        hint = self._other_layout(size, count)
        if data < body and (hint is None or not self._blocks_favour_other_depth(fh, size, count)):
            return None  # truncated: the complete frames stay good
        if data in (body, body + 8 * count):
            return None
        return (
            f"file_structure: the file holds {data} bytes after the header, but "
            f"{count} frames of {self._width}x{self._height}x{self.planes} samples of "
            f"{self.bytes_per_sample} byte(s) take {body} (+ {8 * count} for the time trailer)"
            + (f"; {hint}" if hint else "")
            + ": the header does not describe the data, every frame's block and time is suspect"
        )

    def _other_layout(self, size: int, count: int) -> str | None:
        """Which header value would make the size fit, if one would."""
        data = size - HEADER_SIZE
        px = self._width * self._height * self.planes
        for bps in (1, 2):
            if bps != self.bytes_per_sample and count and data in (count * px * bps, count * (px * bps + 8)):
                return f"the size fits {8 * bps}-bit samples: PixelDepthPerPlane {self._depth} is wrong"
        return None

    def _blocks_favour_other_depth(self, fh: IO[bytes], size: int, count: int) -> bool:
        """Whether the first frames' GPS blocks step through the sequence at the other sample
        size's frame spacing more often than at the header's (the header is trusted unless
        they do)."""
        px = self._width * self._height * self.planes
        other = px * (3 - self.bytes_per_sample)
        data = size - HEADER_SIZE
        here = _frames_in_sequence(fh, self.frame_bytes, min(16, data // self.frame_bytes),
                                   self._width, self._height)  # fmt: skip
        there = _frames_in_sequence(fh, other, min(16, count, data // other),
                                    self._width, self._height)  # fmt: skip
        return there > here

    def structure_problem(self) -> str | None:
        return self._structure

    def pixel_block_problem(self) -> str | None:
        row_bytes = self._width * self.planes * self.bytes_per_sample
        if row_bytes < BLOCK_SIZE:
            return f"no_gps_block: rows of {self._width} pixels are too short to hold a GPS block"
        return None

    # -- byte order --------------------------------------------------------------------
    @property
    def little_endian(self) -> bool:
        """Byte order of 16-bit samples, decided from the GPS blocks (see module doc)."""
        if self._little_endian is None:
            self._little_endian = self._decide_byte_order()
        return self._little_endian

    def _decide_byte_order(self) -> bool:
        probe = self._data[: min(self._n, 16), :BLOCK_SIZE]
        if m := len(probe):
            found = _both_orders(probe, self._width, self._height)[1]
            le_ok, be_ok = int(found[:m].sum()), int(found[m:].sum())
            if le_ok != be_ok:
                return bool(le_ok > be_ok)
        # No block decides: follow the flag as the SER specification defines it.
        return bool(self.little_endian_flag)

    # -- data ------------------------------------------------------------------------------
    def block_bytes(self, *, last_row: bool = False) -> NDArray[np.uint8]:
        """The block bytes of every complete frame (memmap gathers), ``(N, 44)``.

        The frames are gathered :data:`GATHER_FRAMES` at a time, and the file's pages each
        gather touched are given back to the system after it (``MADV_DONTNEED``: they stay in
        the page cache, outside this process), so the process's memory does not grow with
        the length of the file: one page per frame would be 4 KiB x N. While gathering, the
        mapping is advised random access: the kernel reads the page each block lies in, not
        the ~128 KiB around it (a 100,000-frame file read cold: 0.4 GB instead of ~20 GB).
        """
        return self.block_bytes_range(0, self._n, last_row=last_row)

    ranged_blocks = True

    def block_bytes_range(self, lo: int, hi: int, *, last_row: bool = False) -> NDArray[np.uint8]:
        """The block bytes of frames ``lo..hi-1`` (gathered as :meth:`block_bytes` does)."""
        lo, hi = max(0, int(lo)), min(int(hi), self._n)
        start = 0
        if last_row:
            row_bytes = self._width * self.planes * self.bytes_per_sample
            start = self.frame_bytes - row_bytes
        out = np.empty((max(hi - lo, 0), BLOCK_SIZE), dtype=np.uint8)
        if hi > lo:
            self._require_bytes(HEADER_SIZE + hi * self.frame_bytes)
        self._advise("MADV_RANDOM", lo, hi)  # one page per frame, not the kernel's read-around
        try:
            for a in range(lo, hi, GATHER_FRAMES):
                b = min(a + GATHER_FRAMES, hi)
                out[a - lo : b - lo] = self._data[a:b, start : start + BLOCK_SIZE]
                self._advise("MADV_DONTNEED", a, b)
        finally:
            self._advise("MADV_NORMAL", lo, hi)  # images are read whole: read-around helps them
        if self.bytes_per_sample == 2 and not self.little_endian:
            return _swap_pairs(out)
        return out

    def _advise(self, name: str, lo: int, hi: int) -> None:
        """``madvise`` the pages of frames ``lo..hi-1`` (where the system has that advice).

        ``MADV_DONTNEED`` gives back the pages this process mapped (read-only file pages:
        they are read again from the page cache if touched again).
        """
        # numpy maps from the offset rounded down to the allocation granularity
        base = HEADER_SIZE % mmap.ALLOCATIONGRANULARITY
        _madvise(self._data, name, base + lo * self.frame_bytes, base + hi * self.frame_bytes)

    def _require_bytes(self, size: int) -> None:
        """Refuse to read a mapping past the file's end (that would kill the process with
        SIGBUS): the file was cut short after it was opened."""
        mm = getattr(self._data, "_mmap", None)
        if mm is None:
            return
        try:
            now = mm.size()  # the file's size now (fstat of the mapping's descriptor)
        except (OSError, ValueError):
            return
        if now < size:
            raise FrameReadError(
                f"the file is shorter ({now} bytes) than when it was opened: it was cut short "
                "while being read; read it again",
                path=self.path,
            )

    def image(self, index: int) -> NDArray[Any]:
        """Frame ``index`` as a read-only array ``(H, W)`` or ``(H, W, 3)`` for colour."""
        i = self._check_index(index)
        flat = self._data[i]
        if self.bytes_per_sample == 2:
            flat = flat.view("<u2" if self.little_endian else ">u2")
        shape = (self._height, self._width) + ((3,) if self.planes == 3 else ())
        return flat.reshape(shape)

    @property
    def timestamps_unix_ns(self) -> NDArray[np.int64] | None:
        """Per-frame UTC times from the trailer (PC clock, 100 ns steps), or None."""
        if self._trailer is None:
            return None
        return dotnet_ticks_to_unix_ns(np.array(self._trailer[: self._n]))

    def timestamps_unix_ns_range(self, lo: int, hi: int) -> NDArray[np.int64] | None:
        """:attr:`timestamps_unix_ns` of frames ``lo..hi-1`` only (None without a trailer)."""
        if self._trailer is None:
            return None
        lo, hi = max(0, int(lo)), min(int(hi), self._n)
        self._require_bytes(HEADER_SIZE + self._declared_count * self.frame_bytes + 8 * hi)
        ticks = np.array(self._trailer[lo:hi])
        base = self._trailer.offset % mmap.ALLOCATIONGRANULARITY  # as for the frames
        _madvise(self._trailer, "MADV_DONTNEED", base + 8 * lo, base + 8 * hi)  # read: given back
        return dotnet_ticks_to_unix_ns(ticks)

    def metadata(self, index: int) -> dict[str, Any]:
        i = self._check_index(index)
        out: dict[str, Any] = {
            "format": "SER",
            "color": COLOR_NAMES.get(self.color_id, str(self.color_id)),
            "bit_depth": self._depth,
            "little_endian": self.little_endian,
            "little_endian_flag": self.little_endian_flag,
            "observer": self.observer,
            "instrument": self.instrument,
            "telescope": self.telescope,
        }
        stamps = self.timestamps_unix_ns_range(i, i + 1)
        if stamps is not None:
            out["trailer_unix_ns"] = int(stamps[0])
        return out

    def close(self) -> None:
        self._data = np.zeros((0, self.frame_bytes), dtype=np.uint8)


def _madvise(mapped: Any, name: str, first: int, last: int) -> None:
    """``madvise`` bytes ``first..last-1`` of a numpy memmap's mapping, widened to whole pages
    (where the system has that advice). ``MADV_DONTNEED`` gives back the pages this process
    mapped (read-only file pages: read again from the page cache if touched again), widened
    to whole 64 KiB windows: the kernel maps the pages around a fault too (fault-around), and
    every gather would leave up to 15 of them mapped."""
    mm = getattr(mapped, "_mmap", None)
    advice = getattr(mmap, name, None)
    if mm is None or advice is None:
        return
    span = _FAULT_AROUND if name == "MADV_DONTNEED" else mmap.PAGESIZE
    first -= first % span
    last = min(last + (-last) % span, len(mm))
    if last > first:
        with contextlib.suppress(OSError, ValueError):
            mm.madvise(advice, first, last - first)


def _frames_in_sequence(fh: IO[bytes], frame_bytes: int, m: int, width: int, height: int) -> int:
    """How many of the first ``m`` frames, laid ``frame_bytes`` apart after the header, hold
    a GPS block (of a ``width`` x ``height`` frame) whose sequence number is the one before's
    plus one, in the better of the two byte orders (a frame dropped by the camera breaks
    one step, not all that follow)."""
    if m < 2:
        return 0
    rows = np.zeros((m, BLOCK_SIZE), dtype=np.uint8)
    try:
        for i in range(m):
            fh.seek(HEADER_SIZE + i * frame_bytes)
            got = fh.read(BLOCK_SIZE)
            rows[i, : len(got)] = np.frombuffer(got, dtype=np.uint8)
    except OSError:
        return 0
    both, found = _both_orders(rows, width, height)
    seq = np.asarray(both.sequence, dtype=np.int64)
    best = 0
    for k in (0, m):  # little-endian rows first, then swapped
        ok, s = found[k : k + m], seq[k : k + m]
        steps = ok[1:] & ok[:-1] & ((s[1:] - s[:-1]) % (1 << 32) == 1)
        best = max(best, int(steps.sum()))
    return best


def _both_orders(
    rows: NDArray[np.uint8], width: int, height: int
) -> tuple[GpsBlockArray, NDArray[np.bool_]]:
    """``rows`` (block bytes, one frame each) decoded as little-endian samples, then as
    big-endian, in one pass, and which of the ``2 * len(rows)`` hold a block."""
    both = GpsBlockArray.from_bytes(np.concatenate([rows, _swap_pairs(rows)]))
    return both, block_presence(both, width, height)[0]


def _swap_pairs(raw: NDArray[np.uint8]) -> NDArray[np.uint8]:
    n, m = raw.shape
    return np.ascontiguousarray(np.asarray(raw).reshape(n, m // 2, 2)[:, :, ::-1]).reshape(n, m)


def write_ser(
    path: str | os.PathLike[str],
    frames: NDArray[Any],
    *,
    little_endian_flag: int = 1,
    big_endian_data: bool = False,
    bit_depth: int | None = None,
    timestamps_unix_ns: NDArray[np.int64] | None = None,
    instrument: str = "QHY600PRO",
    observer: str = "",
    telescope: str = "",
    fsync: bool = True,
) -> None:
    """Write a mono SER file (used by the simulator and tests), whole or not at all.

    The file is written under a temporary name in the same folder and renamed onto ``path``
    when complete (:func:`qhytime.atomic.atomic_open`): an error or a full disk leaves
    ``path`` as it was (absent, or the old file) and no temporary file behind.

    Parameters
    ----------
    frames : array, shape (N, H, W), uint8 or uint16
    little_endian_flag : int
        Value written into the header flag (independent of the data, as real writers do).
    big_endian_data : bool
        Store 16-bit samples big-endian.
    timestamps_unix_ns : int64 array, optional
        Written as the .NET-ticks trailer.
    fsync : bool
        Flush the data to disk before the rename (files that can be made again may skip it).

    Raises
    ------
    OutputError
        When the file cannot be written (nothing is left under ``path``'s name).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> write_ser(os.path.join(folder, "v.ser"), np.zeros((2, 4, 32), dtype=np.uint8))
    >>> os.listdir(folder), os.path.getsize(os.path.join(folder, "v.ser"))
    (['v.ser'], 434)
    """
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.dtype not in (np.uint8, np.uint16):
        raise ValueError("frames must be an (N, H, W) uint8 or uint16 array")
    n, h, w = frames.shape
    depth = bit_depth or (8 if frames.dtype == np.uint8 else 16)
    t0 = (
        0
        if timestamps_unix_ns is None or n == 0
        else int(unix_ns_to_dotnet_ticks(timestamps_unix_ns[0]))
    )
    head = _HEADER.pack(
        SER_MAGIC, 0, 0, int(little_endian_flag), w, h, depth, n,
        observer.encode()[:40], instrument.encode()[:40], telescope.encode()[:40], t0, t0,
    )  # fmt: skip
    trailer = (
        None
        if timestamps_unix_ns is None
        else np.asarray(unix_ns_to_dotnet_ticks(timestamps_unix_ns), dtype="<i8")
    )
    with atomic_open(path, "wb", fsync=fsync) as fh:
        fh.write(head)
        _write_frames(fh, frames, big_endian_data)
        if trailer is not None:
            fh.write(trailer.tobytes())


# .NET ticks (100 ns since 0001-01-01) of 1990-01-01 and 2200-01-01: a SER trailer's times
_TRAILER_TICKS = (627_667_488_000_000_000, 693_937_152_000_000_000)


def _trailer_is_times(fh: IO[bytes], at: int, count: int) -> bool:
    """True when the ``count`` int64 at byte ``at`` read as a SER trailer: .NET UTC ticks
    within 1990..2200, never decreasing (not the pixels of a frame being written)."""
    fh.seek(at)
    ticks = np.fromfile(fh, dtype="<i8", count=count)
    lo, hi = _TRAILER_TICKS
    return bool(
        len(ticks) == count
        and ((ticks >= lo) & (ticks <= hi)).all()
        and (np.diff(ticks) >= 0).all()
    )


def _write_frames(fh: IO[bytes], frames: NDArray[Any], big_endian_data: bool) -> None:
    """The frames back to back, one frame at a time (no copy of the whole stack)."""
    order = ">u2" if big_endian_data else "<u2"
    for frame in frames:
        data = frame.astype(order, copy=False) if frame.dtype == np.uint16 else frame
        fh.write(np.ascontiguousarray(data).data)

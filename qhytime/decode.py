"""Batch decoding: every frame of a set of files → its block, exact stamp times and status.

This is what ``qhytime decode`` runs. A file is decoded in one vectorised pass
(:func:`decode_reader` → :class:`DecodedFile`); :func:`decode_paths` walks a file set
(folders stand for their FITS/SER files in name order) and never stops on a bad file: it
yields a frame record with ``status == "error"`` instead.

Sequences. Each frame's block is checked on its own (:func:`qhytime.validity.stamp_reasons`,
:func:`~qhytime.validity.frame_check_reasons`) and against the frames of its sequence
(:func:`~qhytime.validity.sequence_reasons`, :func:`~qhytime.validity.consistency_reasons`).
A sequence is

- the frames of one multi-frame file (a SER video, a FITS cube), or
- single-frame FITS files given one after another, in the order given.

A multi-frame file always starts a new sequence, and the file after it too: decoding a SER
after another SER does not compare the second's frame 0 with the first's last frame.
Single-frame FITS files are checked as one sequence as they come (each is reported once
the two after it are read).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from qhytime.errors import FrameReadError, TemporaryCopyError, TruncatedFileError
from qhytime.gpsblock import BLOCK_SIZE, FIELD_NAMES, STAMP_NAMES, GpsBlock, GpsBlockArray, Stamp
from qhytime.readers import FitsReader, FrameReader, expand_paths, open_frames
from qhytime.readers.base import BlockScan
from qhytime.timebase import stamp_unix_ns, stamp_unix_ns_pairs, unix_ns_to_iso, unix_ns_to_time
from qhytime.validity import (
    CountedValues,
    FrameReasons,
    RunAnchor,
    Sparse,
    _consistency_reasons,
    _frame_check_reasons,
    _lone_span_reasons,
    _sequence_reasons,
    _stamp_reasons,
    block_presence,
    run_ids,
    signed_steps,
    sort_reasons,
)

if TYPE_CHECKING:
    from astropy.time import Time

    from qhytime.cluster import Executor

STATUS_OK = "ok"
STATUS_INVALID = "invalid"
STATUS_ERROR = "error"


@dataclass(frozen=True)
class StampTime:
    """One stamp with its exact time.

    Attributes
    ----------
    stamp : Stamp
        The raw flag, seconds and ticks.
    unix_ns : int
        Exact time, ns since 1970 (UTC, 86400-second days).
    """

    stamp: Stamp
    unix_ns: int

    @property
    def utc(self) -> str:
        """ISO UTC with 9 decimals."""
        return str(unix_ns_to_iso(self.unix_ns))

    @property
    def time(self) -> Time:
        """astropy ``Time`` (scale utc)."""
        return unix_ns_to_time(self.unix_ns)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``flag``, ``state``, ``seconds``, ``ticks``, ``utc``."""
        s = self.stamp
        return {
            "flag": s.flag,
            "state": s.state,
            "seconds": s.seconds,
            "ticks": s.ticks,
            "utc": self.utc,
        }


@dataclass
class DecodedFrame:
    """The decoding of one frame (or, with status ``"error"``, of a file that failed).

    Attributes
    ----------
    file : str
        The path as given.
    frame : int or None
        0-based index in the file (None for a file that could not be opened).
    status : str
        ``"ok"``, ``"invalid"`` (see ``reasons``) or ``"error"``.
    reasons : list of str
        Why the frame's time cannot be trusted; empty when ok.
    block : GpsBlock or None
    stamps : dict of str to StampTime
        ``start``, ``end``, ``now`` when a block was decoded.
    nominal_clock : bool
        Whether the times use 100 ns ticks instead of the measured pps count.
    nominal_difference_ns : dict of str to int
        Time with the nominal clock minus time with the measured pps count, per stamp.
    origin : str or None
        Where the block came from (``pixels``, ``pixels:last row``, ``keywords:N.I.N.A.``).
    """

    file: str
    frame: int | None
    status: str
    reasons: list[str]
    block: GpsBlock | None = None
    stamps: dict[str, StampTime] = field(default_factory=dict)
    nominal_clock: bool = False
    nominal_difference_ns: dict[str, int] = field(default_factory=dict)
    origin: str | None = None
    flipped: bool = False

    @property
    def ok(self) -> bool:
        """True when the frame's times can be trusted."""
        return self.status == STATUS_OK

    def time(self, stamp: str = "end") -> Time:
        """astropy ``Time`` of one stamp.

        Raises
        ------
        GpsBlockError
            When the frame has no block.
        """
        from qhytime.errors import GpsBlockError

        if stamp not in self.stamps:
            raise GpsBlockError(
                "; ".join(self.reasons) or "no GPS block", path=self.file, frame=self.frame
            )
        return self.stamps[stamp].time

    def to_dict(self) -> dict[str, Any]:
        """The JSON-lines record of ``qhytime decode --json``."""
        out: dict[str, Any] = {
            "file": self.file,
            "frame": self.frame,
            "status": self.status,
            "reasons": list(self.reasons),
        }
        if self.block is not None:
            b = self.block
            out.update(
                sequence=b.sequence,
                width=b.width,
                height=b.height,
                latitude_deg=round(b.latitude_deg, 9),
                longitude_deg=round(b.longitude_deg, 9),
                pps_count=b.pps_count,
            )
            for name in STAMP_NAMES:
                out[name] = self.stamps[name].to_dict()
        return out


@dataclass
class DecodedFile:
    """Every complete frame of one file, decoded in columns.

    Attributes
    ----------
    path : str
    scan : BlockScan
        Blocks and where they were found.
    unix_ns : dict of str to int64 array
        Exact times of each stamp for every frame (meaningless where no block).
    unix_ns_nominal : dict of str to int64 array
        The same with 100 ns ticks.
    reasons : FrameReasons
        Per frame (a list of lists held sparsely, see
        :class:`~qhytime.validity.FrameReasons`); empty lists are good frames. A plain list
        of lists given is converted.
    truncation : TruncatedFileError or None
        Set when the file ends before its last frame.
    """

    path: str
    scan: BlockScan
    unix_ns: dict[str, NDArray[np.int64]]
    unix_ns_nominal: dict[str, NDArray[np.int64]]
    reasons: FrameReasons
    truncation: TruncatedFileError | None
    nominal_clock: bool = False
    first_frame: int = 0
    """The file's frame number of this object's frame 0 (a chunk of a long file, see
    :func:`decode_chunks`); index ``i`` here is frame ``first_frame + i`` of the file."""

    def __post_init__(self) -> None:
        if not isinstance(self.reasons, FrameReasons):
            self.reasons = FrameReasons.from_lists(self.reasons)

    def __len__(self) -> int:
        return len(self.scan)

    @property
    def ok(self) -> NDArray[np.bool_]:
        """True for the frames whose times can be trusted."""
        return self.reasons.ok()

    def frame(self, i: int) -> DecodedFrame:
        """The record of this object's frame ``i`` (frame ``first_frame + i`` of the file)."""
        reasons = self.reasons[i]
        present = bool(self.scan.present[i])
        rec = DecodedFrame(
            file=self.path,
            frame=self.first_frame + int(i),
            status=STATUS_OK if not reasons else STATUS_INVALID,
            reasons=list(reasons),
            nominal_clock=self.nominal_clock,
            origin=self.scan.origin[i] if present else None,
            flipped=bool(self.scan.flipped[i]),
        )
        if present:
            blk = self.scan.blocks[i]
            rec.block = blk
            chosen = self.unix_ns_nominal if self.nominal_clock else self.unix_ns
            for name in STAMP_NAMES:
                rec.stamps[name] = StampTime(blk.stamp(name), int(chosen[name][i]))
                rec.nominal_difference_ns[name] = int(
                    self.unix_ns_nominal[name][i] - self.unix_ns[name][i]
                )
        return rec

    def frames(self) -> Iterator[DecodedFrame]:
        """Records of every complete frame, in order."""
        for i in range(len(self)):
            yield self.frame(i)

    def last_sequence_key(self) -> tuple[int, int, int] | None:
        """``(sequence, width, height)`` of the last frame with a block (for file sets)."""
        idx = np.flatnonzero(self.scan.present)
        if not idx.size:
            return None
        i = int(idx[-1])
        b = self.scan.blocks
        return int(b.sequence[i]), int(b.width[i]), int(b.height[i])


def decode_reader(
    reader: FrameReader,
    *,
    nominal_clock: bool = False,
    previous: tuple[int, int, int] | None = None,
    standalone: bool = True,
    exposure_ns: int | None = None,
) -> DecodedFile:
    """Decode every complete frame of an open reader in one vectorised pass.

    Every frame's block is checked on its own, and the frames of the file against each
    other as one sequence (see :mod:`qhytime.validity`).

    Parameters
    ----------
    reader : FrameReader
    nominal_clock : bool
        Report times with 100 ns ticks instead of the measured pps count.
    previous : (sequence, width, height), optional
        The last frame of a previous file of the same sequence, for the sequence-number
        check of the first frame.
    standalone : bool
        True (default) when the file is a sequence of its own. False when the caller checks
        it as part of a longer sequence (as :func:`decode_paths` does for single-frame FITS
        files): the checks that need the frame's neighbours are then left to the caller.
    exposure_ns : int, optional
        The exposure the start and end stamps are checked against; by default the file's
        (``reader.exposure_ns``). Give it when the file names none and you know it.

    Examples
    --------
    >>> import numpy as np
    >>> from qhytime.gpsblock import GpsBlock, Stamp, embed_block
    >>> from qhytime.readers import ArrayReader
    >>> img = np.zeros((8, 64), dtype=np.uint16)
    >>> embed_block(img, GpsBlock(1, 0, 64, 8, 0, 0, Stamp(0x33, 940815891, 7300584),
    ...     Stamp(0x33, 940815891, 9800485), Stamp(0x33, 940815891, 9809860), 9999612))
    >>> rec = decode_reader(ArrayReader(img)).frame(0)
    >>> rec.status, rec.stamps["start"].utc
    ('ok', '2025-08-02T01:44:51.730086727')
    """
    return _decode_scan(reader, reader.scan_blocks(), nominal_clock=nominal_clock,
                        previous=previous, standalone=standalone, exposure_ns=exposure_ns)  # fmt: skip


def _decode_scan(
    reader: FrameReader,
    scan: BlockScan,
    *,
    nominal_clock: bool = False,
    previous: tuple[int, int, int] | None = None,
    standalone: bool = True,
    exposure_ns: int | None = None,
    anchors: list[RunAnchor] | None = None,
) -> DecodedFile:
    """:func:`decode_reader` of the frames of ``scan`` (the whole file, or a window of it whose
    runs are anchored with ``anchors``: see :func:`decode_chunks`)."""
    blocks = scan.blocks
    n = len(blocks)
    unix_ns, unix_nom = _stamp_times(blocks)
    found = Sparse()
    structure = reader.structure_problem()
    present_idx = np.flatnonzero(scan.present)
    for i in np.flatnonzero(~scan.present):
        found.add(i, scan.why_absent[i] or "no_gps_block")
    if structure is not None:
        for i in range(n):
            found.add(i, structure)
    if present_idx.size == n:  # every frame has its block (the usual case): no copies
        sub, sub_ns = blocks, unix_ns
    elif present_idx.size:
        sub = blocks.take(present_idx)
        sub_ns = {k: v[present_idx] for k, v in unix_ns.items()}
    if present_idx.size:
        exposure = exposure_ns if exposure_ns is not None else reader.exposure_ns
        if standalone:
            runs = run_ids(sub.sequence, sub.width, sub.height)
            lone = np.bincount(runs)[runs] == 1
        else:
            lone = np.zeros(present_idx.size, dtype=bool)
        checks = [
            _stamp_reasons(sub, sub_ns),
            _frame_check_reasons(sub, sub_ns, exposure, lone=lone),
            _sequence_reasons(sub.sequence, sub.width, sub.height, previous),
        ]
        if standalone:
            checks.append(_consistency_reasons(sub, sub_ns, exposure, regular=True,
                                               anchors=anchors))  # fmt: skip
        for part in checks:
            for k, texts in part.items():
                found.setdefault(int(present_idx[k]), []).extend(texts)
    for i, texts in found.items():
        if len(texts) > 1:
            found[i] = sort_reasons(texts)
    return DecodedFile(
        path=reader.path,
        scan=scan,
        unix_ns=unix_ns,
        unix_ns_nominal=unix_nom,
        reasons=FrameReasons(n, found),
        truncation=reader.truncation,
        nominal_clock=nominal_clock,
    )


def _stamp_times(
    blocks: GpsBlockArray,
) -> tuple[dict[str, NDArray[np.int64]], dict[str, NDArray[np.int64]]]:
    """Exact times of every stamp of ``blocks``: measured clock, nominal clock."""
    cols = [blocks.stamp_columns(name)[1:] for name in STAMP_NAMES]
    pairs = stamp_unix_ns_pairs(cols, blocks.pps_count)
    return (
        {name: p[0] for name, p in zip(STAMP_NAMES, pairs, strict=True)},
        {name: p[1] for name, p in zip(STAMP_NAMES, pairs, strict=True)},
    )


DECODE_CHUNK_FRAMES = 2048
"""Frames per chunk when :func:`decode_chunks` splits a long file."""
WHOLE_FILE_FRAMES = 16384
"""The longest file :func:`decode_paths` and the frame index decode in one pass (a few MiB of
columns); a longer one is decoded chunk by chunk (:func:`decode_chunks`), so memory stays
bounded whatever the file's length. Chunks cost a second, cheap pass over the blocks (about
15 % of a warm decode, nothing next to a cold read), which short files are spared."""
_CONTEXT = 16
"""Frames with a block read on each side of a chunk: every check of a frame looks at most a
few frames with a block away (rolling medians of 5, steps to the next frame)."""


def decode_chunks(
    reader: FrameReader,
    *,
    nominal_clock: bool = False,
    previous: tuple[int, int, int] | None = None,
    exposure_ns: int | None = None,
    chunk_frames: int = DECODE_CHUNK_FRAMES,
    frames: int | None = None,
    plan: ChunkPlan | None = None,
    from_frame: int = 0,
) -> Iterator[DecodedFile]:
    """:func:`decode_reader` of a file, in chunks of ``chunk_frames`` frames: memory bounded by
    the chunk whatever the length of the file.

    Each chunk is a :class:`DecodedFile` whose ``first_frame`` says where it starts; laid end
    to end they are exactly :func:`decode_reader`'s result (the same blocks, times and
    reasons). A file of at most ``chunk_frames`` frames, or one whose reader cannot read a
    range of frames on its own (FITS), is one chunk.

    A longer file takes two passes. The first reads every block once (the 44 bytes per frame
    go to a temporary file, not to memory) and fits, for each run of the sequence, what the
    checks take from the whole run (its cadence and the origin of its fit:
    :class:`~qhytime.validity.RunAnchor`); it holds one count per distinct frame-to-frame step
    of a run (the cadence's jitter), not one value per frame. The second pass decodes each
    chunk from the temporary file with :data:`_CONTEXT` frames with a block on each side, so
    every check sees the neighbours it sees in the whole file. The file's pixels are read
    once.

    Parameters
    ----------
    reader : FrameReader
    nominal_clock, previous, exposure_ns
        As for :func:`decode_reader` (the file is a sequence of its own).
    chunk_frames : int
        Frames per chunk (at least 1).
    frames : int, optional
        Decode only the file's first ``frames`` frames, as if it held no more (a file still
        being written, decoded as it was when it was looked at). Readers that cannot read a
        range of frames ignore it.
    plan : ChunkPlan, optional
        The first pass, made before (:func:`plan_chunks`, e.g. outside a database
        transaction); ``chunk_frames`` and ``frames`` are then the plan's. Not closed here.
    from_frame : int
        Begin with the chunk holding this frame: the chunks before it are not decoded
        (the chunks given are still exactly those of the whole file).

    Examples
    --------
    >>> from qhytime.readers import open_frames
    >>> with open_frames("tests/data/video16.ser") as reader:
    ...     chunks = list(decode_chunks(reader, chunk_frames=10))
    ...     whole = decode_reader(reader)
    >>> [(c.first_frame, len(c)) for c in chunks]
    [(0, 10), (10, 10), (20, 5)]
    >>> [r for c in chunks for r in c.reasons] == list(whole.reasons)
    True
    """
    _check_chunk_frames(chunk_frames)
    n = len(reader) if frames is None else max(0, min(int(frames), len(reader)))
    if plan is None and (not reader.ranged_blocks or (n <= chunk_frames and n == len(reader))):
        yield decode_reader(reader, nominal_clock=nominal_clock, previous=previous,
                            exposure_ns=exposure_ns)  # fmt: skip
        return
    own = plan is None
    if plan is None:
        plan = plan_chunks(reader, chunk_frames=chunk_frames, frames=n)
    try:
        for c in plan.chunks:
            if c.hi <= from_frame:
                continue
            scan = reader.scan_blocks(c.a, c.b, main=plan.spilled(c.a, c.b))
            window = _decode_scan(reader, scan, nominal_clock=nominal_clock,
                                  previous=previous if c.file_first else None,
                                  exposure_ns=exposure_ns, anchors=plan.anchors(c))  # fmt: skip
            yield _slice_decoded(window, c.lo - c.a, c.hi - c.a, c.lo)
    finally:
        if own:
            plan.close()


def _check_chunk_frames(chunk_frames: Any) -> None:
    if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or chunk_frames < 1:
        raise ValueError(f"chunk_frames = {chunk_frames!r}: give a whole number of frames >= 1")


def plan_chunks(
    reader: FrameReader, *, chunk_frames: int = DECODE_CHUNK_FRAMES, frames: int | None = None
) -> ChunkPlan:
    """The first pass of :func:`decode_chunks`, on its own: every block of the file (of its
    first ``frames`` frames) read once and copied to a temporary file, and the runs' anchors
    and the chunks' windows worked out. Give it to :func:`decode_chunks` (``plan=``) to
    decode the chunks later from the copy, reading the file only where a frame's block is
    not where its row order says; close it (or use it as a context manager) when done.

    Raises
    ------
    FrameReadError
        The file cannot be read, or the temporary copy cannot be written (it names
        ``TMPDIR`` and the room needed).

    Examples
    --------
    >>> from qhytime.readers import open_frames
    >>> with open_frames("tests/data/video16.ser") as reader, plan_chunks(
    ...         reader, chunk_frames=10) as plan:
    ...     [(c.first_frame, len(c)) for c in decode_chunks(reader, plan=plan)]
    [(0, 10), (10, 10), (20, 5)]
    """
    _check_chunk_frames(chunk_frames)
    n = len(reader) if frames is None else max(0, min(int(frames), len(reader)))
    room = f"set TMPDIR to a writable folder with {n * BLOCK_SIZE:,} bytes free"
    try:
        spill = tempfile.TemporaryFile(prefix="qhytime-blocks-")
    except OSError as exc:
        raise TemporaryCopyError(f"cannot create a temporary file for the block bytes "
                                 f"({exc.strerror or exc}): {room}", path=reader.path) from exc  # fmt: skip
    try:
        return ChunkPlan(reader, chunk_frames, spill, n, room)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # its unwritten bytes (a full disk) are not needed
            spill.close()
        if isinstance(exc, OSError) and not isinstance(exc, FrameReadError):
            raise TemporaryCopyError(f"cannot write the block bytes to a temporary file "
                                     f"({exc.strerror or exc}): {room}", path=reader.path) from exc  # fmt: skip
        raise


def _slice_decoded(d: DecodedFile, lo: int, hi: int, first_frame: int) -> DecodedFile:
    """Frames ``lo..hi-1`` of ``d``, as frames ``first_frame..`` of the file."""
    sc = d.scan
    sl = slice(lo, hi)
    scan = BlockScan(
        blocks=GpsBlockArray._of({k: v[sl] for k, v in sc.blocks._fields.items()}),
        present=sc.present[sl], why_absent=sc.why_absent[sl], origin=sc.origin[sl],
        flipped=sc.flipped[sl],
    )  # fmt: skip
    return DecodedFile(
        path=d.path, scan=scan,
        unix_ns={k: v[sl] for k, v in d.unix_ns.items()},
        unix_ns_nominal={k: v[sl] for k, v in d.unix_ns_nominal.items()},
        reasons=d.reasons[sl], truncation=d.truncation, nominal_clock=d.nominal_clock,
        first_frame=first_frame,
    )  # fmt: skip


@dataclass
class _Chunk:
    """Frames ``lo..hi-1`` of a file, read as the window ``a..b-1`` (with context)."""

    lo: int
    hi: int
    a: int = 0
    b: int = 0
    run: int = 0  # run of the window's first frame with a block
    x0: int = 0  # its signed sequence steps from that run's first frame
    file_first: bool = True  # it is the file's first frame with a block
    need_after: int = _CONTEXT


@dataclass
class _Run:
    """A run of the sequence as the first pass of :func:`decode_chunks` sees it: the origin
    of its fits and its end-stamp steps per sequence step, counted."""

    end0: int
    lon0_raw: int
    ratios: CountedValues = field(default_factory=lambda: CountedValues(np.float64))


class ChunkPlan:
    """The first pass of :func:`decode_chunks` (made by :func:`plan_chunks`): every block read
    once, chunk by chunk, and copied to a temporary file; the runs' anchors and each chunk's
    window. Holds the temporary file until :meth:`close`."""

    def __init__(
        self, reader: FrameReader, chunk_frames: int, spill: IO[bytes], n: int, room: str = ""
    ) -> None:
        self.frames = n
        self._room = room
        self._spill = spill
        self._path = reader.path
        self._raw = reader.pixel_block_problem() is None
        top_down = reader.stored_top_down
        self.chunks = [_Chunk(lo, min(lo + chunk_frames, n)) for lo in range(0, n, chunk_frames)]
        self.runs: list[_Run] = []
        tail: deque[tuple[int, int, int]] = deque(maxlen=_CONTEXT)  # (frame, run, x)
        waiting: deque[_Chunk] = deque()  # chunks still short of context after them
        seen = 0  # frames with a block so far
        last: tuple[int, int, int, int, int, int] | None = None  # seq, w, h, run, x, end
        for c in self.chunks:
            c.a, c.b = c.lo, n
            if tail:
                c.a, c.run, c.x0 = tail[0]
                c.file_first = seen <= _CONTEXT
            main = None
            if self._raw:
                main = np.ascontiguousarray(
                    reader.block_bytes_range(c.lo, c.hi, last_row=top_down), dtype=np.uint8
                )
                spill.write(main.tobytes())
            scan = reader.scan_blocks(c.lo, c.hi, main=main)
            idx = np.flatnonzero(scan.present)
            frames = idx + c.lo
            for wc in waiting:  # these frames are context after the chunks waiting
                take = min(wc.need_after, frames.size)
                if take:
                    wc.need_after -= take
                    if wc.need_after == 0:
                        wc.b = int(frames[take - 1]) + 1
            while waiting and waiting[0].need_after == 0:
                waiting.popleft()
            waiting.append(c)
            if not idx.size:
                continue
            sub = scan.blocks.take(idx)
            seq, w, h = sub.sequence, sub.width, sub.height
            end = stamp_unix_ns(*sub.stamp_columns("end")[1:], sub.pps_count)
            m = idx.size
            if last is None:  # the file's first frame with a block starts run 0
                brk = np.concatenate([[True], (w[1:] != w[:-1]) | (h[1:] != h[:-1])])
                steps = np.concatenate([[0], signed_steps(seq)])
                run = np.cumsum(brk) - 1
                carry_x = 0
            else:
                brk = (np.concatenate([[last[1]], w[:-1]]) != w) | (
                    np.concatenate([[last[2]], h[:-1]]) != h
                )
                steps = signed_steps(np.concatenate([[last[0]], seq]))
                run = last[3] + np.cumsum(brk)
                carry_x = 0 if brk[0] else last[4]
            for k in np.flatnonzero(brk):
                self.runs.append(_Run(int(end[k]), int(sub.longitude_raw[k])))
            # x: signed sequence steps from the run's first frame
            inc = np.where(brk, 0, steps)
            inc[0] += carry_x
            cum = np.cumsum(inc)
            base = np.maximum.accumulate(np.where(brk, np.arange(m), -1))
            x = cum - np.where(base >= 0, cum[np.maximum(base, 0)], 0)
            # cadence ratios of the forward steps within a run, t from the run's end0
            end0 = np.array([r.end0 for r in self.runs], dtype=np.int64)[run]
            t = (end - end0).astype(np.float64)
            t_prev = np.empty(m, dtype=np.float64)
            t_prev[1:] = t[:-1]
            t_prev[0] = float(last[5] - end0[0]) if last is not None and not brk[0] else np.nan
            fwd = ~brk & (steps >= 1)
            if fwd.any():
                ratios = (t - t_prev)[fwd] / steps[fwd]
                runs_fwd = run[fwd]
                for r in np.unique(runs_fwd).tolist():
                    self.runs[r].ratios.add(ratios[runs_fwd == r])
            for item in zip(frames[-_CONTEXT:].tolist(), run[-_CONTEXT:].tolist(),
                            x[-_CONTEXT:].tolist(), strict=True):  # fmt: skip
                tail.append(item)
            seen += m
            last = (int(seq[-1]), int(w[-1]), int(h[-1]), int(run[-1]), int(x[-1]), int(end[-1]))
        self._periods = [r.ratios.median() for r in self.runs]
        spill.flush()  # a full disk is found here, in the first pass, not later

    def spilled(self, a: int, b: int) -> NDArray[np.uint8] | None:
        """The block bytes of frames ``a..b-1`` the first pass read (None: the file's pixels
        hold none)."""
        if not self._raw:
            return None
        try:
            self._spill.seek(a * BLOCK_SIZE)
            data = self._spill.read((b - a) * BLOCK_SIZE)
        except OSError as exc:  # e.g. the last buffered bytes found the disk full
            raise TemporaryCopyError(f"cannot read back the temporary copy of the block bytes "
                                     f"({exc.strerror or exc}): {self._room}", path=self._path) from exc  # fmt: skip
        if len(data) != (b - a) * BLOCK_SIZE:
            raise TemporaryCopyError(
                f"the temporary copy of the block bytes came back short: {self._room}",
                path=self._path,
            )
        return np.frombuffer(data, dtype=np.uint8).reshape(b - a, BLOCK_SIZE)

    def close(self) -> None:
        """Remove the temporary copy of the block bytes."""
        with contextlib.suppress(OSError):  # unwritten bytes (a full disk) are not needed
            self._spill.close()

    def __enter__(self) -> ChunkPlan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def anchors(self, c: _Chunk) -> list[RunAnchor]:
        """Anchors of the runs of chunk ``c``'s window, from its first frame with a block on."""
        return [
            RunAnchor(run.end0, c.x0 if r == c.run else 0, run.lon0_raw, self._periods[r])
            for r, run in enumerate(self.runs[c.run : c.run + c.b - c.a], c.run)
        ]


def decode_file(path: str | os.PathLike[str], *, nominal_clock: bool = False) -> DecodedFile:
    """Open and decode one FITS or SER file.

    Raises
    ------
    FrameReadError
        When the file cannot be read at all.
    """
    with open_frames(path) as reader:
        return decode_reader(reader, nominal_clock=nominal_clock)


def decode_series(
    paths: Iterable[str | os.PathLike[str]],
    *,
    nominal_clock: bool = False,
    exposure_ns: int | None = None,
    executor: Executor | None = None,
    chunk_frames: int | None = None,
) -> Iterator[SeriesFile]:
    """Decode a set of files, one :class:`SeriesFile` per file, with the reasons that only the
    file's sequence can give.

    What :func:`decode_paths` reports frame by frame, file by file: the jobs that need a
    file's :class:`DecodedFile` (light curves, the index) use this so that their frames are
    checked exactly as ``qhytime decode`` checks them. A folder stands for its FITS/SER files
    in name order; single-frame FITS files given one after another form one sequence (each
    file is yielded once the two files after it are decoded); a multi-frame file is a
    sequence of its own. A file that cannot be read is yielded with ``decoded`` None and an
    ``error`` record.

    Parameters
    ----------
    exposure_ns : int, optional
        The exposure to check stamps against where a file names none.
    executor : qhytime.cluster.Executor, optional
        Where each file is decoded (:func:`decode_one`, a pure function of the file): in
        this process by default, or on a dask cluster. The checks across files run here, in
        the order given, on results that come back in that order: the output is the same.
    chunk_frames : int, optional
        Decode a multi-frame file longer than :data:`WHOLE_FILE_FRAMES` in chunks of this
        many frames (:func:`decode_chunks`), one item per chunk (its ``decoded.first_frame``
        says where it starts), so memory stays bounded; by default each file is one item.
        Not with an ``executor``.

    Examples
    --------
    >>> [(f.path, len(f.decoded)) for f in decode_series(["tests/data/video16.ser"])]
    [('tests/data/video16.ser', 25)]
    """
    from functools import partial

    from qhytime.cluster import task_failure

    def lost(name: str, exc: BaseException) -> tuple[SeriesFile, bool]:
        return _error(name, f"not decoded: {task_failure(exc)}"), False

    if chunk_frames is not None:
        _check_chunk_frames(chunk_frames)
    work = partial(decode_one, nominal_clock=nominal_clock, exposure_ns=exposure_ns)
    names = expand_paths(paths)
    if executor is None:  # here: one-frame FITS files in batches, the same items (_decode_stream)
        done = _decode_stream(names, nominal_clock=nominal_clock, exposure_ns=exposure_ns,
                              chunk_frames=chunk_frames)  # fmt: skip
    else:
        done = executor.map(work, names, on_error=lost)
    series = _FitsSeries()
    for item, single in done:
        if item.decoded is None or single:
            yield from series.add(item)
        else:
            yield from series.flush()
            yield item
    yield from series.flush()


def decode_one(
    name: str, *, nominal_clock: bool = False, exposure_ns: int | None = None
) -> tuple[SeriesFile, bool]:
    """The per-file part of :func:`decode_series`: one file decoded on its own (a file of a
    longer sequence without the checks that need its neighbours).

    A pure function of the file; it never raises for a bad file (the item is then an
    ``error`` one).

    Returns
    -------
    item : SeriesFile
    single : bool
        True for a one-frame FITS file (a frame of a sequence of files).

    Examples
    --------
    >>> item, single = decode_one("tests/data/fits16_000.fits")
    >>> len(item.decoded), single
    (1, True)
    """
    if os.path.isdir(name):
        return _error(name, "the folder holds no FITS or SER files"), False
    try:
        reader = open_frames(name)
    except Exception as exc:  # one bad file never ends the batch
        return _error(name, _why(exc, name)), False
    with reader:
        return _decode_open(name, reader, nominal_clock, exposure_ns)


def _decode_open(
    name: str, reader: FrameReader, nominal_clock: bool, exposure_ns: int | None
) -> tuple[SeriesFile, bool]:
    """:func:`decode_one` of a file already open (the caller closes it)."""
    single = reader.kind == "fits" and reader.declared_frames == 1
    try:
        exposure = reader.exposure_ns if reader.exposure_ns is not None else exposure_ns
        decoded = decode_reader(reader, nominal_clock=nominal_clock, standalone=not single,
                                exposure_ns=exposure)  # fmt: skip
    except Exception as exc:  # one bad file never ends the batch
        return _error(name, _why(exc, name)), False
    if decoded.truncation is None and reader.declared_frames == 0:
        tail = [_error(name, "the file holds no frames").records[0]]
    elif decoded.truncation is not None:
        tail = [_truncation_record(name, decoded.truncation)]
    else:
        tail = []
    return SeriesFile(path=name, decoded=decoded, exposure=exposure, records=tail), single


def _decode_open_chunks(
    name: str, reader: FrameReader, nominal_clock: bool, exposure_ns: int | None,
    chunk_frames: int,
) -> Iterator[SeriesFile]:  # fmt: skip
    """:func:`_decode_open` of a long multi-frame file as one item per chunk
    (:func:`decode_chunks`); the file's tail records (truncation) follow the last chunk, and
    a failure part-way is an ``error`` record after the frames reported."""
    exposure = reader.exposure_ns if reader.exposure_ns is not None else exposure_ns
    chunks = decode_chunks(reader, nominal_clock=nominal_clock, exposure_ns=exposure,
                           chunk_frames=chunk_frames)  # fmt: skip
    try:
        for chunk in chunks:
            yield SeriesFile(path=name, decoded=chunk, exposure=exposure, records=[])
    except Exception as exc:  # one bad file never ends the batch
        yield _error(name, _why(exc, name))
        return
    if reader.truncation is not None:
        yield SeriesFile(path=name, decoded=None, exposure=exposure,
                         records=[_truncation_record(name, reader.truncation)])  # fmt: skip


def _truncation_record(name: str, truncation: TruncatedFileError) -> DecodedFrame:
    """The ``error`` record that follows a truncated file's complete frames."""
    return DecodedFrame(file=name, frame=truncation.complete_frames, status=STATUS_ERROR,
                        reasons=[truncation.reason])  # fmt: skip


def _decode_stream(
    names: Iterable[str], *, nominal_clock: bool = False, exposure_ns: int | None = None,
    chunk_frames: int | None = None,
) -> Iterator[tuple[SeriesFile, bool]]:  # fmt: skip
    """:func:`decode_one` of each file in turn, the same items in the same order, with one-frame
    FITS files decoded in batches (:class:`_OneFrameBatch`): numpy's fixed cost is paid once
    per batch instead of once per file. With ``chunk_frames``, a longer multi-frame file is
    decoded chunk by chunk (:func:`decode_chunks`), one item per chunk."""
    batch = _OneFrameBatch(nominal_clock, exposure_ns)
    for name in names:
        if os.path.isdir(name):
            item = decode_one(name, nominal_clock=nominal_clock, exposure_ns=exposure_ns)
        else:
            try:
                reader = open_frames(name)
            except Exception as exc:  # one bad file never ends the batch
                item = (_error(name, _why(exc, name)), False)
            else:
                with reader:
                    if batch.take(name, reader):
                        if batch.full:
                            yield from batch.flush()
                        continue
                    if (
                        chunk_frames is not None
                        and reader.ranged_blocks
                        and len(reader) > max(chunk_frames, WHOLE_FILE_FRAMES)
                        and reader.declared_frames > 1
                    ):
                        yield from batch.flush()
                        for part in _decode_open_chunks(name, reader, nominal_clock,
                                                        exposure_ns, chunk_frames):  # fmt: skip
                            yield part, False
                        continue
                    item = _decode_open(name, reader, nominal_clock, exposure_ns)
        yield from batch.flush()
        yield item
    yield from batch.flush()


@dataclass
class _OneFrame:
    """A one-frame FITS file waiting in a :class:`_OneFrameBatch`: what its decoding needs."""

    name: str
    raw: NDArray[np.uint8]
    width: int
    height: int
    top_down: bool
    exposure: int | None


class _OneFrameBatch:
    """One-frame FITS files decoded together, with the result of :func:`decode_one` for each.

    A file is taken when its block is in its pixels where its row order puts it (a plain,
    uncompressed FITS file of raw integers whose block's width and height fields match the
    image): its 44 bytes are read and the file closed. Any other file is decoded on its own.
    :meth:`flush` decodes the blocks taken in one vectorised pass: block fields, stamp times
    and the per-frame checks of :func:`decode_reader` (the checks across files are
    :class:`_FitsSeries`'s, as for files decoded one by one).
    """

    SIZE = 128

    def __init__(self, nominal_clock: bool, exposure_ns: int | None) -> None:
        self.nominal_clock = nominal_clock
        self.exposure_ns = exposure_ns
        self.files: list[_OneFrame] = []

    @property
    def full(self) -> bool:
        return len(self.files) >= self.SIZE

    def take(self, name: str, reader: FrameReader) -> bool:
        """Read the file's block bytes and keep them when the batch can decode them."""
        if not (
            isinstance(reader, FitsReader)
            and reader.declared_frames == 1
            and len(reader) == 1
            and reader.compression is None
            and reader.pixel_block_problem() is None
            and reader.structure_problem() is None
        ):
            return False
        top_down = reader.stored_top_down
        try:
            raw = reader.block_bytes(last_row=top_down)[0]
        except Exception:  # decoded on its own, which reports it
            return False
        w, h = reader.width, reader.height
        if (int(raw[5]) << 8 | int(raw[6]), int(raw[7]) << 8 | int(raw[8])) != (w, h):
            return False  # no block there (block_presence's test, for w, h > 0): on its own
        exposure = reader.exposure_ns if reader.exposure_ns is not None else self.exposure_ns
        self.files.append(_OneFrame(name, raw, w, h, top_down, exposure))
        return True

    def flush(self) -> list[tuple[SeriesFile, bool]]:
        """The items of the files taken, in order (the batch is then empty)."""
        files, self.files = self.files, []
        if not files:
            return []
        try:
            return self._decode(files)
        except Exception:  # never expected: each file again on its own, as decode_one does
            return [decode_one(f.name, nominal_clock=self.nominal_clock,
                               exposure_ns=self.exposure_ns) for f in files]  # fmt: skip

    def _decode(self, files: list[_OneFrame]) -> list[tuple[SeriesFile, bool]]:
        m = len(files)
        blocks = GpsBlockArray.from_bytes(np.stack([f.raw for f in files]))
        present, _ = block_presence(
            blocks, [f.width for f in files], [f.height for f in files]
        )
        if not present.all():
            raise AssertionError("a block taken is not present")
        unix_ns, unix_nom = _stamp_times(blocks)
        exposure = np.array([f.exposure or 0 for f in files], dtype=np.int64)
        found = Sparse()
        found.merge(_stamp_reasons(blocks, unix_ns))
        found.merge(_frame_check_reasons(blocks, unix_ns, exposure, lone=False))
        fields = blocks._fields
        out: list[tuple[SeriesFile, bool]] = []
        for j in range(m):
            f = files[j]
            sl = slice(j, j + 1)
            texts = found.get(j)
            if texts is not None and len(texts) > 1:
                texts = sort_reasons(texts)
            decoded = DecodedFile(
                path=f.name,
                scan=BlockScan(
                    blocks=GpsBlockArray._of({k: v[sl] for k, v in fields.items()}),
                    present=np.ones(1, dtype=bool),
                    why_absent=[None],
                    origin=["pixels:last row" if f.top_down else "pixels"],
                    flipped=np.full(1, f.top_down, dtype=bool),
                ),
                unix_ns={k: v[sl] for k, v in unix_ns.items()},
                unix_ns_nominal={k: v[sl] for k, v in unix_nom.items()},
                reasons=FrameReasons(1, None if texts is None else {0: texts}),
                truncation=None,
                nominal_clock=self.nominal_clock,
            )
            out.append((SeriesFile(path=f.name, decoded=decoded, exposure=f.exposure, records=[]), True))
        return out


def decode_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    nominal_clock: bool = False,
    executor: Executor | None = None,
    chunk_frames: int | None = DECODE_CHUNK_FRAMES,
) -> Iterator[DecodedFrame]:
    """Decode a set of files frame by frame, never stopping on a bad one.

    A folder stands for its FITS/SER files in name order (not recursive). A file that
    cannot be read yields one record with status ``"error"``; a truncated file yields its
    complete frames and then one ``"error"`` record for the missing ones. Frames are
    checked against their sequence: the frames of a multi-frame file, or single-frame FITS
    files in the order given (see the module notes and :func:`decode_series`). With an
    ``executor`` (:mod:`qhytime.cluster`) the files are decoded there, with the same output.
    Here, a multi-frame file longer than :data:`WHOLE_FILE_FRAMES` is decoded in chunks of
    ``chunk_frames`` (:func:`decode_chunks`: the same records, memory bounded whatever the
    file's length; None decodes each file whole).

    Examples
    --------
    >>> [r.status for r in decode_paths(["/no/such/file.fits"])]
    ['error']
    >>> [(r.frame, r.status) for r in decode_paths(["tests/data/video16.ser"] * 2)][24:26]
    [(24, 'ok'), (0, 'ok')]
    """
    chunks = None if executor is not None else chunk_frames
    for item in decode_series(paths, nominal_clock=nominal_clock, executor=executor,
                              chunk_frames=chunks):  # fmt: skip
        yield from item.emit()


def _why(exc: BaseException, name: str) -> str:
    if isinstance(exc, TemporaryCopyError):  # not the file's fault
        return f"not decoded: {exc.reason}"
    if not isinstance(exc, FrameReadError):
        exc = FrameReadError(f"unexpected {type(exc).__name__}: {exc}", path=name)
    return f"unreadable: {exc.reason}"


def _error(name: str, reason: str) -> SeriesFile:
    rec = DecodedFrame(file=name, frame=None, status=STATUS_ERROR, reasons=[reason])
    return SeriesFile(path=name, decoded=None, exposure=None, records=[rec])


@dataclass
class SeriesFile:
    """One file of a set, as :func:`decode_series` yields it.

    Attributes
    ----------
    path : str
        The file as given (or found in a folder).
    decoded : DecodedFile or None
        Its frames with every reason, the sequence's included; None when it could not be
        read.
    exposure : int or None
        The exposure (ns) its stamps were checked against.
    records : list of DecodedFrame
        ``error`` records that follow its frames: the file unreadable, or its missing tail.
    """

    path: str
    decoded: DecodedFile | None
    exposure: int | None
    records: list[DecodedFrame]

    @property
    def error(self) -> str | None:
        """Why the file could not be read (None when it was)."""
        return None if self.decoded is not None else "; ".join(self.records[0].reasons)

    @property
    def present(self) -> NDArray[np.intp]:
        if self.decoded is None:
            return np.zeros(0, dtype=np.intp)
        return np.flatnonzero(self.decoded.scan.present)

    def emit(self) -> Iterator[DecodedFrame]:
        """Its records frame by frame (as :func:`decode_paths` reports them)."""
        if self.decoded is not None:
            for rec in self.decoded.frames():
                rec.file = self.path
                yield rec
        yield from self.records


class _FitsSeries:
    """Single-frame FITS files given one after another: one sequence, checked as it comes.

    Files are held until the two frames after them are decoded (what the checks look at),
    then reported in the order given; the two before stay as context.
    """

    CONTEXT = 2
    BATCH = 64

    def __init__(self) -> None:
        self.items: list[SeriesFile] = []
        self.done = 0  # items[:done] are reported already (kept as context)

    def add(self, item: SeriesFile) -> Iterator[SeriesFile]:
        if not self.items and item.decoded is None:
            yield item  # an error outside a series is reported at once
            return
        self.items.append(item)
        if len(self.items) - self.done >= self.BATCH + 2 * self.CONTEXT:
            yield from self._emit(final=False)

    def flush(self) -> Iterator[SeriesFile]:
        yield from self._emit(final=True)
        self.items, self.done = [], 0

    def _split(self, count: int, from_end: bool) -> int:
        """Index leaving ``count`` items with a block after it (or before it)."""
        seen = 0
        order = range(len(self.items) - 1, -1, -1) if from_end else range(len(self.items))
        for k in order:
            if self.items[k].present.size:
                seen += 1
                if seen == count:
                    return k if from_end else k + 1
        return 0 if from_end else len(self.items)

    def _emit(self, final: bool) -> Iterator[SeriesFile]:
        items = self.items
        upto = len(items) if final else self._split(self.CONTEXT, from_end=True)
        if upto <= self.done:
            return
        self._check(items, self.done, upto)
        yield from items[self.done : upto]
        keep, seen = upto, 0
        while keep > 0 and seen < self.CONTEXT:
            keep -= 1
            seen += bool(items[keep].present.size)
        self.items = items[keep:]
        self.done = upto - keep

    @staticmethod
    def _check(items: list[SeriesFile], lo: int, hi: int) -> None:
        """Add the sequence reasons to the frames of ``items[lo:hi]`` (the rest is context)."""
        where: list[tuple[DecodedFile, int, bool]] = []
        fields: dict[str, list[NDArray[np.int64]]] = {k: [] for k in FIELD_NAMES}
        times: dict[str, list[NDArray[np.int64]]] = {k: [] for k in STAMP_NAMES}
        exposure: list[int] = []
        for k, item in enumerate(items):
            idx = item.present
            if item.decoded is None or not idx.size:
                continue
            d = item.decoded
            for name in FIELD_NAMES:
                fields[name].append(d.scan.blocks.field(name)[idx])
            for name in STAMP_NAMES:
                times[name].append(d.unix_ns[name][idx])
            exposure.extend([item.exposure or 0] * idx.size)
            where.extend((d, int(i), lo <= k < hi) for i in idx)
        if not where:
            return
        blocks = GpsBlockArray({k: np.concatenate(v) for k, v in fields.items()})
        ns = {k: np.concatenate(v) for k, v in times.items()}
        runs = run_ids(blocks.sequence, blocks.width, blocks.height)
        lone = np.bincount(runs)[runs] == 1
        exp = np.asarray(exposure, dtype=np.int64)
        found = Sparse()
        found.merge(_sequence_reasons(blocks.sequence, blocks.width, blocks.height))
        found.merge(_consistency_reasons(blocks, ns, exp, regular=False))
        found.merge(_lone_span_reasons(ns, exp, lone))
        for j, extra in found.items():
            d, i, report = where[j]
            if report:
                d.reasons[i] = sort_reasons([*d.reasons[i], *extra])

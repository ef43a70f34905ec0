"""Batch decoding: every frame of a set of files → its block, exact stamp times and status.

This is what ``qhytime decode`` runs. A file is decoded in one vectorised pass
(:func:`decode_reader` → :class:`DecodedFile`); :func:`decode_paths` walks a file set and
never stops on a bad file: it yields a frame record with ``status == "error"`` instead,
and checks the sequence numbers across the files in the order given.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from qhytime.errors import FrameReadError, TruncatedFileError
from qhytime.gpsblock import STAMP_NAMES, GpsBlock, Stamp
from qhytime.readers import FrameReader, open_frames
from qhytime.readers.base import BlockScan
from qhytime.timebase import stamp_unix_ns, unix_ns_to_iso, unix_ns_to_time
from qhytime.validity import sequence_reasons, stamp_reasons

if TYPE_CHECKING:
    from astropy.time import Time

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
    reasons : list of list of str
        Per frame; empty lists are good frames.
    truncation : TruncatedFileError or None
        Set when the file ends before its last frame.
    """

    path: str
    scan: BlockScan
    unix_ns: dict[str, NDArray[np.int64]]
    unix_ns_nominal: dict[str, NDArray[np.int64]]
    reasons: list[list[str]]
    truncation: TruncatedFileError | None
    nominal_clock: bool = False

    def __len__(self) -> int:
        return len(self.scan)

    @property
    def ok(self) -> NDArray[np.bool_]:
        """True for the frames whose times can be trusted."""
        return np.array([not r for r in self.reasons], dtype=bool)

    def frame(self, i: int) -> DecodedFrame:
        """The record of frame ``i``."""
        reasons = self.reasons[i]
        present = bool(self.scan.present[i])
        rec = DecodedFrame(
            file=self.path,
            frame=i,
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
) -> DecodedFile:
    """Decode every complete frame of an open reader in one vectorised pass.

    Parameters
    ----------
    reader : FrameReader
    nominal_clock : bool
        Report times with 100 ns ticks instead of the measured pps count.
    previous : (sequence, width, height), optional
        The last frame of the previous file of a set, for sequence checks.

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
    scan = reader.scan_blocks()
    blocks = scan.blocks
    n = len(blocks)
    unix_ns: dict[str, NDArray[np.int64]] = {}
    unix_nom: dict[str, NDArray[np.int64]] = {}
    for name in STAMP_NAMES:
        _, sec, ticks = blocks.stamp_columns(name)
        unix_ns[name] = stamp_unix_ns(sec, ticks, blocks.pps_count)
        unix_nom[name] = stamp_unix_ns(sec, ticks, blocks.pps_count, nominal_clock=True)
    reasons: list[list[str]] = [[] for _ in range(n)]
    present_idx = np.flatnonzero(scan.present)
    for i in np.flatnonzero(~scan.present):
        reasons[i].append(scan.why_absent[i] or "no_gps_block")
    if present_idx.size:
        sub = blocks.take(present_idx)
        sub_ns = {k: v[present_idx] for k, v in unix_ns.items()}
        stamp_r = stamp_reasons(sub, sub_ns)
        seq_r = sequence_reasons(sub.sequence, sub.width, sub.height, previous)
        for k, i in enumerate(present_idx):
            reasons[i].extend(stamp_r[k])
            reasons[i].extend(seq_r[k])
    return DecodedFile(
        path=reader.path,
        scan=scan,
        unix_ns=unix_ns,
        unix_ns_nominal=unix_nom,
        reasons=reasons,
        truncation=reader.truncation,
        nominal_clock=nominal_clock,
    )


def decode_file(path: str | os.PathLike[str], *, nominal_clock: bool = False) -> DecodedFile:
    """Open and decode one FITS or SER file.

    Raises
    ------
    FrameReadError
        When the file cannot be read at all.
    """
    with open_frames(path) as reader:
        return decode_reader(reader, nominal_clock=nominal_clock)


def decode_paths(
    paths: Iterable[str | os.PathLike[str]], *, nominal_clock: bool = False
) -> Iterator[DecodedFrame]:
    """Decode a set of files frame by frame, never stopping on a bad one.

    A file that cannot be read yields one record with status ``"error"``; a truncated file
    yields its complete frames and then one ``"error"`` record for the missing ones.
    Sequence numbers are checked across the files in the order given.

    Examples
    --------
    >>> [r.status for r in decode_paths(["/no/such/file.fits"])]
    ['error']
    """
    previous: tuple[int, int, int] | None = None
    for p in paths:
        name = os.fspath(p)
        try:
            reader = open_frames(name)
        except Exception as exc:  # one bad file never ends the batch
            if not isinstance(exc, FrameReadError):
                exc = FrameReadError(f"unexpected {type(exc).__name__}: {exc}", path=name)
            yield DecodedFrame(
                file=name, frame=None, status=STATUS_ERROR, reasons=[f"unreadable: {exc.reason}"]
            )
            continue
        with reader:
            try:
                decoded = decode_reader(reader, nominal_clock=nominal_clock, previous=previous)
            except Exception as exc:  # one bad file never ends the batch
                yield DecodedFrame(
                    file=name, frame=None, status=STATUS_ERROR, reasons=[f"unreadable: {exc}"]
                )
                continue
        for rec in decoded.frames():
            rec.file = name
            yield rec
        previous = decoded.last_sequence_key() or previous
        if decoded.truncation is not None:
            yield DecodedFrame(
                file=name,
                frame=decoded.truncation.complete_frames,
                status=STATUS_ERROR,
                reasons=[decoded.truncation.reason],
            )

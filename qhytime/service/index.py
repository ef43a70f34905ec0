"""The frame timing index: every frame of every indexed file, its stamps and its calibration,
in the calibration database, with row times answered from the database alone.

- :func:`file_records` is the per-file work, a pure function (file + calibration store →
  :class:`FileRecords`): it decodes the file once, finds its setting, calibration and
  exposure, and holds the frames' columns; nothing is written. Its output is written by
  :meth:`FrameIndex.write`, one file in one transaction, frames in bulk inserts of
  :data:`FRAME_BATCH` rows, so the per-file work can run anywhere (threads, processes,
  workers) while one client writes.
- :class:`FrameIndex` opens the index on a :class:`~qhytime.store.CalibrationStore` (the
  store's migrations create the tables), ingests files (:meth:`~FrameIndex.ingest`:
  idempotent; a changed file is re-indexed with its frames replaced, a SER growing frame by
  frame gets its new frames appended, unless they change the verdict of one of the last
  :data:`TAIL_FRAMES` frames with a block indexed: then it is re-indexed whole), and
  answers queries: by file and frame, by sequence, by time range and by instant
  (:meth:`~FrameIndex.at`).
- Row times come from the stored stamps, exposure and calibration through the same row model
  as ``qhytime rows`` (:func:`qhytime.rowmodel.row_times`), exact to the ns, with no file
  access. A row is exposed at instant ``t`` when ``start <= t < end``.
- Frames without a calibration or an exposure are indexed; their ``reasons`` say so
  (``no_calibration``, ``no_exposure``) and they answer no row times. The calibration is
  looked up when a file is indexed (its id stored); a calibration added later is picked up
  by :meth:`FrameIndex.refresh` (``qhytime index --refresh``).

The reason codes of the index, beside those of :mod:`qhytime.validity`:

==============  ==================================================================
no_calibration  no calibration for the frame's setting when it was indexed
no_exposure     the file names no exposure (SER files carry none) and none was given
==============  ==================================================================

Sequence numbers are checked within each file (as ``qhytime decode`` does for one file);
gaps and repeats across files are reported as alerts (:mod:`qhytime.service.alerts`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import socket
import time
import warnings
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    delete,
    exc,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from qhytime.calibration import Calibration, Setting
from qhytime.errors import (
    CalibrationError,
    FrameReadError,
    NotIndexedError,
    QhytimeError,
    RowModelError,
    StoreError,
    TemporaryCopyError,
)
from qhytime.rowmodel import FrameGeometry, RowModel, RowTimes, row_times
from qhytime.store import Base, CalibrationStore
from qhytime.timebase import unix_ns_to_iso
from qhytime.validity import FrameReasons, own_time_trusted, reason_code

if TYPE_CHECKING:
    from qhytime.cluster import Executor
    from qhytime.decode import ChunkPlan, DecodedFile
    from qhytime.readers import FrameReader

FINGERPRINT_BYTES = 65_536
"""Bytes at the start of a file hashed into its fingerprint (the SER frame count left out)."""
FRAME_BATCH = 2_000
"""Frames per bulk insert."""
SQLITE_ROWS = 64
"""Rows per ``INSERT`` statement on SQLite (a multi-row ``VALUES`` of 960 parameters)."""
SER_COUNT_OFFSET = 38
"""Byte offset of the frame count in a SER header (filled in by writers at the end)."""
FRAME_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fz", ".ser")
"""Files the index and the watcher take (as `qhytime decode` does)."""
NS_PER_S = 1_000_000_000

# 64-bit ids on PostgreSQL; SQLite's INTEGER PRIMARY KEY is already 64-bit.
_BigId = BigInteger().with_variant(Integer(), "sqlite")


# -- tables (created by migration 0004) ---------------------------------------------------------


class IndexFile(Base):
    """One indexed file (unique by host and absolute path)."""

    __tablename__ = "index_files"
    __table_args__ = (UniqueConstraint("host", "path", name="uq_index_files_host_path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(String(255), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    fingerprint: Mapped[str] = mapped_column(String(64))
    fingerprint_bytes: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
    frames: Mapped[int] = mapped_column(Integer)
    declared_frames: Mapped[int] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    crop_y: Mapped[int | None] = mapped_column(Integer)
    binning: Mapped[int | None] = mapped_column(Integer)
    setting_key: Mapped[str | None] = mapped_column(String)
    setting: Mapped[str | None] = mapped_column(Text)
    calibration_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("calibrations.id"))
    calibration_kind: Mapped[str | None] = mapped_column(String(16))
    extra_sigma_us: Mapped[float] = mapped_column(Float, default=0.0)
    exposure_ns: Mapped[int | None] = mapped_column(BigInteger)
    span_lo_ns: Mapped[int | None] = mapped_column(BigInteger)
    span_hi_ns: Mapped[int | None] = mapped_column(BigInteger)
    indexed_ns: Mapped[int] = mapped_column(BigInteger)


class IndexFrame(Base):
    """One complete frame of an indexed file."""

    __tablename__ = "index_frames"
    __table_args__ = (UniqueConstraint("file_id", "frame", name="uq_index_frames_file_frame"),)

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    file_id: Mapped[int] = mapped_column(Integer, ForeignKey("index_files.id", ondelete="CASCADE"))
    frame: Mapped[int] = mapped_column(Integer)
    sequence: Mapped[int | None] = mapped_column(BigInteger, index=True)
    start_ns: Mapped[int | None] = mapped_column(BigInteger)
    end_ns: Mapped[int | None] = mapped_column(BigInteger, index=True)
    now_ns: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(8))
    reasons: Mapped[str | None] = mapped_column(Text)
    calibration_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("calibrations.id"))
    exposure_ns: Mapped[int | None] = mapped_column(BigInteger)
    flipped: Mapped[bool] = mapped_column(Boolean)
    pps_count: Mapped[int | None] = mapped_column(Integer)
    latitude_deg: Mapped[float | None] = mapped_column(Float)
    longitude_deg: Mapped[float | None] = mapped_column(Float)
    host_ns: Mapped[int | None] = mapped_column(BigInteger)
    gnss_offset_s: Mapped[int | None] = mapped_column(Integer)
    gnss_distance_m: Mapped[float | None] = mapped_column(Float)


class AlertRow(Base):
    """An alert: raised, and cleared when the condition ends (never deleted, except with the
    file or frame it concerns when that is re-indexed)."""

    __tablename__ = "index_alerts"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    severity: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))
    file_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("index_files.id", ondelete="CASCADE"), index=True
    )
    frame_id: Mapped[int | None] = mapped_column(
        _BigId, ForeignKey("index_frames.id", ondelete="CASCADE"), index=True
    )
    frames: Mapped[int] = mapped_column(Integer, default=0)
    t_ns: Mapped[int | None] = mapped_column(BigInteger)
    raised_ns: Mapped[int] = mapped_column(BigInteger)
    cleared_ns: Mapped[int | None] = mapped_column(BigInteger)


class GnssLogRow(Base):
    """The GPS receiver's state at one moment (logged at a bounded rate)."""

    __tablename__ = "gnss_log"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    host_ns: Mapped[int] = mapped_column(BigInteger, index=True)
    source: Mapped[str] = mapped_column(String(255))
    utc_ns: Mapped[int | None] = mapped_column(BigInteger)
    fix_quality: Mapped[int | None] = mapped_column(Integer)
    fix_type: Mapped[int | None] = mapped_column(Integer)
    satellites: Mapped[int | None] = mapped_column(Integer)
    satellites_in_view: Mapped[int | None] = mapped_column(Integer)
    latitude_deg: Mapped[float | None] = mapped_column(Float)
    longitude_deg: Mapped[float | None] = mapped_column(Float)
    altitude_m: Mapped[float | None] = mapped_column(Float)
    sentences: Mapped[int] = mapped_column(Integer)
    bad_checksum: Mapped[int] = mapped_column(Integer)
    partial: Mapped[int] = mapped_column(Integer)
    garbage: Mapped[int] = mapped_column(Integer)
    silent: Mapped[bool] = mapped_column(Boolean)


# -- times ------------------------------------------------------------------------------------

_ISO_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_iso_ns(text: str) -> int:
    """Unix ns of an ISO 8601 UTC time, exactly (up to 9 decimals; ``Z`` or an offset allowed).

    Raises
    ------
    ValueError
        For anything that is not such a time (the message says what is expected).

    Examples
    --------
    >>> parse_iso_ns("2025-08-02T01:44:51.730086727Z")
    1754099091730086727
    >>> parse_iso_ns("2025-08-02T01:44:51.730086727") == parse_iso_ns("2025-08-02 03:44:51.730086727+02:00")
    True
    """
    m = _ISO_RE.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(
            f"{text!r} is not an ISO UTC time such as 2025-08-02T01:44:51.730086727Z "
            "(up to 9 decimals, optional Z)"
        )
    y, mo, d, h, mi = (int(m.group(i)) for i in range(1, 6))
    s = int(m.group(6) or 0)
    frac = (m.group(7) or "").ljust(9, "0")
    try:
        days = dt.date(y, mo, d).toordinal() - dt.date(1970, 1, 1).toordinal()
    except ValueError as err:
        raise ValueError(f"{text!r}: {err}") from None
    if h > 23 or mi > 59 or s > 59:
        raise ValueError(
            f"{text!r}: hour, minute or second out of range (a leap second 23:59:60 has no "
            "unix time)"
        )
    ns = ((days * 86_400 + h * 3_600 + mi * 60 + s) * NS_PER_S) + int(frac)
    zone = m.group(8)
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        oh, om = int(digits[:2]), int(digits[2:])
        if oh > 23 or om > 59:
            raise ValueError(f"{text!r}: bad UTC offset {zone}")
        ns -= sign * (oh * 3_600 + om * 60) * NS_PER_S
    return ns


_EPOCH = dt.datetime(1970, 1, 1)


def iso(ns: int | None) -> str | None:
    """ISO UTC with 9 decimals (as :func:`~qhytime.timebase.unix_ns_to_iso`), or None; fast
    for one value.

    Examples
    --------
    >>> iso(1754099091730086727), iso(-1), iso(None)
    ('2025-08-02T01:44:51.730086727', '1969-12-31T23:59:59.999999999', None)
    """
    if ns is None:
        return None
    sec, frac = divmod(int(ns), NS_PER_S)
    try:
        return f"{(_EPOCH + dt.timedelta(seconds=sec)).isoformat()}.{frac:09d}"
    except OverflowError:  # outside years 1..9999: numpy's form
        return str(unix_ns_to_iso(int(ns)))


def default_host() -> str:
    """The name files are indexed under (several machines may share one database)."""
    return os.environ.get("QHYTIME_HOST") or socket.gethostname() or "localhost"


# -- per-file work ----------------------------------------------------------------------------


def fingerprint(path: str | os.PathLike[str], nbytes: int = FINGERPRINT_BYTES) -> tuple[str, int]:
    """BLAKE2b of a file's first ``nbytes`` bytes (fewer when shorter), and how many were hashed.

    The frame count of a SER header is left out: writers fill it in when they finish, and a
    file growing frame by frame keeps its fingerprint.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.fits")
    >>> with open(p, "wb") as fh:
    ...     _ = fh.write(b"SIMPLE  =" + bytes(100))
    >>> fp, n = fingerprint(p)
    >>> len(fp), n
    (32, 109)
    """
    from qhytime.readers import open_regular

    with open_regular(path) as fh:  # a FIFO or device: FrameReadError, never a hang
        head = bytearray(fh.read(nbytes))
    if head.startswith(b"LUCAM-RECORDER") and len(head) >= SER_COUNT_OFFSET + 4:
        head[SER_COUNT_OFFSET : SER_COUNT_OFFSET + 4] = b"\0\0\0\0"
    return hashlib.blake2b(bytes(head), digest_size=16).hexdigest(), len(head)


def open_for_index(path: str) -> FrameReader:
    """Open a frame file as the index reads it: like :func:`qhytime.readers.open_frames`, but a
    SER whose header frame count is 0 (capture programs fill it in when they finish) is read
    as still being recorded (``SerReader(path, recording=True)``): its complete frames, by
    size, no trailer.

    Raises
    ------
    FrameReadError
        Also when ``path`` is not a regular file (a FIFO is refused, never opened).
    """
    from qhytime.readers import SerReader, open_frames, open_regular

    with open_regular(path) as fh:
        head = fh.read(SER_COUNT_OFFSET + 4)
    if head.startswith(b"LUCAM-RECORDER") and len(head) == SER_COUNT_OFFSET + 4:
        if int.from_bytes(head[SER_COUNT_OFFSET:], "little", signed=True) == 0:
            return SerReader(path, recording=True)
    return open_frames(path)


def _file_kind(path: str) -> str:
    return "ser" if path.lower().endswith(".ser") else "fits"


@dataclass
class FileRecords:
    """What indexing one file writes: the file's row and its frames' columns.

    Made by :func:`file_records` (nothing written yet); written by :meth:`FrameIndex.write`.
    Frames are held as columns (numpy arrays, a reason list per frame) from ``start_frame``
    on, and turned into insert rows one batch at a time (:meth:`batches`).

    Attributes
    ----------
    path, host : str
        Absolute path, and the machine it is on.
    status : str
        ``ok`` (every frame complete), ``partial`` (complete frames indexed, the file is
        still growing or truncated), ``incomplete`` (no complete frame yet: retry later),
        ``error`` (unreadable; ``message`` says why).
    start_frame : int
        First frame held (frames before it are already in the index: a growing SER).
    """

    path: str
    host: str
    kind: str
    size: int
    mtime_ns: int
    fingerprint: str
    fingerprint_bytes: int
    status: str
    message: str = ""
    declared_frames: int = 0
    total_frames: int = 0
    start_frame: int = 0
    width: int | None = None
    height: int | None = None
    crop_y: int | None = None
    binning: int | None = None
    setting_key: str | None = None
    setting_json: str | None = None
    calibration_id: int | None = None
    calibration_kind: str | None = None
    extra_sigma_us: float = 0.0
    exposure_ns: int | None = None
    span_lo_ns: int | None = None
    span_hi_ns: int | None = None
    columns: dict[str, Any] = field(default_factory=dict)
    reasons: FrameReasons = field(default_factory=FrameReasons)
    previous: tuple[int | None, int | None] | None = None
    """``(sequence, end_ns)`` of frame ``start_frame - 1`` as the file holds it now."""
    previous_codes: _Tail | None = None
    """``(frame, reason codes)`` of the last :data:`TAIL_FRAMES` frames with a block before
    ``start_frame``, and of frame ``start_frame - 1``, as the file decodes now (its new
    frames may change them: then it is indexed again whole)."""
    stream: _Stream | None = field(default=None, repr=False, compare=False)
    """Set when the frames are not held but read part by part as they are written
    (:meth:`parts`): a long file, indexed here (not on a dask worker)."""

    def __post_init__(self) -> None:
        if not isinstance(self.reasons, FrameReasons):
            self.reasons = FrameReasons.from_lists(self.reasons)

    def parts(self) -> Iterator[FileRecords]:
        """The frames to write, in frame order, as records of a part of the file each: this
        record itself when it holds them; else the file is read again chunk by chunk
        (:func:`qhytime.decode.decode_chunks`, the same records as one decoding of the whole
        file) and, once every part has been given, ``span_lo_ns``, ``span_hi_ns`` and
        ``message`` are set from all the frames.

        Raises
        ------
        _Changed
            (streamed records) The file no longer holds what was planned: plan again.
        """
        if self.stream is None:
            yield self
        else:
            yield from _stream_parts(self)

    def __len__(self) -> int:
        return len(self.reasons)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def file_row(self, indexed_ns: int) -> dict[str, Any]:
        """The ``index_files`` columns."""
        return {
            "host": self.host, "path": self.path, "name": self.name[:255], "kind": self.kind,
            "size": self.size, "mtime_ns": self.mtime_ns, "fingerprint": self.fingerprint,
            "fingerprint_bytes": self.fingerprint_bytes, "status": self.status,
            "message": self.message, "frames": self.total_frames,
            "declared_frames": self.declared_frames, "width": self.width, "height": self.height,
            "crop_y": self.crop_y, "binning": self.binning, "setting_key": self.setting_key,
            "setting": self.setting_json, "calibration_id": self.calibration_id,
            "calibration_kind": self.calibration_kind, "extra_sigma_us": self.extra_sigma_us,
            "exposure_ns": self.exposure_ns, "span_lo_ns": self.span_lo_ns,
            "span_hi_ns": self.span_hi_ns, "indexed_ns": indexed_ns,
        }  # fmt: skip

    def columns_for(self, file_id: int, lo: int, hi: int) -> dict[str, list[Any]]:
        """The ``index_frames`` columns of frames ``lo..hi-1`` (of those held) as lists."""
        c = self.columns
        n = hi - lo
        texts = _reason_texts(self.reasons, lo, hi)
        status: list[str] = ["ok" if t is None else "invalid" for t in texts]
        cols: dict[str, list[Any]] = {
            "file_id": [file_id] * n,
            "frame": c["frame"][lo:hi].tolist(),
            "status": status,
            "reasons": texts,
            "calibration_id": [self.calibration_id] * n,
            "exposure_ns": [self.exposure_ns] * n,
            "flipped": c["flipped"][lo:hi].tolist(),
            "host_ns": c["host_ns"][lo:hi].tolist() if c["host_ns"] is not None else [None] * n,
        }
        absent = np.flatnonzero(~c["present"][lo:hi]).tolist()
        for k in ("sequence", "start_ns", "end_ns", "now_ns", "pps_count", "latitude_deg",
                  "longitude_deg"):  # fmt: skip
            vals = c[k][lo:hi].tolist()
            for i in absent:
                vals[i] = None
            cols[k] = vals
        return cols

    def flat_rows(self, file_id: int, lo: int, hi: int) -> list[Any]:
        """The values of frames ``lo..hi-1`` row after row, each row in
        :data:`FRAME_INSERT_KEYS` order (for multi-row inserts)."""
        cols = self.columns_for(file_id, lo, hi)
        k = len(FRAME_INSERT_KEYS)
        out: list[Any] = [None] * ((hi - lo) * k)
        for j, key in enumerate(FRAME_INSERT_KEYS):
            out[j::k] = cols[key]
        return out

    def batches(self, file_id: int, size: int = FRAME_BATCH) -> Iterator[list[dict[str, Any]]]:
        """Insert rows of ``index_frames`` (dicts), ``size`` at a time."""
        for lo in range(0, len(self), size):
            cols = self.columns_for(file_id, lo, min(lo + size, len(self)))
            yield [dict(zip(FRAME_INSERT_KEYS, row, strict=True))
                   for row in zip(*(cols[k] for k in FRAME_INSERT_KEYS), strict=True)]  # fmt: skip

    def tuples(self, file_id: int, size: int = FRAME_BATCH) -> Iterator[list[tuple[Any, ...]]]:
        """The same rows as tuples in :data:`FRAME_INSERT_KEYS` order."""
        for lo in range(0, len(self), size):
            cols = self.columns_for(file_id, lo, min(lo + size, len(self)))
            yield list(zip(*(cols[k] for k in FRAME_INSERT_KEYS), strict=True))


FRAME_INSERT_KEYS = (
    "file_id", "frame", "sequence", "start_ns", "end_ns", "now_ns", "status", "reasons",
    "calibration_id", "exposure_ns", "flipped", "pps_count", "latitude_deg", "longitude_deg",
    "host_ns",
)  # fmt: skip
"""The columns a frame row is inserted with."""


def file_records(
    path: str | os.PathLike[str],
    store: CalibrationStore | str | os.PathLike[str],
    *,
    fallback: bool = False,
    exposure_ns: int | None = None,
    start_frame: int = 0,
    host: str | None = None,
    stream: bool = False,
) -> FileRecords:
    """Decode one file and work out everything the index stores for it; writes nothing.

    Parameters
    ----------
    path : path
        A FITS or SER file.
    store : CalibrationStore or str
        The calibration store (or its URL / path: it is opened and closed here), for the
        lookup of the file's calibration; on a dask worker, a
        :class:`~qhytime.cluster.CalibrationSnapshot` of it.
    fallback : bool
        Accept a neighbouring setting's calibration (widened sigma, noted in ``message``).
    exposure_ns : int, optional
        Exposure of files that name none (SER files carry none); a file's own
        ``QHY_EXP``/``EXPTIME``/``EXPOSURE`` comes first.
    start_frame : int
        Hold frames from this one on (the earlier ones are in the index already).
    host : str, optional
        Machine name stored with the path (default :func:`default_host`).
    stream : bool
        For a file longer than :data:`~qhytime.decode.WHOLE_FILE_FRAMES` whose reader reads
        ranges (SER), hold no frames: :meth:`FileRecords.parts` reads them again chunk by
        chunk when they are written, so memory does not grow with the file's length. The
        records then need the file where it is (not for dask workers).

    Returns
    -------
    FileRecords
        With status ``error`` (and no frames) when the file cannot be read: never raises
        for a bad file.

    Raises
    ------
    StoreError
        When the calibration database itself fails.

    Examples
    --------
    >>> import tempfile, os
    >>> from qhytime.store import CalibrationStore
    >>> with CalibrationStore(os.path.join(tempfile.mkdtemp(), "i.sqlite")) as store:
    ...     rec = file_records("tests/data/video16.ser", store, exposure_ns=1_000_000)
    >>> rec.status, len(rec), rec.reasons[0]
    ('ok', 25, [])
    """
    p = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(p)
        fp, fp_n = fingerprint(p)
    except FrameReadError:
        raise
    except OSError as err:
        raise FrameReadError(f"cannot read file: {err.strerror or err}", path=p) from err
    rec = FileRecords(
        path=p, host=host or default_host(), kind=_file_kind(p), size=st.st_size,
        mtime_ns=st.st_mtime_ns, fingerprint=fp, fingerprint_bytes=fp_n, status="error",
        start_frame=start_frame,
    )  # fmt: skip
    own_store = None
    if isinstance(store, str | os.PathLike):
        own_store = store = CalibrationStore(store)
    try:
        try:
            reader = open_for_index(p)
        except FrameReadError as err:
            rec.message = err.reason
            return rec
        with reader:
            rec.kind = reader.kind if reader.kind in ("fits", "ser") else rec.kind
            _fill_from_reader(rec, reader, store, fallback, exposure_ns, start_frame, stream)
    except (FrameReadError, RowModelError) as err:
        rec.status, rec.message = "error", str(err.reason)
        rec.columns, rec.reasons = {}, FrameReasons()
    except StoreError:
        raise
    except QhytimeError as err:
        rec.status, rec.message = "error", str(err)
        rec.columns, rec.reasons = {}, FrameReasons()
    finally:
        if own_store is not None:
            own_store.close()
    return rec


TAIL_FRAMES = 16
"""Frames with a block before a growing SER's first new frame whose verdicts (reason codes)
must be as indexed for the new frames to be appended (as far as the checks look: the
decode's context); where the new frames change them, the file is indexed again whole."""
_Tail = tuple[tuple[int, tuple[str, ...]], ...]


def _reason_texts(reasons: FrameReasons, lo: int, hi: int) -> list[str | None]:
    """The ``reasons`` column (JSON, None when none) of frames ``lo..hi-1`` of ``reasons``."""
    texts: list[str | None] = [None] * (hi - lo)
    for k, r in reasons.items(lo, hi):  # only the frames that have reasons
        texts[k - lo] = json.dumps(r)
    return texts


def _codes(reasons: Iterable[str]) -> tuple[str, ...]:
    """A frame's verdict: the codes of its reasons, without their figures (how far off the
    cadence a frame is shifts a little as a run grows)."""
    return tuple(reason_code(r) for r in reasons)


def _stored_codes(text: str | None) -> tuple[str, ...]:
    """:func:`_codes` of a stored ``reasons`` column (:func:`_reason_texts`)."""
    return _codes(json.loads(text) if text else ())


def _tail_of(d: DecodedFile, start: int, need: int) -> list[tuple[int, tuple[str, ...]]]:
    """``(frame, codes)`` of the last ``need`` frames with a block of ``d`` before ``start``."""
    hi = max(0, min(start, d.first_frame + len(d)) - d.first_frame)
    ks = np.flatnonzero(d.scan.present[:hi])[-need:] if need > 0 else []
    return [(d.first_frame + int(k), _codes(d.reasons[int(k)])) for k in ks]


def _fill_from_reader(
    rec: FileRecords, reader: FrameReader, store: CalibrationStore, fallback: bool,
    exposure_ns: int | None, start_frame: int, stream: bool = False,
) -> None:  # fmt: skip
    from qhytime.decode import DECODE_CHUNK_FRAMES, WHOLE_FILE_FRAMES, decode_reader
    from qhytime.framerows import (
        ReferenceStampWarning,
        exposure_ns_from_metadata,
        file_timing,
        setting_from_reader,
    )

    n = len(reader)
    rec.declared_frames = int(reader.declared_frames)
    rec.total_frames = n
    rec.width, rec.height = int(reader.width), int(reader.height)
    if n == 0:
        rec.status = "incomplete"
        rec.message = (
            reader.truncation.reason if reader.truncation is not None else "no complete frame yet"
        )
        return
    streaming = stream and reader.ranged_blocks and n > max(DECODE_CHUNK_FRAMES, WHOLE_FILE_FRAMES)
    decoded = _no_frames(reader.path) if streaming else decode_reader(reader)
    exp_file = exposure_ns_from_metadata(reader.metadata(0))
    exp = exp_file if exp_file is not None else exposure_ns
    notes: list[str] = []
    setting = setting_from_reader(reader, 0)
    rec.setting_key, rec.setting_json = setting.key(), json.dumps(setting.to_dict())
    rec.crop_y, rec.binning = int(setting.roi_y), int(setting.binning)
    model: RowModel | None = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ft = file_timing(reader, store=store, fallback=fallback, exposure_ns=exp,
                             decoded=decoded)  # fmt: skip
        notes.extend(str(w.message) for w in caught
                     if not (streaming and isinstance(w.message, ReferenceStampWarning)))  # fmt: skip
        model = ft.model
        rec.crop_y, rec.binning = ft.crop_y, ft.binning
        if ft.lookup is not None:
            rec.calibration_id = ft.lookup.calibration.id
            rec.calibration_kind = ft.lookup.kind
            rec.extra_sigma_us = float(ft.lookup.extra_offset0_sigma_us)
    except CalibrationError as err:
        notes.append(f"no calibration: {err.reason}")
    rec.exposure_ns = exp
    rec.message = "; ".join(notes)
    truncation: str | None = None
    if reader.truncation is not None or rec.declared_frames == 0:
        rec.status = "partial"
        if reader.truncation is not None:
            truncation = reader.truncation.reason
            rec.message = "; ".join([*notes, truncation])
    else:
        rec.status = "ok"
    if streaming:
        from qhytime.decode import plan_chunks

        try:  # the first pass (the file's cold read) here, not in the write transaction
            plan = plan_chunks(reader, chunk_frames=DECODE_CHUNK_FRAMES)
        except TemporaryCopyError as err:  # not the file's fault: said, never recorded
            raise _NotRecorded(err.reason) from err
        rec.stream = _Stream(model=model, notes=notes, truncation=truncation,
                             facts=_facts(reader), plan=plan)  # fmt: skip
        if 0 < start_frame <= n:
            try:
                _previous_from_chunks(rec, reader, plan, start_frame)
            except BaseException:
                plan.close()
                raise
        return
    rec.columns = _frame_columns(decoded, reader, start_frame)
    rec.reasons = decoded.reasons[start_frame:]
    if 0 < start_frame <= n:
        _set_previous(rec, decoded, start_frame, _tail_of(decoded, start_frame, TAIL_FRAMES))
    extent = _Extent(model)
    extent.add(decoded)
    extent.set_span(rec)


def _frame_columns(decoded: DecodedFile, reader: FrameReader, skip: int = 0) -> dict[str, Any]:
    """The ``index_frames`` columns of ``decoded``'s frames from its frame ``skip`` on."""
    scan = decoded.scan
    blocks = scan.blocks
    lo = decoded.first_frame + skip
    hi = decoded.first_frame + len(decoded)
    sl = slice(skip, None)
    ranged = getattr(reader, "timestamps_unix_ns_range", None)
    if ranged is not None:
        host_ns = ranged(lo, hi)
    else:
        every = getattr(reader, "timestamps_unix_ns", None)
        host_ns = None if every is None else every[lo:hi]
    return {
        "frame": np.arange(lo, hi, dtype=np.int64),
        "present": np.asarray(scan.present[sl], dtype=bool),
        "sequence": np.asarray(blocks.sequence[sl], dtype=np.int64),
        "start_ns": decoded.unix_ns["start"][sl],
        "end_ns": decoded.unix_ns["end"][sl],
        "now_ns": decoded.unix_ns["now"][sl],
        "flipped": np.asarray(scan.flipped[sl], dtype=bool),
        "pps_count": np.asarray(blocks.pps_count[sl], dtype=np.int64),
        "latitude_deg": np.round(blocks.latitude_deg[sl], 9),
        "longitude_deg": np.round(blocks.longitude_deg[sl], 9),
        "host_ns": None if host_ns is None else np.asarray(host_ns, dtype=np.int64),
    }


@dataclass
class _Stream:
    """What a streamed :class:`FileRecords` needs: the first pass of its decoding (made when
    it was planned), the facts of the file it was planned from, and, to finish its file row
    once every frame has been read, the row model (for the span), the notes of the lookup
    and the truncation."""

    model: RowModel | None
    notes: list[str]
    truncation: str | None
    facts: tuple[Any, ...]
    plan: ChunkPlan


class _NotRecorded(Exception):
    """A file that cannot be indexed now for a reason outside it (no room for the temporary
    copy of its blocks): reported, not recorded, so the next run tries it again."""


def _facts(reader: FrameReader) -> tuple[Any, ...]:
    """What the records of a file take from its header and layout beyond its frames: a file
    must still show these when its planned records are written."""
    t = reader.truncation
    return (reader.kind, reader.width, reader.height, reader.bit_depth, reader.declared_frames,
            None if t is None else t.reason, reader.structure_problem(),
            getattr(reader, "has_trailer", None))  # fmt: skip


def _no_frames(path: str) -> DecodedFile:
    """A decoding that holds no frame (the timing lookup of a file streamed part by part)."""
    from qhytime.decode import DecodedFile
    from qhytime.gpsblock import BLOCK_SIZE, STAMP_NAMES, GpsBlockArray
    from qhytime.readers.base import BlockScan

    none = np.zeros(0, dtype=np.int64)
    scan = BlockScan(
        blocks=GpsBlockArray.from_bytes(np.zeros((0, BLOCK_SIZE), dtype=np.uint8)),
        present=np.zeros(0, dtype=bool), why_absent=[], origin=[],
        flipped=np.zeros(0, dtype=bool),
    )  # fmt: skip
    return DecodedFile(path=path, scan=scan, unix_ns={k: none for k in STAMP_NAMES},
                       unix_ns_nominal={k: none for k in STAMP_NAMES}, reasons=FrameReasons(0),
                       truncation=None)  # fmt: skip


def _set_previous(
    rec: FileRecords, d: DecodedFile, start: int, tail: list[tuple[int, tuple[str, ...]]]
) -> None:
    """``rec.previous`` and ``rec.previous_codes`` from ``d``, a decoding that holds frame
    ``start - 1``, and ``tail``, the verdicts of the frames with a block before it."""
    k = start - 1 - d.first_frame
    entries = dict(tail)
    entries[start - 1] = _codes(d.reasons[k])
    rec.previous_codes = tuple(sorted(entries.items()))
    rec.previous = (
        (int(d.scan.blocks.sequence[k]), int(d.unix_ns["end"][k]))
        if d.scan.present[k] else (None, None)
    )  # fmt: skip


def _previous_from_chunks(
    rec: FileRecords, reader: FrameReader, plan: ChunkPlan, start: int
) -> None:
    """:func:`_set_previous` of a long file: its chunks decoded one at a time back from the
    one holding frame ``start - 1`` until :data:`TAIL_FRAMES` frames with a block are seen."""
    from qhytime.decode import decode_chunks

    chunks = plan.chunks
    j = next(i for i, c in enumerate(chunks) if c.lo <= start - 1 < c.hi)
    tail: list[tuple[int, tuple[str, ...]]] = []
    last: DecodedFile | None = None
    while j >= 0 and (last is None or len(tail) < TAIL_FRAMES):
        d = next(decode_chunks(reader, plan=plan, from_frame=chunks[j].lo))
        last = last or d
        tail = _tail_of(d, start, TAIL_FRAMES - len(tail)) + tail
        j -= 1
    assert last is not None
    _set_previous(rec, last, start, tail)


def _stream_parts(rec: FileRecords) -> Iterator[FileRecords]:
    """:meth:`FileRecords.parts` of streamed records (their first pass closed after)."""

    st = rec.stream
    assert st is not None
    with st.plan:
        yield from _read_parts(rec, st)


def _read_parts(rec: FileRecords, st: _Stream) -> Iterator[FileRecords]:
    from dataclasses import replace

    from qhytime import decode

    try:
        same = fingerprint(rec.path, rec.fingerprint_bytes)[0] == rec.fingerprint
        reader = open_for_index(rec.path) if same else None
    except (FrameReadError, OSError) as err:
        raise _Changed from err
    if reader is None:
        raise _Changed
    extent = _Extent(st.model)
    with reader:
        if len(reader) < rec.total_frames or _facts(reader) != st.facts:
            raise _Changed  # grown is fine; finished, cut or rewritten since: plan again
        try:
            for chunk in decode.decode_chunks(reader, plan=st.plan):
                extent.add(chunk)
                skip = max(rec.start_frame - chunk.first_frame, 0)
                if skip < len(chunk):
                    yield replace(rec, stream=None, columns=_frame_columns(chunk, reader, skip),
                                  reasons=chunk.reasons[skip:])  # fmt: skip
        except TemporaryCopyError:  # not the file's fault: said, nothing written
            raise
        except FrameReadError as err:
            raise _Changed from err  # the file changed under us (cut short): plan it again
    note = extent.now_note(reader.path)
    rec.message = "; ".join(
        [*st.notes, *([note] if note else []), *([st.truncation] if st.truncation else [])]
    )
    extent.set_span(rec)


class _Extent:
    """What a file's row span and its now-stamp note take from all its frames, gathered part
    by part (:meth:`add` each decoded part): how far the model's reference stamp lies after
    the end stamp (least, most), and how far the now stamp follows it in good frames."""

    def __init__(self, model: RowModel | None) -> None:
        self.model = model
        self.ref: tuple[int, int] | None = None
        self.delay: tuple[int, int] | None = None
        self.good = 0

    def add(self, d: DecodedFile) -> None:
        present = d.scan.present
        if self.model is None or not present.any():
            return
        ends = d.unix_ns["end"]
        self.ref = _widen(self.ref, (d.unix_ns[self.model.reference] - ends)[present])
        if self.model.reference == "now":
            ok = d.reasons.ok() & present
            if ok.any():
                self.good += int(ok.sum())
                self.delay = _widen(self.delay, (d.unix_ns["now"] - ends)[ok])

    def now_note(self, path: str) -> str | None:
        """The now-stamp note (:func:`~qhytime.framerows.now_wander_text`), or None."""
        from qhytime.framerows import now_wander_text

        if self.good < 3 or self.delay is None:
            return None
        return now_wander_text(self.delay[0], self.delay[1], path)

    def set_span(self, rec: FileRecords) -> None:
        """``rec``'s earliest row start and latest row end after its end stamps."""
        exp = rec.exposure_ns
        if self.model is not None and exp is not None and rec.height and self.ref is not None:
            rec.span_lo_ns, rec.span_hi_ns = _span(
                self.model, rec.height, rec.crop_y or 0, rec.binning or 1, exp, *self.ref
            )


def _widen(bounds: tuple[int, int] | None, values: NDArray[np.int64]) -> tuple[int, int]:
    lo, hi = int(values.min()), int(values.max())
    return (lo, hi) if bounds is None else (min(bounds[0], lo), max(bounds[1], hi))


def _span(
    model: RowModel, height: int, crop_y: int, binning: int, exposure_ns: int, d_min: int, d_max: int
) -> tuple[int, int]:
    """Earliest row start and latest row end of a frame relative to its end stamp, over
    frames whose reference stamp lies ``d_min..d_max`` ns after their end stamp."""
    rt = row_times(model, FrameGeometry(height, crop_y, binning), 0, exposure_ns)
    return int(rt.start_ns.min()) + d_min, int(rt.end_ns.max()) + d_max


# -- results and frames -----------------------------------------------------------------------


@dataclass
class IngestResult:
    """What indexing one file did.

    Attributes
    ----------
    path : str
    action : str
        ``indexed`` (new or re-indexed: frames replaced), ``appended`` (new frames of a
        growing file), ``unchanged`` (nothing written), ``incomplete`` (no complete frame
        yet: nothing written, retry later), ``error`` (unreadable: recorded, ``message``).
    frames : int
        Frames written by this call.
    total_frames : int
        Frames of the file in the index afterwards.
    """

    path: str
    action: str
    frames: int = 0
    total_frames: int = 0
    file_id: int | None = None
    status: str = ""
    message: str = ""
    calibration_id: int | None = None
    alerts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class IndexedFrame:
    """A frame as the index holds it (see :meth:`to_dict` for its JSON form)."""

    id: int
    file_id: int
    file: str
    host: str
    frame: int
    sequence: int | None
    status: str
    decode_reasons: list[str]
    start_ns: int | None
    end_ns: int | None
    now_ns: int | None
    exposure_ns: int | None
    calibration_id: int | None
    flipped: bool
    pps_count: int | None
    latitude_deg: float | None
    longitude_deg: float | None
    host_ns: int | None
    gnss_offset_s: int | None
    gnss_distance_m: float | None
    width: int | None
    height: int | None
    crop_y: int | None
    binning: int | None
    kind: str
    setting_key: str | None
    calibration_kind: str | None
    extra_sigma_us: float

    @property
    def reasons(self) -> list[str]:
        """The decode reasons, then ``no_calibration`` / ``no_exposure`` when they apply."""
        out = list(self.decode_reasons)
        if self.calibration_id is None and self.start_ns is not None:
            out.append(
                f"no_calibration: none for the setting {self.setting_key} when indexed: add one "
                "(qhytime calib add, or qhytime ledcal --store), then qhytime index --refresh"
            )
        if self.exposure_ns is None and self.start_ns is not None:
            what = (
                "SER files carry no exposure"
                if self.kind == "ser"
                else "the file has no QHY_EXP/EXPTIME/EXPOSURE keyword"
            )
            out.append(f"no_exposure: {what}; index it with --exposure-s")
        return out

    @property
    def trusted(self) -> bool:
        """True when the frame's own time can be used (see :func:`~qhytime.validity.own_time_trusted`)."""
        return self.start_ns is not None and own_time_trusted(self.decode_reasons)

    @property
    def timed(self) -> bool:
        """True when the index can give this frame's row times (stamps, calibration, exposure)."""
        return (
            self.start_ns is not None
            and self.calibration_id is not None
            and self.exposure_ns is not None
            and bool(self.height)
        )

    @property
    def start(self) -> str | None:
        """Start stamp, ISO UTC (9 decimals)."""
        return iso(self.start_ns)

    @property
    def end(self) -> str | None:
        """End stamp, ISO UTC (9 decimals)."""
        return iso(self.end_ns)

    @property
    def now(self) -> str | None:
        """Now stamp, ISO UTC (9 decimals)."""
        return iso(self.now_ns)

    def geometry(self) -> FrameGeometry:
        return FrameGeometry(
            height=int(self.height or 1), crop_y=int(self.crop_y or 0),
            binning=int(self.binning or 1), flipped=self.flipped,
        )  # fmt: skip

    def stamp_ns(self, name: str) -> int:
        v = {"start": self.start_ns, "end": self.end_ns, "now": self.now_ns}[name]
        if v is None:
            raise RowModelError("the frame has no GPS block", path=self.file, frame=self.frame)
        return int(v)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``qhytime query --json`` and the HTTP API."""
        return {
            "id": self.id,
            "file": self.file,
            "host": self.host,
            "file_id": self.file_id,
            "frame": self.frame,
            "sequence": self.sequence,
            "status": self.status,
            "reasons": self.reasons,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "now_ns": self.now_ns,
            "start": iso(self.start_ns),
            "end": iso(self.end_ns),
            "now": iso(self.now_ns),
            "exposure_ns": self.exposure_ns,
            "calibration_id": self.calibration_id,
            "timed": self.timed,
            "latitude_deg": self.latitude_deg,
            "longitude_deg": self.longitude_deg,
            "pps_count": self.pps_count,
            "gnss_offset_s": self.gnss_offset_s,
            "gnss_distance_m": self.gnss_distance_m,
        }


_FRAME_COLS = (
    IndexFrame.id, IndexFrame.file_id, IndexFile.path, IndexFile.host, IndexFrame.frame,
    IndexFrame.sequence, IndexFrame.status, IndexFrame.reasons, IndexFrame.start_ns,
    IndexFrame.end_ns, IndexFrame.now_ns, IndexFrame.exposure_ns, IndexFrame.calibration_id,
    IndexFrame.flipped, IndexFrame.pps_count, IndexFrame.latitude_deg, IndexFrame.longitude_deg,
    IndexFrame.host_ns, IndexFrame.gnss_offset_s, IndexFrame.gnss_distance_m, IndexFile.width,
    IndexFile.height, IndexFile.crop_y, IndexFile.binning, IndexFile.kind, IndexFile.setting_key,
    IndexFile.calibration_kind, IndexFile.extra_sigma_us,
)  # fmt: skip


_FRAME_BY_ID = (
    select(*_FRAME_COLS).join(IndexFile, IndexFile.id == IndexFrame.file_id)
    .where(IndexFrame.id == bindparam("frame_id"))
)  # fmt: skip


def _frame_from_row(r: Sequence[Any]) -> IndexedFrame:
    return IndexedFrame(
        id=int(r[0]), file_id=int(r[1]), file=r[2], host=r[3], frame=int(r[4]), sequence=r[5],
        status=r[6], decode_reasons=json.loads(r[7]) if r[7] else [], start_ns=r[8],
        end_ns=r[9], now_ns=r[10], exposure_ns=r[11], calibration_id=r[12],
        flipped=bool(r[13]), pps_count=r[14], latitude_deg=r[15], longitude_deg=r[16],
        host_ns=r[17], gnss_offset_s=r[18], gnss_distance_m=r[19], width=r[20], height=r[21],
        crop_y=r[22], binning=r[23], kind=r[24], setting_key=r[25], calibration_kind=r[26],
        extra_sigma_us=float(r[27] or 0.0),
    )  # fmt: skip


def row_records(times: RowTimes, frame: int = 0, moment: str = "all") -> list[dict[str, Any]]:
    """Row objects ``{row, start, mid, end, start_ns, mid_ns, end_ns, sigma_ns}`` of one frame of
    ``times`` (only ``start``, ``mid`` or ``end`` with ``moment``).

    Examples
    --------
    >>> from qhytime.rowmodel import RowModel, FrameGeometry, row_times
    >>> m = RowModel.from_us(offset0_us=1000, line_period_ns=10_000)
    >>> row_records(row_times(m, FrameGeometry(height=2), 0, 5_000_000), moment="end")
    [{'row': 0, 'end': '1970-01-01T00:00:00.001000000', 'end_ns': 1000000, 'sigma_ns': 28.868}, {'row': 1, 'end': '1970-01-01T00:00:00.001000000', 'end_ns': 1000000, 'sigma_ns': 28.868}]
    """
    names = ("start", "mid", "end") if moment == "all" else (moment,)
    arrays = {"start": times.start_ns, "mid": times.mid_ns, "end": times.end_ns}
    cols = {n: arrays[n][frame] for n in names}
    isos = {n: unix_ns_to_iso(cols[n]) for n in names}
    out = []
    for k, r in enumerate(times.rows.tolist()):
        rec: dict[str, Any] = {"row": int(r)}
        for n in names:
            rec[n] = str(isos[n][k])
        for n in names:
            rec[f"{n}_ns"] = int(cols[n][k])
        rec["sigma_ns"] = round(float(times.sigma_ns[k]), 3)
        out.append(rec)
    return out


# -- the index ---------------------------------------------------------------------------------


class _Changed(Exception):
    """The file's row changed between planning and writing (another writer): plan again."""


@dataclass(frozen=True)
class _FileState:
    id: int
    size: int
    mtime_ns: int
    fingerprint: str
    fingerprint_bytes: int
    status: str
    frames: int
    kind: str
    calibration_id: int | None
    exposure_ns: int | None
    last_sequence: int | None = None
    last_end_ns: int | None = None
    tail: _Tail = ()
    """``(frame, reason codes)`` of the last :data:`TAIL_FRAMES` frames with a block indexed
    and of the last frame (read for a growing SER only: ``partial``)."""


_FILES = IndexFile.__table__
_STATE_SQL = select(
    _FILES.c.id, _FILES.c.size, _FILES.c.mtime_ns, _FILES.c.fingerprint,
    _FILES.c.fingerprint_bytes, _FILES.c.status, _FILES.c.frames, _FILES.c.kind,
    _FILES.c.calibration_id, _FILES.c.exposure_ns,
).where(_FILES.c.host == bindparam("host"), _FILES.c.path == bindparam("path"))  # fmt: skip
_FRAMES = IndexFrame.__table__
_TAIL_SQL = (
    select(_FRAMES.c.frame, _FRAMES.c.reasons)
    .where(_FRAMES.c.file_id == bindparam("file_id"), _FRAMES.c.sequence.is_not(None))
    .order_by(_FRAMES.c.frame.desc())
    .limit(TAIL_FRAMES)
)
_LAST_FRAME_SQL = select(_FRAMES.c.sequence, _FRAMES.c.end_ns, _FRAMES.c.reasons).where(
    _FRAMES.c.file_id == bindparam("file_id"), _FRAMES.c.frame == bindparam("frame")
)
_FILE_INSERT_SQL = _FILES.insert().returning(_FILES.c.id)
_FILE_UPDATE_SQL = _FILES.update().where(_FILES.c.id == bindparam("file_id_"))


class FrameIndex:
    """The frame timing index in a calibration database.

    Parameters
    ----------
    db : str, os.PathLike or CalibrationStore, optional
        A store (used as is, not closed here), or a database path / URL (opened through a
        :class:`~qhytime.store.CalibrationStore`, which runs the migrations); by default
        the store's default database.
    host : str, optional
        Machine name stored with the paths this index writes (default: the host name).

    Examples
    --------
    >>> import tempfile, os
    >>> from qhytime.simulate import CameraSim
    >>> tmp = tempfile.mkdtemp()
    >>> paths = CameraSim(width=64, height=16, exposure_us=5000.0).write_fits(tmp, 3)
    >>> with FrameIndex(os.path.join(tmp, "i.sqlite")) as index:
    ...     first = [r.action for r in index.ingest_paths(paths)]
    ...     again = [r.action for r in index.ingest_paths(paths)]
    ...     n = index.count()
    ...     f = index.frames(limit=1)[0]
    >>> first, again, n
    (['indexed', 'indexed', 'indexed'], ['unchanged', 'unchanged', 'unchanged'], 3)
    >>> f.frame, f.sequence, f.end
    (0, 1, '2025-08-02T01:44:51.000000000')
    """

    def __init__(
        self, db: str | os.PathLike[str] | CalibrationStore | None = None, *, host: str | None = None
    ) -> None:
        if isinstance(db, CalibrationStore):
            self.store, self._own = db, False
        else:
            self.store, self._own = CalibrationStore(db), True
        self.host = host or default_host()
        self._calibrations: dict[int, Calibration] = {}
        self._insert_sql: str | None = None
        self._insert_block_sql = ""

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def engine(self) -> Any:
        return self.store.engine

    @property
    def readonly(self) -> bool:
        return self.store.readonly

    @property
    def dialect(self) -> str:
        return str(self.store.engine.dialect.name)

    def close(self) -> None:
        if self._own:
            self.store.close()

    def __enter__(self) -> FrameIndex:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def session(self, write: bool = False) -> Any:
        """A session in a transaction (``write``: the store's write path, SQLite ``BEGIN
        IMMEDIATE``); database errors become :class:`~qhytime.errors.StoreError`."""
        return _Guard(self.store, self.store._session(write=write))

    def _lock_file(self, s: Session, host: str, path: str) -> None:
        """Serialise writers of one file (SQLite: BEGIN IMMEDIATE already does)."""
        if self.dialect == "postgresql":
            key = zlib.crc32(f"index:{host}:{path}".encode()) & 0x7FFFFFFF
            s.execute(select(func.pg_advisory_xact_lock(key)))

    def calibration(self, calibration_id: int) -> Calibration:
        """A stored calibration by id (cached: calibrations are never edited)."""
        cal = self._calibrations.get(calibration_id)
        if cal is None:
            cal = self._calibrations[calibration_id] = self.store.get(calibration_id)
        return cal

    # -- writing -----------------------------------------------------------------------------
    def file_state(self, path: str | os.PathLike[str], host: str | None = None) -> _FileState | None:
        """What the index holds about a file (None when not indexed)."""
        p = os.path.abspath(os.fspath(path))
        with self.session() as s:
            return self._state(s, host or self.host, p)

    @staticmethod
    def _state(s: Session, host: str, path: str) -> _FileState | None:
        conn = s.connection()  # Core statements made once: no per-call construction
        row = conn.execute(_STATE_SQL, {"host": host, "path": path}).first()
        if row is None:
            return None
        if not (row[6] and row[7] == "ser" and row[5] == "partial"):
            return _FileState(*row)  # only a growing SER is appended to
        last = conn.execute(_LAST_FRAME_SQL, {"file_id": row[0], "frame": row[6] - 1}).first()
        if last is None:
            return _FileState(*row)
        entries = {int(f): _stored_codes(t) for f, t in conn.execute(_TAIL_SQL, {"file_id": row[0]})}
        entries[row[6] - 1] = _stored_codes(last[2])
        return _FileState(*row, last_sequence=last[0], last_end_ns=last[1],
                          tail=tuple(sorted(entries.items())))  # fmt: skip

    def ingest(
        self,
        path: str | os.PathLike[str],
        *,
        fallback: bool = False,
        exposure_ns: int | None = None,
        record_incomplete: bool = True,
        now_ns: int | None = None,
    ) -> IngestResult:
        """Index one file: new, changed (frames replaced), grown (frames appended) or unchanged.

        Parameters
        ----------
        path : path
        fallback, exposure_ns
            As for :func:`file_records`.
        record_incomplete : bool
            Record a file without a complete frame (status ``partial``, no frames); watch
            mode passes False and retries it later instead.
        now_ns : int, optional
            Host time of the indexing (default: now).

        Returns
        -------
        IngestResult
            Never raises for a bad file (``action == "error"``, recorded).

        Raises
        ------
        StoreError
            The database cannot be written.
        """
        p = os.path.abspath(os.fspath(path))
        for _ in range(5):
            try:
                return self._ingest_once(p, fallback, exposure_ns, record_incomplete, now_ns)
            except _Changed:
                continue
        raise StoreError(f"{p} kept changing in the index while being written: try again")

    def _ingest_once(
        self, p: str, fallback: bool, exposure_ns: int | None, record_incomplete: bool,
        now_ns: int | None,
    ) -> IngestResult:  # fmt: skip
        state = self.file_state(p)
        plan = plan_ingest(p, state, self.store, host=self.host, fallback=fallback,
                           exposure_ns=exposure_ns, record_incomplete=record_incomplete,
                           stream=True)  # fmt: skip
        if isinstance(plan, IngestResult):
            return plan
        try:
            return self.write(plan, expect=state, now_ns=now_ns)
        except TemporaryCopyError as err:  # a long file read part by part: nothing written
            return IngestResult(p, "error", status="error", message=err.reason)

    @staticmethod
    def _continues(state: _FileState | None, rec: FileRecords) -> bool:
        """Whether the file still holds the frames indexed, timed alike (so new ones can be
        appended): its last indexed frame is unchanged, the verdicts of it and of the last
        :data:`TAIL_FRAMES` frames with a block are (the new frames may show a check failing
        before them, or the file's header now describing its data), and so are calibration
        and exposure."""
        if state is None or rec.status not in ("ok", "partial") or rec.total_frames < state.frames:
            return False
        return (
            rec.previous == (state.last_sequence, state.last_end_ns)
            and rec.previous_codes == state.tail
            and (rec.calibration_id, rec.exposure_ns) == (state.calibration_id, state.exposure_ns)
        )

    def write(
        self, rec: FileRecords, *, expect: _FileState | None = None, now_ns: int | None = None
    ) -> IngestResult:
        """Write one file's records in one transaction (the caller's side of :func:`file_records`).

        Parameters
        ----------
        rec : FileRecords
        expect : optional
            The file's state in the index when ``rec`` was planned (:meth:`file_state`);
            if another writer changed it meanwhile, nothing is written and the file is
            planned again (by :meth:`ingest`).
        """
        from qhytime.service.alerts import FrameTally, file_alerts

        now = time.time_ns() if now_ns is None else int(now_ns)
        with self.session(write=True) as s:
            self._lock_file(s, rec.host, rec.path)
            state = self._state(s, rec.host, rec.path)
            if state != expect:
                if state is not None and (state.size, state.mtime_ns, state.fingerprint) == (
                    rec.size, rec.mtime_ns, rec.fingerprint,
                ):  # fmt: skip
                    return IngestResult(rec.path, "unchanged", total_frames=state.frames,
                                        file_id=state.id, status=state.status)  # fmt: skip
                raise _Changed
            if rec.start_frame and (state is None or state.frames != rec.start_frame):
                raise _Changed
            values = rec.file_row(now)
            conn = s.connection()
            if state is None:
                file_id = int(conn.execute(_FILE_INSERT_SQL, values).scalar_one())
            else:
                file_id = state.id
                if not rec.start_frame:
                    s.execute(delete(AlertRow).where(AlertRow.file_id == file_id))
                    s.execute(delete(IndexFrame).where(IndexFrame.file_id == file_id))
                conn.execute(_FILE_UPDATE_SQL, {**values, "file_id_": file_id})
            written, tally = 0, FrameTally()
            for part in rec.parts():  # the records, or a long file's chunks read now
                written += self._insert_frames(s, part, file_id)
                tally.add(part)
            if rec.stream is not None:  # what only all the frames say
                s.execute(update(IndexFile).where(IndexFile.id == file_id).values(
                    message=rec.message, span_lo_ns=rec.span_lo_ns, span_hi_ns=rec.span_hi_ns))  # fmt: skip
            n_alerts = file_alerts(self, s, file_id, rec, now, tally)
        action = (
            "error" if rec.status == "error"
            else "appended" if rec.start_frame
            else "incomplete" if rec.status == "incomplete"
            else "indexed"
        )  # fmt: skip
        return IngestResult(
            rec.path, action, frames=written, total_frames=rec.total_frames, file_id=file_id,
            status=rec.status, message=rec.message, calibration_id=rec.calibration_id,
            alerts=n_alerts,
        )  # fmt: skip

    def _insert_frames(self, s: Session, rec: FileRecords, file_id: int) -> int:
        """Bulk-insert a file's frame rows, :data:`FRAME_BATCH` at a time.

        Core inserts of row dicts in general; on SQLite the statement is compiled once and
        the rows go to the driver's ``executemany`` :data:`SQLITE_ROWS` per statement
        (multi-row ``VALUES``: SQLite's per-statement cost paid once per block of rows), the
        values made column by column; on PostgreSQL with psycopg 3 through ``COPY``
        (SQLAlchemy's per-row parameter processing costs more than decoding the file: see
        ``benchmarks/bench_index.py``). Rows are inserted in frame order either way.
        """
        table = IndexFrame.__table__
        written = 0
        if self.dialect == "sqlite":
            conn = s.connection()
            if self._insert_sql is None:
                compiled = insert(table).compile(dialect=conn.dialect,
                                                 column_keys=list(FRAME_INSERT_KEYS))  # fmt: skip
                sql = str(compiled)
                head, sep, row = sql.partition(" VALUES ")
                if tuple(compiled.positiontup or ()) != FRAME_INSERT_KEYS or not sep:
                    raise StoreError(f"unexpected insert statement for {table.name}: {compiled}")
                self._insert_sql = sql
                self._insert_block_sql = head + sep + ", ".join([row] * SQLITE_ROWS)
            cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            k, block = len(FRAME_INSERT_KEYS), SQLITE_ROWS * len(FRAME_INSERT_KEYS)
            try:
                for lo in range(0, len(rec), FRAME_BATCH):
                    hi = min(lo + FRAME_BATCH, len(rec))
                    flat = rec.flat_rows(file_id, lo, hi)
                    whole = (hi - lo) // SQLITE_ROWS * block
                    if whole:
                        cur.executemany(self._insert_block_sql,
                                        (flat[i : i + block] for i in range(0, whole, block)))  # fmt: skip
                    if whole < len(flat):
                        cur.executemany(self._insert_sql,
                                        (flat[i : i + k] for i in range(whole, len(flat), k)))  # fmt: skip
                    written += hi - lo
            finally:
                cur.close()
            return written
        if self.dialect == "postgresql" and self.engine.dialect.driver == "psycopg":
            # psycopg 3: COPY, the server's bulk path, inside the same transaction
            cur = s.connection().connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                with cur.copy(f"COPY {table.name} ({', '.join(FRAME_INSERT_KEYS)}) FROM STDIN") as cp:
                    for rows in rec.tuples(file_id):
                        for row in rows:
                            cp.write_row(row)
                        written += len(rows)
            finally:
                cur.close()
            return written
        for batch in rec.batches(file_id):
            s.execute(insert(table), batch)
            written += len(batch)
        return written

    def ingest_paths(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        executor: Executor | None = None,
        **kw: Any,
    ) -> Iterator[IngestResult]:
        """:meth:`ingest` each path in turn (one result per file; the batch never stops).

        With an ``executor`` (:mod:`qhytime.cluster`), the per-file work (:func:`plan_ingest`:
        read, decode, look the calibration up) runs there, on a snapshot of the calibrations
        for remote workers, while this index writes each file's records as they come back,
        in input order: workers never write the database. The results are those of
        :meth:`ingest`.
        """
        if executor is None:
            for p in paths:
                yield self.ingest(p, **kw)
            return
        yield from self._ingest_with(executor, paths, **kw)

    def _ingest_with(
        self, executor: Executor, paths: Iterable[str | os.PathLike[str]], *,
        fallback: bool = False, exposure_ns: int | None = None, record_incomplete: bool = True,
        now_ns: int | None = None,
    ) -> Iterator[IngestResult]:  # fmt: skip
        from functools import partial

        from qhytime.cluster import for_workers, task_failure

        sent: deque[tuple[str, _FileState | None]] = deque()

        def planned() -> Iterator[tuple[str, _FileState | None]]:
            it = (os.path.abspath(os.fspath(path)) for path in paths)
            while chunk := list(islice(it, 256)):  # states read as files are sent, in one query
                with self.session() as s:
                    known = set(s.scalars(select(IndexFile.path).where(
                        IndexFile.host == self.host, IndexFile.path.in_(chunk))))  # fmt: skip
                    states = [self._state(s, self.host, p) if p in known else None for p in chunk]
                for p, state in zip(chunk, states, strict=True):
                    sent.append((p, state))
                    yield sent[-1]

        def lost(job: tuple[str, _FileState | None], err: BaseException) -> IngestResult:
            if isinstance(err, StoreError):
                raise err
            return IngestResult(job[0], "error", message=task_failure(err))

        work = partial(_plan_job, store=for_workers(executor, self.store), host=self.host,
                       fallback=fallback, exposure_ns=exposure_ns,
                       record_incomplete=record_incomplete)  # fmt: skip
        for plan in executor.map(work, planned(), on_error=lost):
            p, state = sent.popleft()
            if isinstance(plan, IngestResult):
                yield plan
                continue
            try:
                yield self.write(plan, expect=state, now_ns=now_ns)
            except _Changed:  # another writer got there between: this file again, here
                yield self.ingest(p, fallback=fallback, exposure_ns=exposure_ns,
                                  record_incomplete=record_incomplete, now_ns=now_ns)  # fmt: skip

    def refresh(self, *, fallback: bool = False) -> Iterator[IngestResult]:
        """Look up every indexed file's calibration again (no file access); files whose
        calibration changed get it (and their frames too). One result per changed file."""
        with self.session() as s:
            ids = list(s.scalars(
                select(IndexFile.id).where(IndexFile.setting.is_not(None)).order_by(IndexFile.id)
            ))  # fmt: skip
        for chunk in range(0, len(ids), 500):
            with self.session() as s:
                rows = s.execute(
                    select(IndexFile.id, IndexFile.path, IndexFile.setting,
                           IndexFile.calibration_id, IndexFile.calibration_kind,
                           IndexFile.extra_sigma_us)
                    .where(IndexFile.id.in_(ids[chunk : chunk + 500]))
                ).all()  # fmt: skip
            for fid, path, setting_json, cal_id, kind, extra in rows:
                setting = Setting.from_dict(json.loads(setting_json))
                try:
                    with warnings.catch_warnings(record=True):
                        warnings.simplefilter("always")
                        lookup = self.store.lookup(setting, fallback=fallback)
                except CalibrationError:
                    continue
                new = (lookup.calibration.id, lookup.kind, float(lookup.extra_offset0_sigma_us))
                if new == (cal_id, kind, float(extra or 0.0)):
                    continue
                yield self._set_calibration(fid, path, *new)

    def _set_calibration(self, file_id: int, path: str, cal_id: int | None, kind: str,
                         extra: float) -> IngestResult:  # fmt: skip
        with self.session(write=True) as s:
            f = s.get(IndexFile, file_id)
            assert f is not None
            span: tuple[int | None, int | None] = (None, None)
            if cal_id is not None and f.exposure_ns and f.height:
                model = self.calibration(cal_id).row_model(extra_offset0_sigma_us=extra)
                ref = {"start": IndexFrame.start_ns, "end": IndexFrame.end_ns,
                       "now": IndexFrame.now_ns}[model.reference]  # fmt: skip
                d = s.execute(
                    select(func.min(ref - IndexFrame.end_ns), func.max(ref - IndexFrame.end_ns))
                    .where(IndexFrame.file_id == file_id, IndexFrame.end_ns.is_not(None))
                ).first()  # fmt: skip
                if d is not None and d[0] is not None:
                    span = _span(model, f.height, f.crop_y or 0, f.binning or 1, f.exposure_ns,
                                 int(d[0]), int(d[1]))  # fmt: skip
            s.execute(
                update(IndexFile).where(IndexFile.id == file_id).values(
                    calibration_id=cal_id, calibration_kind=kind, extra_sigma_us=extra,
                    span_lo_ns=span[0], span_hi_ns=span[1],
                )
            )  # fmt: skip
            s.execute(
                update(IndexFrame).where(IndexFrame.file_id == file_id)
                .values(calibration_id=cal_id)
            )  # fmt: skip
            n = f.frames
        return IngestResult(path, "refreshed", frames=n, total_frames=n, file_id=file_id,
                            calibration_id=cal_id, message=f"calibration #{cal_id} ({kind})")  # fmt: skip

    # -- reading -----------------------------------------------------------------------------
    def _file_ids(self, s: Session, file: str | os.PathLike[str]) -> list[int]:
        text = os.fspath(file)
        conds = [IndexFile.path == os.path.abspath(text), IndexFile.path == text]
        if os.sep not in text and "/" not in text:
            conds.append(IndexFile.name == text)
        return list(s.scalars(select(IndexFile.id).where(or_(*conds)).order_by(IndexFile.id)))

    def _frames_query(
        self, s: Session, *, file: str | os.PathLike[str] | None = None,
        file_id: int | None = None, frame: int | None = None, sequence: int | None = None,
        time_from_ns: int | None = None, time_to_ns: int | None = None,
        status: str | None = None, columns: Any = _FRAME_COLS,
    ) -> Any:  # fmt: skip
        q = select(*columns).join(IndexFile, IndexFile.id == IndexFrame.file_id)
        if file is not None:
            ids = self._file_ids(s, file)
            if not ids:
                raise NotIndexedError("no such file in the index", path=os.fspath(file))
            q = q.where(IndexFrame.file_id.in_(ids))
        if file_id is not None:
            q = q.where(IndexFrame.file_id == file_id)
        if frame is not None:
            q = q.where(IndexFrame.frame == frame)
        if sequence is not None:
            q = q.where(IndexFrame.sequence == sequence)
        if time_from_ns is not None:
            q = q.where(IndexFrame.end_ns >= time_from_ns)
        if time_to_ns is not None:
            q = q.where(IndexFrame.start_ns < time_to_ns)
        if status is not None:
            q = q.where(IndexFrame.status == status)
        return q

    def frames(
        self, *, limit: int | None = None, offset: int = 0, **filters: Any
    ) -> list[IndexedFrame]:
        """Indexed frames matching the filters, in file order (by time with a time range).

        Parameters
        ----------
        file : path, optional
            A file's path (or its bare name).
        file_id, frame, sequence : int, optional
        time_from_ns, time_to_ns : int, optional
            Frames whose GPS exposure (start stamp to end stamp) overlaps ``[from, to)``.
        status : {"ok", "invalid"}, optional
        limit, offset : int

        Raises
        ------
        NotIndexedError
            When ``file`` is not in the index.
        """
        return list(self.iter_frames(limit=limit, offset=offset, **filters))

    def iter_frames(
        self, *, limit: int | None = None, offset: int = 0, **filters: Any
    ) -> Iterator[IndexedFrame]:
        """:meth:`frames`, streamed (memory independent of the number of frames)."""
        timed = filters.get("time_from_ns") is not None or filters.get("time_to_ns") is not None
        with self.session() as s:
            q = self._frames_query(s, **filters)
            order = (IndexFrame.end_ns, IndexFrame.id) if timed else (
                IndexFrame.file_id, IndexFrame.frame)  # fmt: skip
            q = q.order_by(*order).offset(offset or None).limit(limit)
            for r in s.execute(q, execution_options={"yield_per": 1000}):
                yield _frame_from_row(r)

    def count(self, **filters: Any) -> int:
        """How many frames match the filters of :meth:`frames`."""
        with self.session() as s:
            q = self._frames_query(s, columns=(func.count(IndexFrame.id),), **filters)
            return int(s.execute(q).scalar_one())

    def frame(self, frame_id: int) -> IndexedFrame:
        """One frame by id.

        Raises
        ------
        NotIndexedError
        """
        try:
            with self.engine.connect() as conn:
                r = conn.execute(_FRAME_BY_ID, {"frame_id": int(frame_id)}).first()
        except exc.SQLAlchemyError as err:
            raise self.store._store_error(err) from err
        if r is None:
            raise NotIndexedError(f"no frame with id {frame_id} in the index")
        return _frame_from_row(r)

    def model(self, frame: IndexedFrame) -> RowModel:
        """The row model of a frame's stored calibration (with a fallback's widened sigma)."""
        if frame.calibration_id is None:
            raise RowModelError(frame.reasons[-1] if frame.reasons else "no calibration",
                                path=frame.file, frame=frame.frame)  # fmt: skip
        cal = self.calibration(frame.calibration_id)
        return cal.row_model(extra_offset0_sigma_us=frame.extra_sigma_us)

    def _check_timed(self, frame: IndexedFrame, allow_invalid: bool) -> None:
        if not frame.timed:
            why = [r for r in frame.reasons if r.split(":", 1)[0] in
                   ("no_calibration", "no_exposure", "no_gps_block")] or ["no row times"]  # fmt: skip
            raise RowModelError("no row times: " + "; ".join(why), path=frame.file,
                                frame=frame.frame)  # fmt: skip
        if frame.decode_reasons and not allow_invalid:
            raise RowModelError(
                "the frame's time cannot be trusted: " + "; ".join(frame.decode_reasons)
                + " (allow_invalid=True to compute it anyway)",
                path=frame.file, frame=frame.frame,
            )  # fmt: skip

    def row_times(
        self, frame: IndexedFrame | int, rows: ArrayLike | None = None, *, allow_invalid: bool = False
    ) -> RowTimes:
        """Start, middle and end of image ``rows`` (all by default) of an indexed frame, from
        the stored stamps, exposure and calibration: the same numbers as ``qhytime rows``.

        Raises
        ------
        RowModelError
            No row times (no calibration, exposure or block), a flagged frame (unless
            ``allow_invalid``), or a row outside the frame.
        NotIndexedError
            No frame with that id.
        """
        f = frame if isinstance(frame, IndexedFrame) else self.frame(frame)
        self._check_timed(f, allow_invalid)
        model = self.model(f)
        try:
            return row_times(model, f.geometry(), f.stamp_ns(model.reference),
                             int(f.exposure_ns or 0), rows)  # fmt: skip
        except RowModelError as err:
            raise RowModelError(err.reason, path=f.file, frame=f.frame) from None

    def at(
        self, t_ns: int, *, allow_invalid: bool = False, limit: int | None = None
    ) -> Iterator[tuple[IndexedFrame, RowTimes]]:
        """Every indexed frame exposing some row at instant ``t_ns``, with those rows' times.

        A row is exposed at ``t`` when ``start <= t < end``. Frames whose own time is not
        trusted are left out unless ``allow_invalid``; frames without row times (no
        calibration or exposure) never answer.

        Examples
        --------
        >>> import tempfile, os
        >>> from qhytime.simulate import CameraSim
        >>> tmp = tempfile.mkdtemp()
        >>> paths = CameraSim(width=64, height=16, exposure_us=5000.0).write_fits(tmp, 1)
        >>> with FrameIndex(os.path.join(tmp, "i.sqlite")) as index:
        ...     _ = list(index.ingest_paths(paths))
        ...     hits = list(index.at(parse_iso_ns("2025-08-02T01:44:51.001")))
        >>> [(f.frame, t.rows.tolist()[:4]) for f, t in hits]
        []
        """
        t = int(t_ns)
        with self.session() as s:
            lo, hi = s.execute(
                select(func.min(IndexFile.span_lo_ns), func.max(IndexFile.span_hi_ns))
            ).one()
            if lo is None:
                return
            q = (
                select(*_FRAME_COLS).join(IndexFile, IndexFile.id == IndexFrame.file_id)
                .where(
                    IndexFrame.end_ns >= t - int(hi), IndexFrame.end_ns <= t - int(lo),
                    IndexFrame.end_ns + IndexFile.span_lo_ns <= t,
                    IndexFrame.end_ns + IndexFile.span_hi_ns > t,
                    IndexFrame.calibration_id.is_not(None), IndexFrame.exposure_ns.is_not(None),
                )
                .order_by(IndexFrame.end_ns, IndexFrame.id)
            )  # fmt: skip
            candidates = [_frame_from_row(r) for r in s.execute(q)]
        n = 0
        for f in candidates:
            if not f.timed or (not allow_invalid and not f.trusted):
                continue
            rt = self.row_times(f, allow_invalid=True)
            hit = (rt.start_ns[0] <= t) & (t < rt.end_ns[0])
            if not hit.any():
                continue
            yield f, RowTimes(
                rows=rt.rows[hit], start_ns=rt.start_ns[:, hit], mid_ns=rt.mid_ns[:, hit],
                end_ns=rt.end_ns[:, hit], sigma_ns=rt.sigma_ns[hit],
            )  # fmt: skip
            n += 1
            if limit is not None and n >= limit:
                return

    def summary(self) -> dict[str, Any]:
        """Files and frames indexed, the last frame indexed, active alerts."""
        with self.session() as s:
            files = int(s.scalar(select(func.count(IndexFile.id))) or 0)
            frames = int(s.scalar(select(func.count(IndexFrame.id))) or 0)
            last_id = s.scalar(select(func.max(IndexFrame.id)))
            alerts = int(s.scalar(select(func.count(AlertRow.id)).where(
                AlertRow.cleared_ns.is_(None))) or 0)  # fmt: skip
        last = self.frame(last_id).to_dict() if last_id is not None else None
        return {"files": files, "frames": frames, "last_frame": last, "active_alerts": alerts}

    def files(self, *, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        """Indexed files (id, path, host, kind, status, message, frames, calibration id)."""
        with self.session() as s:
            rows = s.execute(
                select(IndexFile.id, IndexFile.path, IndexFile.host, IndexFile.kind,
                       IndexFile.status, IndexFile.message, IndexFile.frames,
                       IndexFile.calibration_id, IndexFile.size, IndexFile.mtime_ns)
                .order_by(IndexFile.id).offset(offset or None).limit(limit)
            ).all()  # fmt: skip
        keys = ("id", "path", "host", "kind", "status", "message", "frames", "calibration_id",
                "size", "mtime_ns")  # fmt: skip
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def file_snapshot(self, folder: str | os.PathLike[str]) -> dict[str, tuple[int, int, str]]:
        """``path -> (size, mtime_ns, status)`` of this host's files under ``folder``."""
        base = os.path.join(os.path.abspath(os.fspath(folder)), "")
        like = base.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self.session() as s:
            rows = s.execute(
                select(IndexFile.path, IndexFile.size, IndexFile.mtime_ns, IndexFile.status)
                .where(IndexFile.host == self.host, IndexFile.path.like(like, escape="\\"))
            ).all()  # fmt: skip
        return {r[0]: (int(r[1]), int(r[2]), r[3]) for r in rows}


def plan_ingest(
    p: str, state: _FileState | None, store: Any, *, host: str, fallback: bool = False,
    exposure_ns: int | None = None, record_incomplete: bool = True, stream: bool = False,
) -> FileRecords | IngestResult:  # fmt: skip
    """The per-file part of :meth:`FrameIndex.ingest`: what to write for file ``p`` given what
    the index holds about it (``state``), or the result when there is nothing to write
    (unchanged, unreadable, incomplete). Reads the file and the calibrations (``store``, or a
    :class:`~qhytime.cluster.CalibrationSnapshot`), never the index."""
    try:
        st = os.stat(p)
        fp, _ = fingerprint(p)
    except FrameReadError as err:  # e.g. not a regular file (a FIFO): never opened
        return IngestResult(p, "error", message=err.reason)
    except OSError as err:  # vanished or unreadable: nothing to record
        return IngestResult(p, "error", message=f"cannot read file: {err.strerror or err}")
    if (
        state is not None
        and (state.size, state.mtime_ns, state.fingerprint) == (st.st_size, st.st_mtime_ns, fp)
    ):
        return IngestResult(p, "unchanged", total_frames=state.frames, file_id=state.id,
                            status=state.status)  # fmt: skip
    start = 0
    if (
        state is not None
        and state.kind == "ser"
        and state.status == "partial"
        and state.frames > 0
        and st.st_size > state.size
        and fingerprint(p, state.fingerprint_bytes)[0] == state.fingerprint
    ):
        start = state.frames  # a SER growing frame by frame: append its new frames
    try:
        rec = file_records(p, store, fallback=fallback, exposure_ns=exposure_ns,
                           start_frame=start, host=host, stream=stream)  # fmt: skip
        if start and not FrameIndex._continues(state, rec):
            if rec.stream is not None:
                rec.stream.plan.close()
            rec = file_records(p, store, fallback=fallback, exposure_ns=exposure_ns, host=host,
                               stream=stream)  # fmt: skip
    except FrameReadError as err:  # vanished between looks: nothing to record
        return IngestResult(p, "error", message=err.reason)
    except _NotRecorded as err:  # e.g. no room for a long file's temporary copy: next time
        return IngestResult(p, "error", status="error", message=str(err))
    if rec.status == "incomplete" and not record_incomplete:
        return IngestResult(p, "incomplete", message=rec.message, status=rec.status)
    return rec


def _plan_job(job: tuple[str, _FileState | None], **kw: Any) -> FileRecords | IngestResult:
    return plan_ingest(job[0], job[1], **kw)


class _Guard:
    """A session context whose database failures become :class:`StoreError`."""

    def __init__(self, store: CalibrationStore, ctx: Any) -> None:
        self._store, self._ctx = store, ctx

    def __enter__(self) -> Session:
        try:
            return self._ctx.__enter__()  # type: ignore[no-any-return]
        except exc.SQLAlchemyError as err:
            raise self._store._store_error(err) from err

    def __exit__(self, et: Any, ev: Any, tb: Any) -> bool:
        try:
            out = self._ctx.__exit__(et, ev, tb)
        except exc.SQLAlchemyError as err:
            raise self._store._store_error(err) from err
        if isinstance(ev, exc.SQLAlchemyError):
            raise self._store._store_error(ev) from ev
        return bool(out)

"""Alerts: what went wrong with the timing, kept in the index, shown by the watch status line,
``qhytime alerts`` and the HTTP API.

An alert is raised once for a condition and cleared when the condition ends; alerts about
frames are raised per file and kind (``frames`` counts the frames concerned, ``frame_id``
names the first) and are replaced when their file is re-indexed.

==========================  =====================================================================
kind                        raised when
==========================  =====================================================================
receiver_not_locked         a frame's stamps were taken with the GPS receiver not locked
pps_count_out_of_range      the pps count is out of range, or the box lost the PPS (``pps_lost``)
no_gps_block                frames hold no GPS block
bad_stamp                   ticks out of range, or the end stamp before the start stamp
leap_second                 a stamp within 1 s of a leap second
sequence_gap                sequence numbers jump (frames missing), within a file or from the
                            previous file of the same camera setting
sequence_repeat             a sequence number repeats (a stale block)
sequence_backwards          a sequence number goes back (out of order, or the camera restarted)
late_frame                  in a live stream (SER, or ``QHYSTRM=live``), a frame comes more than
                            1.5 frame periods after the one before it with the next sequence
                            number: the SDK's stale-frame behaviour
suspect_time                any other reason of :mod:`qhytime.validity` (``stamp_spacing``,
                            ``cadence``, ``spacing_jump``, ...): the block's time is suspect
gnss_second_offset          the block's time and the receiver's UTC differ by whole seconds
gnss_position               the block's position is more than :data:`GNSS_POSITION_TOLERANCE_M`
                            from the receiver's
gnss_silent                 the receiver sent no byte for 2 s (cleared when data return)
gnss_no_fix                 the receiver reports no fix (cleared when it has one)
no_frames                   watch mode: no new frame for longer than expected (cleared by the
                            next frame)
==========================  =====================================================================

The GNSS cross-check pairs a frame with the receiver's log by the host clock: a frame's host
time is its SER trailer time (PC clock at the start of exposure) or, for a one-frame FITS,
the file's modification time (after the end of exposure); a receiver record's is when it
arrived. Their difference in offsets, ``(block - host) - (receiver UTC - arrival)``, rounded
to whole seconds, is the disagreement (write and serial latencies well under 0.5 s are
assumed).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from qhytime.service.index import (
    AlertRow,
    FrameIndex,
    GnssLogRow,
    IndexFile,
    IndexFrame,
    iso,
)
from qhytime.validity import CountedValues, reason_code

if TYPE_CHECKING:
    from qhytime.service.index import FileRecords

NS_PER_S = 1_000_000_000
SEQ_MOD = 1 << 32
LATE_FACTOR = 1.5
"""A frame more than this many frame periods after the previous one (next sequence) is late."""
RUN_GAP_S = 60.0
"""Frames further apart than this (and ten frame periods) belong to different capture runs."""
GNSS_MATCH_S = 10.0
"""A receiver record is paired with a frame when their host times are this close."""
GNSS_POSITION_TOLERANCE_M = 100.0
EARTH_RADIUS_M = 6_371_008.8

KINDS: dict[str, str] = {
    "receiver_not_locked": "error",
    "pps_count_out_of_range": "error",
    "no_gps_block": "error",
    "bad_stamp": "error",
    "leap_second": "warning",
    "sequence_gap": "warning",
    "sequence_repeat": "error",
    "sequence_backwards": "warning",
    "late_frame": "error",
    "suspect_time": "error",
    "gnss_second_offset": "error",
    "gnss_position": "warning",
    "gnss_silent": "error",
    "gnss_no_fix": "error",
    "no_frames": "warning",
}
"""Every alert kind and its severity."""

_REASON_KIND = {
    "no_gps_block": "no_gps_block",
    "receiver_state": "receiver_not_locked",
    "pps_count_out_of_range": "pps_count_out_of_range",
    "pps_lost": "pps_count_out_of_range",
    "ticks_out_of_range": "bad_stamp",
    "end_before_start": "bad_stamp",
    "leap_second": "leap_second",
    "sequence_gap": "sequence_gap",
    "sequence_repeat": "sequence_repeat",
    "sequence_backwards": "sequence_backwards",
}


@dataclass
class Alert:
    """One alert as stored (see :meth:`to_dict` for its JSON form)."""

    id: int
    kind: str
    severity: str
    message: str
    source: str
    file_id: int | None
    file: str | None
    frame_id: int | None
    frames: int
    t_ns: int | None
    raised_ns: int
    cleared_ns: int | None

    @property
    def active(self) -> bool:
        return self.cleared_ns is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "severity": self.severity,
            "message": self.message, "source": self.source, "active": self.active,
            "file_id": self.file_id, "file": self.file, "frame_id": self.frame_id,
            "frames": self.frames, "t_ns": self.t_ns, "t": iso(self.t_ns),
            "raised_ns": self.raised_ns, "raised": iso(self.raised_ns),
            "cleared_ns": self.cleared_ns, "cleared": iso(self.cleared_ns),
        }  # fmt: skip


# -- pure checks ------------------------------------------------------------------------------


def late_frames(
    end_ns: NDArray[np.int64], sequence: NDArray[np.int64], n_previous: int = 0
) -> tuple[NDArray[np.intp], float | None]:
    """Frames of a live stream that came late against its cadence.

    Parameters
    ----------
    end_ns, sequence : int64 arrays
        End stamps and sequence numbers of consecutive frames (with a block), in capture
        order; the first ``n_previous`` are context (frames already indexed).
    n_previous : int

    Returns
    -------
    late : array of int
        Indices (into the frames after the context) of frames more than
        :data:`LATE_FACTOR` frame periods after the previous frame although their sequence
        number is the next one.
    cadence_ns : float or None
        The median interval between consecutive frames (None: fewer than 3 intervals).

    Examples
    --------
    Frames every 100 ms; the fifth comes one period late (the SDK's stale frame):

    >>> import numpy as np
    >>> end = np.array([0, 100, 200, 300, 500, 600, 700]) * 1_000_000
    >>> late, cadence = late_frames(end, np.arange(7))
    >>> late.tolist(), cadence
    ([4], 100000000.0)
    """
    end = np.asarray(end_ns, dtype=np.int64)
    seq = np.asarray(sequence, dtype=np.int64)
    if end.size < 2:
        return np.zeros(0, dtype=np.intp), None
    d = np.diff(end)
    step = np.diff(seq) % SEQ_MOD
    good = (step == 1) & (d > 0)
    if good.sum() < 3:
        return np.zeros(0, dtype=np.intp), None
    cadence = float(np.median(d[good]))
    late = np.flatnonzero(good & (d > LATE_FACTOR * cadence)) + 1 - n_previous
    return late[late >= 0], cadence


def sequence_step_reason(prev: int, now: int) -> tuple[str, str] | None:
    """The kind and text of a sequence step across two files, or None for the next number.

    Examples
    --------
    >>> sequence_step_reason(41, 44)
    ('sequence_gap', '2 frame(s) missing before sequence 44 (previous 41)')
    >>> sequence_step_reason(7, 8) is None
    True
    """
    s = (now - prev) % SEQ_MOD
    if s == 1:
        return None
    if s == 0:
        return "sequence_repeat", f"sequence {now} repeats the previous frame's (stale block)"
    if s < SEQ_MOD // 2:
        return "sequence_gap", f"{s - 1} frame(s) missing before sequence {now} (previous {prev})"
    return "sequence_backwards", f"sequence {now} follows {prev} (out of order, or a restart)"


def distance_m(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> Any:
    """Great-circle distance in metres (haversine, mean Earth radius).

    Examples
    --------
    >>> round(float(distance_m(52.0, 0.0, 52.001, 0.0)), 2)
    111.2
    """
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def whole_second_offset(
    block_ns: Any, frame_host_ns: Any, receiver_utc_ns: Any, receiver_host_ns: Any
) -> Any:
    """Block time minus receiver UTC at the same host instant, rounded to whole seconds.

    Examples
    --------
    A receiver still 18 s behind (no leap-second count yet), latencies 0.2 and 0.1 s:

    >>> whole_second_offset(1_000_018_000_000_000, 1_000_000_200_000_000,
    ...                     999_999_990_000_000_000, 999_999_990_100_000_000)
    18
    """
    x = (np.asarray(block_ns, dtype=np.int64) - np.asarray(frame_host_ns, dtype=np.int64)) - (
        np.asarray(receiver_utc_ns, dtype=np.int64) - np.asarray(receiver_host_ns, dtype=np.int64)
    )
    out = (2 * x + NS_PER_S) // (2 * NS_PER_S)
    return int(out) if np.ndim(out) == 0 else out


# -- writing alerts ---------------------------------------------------------------------------


def _add(
    s: Session, kind: str, message: str, *, source: str, now_ns: int, file_id: int | None = None,
    frame_id: int | None = None, frames: int = 0, t_ns: int | None = None,
) -> None:  # fmt: skip
    s.add(AlertRow(kind=kind, severity=KINDS[kind], message=message, source=source,
                   file_id=file_id, frame_id=frame_id, frames=frames, t_ns=t_ns,
                   raised_ns=now_ns))  # fmt: skip


class FrameTally:
    """What the alerts of a file's newly written frames need, gathered part by part (a long
    file is written in chunks): the reasons' kinds with their counts and first frame, the
    first and last frame with a block, and the multiset of good frame-to-frame steps (for
    the cadence and the late frames, as :func:`late_frames` finds them)."""

    def __init__(self) -> None:
        self.found: dict[str, list[Any]] = {}  # kind -> [count, frame, reason, t_ns]
        self.first: tuple[int, int, int] | None = None  # (frame, sequence, end_ns)
        self.last: tuple[int, int, int] | None = None
        self.steps = CountedValues(np.int64)  # good steps (ns), tagged with the frame ending them
        self.frames = 0

    def add(self, rec: FileRecords) -> None:
        """Tally the frames ``rec`` holds (the next part of the file, in frame order)."""
        c = rec.columns
        n = len(rec)
        self.frames += n
        if n == 0:
            return
        for k, reasons in rec.reasons.items():  # only the frames that have reasons, in order
            for r in reasons:
                kind = _REASON_KIND.get(reason_code(r), "suspect_time")
                entry = self.found.get(kind)
                if entry is None:
                    t = int(c["end_ns"][k]) if c["present"][k] else None
                    self.found[kind] = [1, int(c["frame"][k]), r, t]
                else:
                    entry[0] += 1
        pos = np.flatnonzero(c["present"])
        if not pos.size:
            return
        frames = np.asarray(c["frame"][pos], dtype=np.int64)
        seq = np.asarray(c["sequence"][pos], dtype=np.int64)
        end = np.asarray(c["end_ns"][pos], dtype=np.int64)
        if self.last is not None:
            frames_all = frames
            seq = np.concatenate([[self.last[1]], seq])
            end = np.concatenate([[self.last[2]], end])
        else:
            self.first = (int(frames[0]), int(seq[0]), int(end[0]))
            frames_all = frames[1:]
        d = np.diff(end)
        good = (np.diff(seq) % SEQ_MOD == 1) & (d > 0)
        self.steps.add(d[good], frames_all[good])
        self.last = (int(frames[-1]), int(seq[-1]), int(end[-1]))

    def late(self, prev: Sequence[Any]) -> tuple[int, int | None, int | None, float | None]:
        """Late frames after ``prev`` (frames already indexed, as :func:`late_frames` takes
        them as context): ``(count, first late frame, its step in ns, cadence)``."""
        both = self.steps.copy()
        bridge: int | None = None  # the step from the last frame indexed to this file's first
        if prev and self.first is not None:
            p_seq = np.array([p[0] for p in prev] + [self.first[1]], dtype=np.int64)
            p_end = np.array([p[1] for p in prev] + [self.first[2]], dtype=np.int64)
            d = np.diff(p_end)
            good = (np.diff(p_seq) % SEQ_MOD == 1) & (d > 0)
            both.add(d[good])
            if good[-1]:
                bridge = int(d[-1])
        if both.total() < 3:
            return 0, None, None, None
        cadence = both.median()
        assert cadence is not None
        threshold = LATE_FACTOR * cadence
        late = self.steps.values > threshold
        count = int(self.steps.counts[late].sum())
        bridge_late = bridge is not None and bool(np.array([bridge], dtype=np.int64) > threshold)
        if bridge_late:
            assert self.first is not None
            return count + 1, self.first[0], bridge, cadence
        if not late.any():
            return count, None, None, cadence
        j = int(np.argmin(np.where(late, self.steps.tags, np.iinfo(np.int64).max)))
        return count, int(self.steps.tags[j]), int(self.steps.values[j]), cadence


def file_alerts(
    index: FrameIndex, s: Session, file_id: int, rec: FileRecords, now_ns: int,
    tally: FrameTally | None = None,
) -> int:  # fmt: skip
    """Raise the alerts of one file's newly written frames (inside its write transaction).

    ``tally`` holds what the frames written say (:class:`FrameTally`, gathered as a long
    file is written part by part); by default it is taken from ``rec``'s frames.

    Returns the number of alerts raised.
    """
    if tally is None:
        tally = FrameTally()
        tally.add(rec)
    if tally.frames == 0:
        return 0
    found = {kind: list(v) for kind, v in tally.found.items()}
    setting = rec.setting_key
    live = setting is not None and "|live|" in setting
    raised = 0
    if tally.first is not None and setting is not None:
        first_end = tally.first[2]
        same = (IndexFile.host == rec.host, IndexFile.setting_key == setting,
                IndexFrame.sequence.is_not(None), IndexFrame.end_ns.is_not(None))  # fmt: skip
        prev = s.execute(
            select(IndexFrame.sequence, IndexFrame.end_ns)
            .join(IndexFile, IndexFile.id == IndexFrame.file_id)
            .where(*same, IndexFrame.end_ns < first_end,
                   ~((IndexFrame.file_id == file_id) & (IndexFrame.frame >= rec.start_frame)))
            .order_by(IndexFrame.end_ns.desc()).limit(8)
        ).all()[::-1]  # fmt: skip
        count, late_frame, step_ns, cadence = tally.late(prev)
        if rec.start_frame == 0:
            raised += _across_files(s, rec, file_id, same, prev, cadence, now_ns, tally)
        if live and late_frame is not None and step_ns is not None and cadence:
            found["late_frame"] = [
                count, late_frame,
                f"late_frame: {count} frame(s) came more than {LATE_FACTOR} frame periods "
                f"after the previous one (next sequence number); the first "
                f"{float(step_ns) / cadence:.2f} periods of {cadence / 1e6:.3f} ms after it: the "
                "SDK's stale-frame behaviour",
                None,
            ]  # fmt: skip
    if found:
        wanted = sorted({int(v[1]) for v in found.values()})
        ids = dict(s.execute(
            select(IndexFrame.frame, IndexFrame.id)
            .where(IndexFrame.file_id == file_id, IndexFrame.frame.in_(wanted))
        ).all())  # fmt: skip
        for kind, (count, fr, reason, t) in found.items():
            if kind == "late_frame":
                t = s.scalar(select(IndexFrame.end_ns).where(IndexFrame.file_id == file_id,
                                                             IndexFrame.frame == fr))  # fmt: skip
            _add(s, kind,
                 f"{rec.name}: {count} frame(s); first frame {fr}: {reason}",
                 source="index", now_ns=now_ns, file_id=file_id, frame_id=ids.get(fr),
                 frames=count, t_ns=t)  # fmt: skip
            raised += 1
    raised += gnss_check(s, now_ns, file_id=file_id)
    return raised


def _across_files(
    s: Session, rec: FileRecords, file_id: int, same: tuple[Any, ...], prev: Sequence[Any],
    cadence: float | None, now_ns: int, tally: FrameTally,
) -> int:  # fmt: skip
    """Sequence steps between a newly indexed file and its neighbours in time (same host and
    setting, same capture run): from the frame before it, and to the frame after it, whose
    file's earlier cross-file alert is cleared and raised again only if still true (files may
    be indexed out of order)."""
    assert tally.first is not None and tally.last is not None
    f_frame, f_seq, f_end = tally.first
    l_seq, l_end = tally.last[1], tally.last[2]
    run_ns = max(RUN_GAP_S * NS_PER_S, 10 * (cadence or 0.0))
    raised = 0
    if prev and f_end - int(prev[-1][1]) <= run_ns:
        step = sequence_step_reason(int(prev[-1][0]), f_seq)
        if step is not None:
            fid = s.scalar(select(IndexFrame.id).where(IndexFrame.file_id == file_id,
                                                       IndexFrame.frame == f_frame))  # fmt: skip
            _add(s, step[0], f"{rec.name}: frame {f_frame}: {step[1]} (across "
                 "files)", source="sequence", now_ns=now_ns, file_id=file_id, frame_id=fid,
                 frames=1, t_ns=f_end)  # fmt: skip
            raised += 1
    nxt = s.execute(
        select(IndexFrame.sequence, IndexFrame.end_ns, IndexFrame.file_id, IndexFrame.id,
               IndexFrame.frame, IndexFile.name)
        .join(IndexFile, IndexFile.id == IndexFrame.file_id)
        .where(*same, IndexFrame.end_ns > l_end, IndexFrame.file_id != file_id)
        .order_by(IndexFrame.end_ns).limit(1)
    ).first()  # fmt: skip
    if nxt is not None:
        s.execute(
            update(AlertRow)
            .where(AlertRow.file_id == nxt[2], AlertRow.source == "sequence",
                   AlertRow.cleared_ns.is_(None))
            .values(cleared_ns=now_ns)
        )  # fmt: skip
        if int(nxt[1]) - l_end <= run_ns:
            step = sequence_step_reason(l_seq, int(nxt[0]))
            if step is not None:
                _add(s, step[0], f"{nxt[5]}: frame {nxt[4]}: {step[1]} (across files)",
                     source="sequence", now_ns=now_ns, file_id=int(nxt[2]),
                     frame_id=int(nxt[3]), frames=1, t_ns=int(nxt[1]))  # fmt: skip
                raised += 1
    return raised


def raise_alert(
    index: FrameIndex, kind: str, message: str, *, source: str, now_ns: int,
    t_ns: int | None = None,
) -> bool:  # fmt: skip
    """Raise a condition alert unless one of that kind and source is active already.

    Returns True when a new alert was stored.
    """
    with index.session(write=True) as s:
        active = s.scalar(
            select(AlertRow.id).where(AlertRow.kind == kind, AlertRow.source == source,
                                      AlertRow.file_id.is_(None), AlertRow.cleared_ns.is_(None))
        )  # fmt: skip
        if active is not None:
            return False
        _add(s, kind, message, source=source, now_ns=now_ns, t_ns=t_ns)
    return True


def clear_alerts(index: FrameIndex, kind: str, *, source: str, now_ns: int) -> int:
    """Clear the active condition alerts of one kind and source; returns how many."""
    with index.session(write=True) as s:
        res = s.execute(
            update(AlertRow)
            .where(AlertRow.kind == kind, AlertRow.source == source, AlertRow.file_id.is_(None),
                   AlertRow.cleared_ns.is_(None))
            .values(cleared_ns=now_ns)
        )  # fmt: skip
        return int(res.rowcount or 0)


def list_alerts(
    index: FrameIndex, *, active_only: bool = True, limit: int | None = 100, offset: int = 0,
    kind: str | None = None,
) -> list[Alert]:  # fmt: skip
    """Alerts, newest first (only the active ones by default)."""
    return list(iter_alerts(index, active_only=active_only, limit=limit, offset=offset, kind=kind))


def iter_alerts(
    index: FrameIndex, *, active_only: bool = True, limit: int | None = None, offset: int = 0,
    kind: str | None = None,
) -> Iterator[Alert]:  # fmt: skip
    with index.session() as s:
        q = select(AlertRow, IndexFile.path).outerjoin(IndexFile, IndexFile.id == AlertRow.file_id)
        if active_only:
            q = q.where(AlertRow.cleared_ns.is_(None))
        if kind is not None:
            q = q.where(AlertRow.kind == kind)
        q = q.order_by(AlertRow.id.desc()).offset(offset or None).limit(limit)
        for a, path in s.execute(q).all():
            yield Alert(id=int(a.id), kind=a.kind, severity=a.severity, message=a.message,
                        source=a.source, file_id=a.file_id, file=path, frame_id=a.frame_id,
                        frames=int(a.frames or 0), t_ns=a.t_ns, raised_ns=int(a.raised_ns),
                        cleared_ns=a.cleared_ns)  # fmt: skip


def count_alerts(index: FrameIndex, *, active_only: bool = True) -> int:
    with index.session() as s:
        q = select(func.count(AlertRow.id))
        if active_only:
            q = q.where(AlertRow.cleared_ns.is_(None))
        return int(s.scalar(q) or 0)


# -- GNSS cross-check -------------------------------------------------------------------------


def gnss_check(
    s: Session, now_ns: int, *, file_id: int | None = None, host_from_ns: int | None = None,
    host_to_ns: int | None = None,
) -> int:  # fmt: skip
    """Cross-check frames not yet checked against the receiver's log; returns alerts raised.

    With ``file_id``: that file's frames. With a host-time range: frames (of files indexed in
    the hour before it) whose host time lies in it. Frames get ``gnss_offset_s`` and
    ``gnss_distance_m``; whole-second or position disagreements raise alerts per file.
    """
    match_ns = int(GNSS_MATCH_S * NS_PER_S)
    host_t = func.coalesce(IndexFrame.host_ns, IndexFile.mtime_ns)
    q = (
        select(IndexFrame.id, IndexFrame.file_id, IndexFrame.frame, IndexFrame.start_ns,
               IndexFrame.end_ns, IndexFrame.host_ns, IndexFile.mtime_ns,
               IndexFrame.latitude_deg, IndexFrame.longitude_deg, IndexFile.name)
        .join(IndexFile, IndexFile.id == IndexFrame.file_id)
        .where(IndexFrame.gnss_offset_s.is_(None), IndexFrame.end_ns.is_not(None),
               (IndexFrame.host_ns.is_not(None)) | (IndexFile.frames == 1))
    )  # fmt: skip
    if file_id is not None:
        if s.scalar(select(func.count(GnssLogRow.id)).where(GnssLogRow.utc_ns.is_not(None))) == 0:
            return 0
        q = q.where(IndexFrame.file_id == file_id)
    else:
        if host_from_ns is None or host_to_ns is None:
            raise ValueError("give file_id or a host-time range")
        q = q.where(
            IndexFile.indexed_ns >= host_from_ns - 3_600 * NS_PER_S,
            host_t >= host_from_ns - match_ns, host_t <= host_to_ns + match_ns,
        )  # fmt: skip
    rows = s.execute(q).all()
    if not rows:
        return 0
    # frame host time: the SER trailer (start of exposure) or the file's mtime (after its end)
    fh = np.array([r[5] if r[5] is not None else r[6] for r in rows], dtype=np.int64)
    fb = np.array([r[3] if r[5] is not None else r[4] for r in rows], dtype=np.int64)
    fixes = s.execute(
        select(GnssLogRow.host_ns, GnssLogRow.utc_ns, GnssLogRow.latitude_deg,
               GnssLogRow.longitude_deg)
        .where(GnssLogRow.utc_ns.is_not(None), GnssLogRow.host_ns >= int(fh.min()) - match_ns,
               GnssLogRow.host_ns <= int(fh.max()) + match_ns)
        .order_by(GnssLogRow.host_ns)
    ).all()  # fmt: skip
    if not fixes:
        return 0
    xh = np.array([f[0] for f in fixes], dtype=np.int64)
    j = np.clip(np.searchsorted(xh, fh), 1, len(xh) - 1) if len(xh) > 1 else np.zeros(len(fh), int)
    if len(xh) > 1:
        j = np.where(np.abs(xh[j - 1] - fh) <= np.abs(xh[j] - fh), j - 1, j)
    near = np.abs(xh[j] - fh) <= match_ns
    updates, per_file = [], {}
    for k in np.flatnonzero(near):
        r, f = rows[k], fixes[int(j[k])]
        off = whole_second_offset(int(fb[k]), int(fh[k]), int(f[1]), int(f[0]))
        dist = None
        if None not in (r[7], r[8], f[2], f[3]):
            dist = float(distance_m(r[7], r[8], f[2], f[3]))
        updates.append({"fid": r[0], "off": int(off), "dist": dist})
        st = per_file.setdefault(r[1], {"name": r[9], "off": [], "pos": []})
        if off != 0:
            st["off"].append((r[0], r[2], int(off), int(r[4])))
        if dist is not None and dist > GNSS_POSITION_TOLERANCE_M:
            st["pos"].append((r[0], r[2], dist, int(r[4])))
    if updates:
        s.execute(
            update(IndexFrame.__table__)
            .where(IndexFrame.__table__.c.id == bindparam("fid"))
            .values(gnss_offset_s=bindparam("off"), gnss_distance_m=bindparam("dist")),
            updates,
        )
    raised = 0
    for fid, st in per_file.items():
        if st["off"]:
            frame_id, fr, off, t = st["off"][0]
            _add(s, "gnss_second_offset",
                 f"{st['name']}: {len(st['off'])} frame(s); first frame {fr}: the block's time is "
                 f"{off:+d} s from the receiver's UTC (a receiver without its leap-second count, "
                 "or a wrong clock)", source="gnss", now_ns=now_ns, file_id=fid,
                 frame_id=frame_id, frames=len(st["off"]), t_ns=t)  # fmt: skip
            raised += 1
        if st["pos"]:
            frame_id, fr, dist, t = st["pos"][0]
            _add(s, "gnss_position",
                 f"{st['name']}: {len(st['pos'])} frame(s); first frame {fr}: the block's "
                 f"position is {dist:.0f} m from the receiver's (tolerance "
                 f"{GNSS_POSITION_TOLERANCE_M:.0f} m)", source="gnss", now_ns=now_ns,
                 file_id=fid, frame_id=frame_id, frames=len(st["pos"]), t_ns=t)  # fmt: skip
            raised += 1
    return raised


def finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)

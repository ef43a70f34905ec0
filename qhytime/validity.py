"""Whether a frame's GPS time can be trusted: a list of reasons per frame, never a silent time.

Every reason is a string that starts with a short code and a colon, then says what is
wrong in words, e.g. ``"receiver_state: start, end, now stamps in state 2 (locking: ...)"``.
An empty list means the frame is good. The checks are vectorised over frames.

The block has no checksum, so a damaged block or a lying file header must be caught by
consistency: within a frame (its three stamps against each other and the exposure, its
fields within their ranges), across a sequence of frames (stamps advance with the
sequence's cadence, spacing, pps count and position steady) and in the file's structure.

=====================  =============================================================
code                   meaning
=====================  =============================================================
no_gps_block           no block in the pixels (width/height fields do not match the
                       frame, all zero, or the pixels cannot hold one)
file_structure         the file's size or layout contradicts its header (e.g. a SER
                       whose size is not header + frames x frame bytes + trailer)
receiver_state         a stamp was taken with the receiver not locked (state < 3);
                       state 2 ("locking") still reports the time
ticks_out_of_range     ticks >= pps count: impossible for a good stamp
pps_count_out_of_range pps count zero or outside 9,999,000..10,001,000
pps_lost               pps count 10,000,500: the box lost the PPS signal
end_before_start       the end stamp precedes the start stamp
stamp_spacing          the three stamps of the frame are not spaced as a camera writes
                       them (see "Stamp spacing" below)
date_out_of_range      a stamp lies before 2015 (receiver not locked, or the GPS
                       week-rollover bug)
position_out_of_range  latitude/longitude digits outside their ranges (minutes >= 60,
                       degrees > 90 / 180, sign digit not 0 or 1)
leap_second            a stamp lies within 1 s of a leap second (ambiguous)
sequence_gap           frames missing before this one in the sequence
sequence_repeat        same sequence number as the previous frame (stale block)
sequence_backwards     sequence number lower than the previous frame's
spacing_jump           this frame's end - start or now - end differs from its
                       neighbours' in the sequence (a stamp is damaged)
cadence                this frame's end stamp is off the sequence's cadence, or it
                       starts before the previous frame ends
pps_count_jump         the pps count differs from its neighbours' by more than 100
position_jump          the position differs from its neighbours' by more than 0.5 deg
=====================  =============================================================

Only ``sequence_gap`` describes the neighbours rather than the frame
(:data:`SEQUENCE_CONTEXT_CODES`); every other code says the frame's own time is suspect.

Stamp spacing
-------------
Which instants the camera stamps is not settled (``../shared/spec/gps-block.md``): start
and end may be the two edges of the ~0.4 us VSYNC pulse (QHY600 with GPSBOX), or the
shutter opening and closing (QHY174M-GPS, and the reference encoder: end - start = the
exposure); now is written shortly after end (0.06..5 ms in the reference data, 1 ms in the
simulator). The bounds therefore catch seconds-level damage and leave all of that alone:

- ``end - start`` is either at most :data:`EDGE_SPAN_NS` (1 ms, VSYNC edges) or within
  :data:`EXPOSURE_TOL_NS` (0.5 s) of the exposure, when the file gives one;
- a lone frame (no sequence around it) without an exposure: ``end - start`` below
  :data:`LONE_SPAN_MAX_NS` (1 s), since nothing else can confirm a longer span;
- ``|now - end|`` at most :data:`NOW_END_MAX_NS` (0.5 s).

A damaged seconds field moves a stamp by whole seconds (>= 1 s) and breaks one of these.
Within a sequence the spacing must also stay steady: ``end - start`` (less the exposure)
within :data:`SPAN_STEADY_NS` (0.5 ms) and ``now - end`` within :data:`NOW_STEADY_NS`
(10 ms, the reference data's now stamps jitter by ~5 ms) of the median of the frame and its
two neighbours on each side. So a start or end stamp off by 1 ms or more inside a sequence
is flagged; a now stamp only beyond the now-stamp jitter (use ``start`` or ``end`` as the
calibration's reference for sub-10 ms work on such data).

Sequences
---------
A sequence is the frames of one multi-frame file (SER, FITS cube), or consecutive
single-frame FITS files given in order; frames of another size start a new run (sequence
numbers do not: a damaged one must not cut its frame off from its neighbours). Within a
run:

- sequence numbers step by one (``sequence_gap``/``_repeat``/``_backwards``);
- the end stamps advance with the fitted cadence (median end-to-end step per sequence
  step) to within max(5 ms, half a period) in multi-frame files, whose frames come at the
  camera's steady rate; single-frame FITS files come when the software asks for them, so
  there only "each frame starts after the previous one ended" (1 ms slack) is checked;
- spacing, pps count and position are steady (medians of 5 neighbours).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qhytime.gpsblock import (
    STAMP_NAMES,
    GpsBlockArray,
    latitude_deg_from_raw,
    longitude_deg_from_raw,
)
from qhytime.timebase import (
    LEAP_WINDOW_NS,
    NS_PER_S,
    PPS_COUNT_LOST,
    PPS_COUNT_MAX,
    PPS_COUNT_MIN,
    near_leap_second,
    unix_ns_to_iso,
)

STATE_TEXT = {
    0: "just powered on",
    1: "not locked, searching",
    2: "locking: position and time valid, not locked",
    3: "locked",
}

REASON_CODES = (
    "no_gps_block",
    "file_structure",
    "receiver_state",
    "ticks_out_of_range",
    "pps_count_out_of_range",
    "pps_lost",
    "end_before_start",
    "stamp_spacing",
    "date_out_of_range",
    "position_out_of_range",
    "leap_second",
    "sequence_gap",
    "sequence_repeat",
    "sequence_backwards",
    "spacing_jump",
    "cadence",
    "pps_count_jump",
    "position_jump",
)
"""Every reason code, in the order reasons are listed for a frame."""

SEQUENCE_CONTEXT_CODES: frozenset[str] = frozenset({"sequence_gap"})
"""Codes that describe the frame's neighbours, not its own block: a gap says frames are
missing before this one, not that this frame's time is wrong. Jobs that time frames one by
one (light curves, the index) may keep such a frame's time and report the gap."""


def own_time_trusted(reasons: list[str]) -> bool:
    """True when every reason is about the frame's neighbours (see
    :data:`SEQUENCE_CONTEXT_CODES`), so the frame's own time can be used.

    Examples
    --------
    >>> own_time_trusted([]), own_time_trusted(["sequence_gap: 1 frame(s) missing ..."])
    (True, True)
    >>> own_time_trusted(["receiver_state: ..."])
    False
    """
    return all(reason_code(r) in SEQUENCE_CONTEXT_CODES for r in reasons)

_SEQ_MOD = 1 << 32
_CODE_ORDER = {code: k for k, code in enumerate(REASON_CODES)}

EDGE_SPAN_NS = 1_000_000
"""Start and end as the VSYNC pulse's edges: at most 1 ms apart."""
EXPOSURE_TOL_NS = 500_000_000
"""``end - start`` may differ from the file's exposure by up to 0.5 s."""
LONE_SPAN_MAX_NS = NS_PER_S
"""A lone frame with no exposure known: ``end - start`` must be below 1 s."""
NOW_END_MAX_NS = 500_000_000
"""``|now - end|`` at most 0.5 s."""
MIN_DATE_UNIX_NS = 1_420_070_400 * NS_PER_S
"""2015-01-01T00:00:00 UTC: no QHY GPS camera stamped before it."""
SPAN_STEADY_NS = 500_000
"""In a sequence, ``end - start`` (less the exposure) within 0.5 ms of its neighbours'."""
NOW_STEADY_NS = 10_000_000
"""In a sequence, ``now - end`` within 10 ms of its neighbours'."""
CADENCE_MIN_TOL_NS = 5_000_000
"""In a multi-frame file, end stamps on the fitted cadence to max(5 ms, half a period)."""
OVERLAP_TOL_NS = 1_000_000
"""A frame may start at most 1 ms before the previous one ends."""
PPS_STEADY_COUNTS = 100
"""In a sequence, the pps count within 100 of its neighbours'."""
POSITION_STEADY_DEG = 0.5
"""In a sequence, latitude and longitude within 0.5 deg of their neighbours'."""


class Sparse(dict[int, list[str]]):
    """Reasons of the frames that have some, by frame index (most frames have none).

    Examples
    --------
    >>> r = Sparse()
    >>> r.add(2, "sequence_gap: 1 frame(s) missing ...")
    >>> r.dense(3)
    [[], [], ['sequence_gap: 1 frame(s) missing ...']]
    """

    def add(self, i: Any, text: str) -> None:
        """Add a reason to frame ``i``."""
        self.setdefault(int(i), []).append(text)

    def merge(self, other: dict[int, list[str]], offset: int = 0) -> None:
        """Add every reason of ``other`` (its frame ``k`` is frame ``k + offset`` here)."""
        for k, texts in other.items():
            self.setdefault(int(k) + offset, []).extend(texts)

    def dense(self, n: int) -> list[list[str]]:
        """One (possibly empty) list per frame."""
        out: list[list[str]] = [[] for _ in range(n)]
        for i, texts in self.items():
            out[i].extend(texts)
        return out


class FrameReasons(Sequence[list[str]]):
    """The reasons of every frame of a file, held sparsely (most frames have none).

    It reads like a list with one list of reasons per frame (empty for a good frame), without
    a Python object per good frame: ``reasons[i]``, ``len``, iteration, slices (another
    :class:`FrameReasons`) and ``==`` with a list of lists. ``reasons[i] = [...]`` replaces a
    frame's reasons. :attr:`flagged` and :meth:`items` give only the frames that have some.

    A frame's list is the stored one when it has reasons, a new empty list otherwise: change
    a frame's reasons by assigning them, not by appending to what was read.

    Parameters
    ----------
    n : int
        Number of frames.
    found : dict of int to list of str, optional
        The reasons of the frames that have some, by frame index (``0 <= i < n``).

    Examples
    --------
    >>> r = FrameReasons(3, {1: ["sequence_gap: 1 frame(s) missing ..."]})
    >>> len(r), r[0], r[1][0][:12], r.flagged.tolist()
    (3, [], 'sequence_gap', [1])
    >>> r == [[], ["sequence_gap: 1 frame(s) missing ..."], []], r.ok().tolist()
    (True, [True, False, True])
    >>> r[1:] == [["sequence_gap: 1 frame(s) missing ..."], []]
    True
    """

    __slots__ = ("_found", "_keys", "_n")

    def __init__(self, n: int = 0, found: dict[int, list[str]] | None = None) -> None:
        self._n = int(n)
        self._keys: list[int] | None = None  # flagged frames in order, made on demand
        self._found: dict[int, list[str]] = {}
        for i, texts in (found or {}).items():
            if texts:
                if not 0 <= i < self._n:
                    raise IndexError(f"frame {i} outside 0..{self._n - 1}")
                self._found[int(i)] = texts

    @classmethod
    def from_lists(cls, reasons: Iterable[list[str]]) -> FrameReasons:
        """From one list of reasons per frame."""
        found, n = {}, 0
        for n, texts in enumerate(reasons, 1):
            if texts:
                found[n - 1] = list(texts)
        return cls(n, found)

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> list[str]: ...
    @overload
    def __getitem__(self, i: slice) -> FrameReasons: ...
    def __getitem__(self, i: int | slice) -> list[str] | FrameReasons:
        if isinstance(i, slice):
            r = range(self._n)[i]
            if r.step == 1:
                return FrameReasons(len(r), {k - r.start: v for k, v in self.items(r.start, r.stop)})
            return FrameReasons(len(r), {j: self._found[k] for j, k in enumerate(r) if k in self._found})
        k = self._index(i)
        texts = self._found.get(k)
        return [] if texts is None else texts

    def __setitem__(self, i: int, texts: list[str]) -> None:
        k = self._index(i)
        if texts:
            if k not in self._found:
                self._keys = None
            self._found[k] = list(texts)
        elif self._found.pop(k, None) is not None:
            self._keys = None

    def _index(self, i: Any) -> int:
        k = int(i)
        if not -self._n <= k < self._n:
            raise IndexError(f"frame index {k} out of range for {self._n} frame(s)")
        return k % self._n

    def __iter__(self) -> Iterator[list[str]]:
        found = self._found
        for i in range(self._n):
            texts = found.get(i)
            yield [] if texts is None else texts

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrameReasons):
            return self._n == other._n and self._found == other._found
        if isinstance(other, list | tuple):
            return len(other) == self._n and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FrameReasons({self._n}, {self._found!r})"

    def _sorted(self) -> list[int]:
        if self._keys is None:
            self._keys = sorted(self._found)
        return self._keys

    @property
    def flagged(self) -> NDArray[np.intp]:
        """Indices of the frames that have reasons, in order."""
        return np.array(self._sorted(), dtype=np.intp)

    def items(self, lo: int = 0, hi: int | None = None) -> Iterator[tuple[int, list[str]]]:
        """``(frame, reasons)`` of the frames that have reasons, in frame order (those of
        frames ``lo..hi-1`` only, when given)."""
        keys = self._sorted()
        a = bisect.bisect_left(keys, lo) if lo > 0 else 0
        b = len(keys) if hi is None else bisect.bisect_left(keys, hi)
        for i in keys[a:b]:
            yield i, self._found[i]

    def ok(self) -> NDArray[np.bool_]:
        """True for the frames without reasons."""
        out = np.ones(self._n, dtype=bool)
        out[self.flagged] = False
        return out


def sort_reasons(reasons: list[str]) -> list[str]:
    """Reasons in the order of :data:`REASON_CODES` (stable; unknown codes last).

    Examples
    --------
    >>> sort_reasons(["sequence_gap: ...", "receiver_state: ..."])
    ['receiver_state: ...', 'sequence_gap: ...']
    """
    return sorted(reasons, key=lambda r: _CODE_ORDER.get(reason_code(r), len(_CODE_ORDER)))


def reason_code(reason: str) -> str:
    """The code part of a reason string.

    Examples
    --------
    >>> reason_code("pps_lost: pps count 10000500 ...")
    'pps_lost'
    """
    return reason.split(":", 1)[0]


def block_presence(
    blocks: GpsBlockArray, width: Any = None, height: Any = None
) -> tuple[NDArray[np.bool_], list[str | None]]:
    """Which frames hold a GPS block, and why not where they do not.

    Parameters
    ----------
    blocks : GpsBlockArray
        Bytes decoded from where the block would be.
    width, height : int or array of int, optional
        The frame size; a block whose width/height fields differ is not a block.

    Returns
    -------
    present : numpy.ndarray of bool
    why_not : list of str or None
        A ``no_gps_block`` reason for each absent frame, None for present ones.

    Examples
    --------
    >>> import numpy as np
    >>> from qhytime.gpsblock import GpsBlockArray
    >>> present, why = block_presence(GpsBlockArray.from_bytes(np.zeros((1, 44), np.uint8)), 64, 32)
    >>> bool(present[0]), why[0].split(':')[0]
    (False, 'no_gps_block')
    """
    n = len(blocks)
    bw, bh = blocks.width, blocks.height
    zero = (
        (blocks.sequence == 0)
        & (bw == 0)
        & (bh == 0)
        & (blocks.start_seconds == 0)
        & (blocks.end_seconds == 0)
        & (blocks.now_seconds == 0)
        & (blocks.pps_count == 0)
    )
    present = ~zero
    if width is not None and height is not None:
        w = np.broadcast_to(np.asarray(width, dtype=np.int64), (n,))
        h = np.broadcast_to(np.asarray(height, dtype=np.int64), (n,))
        present &= (bw == w) & (bh == h)
    why: list[str | None] = [None] * n
    for i in np.flatnonzero(~present):
        if zero[i]:
            why[i] = (
                "no_gps_block: the block bytes are all zero (no GPS box, or the block was cleared)"
            )
        else:
            why[i] = (
                f"no_gps_block: width/height fields ({bw[i]}x{bh[i]}) do not match the frame "
                f"({w[i]}x{h[i]}); "
                "the pixels hold no GPS block (binned, cropped or processed frame, or no GPS box)"
            )
    return present, why


def stamp_reasons(blocks: GpsBlockArray, unix_ns: dict[str, NDArray[np.int64]]) -> list[list[str]]:
    """Reasons (per frame) that the stamps of decoded blocks cannot be trusted.

    Parameters
    ----------
    blocks : GpsBlockArray
        Blocks that are present (see :func:`block_presence`).
    unix_ns : dict of str to int64 array
        Times of the ``start``, ``end`` and ``now`` stamps (see
        :func:`qhytime.timebase.stamp_unix_ns`).

    Returns
    -------
    list of list of str
        One (possibly empty) list of reasons per frame.
    """
    return _stamp_reasons(blocks, unix_ns).dense(len(blocks))


def _stamp_reasons(blocks: GpsBlockArray, unix_ns: dict[str, NDArray[np.int64]]) -> Sparse:
    out = Sparse()
    pps = blocks.pps_count

    states = {name: (blocks.field(f"{name}_flag") >> 4) & 3 for name in STAMP_NAMES}
    worst = np.minimum.reduce([states[s] for s in STAMP_NAMES])
    for i in np.flatnonzero(worst < 3):
        bad = [s for s in STAMP_NAMES if states[s][i] < 3]
        levels = sorted({int(states[s][i]) for s in bad})
        text = "; ".join(f"state {v} ({STATE_TEXT[v]})" for v in levels)
        out.add(i,
            f"receiver_state: {', '.join(bad)} stamp{'s' if len(bad) > 1 else ''} taken in {text}; "
            "only state 3 (locked) is to be trusted"
        )

    # A zero pps count is reported on its own; comparing ticks with it says nothing more.
    ticks_bad = {s: (blocks.field(f"{s}_ticks") >= pps) & (pps > 0) for s in STAMP_NAMES}
    for i in np.flatnonzero(np.logical_or.reduce(list(ticks_bad.values()))):
        bad = [s for s in STAMP_NAMES if ticks_bad[s][i]]
        vals = ", ".join(f"{s} {int(blocks.field(f'{s}_ticks')[i])}" for s in bad)
        out.add(i, f"ticks_out_of_range: ticks ({vals}) >= pps count {int(pps[i])}")

    lost = pps == PPS_COUNT_LOST
    out_of_range = (pps < PPS_COUNT_MIN) | (pps > PPS_COUNT_MAX)
    for i in np.flatnonzero(out_of_range):
        out.add(i,
            f"pps_count_out_of_range: pps count {int(pps[i])} is outside "
            f"{PPS_COUNT_MIN}..{PPS_COUNT_MAX}: the oscillator is not disciplined; "
            "the fraction of a second uses nominal 100 ns ticks and is unreliable"
        )
    for i in np.flatnonzero(lost):
        out.add(i,
            f"pps_lost: pps count {PPS_COUNT_LOST} is what the GPS box writes when it has lost "
            "the PPS signal; the fraction of a second uses nominal 100 ns ticks and is unreliable"
        )

    order_bad = unix_ns["end"] < unix_ns["start"]
    for i in np.flatnonzero(order_bad):
        out.add(i,
            f"end_before_start: end stamp {unix_ns_to_iso(unix_ns['end'][i])} precedes start "
            f"stamp {unix_ns_to_iso(unix_ns['start'][i])}"
        )

    leap = {
        s: np.asarray(near_leap_second(unix_ns[s]), dtype=bool).reshape(-1) for s in STAMP_NAMES
    }
    for i in np.flatnonzero(np.logical_or.reduce(list(leap.values()))):
        bad = [s for s in STAMP_NAMES if leap[s][i]]
        out.add(i,
            f"leap_second: {', '.join(bad)} within {LEAP_WINDOW_NS / 1e9:g} s of a leap second "
            "(bundled table); GPS seconds are ambiguous there"
        )
    return out


def sequence_reasons(
    sequence: NDArray[np.int64],
    width: NDArray[np.int64],
    height: NDArray[np.int64],
    previous: tuple[int, int, int] | None = None,
) -> list[list[str]]:
    """Gaps, repeats and backward steps of the sequence number across consecutive frames.

    Frames are compared with the frame before them when both have the same width and
    height (one capture run); the counter wraps at 2**32.

    Parameters
    ----------
    sequence, width, height : int64 arrays
        Of the frames that hold a block, in the order they were taken.
    previous : (sequence, width, height), optional
        The last frame before these (e.g. from the previous file of a set).

    Examples
    --------
    >>> import numpy as np
    >>> r = sequence_reasons(np.array([5, 6, 9, 9]), np.full(4, 8), np.full(4, 8))
    >>> [x[0].split(':')[0] if x else '' for x in r]
    ['', '', 'sequence_gap', 'sequence_repeat']
    """
    return _sequence_reasons(sequence, width, height, previous).dense(np.asarray(sequence).size)


def _sequence_reasons(
    sequence: NDArray[np.int64],
    width: NDArray[np.int64],
    height: NDArray[np.int64],
    previous: tuple[int, int, int] | None = None,
) -> Sparse:
    seq = np.asarray(sequence, dtype=np.int64)
    w = np.asarray(width, dtype=np.int64)
    h = np.asarray(height, dtype=np.int64)
    n = seq.size
    out = Sparse()
    if n == 0:
        return out
    if previous is not None:
        p_seq = np.concatenate([[previous[0]], seq[:-1]])
        p_w = np.concatenate([[previous[1]], w[:-1]])
        p_h = np.concatenate([[previous[2]], h[:-1]])
        idx = np.arange(n)
    else:
        p_seq, p_w, p_h = seq[:-1], w[:-1], h[:-1]
        idx = np.arange(1, n)
    cur = seq[idx]
    same_run = (w[idx] == p_w) & (h[idx] == p_h)
    step = (cur - p_seq) % _SEQ_MOD
    for k in np.flatnonzero(same_run & (step != 1)):
        i, prev, now = int(idx[k]), int(p_seq[k]), int(cur[k])
        s = int(step[k])
        if s == 0:
            out.add(i,
                f"sequence_repeat: sequence {now} repeats the previous frame's (stale block)"
            )
        elif s < _SEQ_MOD // 2:
            out.add(i,
                f"sequence_gap: {s - 1} frame(s) missing before sequence {now} (previous {prev})"
            )
        else:
            out.add(i,
                f"sequence_backwards: sequence {now} follows {prev} (frames out of order, "
                "or the camera restarted)"
            )
    return out


# -- consistency: within a frame ----------------------------------------------------------


def _dur(ns: Any) -> str:
    """A signed duration in words: ``1.000200 s`` or ``0.937 ms``."""
    v = int(ns)
    return f"{v / 1e9:.6f} s" if abs(v) >= NS_PER_S else f"{v / 1e6:.3f} ms"


def _exposure_array(exposure_ns: Any, n: int) -> NDArray[np.int64]:
    """Exposures per frame, 0 where unknown."""
    if exposure_ns is None:
        return np.zeros(n, dtype=np.int64)
    e = np.asarray([0 if v is None else v for v in np.atleast_1d(exposure_ns).tolist()])
    return np.broadcast_to(e.astype(np.int64), (n,))


def frame_check_reasons(
    blocks: GpsBlockArray,
    unix_ns: dict[str, NDArray[np.int64]],
    exposure_ns: Any = None,
    *,
    lone: Any = False,
) -> list[list[str]]:
    """Consistency of each frame's block on its own: stamp spacing, dates, position digits.

    Parameters
    ----------
    blocks : GpsBlockArray
        Blocks that are present.
    unix_ns : dict of str to int64 array
        Times of the ``start``, ``end`` and ``now`` stamps.
    exposure_ns : int or array of int or None, optional
        The exposure the file gives (None or 0 where it gives none).
    lone : bool or array of bool
        Frames with no sequence around them: without an exposure, their ``end - start``
        must stay below :data:`LONE_SPAN_MAX_NS`.

    Returns
    -------
    list of list of str
        One (possibly empty) list of reasons per frame (codes ``stamp_spacing``,
        ``date_out_of_range``, ``position_out_of_range``).

    Examples
    --------
    >>> import numpy as np
    >>> from qhytime.gpsblock import GpsBlockArray
    >>> blocks = GpsBlockArray.from_bytes(np.zeros((1, 44), np.uint8))
    >>> t = 1_754_099_091_980_086_527
    >>> ns = {"start": np.array([t - 1_250_000_000]), "end": np.array([t]),
    ...       "now": np.array([t + 1_000_000])}
    >>> frame_check_reasons(blocks, ns, 250_000_000)[0][0][:44]
    'stamp_spacing: end - start = 1.250000 s, but'
    """
    out = _frame_check_reasons(blocks, unix_ns, exposure_ns, lone=lone)
    return out.dense(len(blocks))


def _frame_check_reasons(
    blocks: GpsBlockArray,
    unix_ns: dict[str, NDArray[np.int64]],
    exposure_ns: Any = None,
    *,
    lone: Any = False,
) -> Sparse:
    n = len(blocks)
    out = Sparse()
    if n == 0:
        return out
    start, end, now = (np.asarray(unix_ns[s], dtype=np.int64) for s in STAMP_NAMES)
    span, ne = end - start, now - end
    exp = _exposure_array(exposure_ns, n)
    known = exp > 0
    edge_ok = (span >= 0) & (span <= EDGE_SPAN_NS)
    exp_ok = np.abs(span - exp) <= EXPOSURE_TOL_NS
    bad_exp = known & (span >= 0) & ~edge_ok & ~exp_ok
    bad_now = np.abs(ne) > NOW_END_MAX_NS
    for i in np.flatnonzero(bad_exp | bad_now):
        parts = []
        if bad_exp[i]:
            parts.append(
                f"end - start = {_dur(span[i])}, but the exposure is {_dur(exp[i])} (start and "
                "end are the exposure apart, within 0.5 s, or the VSYNC edges, within 1 ms)"
            )
        if bad_now[i]:
            parts.append(f"now - end = {_dur(ne[i])} (now follows end within 0.5 s)")
        out.add(i, "stamp_spacing: " + "; ".join(parts) + ": a stamp is damaged")
    out.merge(_lone_span_reasons(unix_ns, exposure_ns, lone))

    early = {s: np.asarray(unix_ns[s]) < MIN_DATE_UNIX_NS for s in STAMP_NAMES}
    for i in np.flatnonzero(np.logical_or.reduce(list(early.values()))):
        bad = [s for s in STAMP_NAMES if early[s][i]]
        out.add(i,
            f"date_out_of_range: {', '.join(bad)} stamp{'s' if len(bad) > 1 else ''} before "
            f"2015-01-01 ({unix_ns_to_iso(unix_ns[bad[0]][i])}): the receiver is not locked "
            "or has the GPS week-rollover bug"
        )

    lat, lon = blocks.latitude_raw, blocks.longitude_raw
    lat_deg, lat_min = (lat // 10**7) % 100, lat % 10**7
    lon_deg, lon_min = (lon // 10**6) % 1000, lon % 10**6
    lat_bad = (lat // 10**9 > 1) | (lat_deg > 90) | (lat_min >= 60 * 10**5)
    lat_bad |= (lat_deg == 90) & (lat_min != 0)
    lon_bad = (lon // 10**9 > 1) | (lon_deg > 180) | (lon_min >= 60 * 10**4)
    lon_bad |= (lon_deg == 180) & (lon_min != 0)
    for i in np.flatnonzero(lat_bad | lon_bad):
        out.add(i,
            f"position_out_of_range: latitude digits {int(lat[i]):010d} (S DD MMMMMMM), "
            f"longitude digits {int(lon[i]):010d} (S DDD MMMMMM): a sign digit above 1, "
            "degrees above 90/180 or minutes of 60 or more cannot come from a receiver"
        )
    return out


def lone_span_reasons(
    unix_ns: dict[str, NDArray[np.int64]], exposure_ns: Any = None, lone: Any = True
) -> list[list[str]]:
    """``stamp_spacing`` for lone frames (no sequence around them) whose file gives no
    exposure: ``end - start`` of :data:`LONE_SPAN_MAX_NS` (1 s) or more cannot be confirmed.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.array([1_754_099_091_000_000_000])
    >>> lone_span_reasons({"start": t - 1_000_000_400, "end": t, "now": t})[0][0][:40]
    'stamp_spacing: end - start = 1.000000 s '
    """
    out = _lone_span_reasons(unix_ns, exposure_ns, lone)
    return out.dense(np.asarray(unix_ns["start"]).size)


def _lone_span_reasons(
    unix_ns: dict[str, NDArray[np.int64]], exposure_ns: Any = None, lone: Any = True
) -> Sparse:
    start = np.asarray(unix_ns["start"], dtype=np.int64)
    span = np.asarray(unix_ns["end"], dtype=np.int64) - start
    n = span.size
    known = _exposure_array(exposure_ns, n) > 0
    bad = ~known & np.broadcast_to(np.asarray(lone, dtype=bool), (n,)) & (span >= LONE_SPAN_MAX_NS)
    out = Sparse()
    for i in np.flatnonzero(bad):
        out.add(i,
            f"stamp_spacing: end - start = {_dur(span[i])} in a lone frame whose file gives no "
            "exposure to confirm 1 s or more: the start or end stamp may be damaged"
        )
    return out


# -- consistency: across a sequence ---------------------------------------------------------


def run_ids(sequence: ArrayLike, width: ArrayLike, height: ArrayLike) -> NDArray[np.int64]:
    """Which run each frame belongs to: a new run starts where the frame size changes.

    Sequence numbers do not split runs: a damaged one must not cut its frame off from the
    neighbours it is checked against.

    Examples
    --------
    >>> run_ids([5, 6, 7, 2, 3], [8, 8, 8, 9, 9], [8] * 5).tolist()
    [0, 0, 0, 1, 1]
    """
    seq = np.asarray(sequence, dtype=np.int64)
    w = np.asarray(width, dtype=np.int64)
    h = np.asarray(height, dtype=np.int64)
    if seq.size == 0:
        return np.zeros(0, dtype=np.int64)
    brk = (w[1:] != w[:-1]) | (h[1:] != h[:-1])
    return np.concatenate([[0], np.cumsum(brk)]).astype(np.int64)


def rolling_median(v: ArrayLike) -> NDArray[np.float64]:
    """Median of each value and its (up to) two neighbours on each side.

    Near the ends the window is cut short; two values are each compared with the other
    (their "median" is the other value), one value with itself.

    Examples
    --------
    >>> rolling_median([1.0, 1.0, 9.0, 1.0, 1.0]).tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0]
    >>> rolling_median([3.0, 5.0]).tolist()
    [5.0, 3.0]
    """
    x = np.asarray(v, dtype=np.float64)
    m = x.size
    if m <= 2:
        return x[::-1].copy()
    # pads of -inf/+inf in pairs keep a cut-short window's middle on its own values
    p = np.concatenate([[-np.inf, np.inf], x, [-np.inf, np.inf]])
    w = np.lib.stride_tricks.sliding_window_view(p, 5)
    return np.sort(w, axis=1)[:, 2]


# Raw position digits that cannot make a position_jump: same sign and degree digits, minutes
# spread below 0.4833 deg (2,900,000 latitude or 290,000 longitude units of 1e-5 or 1e-4
# minute), safely inside POSITION_STEADY_DEG with float rounding.
_LAT_STEADY_RAW = 2_900_000
_LON_STEADY_RAW = 290_000


def _within(raw: NDArray[np.int64], unit: int, spread: int) -> bool:
    """True when the values share their digits above ``unit`` and spread by at most
    ``spread`` (then no value is off its neighbours' position by the tolerance)."""
    if raw.size == 0:
        return True
    lo, hi = int(raw.min()), int(raw.max())
    return lo // unit == hi // unit and hi - lo <= spread


def _deviation(v: ArrayLike, tol: float) -> NDArray[np.float64]:
    """``v`` less its rolling median; zeros when ``v`` spreads no more than ``tol`` (then no
    value can be off by more than ``tol`` from any median of them)."""
    x = np.asarray(v, dtype=np.float64)
    if x.size == 0 or float(x.max() - x.min()) <= tol:
        return np.zeros_like(x)
    return x - rolling_median(x)


def consistency_reasons(
    blocks: GpsBlockArray,
    unix_ns: dict[str, NDArray[np.int64]],
    exposure_ns: Any = None,
    *,
    regular: bool = True,
) -> list[list[str]]:
    """Consistency of the frames of a sequence with each other (see the module notes).

    Parameters
    ----------
    blocks : GpsBlockArray
        Blocks that are present, in the order the frames were taken.
    unix_ns : dict of str to int64 array
        Times of their ``start``, ``end`` and ``now`` stamps.
    exposure_ns : int or array of int or None, optional
        The exposure the files give (None or 0 where unknown).
    regular : bool
        True for the frames of one multi-frame file (steady camera cadence); False for
        single-frame files, whose frames come when the software asks for them.

    Returns
    -------
    list of list of str
        Reasons per frame (codes ``spacing_jump``, ``cadence``, ``pps_count_jump``,
        ``position_jump``).

    Examples
    --------
    >>> import numpy as np
    >>> from qhytime.gpsblock import GpsBlockArray
    >>> raw = np.zeros((5, 44), np.uint8)
    >>> raw[:, 3] = [1, 2, 3, 4, 5]                       # sequence numbers
    >>> blocks = GpsBlockArray.from_bytes(raw)
    >>> end = 1_754_099_091_000_000_000 + np.arange(5) * 20_000_000
    >>> ns = {"start": end - 10_000_000, "end": end.copy(), "now": end + 1_000_000}
    >>> ns["end"][2] += 3_000_000                         # frame 2's end stamp 3 ms late
    >>> [r[0].split(":")[0] if r else "" for r in consistency_reasons(blocks, ns)]
    ['', '', 'spacing_jump', '', '']
    """
    out = _consistency_reasons(blocks, unix_ns, exposure_ns, regular=regular)
    return out.dense(len(blocks))


class CountedValues:
    """A multiset of numbers held as its distinct values, each with its count and the
    smallest tag it came with (e.g. the first frame a step ends at): memory grows with the
    distinct values, not with the values counted. New values wait until as many are pending
    as distinct values are held (at least :data:`COUNT_BATCH`), then are merged in one
    sort, so counting ``n`` values takes ``O(n log n)`` even when none repeats.

    The cadence of a long file's run and the late frames of an index part are counted this
    way, chunk by chunk, to the same exact median as :func:`numpy.median` of all the values.

    Parameters
    ----------
    dtype : numpy dtype
        Of the values (int64 steps in ns stay integers).

    Examples
    --------
    >>> import numpy as np
    >>> c = CountedValues(np.int64)
    >>> c.add(np.array([20, 21, 20]), np.array([4, 5, 6]))
    >>> c.add(np.array([90]), np.array([2]))
    >>> c.total(), c.median(), c.values.tolist(), c.counts.tolist(), c.tags.tolist()
    (4, 20.5, [20, 21, 90], [2, 1, 1], [4, 5, 2])
    """

    def __init__(self, dtype: Any) -> None:
        self.values: NDArray[Any] = np.zeros(0, dtype=dtype)
        self.counts = np.zeros(0, dtype=np.int64)
        self.tags = np.zeros(0, dtype=np.int64)
        self._pending: list[tuple[NDArray[Any], NDArray[np.int64]]] = []
        self._held = 0

    def add(self, values: ArrayLike, tags: ArrayLike | None = None) -> None:
        """Count ``values``, each with its tag (0 when none is given)."""
        v = np.asarray(values, dtype=self.values.dtype).reshape(-1)
        if not v.size:
            return
        t = np.zeros(v.size, dtype=np.int64) if tags is None else np.asarray(tags, np.int64)
        self._pending.append((v, t.reshape(-1)))
        self._held += v.size
        if self._held >= max(self.values.size, COUNT_BATCH):
            self.merge()

    def merge(self) -> None:
        """Merge the values waiting into the counts (done before they are read)."""
        if not self._pending:
            return
        new = np.concatenate([p[0] for p in self._pending])
        new_tags = np.concatenate([p[1] for p in self._pending])
        self._pending, self._held = [], 0
        v, inv = np.unique(np.concatenate([self.values, new]), return_inverse=True)
        inv = inv.reshape(-1)
        counts = np.zeros(v.size, dtype=np.int64)
        np.add.at(counts, inv, np.concatenate([self.counts, np.ones(new.size, dtype=np.int64)]))
        tags = np.full(v.size, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(tags, inv, np.concatenate([self.tags, new_tags]))
        self.values, self.counts, self.tags = v, counts, tags

    def copy(self) -> CountedValues:
        """A copy to count more values into (this one unchanged)."""
        self.merge()
        out = CountedValues(self.values.dtype)
        out.values, out.counts, out.tags = self.values, self.counts, self.tags
        return out

    def total(self) -> int:
        """How many values were counted."""
        self.merge()
        return int(self.counts.sum())

    def median(self) -> float | None:
        """:func:`numpy.median` of every value counted, exactly (None when there are none)."""
        m = self.total()
        if m == 0:
            return None
        cum = np.cumsum(self.counts)
        upper = self.values[int(np.searchsorted(cum, m // 2, side="right"))]
        if m % 2:
            return float(np.median(np.array([upper])))
        lower = self.values[int(np.searchsorted(cum, m // 2 - 1, side="right"))]
        return float(np.median(np.array([lower, upper])))


COUNT_BATCH = 8192
"""Values :class:`CountedValues` lets wait before a merge, at least (its merge's transient
memory stays below 1 MiB)."""


class RunAnchor(NamedTuple):
    """What the checks of a run take from the whole run when they see only part of it (a
    chunk of a long file, :func:`qhytime.decode.decode_chunks`): with these, the part's
    frames get exactly the reasons they get when the whole run is checked.

    Attributes
    ----------
    end0 : int
        End stamp (ns) of the run's first frame: the origin of the cadence fit.
    x0 : int
        Signed sequence steps from the run's first frame to the part's first frame.
    lon0_raw : int
        Raw longitude digits of the run's first frame (longitudes are compared relative to
        it, across the date line).
    period : float or None
        The run's cadence: median end-stamp step per sequence step over its forward steps
        (None when it has none).
    """

    end0: int
    x0: int
    lon0_raw: int
    period: float | None


def _consistency_reasons(
    blocks: GpsBlockArray,
    unix_ns: dict[str, NDArray[np.int64]],
    exposure_ns: Any = None,
    *,
    regular: bool = True,
    anchors: Sequence[RunAnchor] | None = None,
) -> Sparse:
    n = len(blocks)
    out = Sparse()
    if n < 2:
        return out
    runs = run_ids(blocks.sequence, blocks.width, blocks.height)
    cuts = np.flatnonzero(np.diff(runs)) + 1
    exp = _exposure_array(exposure_ns, n)
    starts, stops = np.concatenate([[0], cuts]), np.concatenate([cuts, [n]])
    for j, (a, b) in enumerate(zip(starts, stops, strict=True)):
        if b - a >= 2:
            anchor = None if anchors is None else anchors[j]
            _run_reasons(blocks, unix_ns, exp, int(a), int(b), regular, out, anchor)
    return out


def signed_steps(seq: NDArray[np.int64]) -> NDArray[np.int64]:
    """Sequence-number steps between consecutive frames, signed: the counter wraps at
    2**32, and a damaged number jumps out and back.

    Examples
    --------
    >>> import numpy as np
    >>> signed_steps(np.array([4294967295, 0, 7, 1], dtype=np.int64)).tolist()
    [1, 7, -6]
    """
    s = np.asarray(seq, dtype=np.int64)
    return (s[1:] - s[:-1] + _SEQ_MOD // 2) % _SEQ_MOD - _SEQ_MOD // 2


def _run_reasons(
    blocks: GpsBlockArray,
    unix_ns: dict[str, NDArray[np.int64]],
    exp: NDArray[np.int64],
    a: int,
    b: int,
    regular: bool,
    out: Sparse,
    anchor: RunAnchor | None = None,
) -> None:
    seq = blocks.sequence[a:b]
    # signed steps (the counter wraps at 2**32): a damaged number jumps out and back
    dx = signed_steps(seq)
    x0 = 0 if anchor is None else anchor.x0
    x = (x0 + np.concatenate([[0], np.cumsum(dx)])).astype(np.float64)
    start, end, now = (np.asarray(unix_ns[s][a:b], dtype=np.int64) for s in STAMP_NAMES)
    span = end - start
    e = exp[a:b]
    d = np.where((e > 0) & (np.abs(span - e) < np.abs(span)), span - e, span)
    ne = now - end
    found: dict[int, list[str]] = {}

    def note(mask: NDArray[np.bool_], text: Any) -> None:
        for k in np.flatnonzero(mask):
            found.setdefault(int(k), []).append(text(int(k)))

    dev_d = _deviation(d, SPAN_STEADY_NS)
    dev_ne = _deviation(ne, NOW_STEADY_NS)
    jump_d = np.abs(dev_d) > SPAN_STEADY_NS
    jump_ne = np.abs(dev_ne) > NOW_STEADY_NS
    note(jump_d, lambda k: (
        f"spacing_jump: end - start = {_dur(span[k])} differs by {_dur(dev_d[k])} from "
        f"its neighbours' (tolerance {_dur(SPAN_STEADY_NS)}): the start or end stamp is damaged"
    ))  # fmt: skip
    note(jump_ne & ~jump_d, lambda k: (
        f"spacing_jump: now - end = {_dur(ne[k])} differs by {_dur(dev_ne[k])} from its "
        f"neighbours' (tolerance {_dur(NOW_STEADY_NS)}): the end or now stamp is damaged"
    ))  # fmt: skip

    pps = blocks.pps_count[a:b].astype(np.float64)
    dev_p = _deviation(pps, PPS_STEADY_COUNTS)
    note(np.abs(dev_p) > PPS_STEADY_COUNTS, lambda k: (
        f"pps_count_jump: pps count {int(pps[k])} differs by {int(dev_p[k])} from its "
        f"neighbours' (tolerance {PPS_STEADY_COUNTS}): the oscillator does not jump, the block "
        "is damaged"
    ))  # fmt: skip

    lat_raw, lon_raw = blocks.latitude_raw[a:b], blocks.longitude_raw[a:b]
    lon0_raw = int(lon_raw[0]) if anchor is None else anchor.lon0_raw
    lon_all = lon_raw if anchor is None else np.append(lon_raw, lon0_raw)
    if not (_within(lat_raw, 10**7, _LAT_STEADY_RAW) and _within(lon_all, 10**6, _LON_STEADY_RAW)):
        lat = np.asarray(latitude_deg_from_raw(lat_raw), dtype=np.float64)
        lon = np.asarray(longitude_deg_from_raw(lon_raw), dtype=np.float64)
        lon0 = float(longitude_deg_from_raw(np.array([lon0_raw], dtype=np.int64))[0])
        lon_rel = (lon - lon0 + 180.0) % 360.0 - 180.0  # across the date line
        dlat = np.abs(_deviation(lat, POSITION_STEADY_DEG))
        dlon = np.abs(_deviation(lon_rel, POSITION_STEADY_DEG))
        note((dlat > POSITION_STEADY_DEG) | (dlon > POSITION_STEADY_DEG), lambda k: (
            f"position_jump: position {lat[k]:.5f}, {lon[k]:.5f} deg is "
            f"{max(dlat[k], dlon[k]):.3f} deg from its neighbours' (tolerance "
            f"{POSITION_STEADY_DEG} deg): the block is damaged"
        ))  # fmt: skip

    end0 = int(end[0]) if anchor is None else anchor.end0
    t = (end - end0).astype(np.float64)
    dt = np.diff(t)
    fwd = dx >= 1
    suspect = jump_d | jump_ne
    if anchor is None:
        period = float(np.median(dt[fwd] / dx[fwd])) if fwd.any() else None
    else:
        period = anchor.period
    if regular and period is not None:
        tol = max(CADENCE_MIN_TOL_NS, abs(period) / 2)
        resid = t - x * period
        r = _deviation(resid, tol)
        off = np.abs(r) > tol
        note(off & ~suspect, lambda k: (
            f"cadence: the end stamp is {_dur(r[k])} off the sequence's cadence "
            f"({_dur(period)} per frame, tolerance {_dur(tol)})"
        ))  # fmt: skip
        suspect = suspect | off
        step_bad = fwd & (np.abs(dt - dx * period) > tol) & ~suspect[:-1] & ~suspect[1:]
        for k in np.flatnonzero(step_bad):
            text = (
                f"cadence: the end stamps of sequence {int(seq[k])} and {int(seq[k + 1])} are "
                f"{_dur(dt[k])} apart where the cadence gives {_dur(dx[k] * period)}: the "
                "times on one side are off"
            )
            found.setdefault(int(k), []).append(text)
            found.setdefault(int(k + 1), []).append(text)
        suspect[:-1] |= step_bad
        suspect[1:] |= step_bad
    gap = start[1:] - end[:-1]
    back = fwd & ((gap < -OVERLAP_TOL_NS) | (end[1:] <= end[:-1])) & ~suspect[:-1] & ~suspect[1:]
    for k in np.flatnonzero(back):
        text = (
            f"cadence: sequence {int(seq[k + 1])} starts {_dur(-gap[k])} before sequence "
            f"{int(seq[k])} ends (or its end stamp is not later): the times on one side are off"
        )
        found.setdefault(int(k), []).append(text)
        found.setdefault(int(k + 1), []).append(text)
    out.merge(found, a)

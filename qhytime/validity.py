"""Whether a frame's GPS time can be trusted: a list of reasons per frame, never a silent time.

Every reason is a string that starts with a short code and a colon, then says what is
wrong in words, e.g. ``"receiver_state: start, end, now stamps in state 2 (locking: ...)"``.
An empty list means the frame is good. The checks are vectorised over frames.

=====================  =============================================================
code                   meaning
=====================  =============================================================
no_gps_block           no block in the pixels (width/height fields do not match the
                       frame, all zero, or the pixels cannot hold one)
receiver_state         a stamp was taken with the receiver not locked (state < 3);
                       state 2 ("locking") still reports the time
ticks_out_of_range     ticks >= pps count: impossible for a good stamp
pps_count_out_of_range pps count zero or outside 9,999,000..10,001,000
pps_lost               pps count 10,000,500: the box lost the PPS signal
end_before_start       the end stamp precedes the start stamp
leap_second            a stamp lies within 1 s of a leap second (ambiguous)
sequence_gap           frames missing before this one in the file set
sequence_repeat        same sequence number as the previous frame (stale block)
sequence_backwards     sequence number lower than the previous frame's
=====================  =============================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from qhytime.gpsblock import STAMP_NAMES, GpsBlockArray
from qhytime.timebase import (
    LEAP_WINDOW_NS,
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
    "receiver_state",
    "ticks_out_of_range",
    "pps_count_out_of_range",
    "pps_lost",
    "end_before_start",
    "leap_second",
    "sequence_gap",
    "sequence_repeat",
    "sequence_backwards",
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
    n = len(blocks)
    out: list[list[str]] = [[] for _ in range(n)]
    pps = blocks.pps_count

    states = {name: (blocks.field(f"{name}_flag") >> 4) & 3 for name in STAMP_NAMES}
    worst = np.minimum.reduce([states[s] for s in STAMP_NAMES])
    for i in np.flatnonzero(worst < 3):
        bad = [s for s in STAMP_NAMES if states[s][i] < 3]
        levels = sorted({int(states[s][i]) for s in bad})
        text = "; ".join(f"state {v} ({STATE_TEXT[v]})" for v in levels)
        out[i].append(
            f"receiver_state: {', '.join(bad)} stamp{'s' if len(bad) > 1 else ''} taken in {text}; "
            "only state 3 (locked) is to be trusted"
        )

    # A zero pps count is reported on its own; comparing ticks with it says nothing more.
    ticks_bad = {s: (blocks.field(f"{s}_ticks") >= pps) & (pps > 0) for s in STAMP_NAMES}
    for i in np.flatnonzero(np.logical_or.reduce(list(ticks_bad.values()))):
        bad = [s for s in STAMP_NAMES if ticks_bad[s][i]]
        vals = ", ".join(f"{s} {int(blocks.field(f'{s}_ticks')[i])}" for s in bad)
        out[i].append(f"ticks_out_of_range: ticks ({vals}) >= pps count {int(pps[i])}")

    lost = pps == PPS_COUNT_LOST
    out_of_range = (pps < PPS_COUNT_MIN) | (pps > PPS_COUNT_MAX)
    for i in np.flatnonzero(out_of_range):
        out[i].append(
            f"pps_count_out_of_range: pps count {int(pps[i])} is outside "
            f"{PPS_COUNT_MIN}..{PPS_COUNT_MAX}: the oscillator is not disciplined; "
            "the fraction of a second uses nominal 100 ns ticks and is unreliable"
        )
    for i in np.flatnonzero(lost):
        out[i].append(
            f"pps_lost: pps count {PPS_COUNT_LOST} is what the GPS box writes when it has lost "
            "the PPS signal; the fraction of a second uses nominal 100 ns ticks and is unreliable"
        )

    order_bad = unix_ns["end"] < unix_ns["start"]
    for i in np.flatnonzero(order_bad):
        out[i].append(
            f"end_before_start: end stamp {unix_ns_to_iso(unix_ns['end'][i])} precedes start "
            f"stamp {unix_ns_to_iso(unix_ns['start'][i])}"
        )

    leap = {
        s: np.asarray(near_leap_second(unix_ns[s]), dtype=bool).reshape(-1) for s in STAMP_NAMES
    }
    for i in np.flatnonzero(np.logical_or.reduce(list(leap.values()))):
        bad = [s for s in STAMP_NAMES if leap[s][i]]
        out[i].append(
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
    seq = np.asarray(sequence, dtype=np.int64)
    w = np.asarray(width, dtype=np.int64)
    h = np.asarray(height, dtype=np.int64)
    n = seq.size
    out: list[list[str]] = [[] for _ in range(n)]
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
            out[i].append(
                f"sequence_repeat: sequence {now} repeats the previous frame's (stale block)"
            )
        elif s < _SEQ_MOD // 2:
            out[i].append(
                f"sequence_gap: {s - 1} frame(s) missing before sequence {now} (previous {prev})"
            )
        else:
            out[i].append(
                f"sequence_backwards: sequence {now} follows {prev} (frames out of order, "
                "or the camera restarted)"
            )
    return out

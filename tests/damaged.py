"""Damaged GPS-block sequences for the chunked-decode and streamed-index tests."""

from __future__ import annotations

import numpy as np

from qhytime.gpsblock import GpsBlock, Stamp, embed_block

W, H = 32, 4
PPS = 9_999_612
T0_S = 940_815_891  # GPS seconds (2025-08-02)


def _stamp(ns_after: int, pps: int) -> Stamp:
    sec, frac = divmod(ns_after, 1_000_000_000)
    return Stamp(0x33, T0_S + sec, frac * pps // 1_000_000_000)


def damaged_frames(n: int, rng: np.random.Generator, damage: float) -> np.ndarray:
    """``n`` frames 16-bit W x H, blocks on a 20 ms cadence with jitter, some damaged."""
    period = 20_000_000 + int(rng.integers(-3_000, 3_000))
    imgs = np.zeros((n, H, W), dtype=np.uint16)
    lat, lon = 481234567, 1149123456 if rng.random() < 0.5 else 1179599999
    seq0 = int(rng.integers(0, 2**32))
    for i in range(n):
        end = 1_000_000_000 + i * period + int(rng.integers(-300, 300))
        pps = PPS + int(rng.integers(-3, 3))
        now = end + 1_000_000 + int(rng.integers(0, 4_000_000))
        blk = GpsBlock((seq0 + i) % 2**32, 0, W, H, lat, lon, _stamp(end - 10_000_000, pps),
                       _stamp(end, pps), _stamp(now, pps), pps)  # fmt: skip
        embed_block(imgs[i], blk, flipped=bool(rng.random() < 0.02))
    raw = imgs.view(np.uint8).reshape(n, H, W * 2)
    for i in np.flatnonzero(rng.random(n) < damage):
        kind = int(rng.integers(0, 6))
        row = raw[i, 0]
        if kind == 0:  # random bytes
            for b in rng.integers(0, 44, size=int(rng.integers(1, 4))):
                row[b] = rng.integers(0, 256)
        elif kind == 1:  # sequence number
            row[0:4] = rng.integers(0, 256, size=4)
        elif kind == 2:  # a stamp's ticks or seconds
            at = int(rng.choice([18, 22, 26, 30, 34, 38]))
            row[at : at + 2] = rng.integers(0, 256, size=2)
        elif kind == 3:  # zeroed block
            row[:44] = 0
        elif kind == 4:  # pps count
            row[41:44] = rng.integers(0, 256, size=3)
        else:  # position digits
            row[10:18] = rng.integers(0, 256, size=8)
    return imgs

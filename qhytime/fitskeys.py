"""GPS keywords that capture programs write into FITS headers, read back into a block.

When a frame's pixel block is gone (the file was processed) or was never there, the
capture program may still have copied the block into keywords:

- N.I.N.A.: ``GPS_PPS GPS_SEQ GPS_W GPS_H GPS_LAT GPS_LON`` and per stamp X in S/E/N
  ``GPS_XFLG`` (state, already shifted to 0..3), ``GPS_XSEC`` (s), ``GPS_XUS`` (us).
- INDI: ``GPS_SFlg GPS_SS GPS_SU`` (and E, N), ``GPS_PPSC GPS_LONG GPS_LAT GPS_Seq``.
  INDI's ``GPS_ET``/``GPS_NT`` strings repeat the start one, so only numbers are used.

- SharpCap with a QHY174M-GPS: ``DATE-OBS`` is the GPS start time, and
  ``0001-01-01T00:00:00`` when the receiver lost lock. Only ``DATE-OBS`` (and ``EXPTIME``)
  is read, and only from SharpCap files of a GPS camera; the block gets no pps count from
  it (nominal 10 MHz assumed) and the lock-lost sentinel becomes receiver state 0.

Keywords hold microseconds, not ticks, so a block rebuilt from them is good to 1 us;
its ``origin`` says so. Every keyword is checked before use: a card that does not parse,
is not a finite number, or does not fit its block field (seconds in 4 bytes, ticks and
pps count in 3, latitude within 90 deg, ...) makes the writer's keyword set unusable, and
the frame is then reported without a block rather than with a made-up one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from qhytime.gpsblock import (
    FIELD_MAX,
    GpsBlock,
    Stamp,
    latitude_raw_from_deg,
    longitude_raw_from_deg,
)

_STAMP_LETTERS = (("start", "S"), ("end", "E"), ("now", "N"))


class _Unusable(Exception):
    """A keyword is present but cannot be used."""


def _get(header: Mapping[str, Any], key: str) -> Any:
    try:
        return header.get(key)
    except Exception as exc:  # an unparsable card (astropy's VerifyError, ...)
        raise _Unusable(key) from exc


def _num(header: Mapping[str, Any], key: str, lo: float = -math.inf, hi: float = math.inf) -> float | None:
    """A finite number within ``lo..hi``, None when absent; anything else is unusable."""
    value = _get(header, key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Unusable(key)
    if not lo <= value <= hi:
        raise _Unusable(key)
    return float(value)


def _flag_from_state(value: float) -> int:
    v = int(value)
    # Shifted states are 0..3; a larger number is a raw flag byte.
    return v << 4 if 0 <= v <= 3 else v & 0xFF


def block_from_keywords(
    header: Mapping[str, Any], width: int, height: int
) -> tuple[GpsBlock, str] | None:
    """Rebuild a GPS block from N.I.N.A. or INDI keywords, or None when there are none.

    Parameters
    ----------
    header : mapping
        FITS header cards (an :class:`astropy.io.fits.Header` works).
    width, height : int
        Frame size, used when the keywords do not give it.

    Returns
    -------
    (GpsBlock, str) or None
        The block and the writer's name (``"N.I.N.A."`` or ``"INDI"``).

    Examples
    --------
    >>> hdr = {"GPS_SSEC": 940815891, "GPS_SUS": 730058.4, "GPS_SFLG": 3,
    ...        "GPS_ESEC": 940815891, "GPS_EUS": 980048.5, "GPS_EFLG": 3,
    ...        "GPS_NSEC": 940815891, "GPS_NUS": 980986.0, "GPS_NFLG": 3,
    ...        "GPS_PPS": 9999612, "GPS_SEQ": 1000, "GPS_LAT": 52.21503, "GPS_LON": -0.87262}
    >>> blk, writer = block_from_keywords(hdr, 320, 96)
    >>> writer, blk.start.seconds, blk.start.ticks, blk.start.state
    ('N.I.N.A.', 940815891, 7300584, 3)
    """
    schemes = (
        ("N.I.N.A.", "GPS_{}SEC", "GPS_{}US", "GPS_{}FLG", "GPS_PPS", "GPS_SEQ", "GPS_LON"),
        ("INDI", "GPS_{}S", "GPS_{}U", "GPS_{}Flg", "GPS_PPSC", "GPS_Seq", "GPS_LONG"),
    )
    for scheme in schemes:
        try:
            found = _from_scheme(header, width, height, *scheme)
        except _Unusable:
            found = None
        if found is not None:
            return found
    try:
        return _sharpcap_block(header, width, height)
    except _Unusable:
        return None


def _from_scheme(
    header: Mapping[str, Any], width: int, height: int, writer: str, sec_k: str, us_k: str,
    flg_k: str, pps_k: str, seq_k: str, lon_k: str,
) -> tuple[GpsBlock, str] | None:  # fmt: skip
    max_us = FIELD_MAX["start_ticks"] / 10
    stamps: dict[str, Stamp] = {}
    for name, letter in _STAMP_LETTERS:
        sec = _num(header, sec_k.format(letter), 0, FIELD_MAX["start_seconds"])
        us = _num(header, us_k.format(letter), 0, max_us)
        flg = _num(header, flg_k.format(letter), 0, 255)
        if sec is None or us is None:
            break
        stamps[name] = Stamp(
            flag=_flag_from_state(flg) if flg is not None else 0,
            seconds=int(sec),
            ticks=round(us * 10),
        )
    if len(stamps) != 3:
        return None
    lat = _num(header, "GPS_LAT", -90, 90)
    lon = _num(header, lon_k, -180, 180)
    pps = _num(header, pps_k, 0, FIELD_MAX["pps_count"])
    seq = _num(header, seq_k, 0, FIELD_MAX["sequence"])
    w = _num(header, "GPS_W", 0, FIELD_MAX["width"])
    h = _num(header, "GPS_H", 0, FIELD_MAX["height"])
    block = GpsBlock(
        sequence=int(seq) if seq is not None else 0,
        spare=0,
        width=int(w) if w is not None else width,
        height=int(h) if h is not None else height,
        latitude_raw=latitude_raw_from_deg(lat) if lat is not None else 0,
        longitude_raw=longitude_raw_from_deg(lon) if lon is not None else 0,
        pps_count=int(pps) if pps is not None else 0,
        **stamps,
    )
    return block, writer


def _sharpcap_block(
    header: Mapping[str, Any], width: int, height: int
) -> tuple[GpsBlock, str] | None:
    creator = " ".join(str(_get(header, k) or "") for k in ("SWCREATE", "CREATOR", "PROGRAM"))
    if "SHARPCAP" not in creator.upper() or "GPS" not in str(_get(header, "INSTRUME") or "").upper():
        return None
    date_obs = _get(header, "DATE-OBS")
    if not isinstance(date_obs, str) or not date_obs:
        return None
    from qhytime.timebase import GPS_EPOCH_UNIX_S, NS_PER_S, iso_to_unix_ns

    lost = date_obs.startswith("0001-01-01")
    if lost:
        start_ns, state = GPS_EPOCH_UNIX_S * NS_PER_S, 0
    else:
        try:
            start_ns, state = int(iso_to_unix_ns(date_obs)), 3
        except (ValueError, OverflowError):
            return None
        if not 0 <= start_ns // NS_PER_S - GPS_EPOCH_UNIX_S <= FIELD_MAX["start_seconds"] - 86_400:
            return None
    exp = _num(header, "EXPTIME", 0, 86_400) or _num(header, "EXPOSURE", 0, 86_400) or 0.0
    end_ns = start_ns + round(exp * 1e9)

    def stamp(ns: int) -> Stamp:
        sec, frac = divmod(ns, NS_PER_S)
        return Stamp(flag=state << 4, seconds=sec - GPS_EPOCH_UNIX_S, ticks=frac // 100)

    block = GpsBlock(
        sequence=0, spare=0, width=width, height=height, latitude_raw=0, longitude_raw=0,
        start=stamp(start_ns), end=stamp(end_ns), now=stamp(end_ns), pps_count=10_000_000,
    )  # fmt: skip
    return block, "SharpCap (DATE-OBS; no pps count)"

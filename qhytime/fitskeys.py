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
its ``origin`` says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qhytime.gpsblock import GpsBlock, Stamp, latitude_raw_from_deg, longitude_raw_from_deg

_STAMP_LETTERS = (("start", "S"), ("end", "E"), ("now", "N"))


def _num(header: Mapping[str, Any], key: str) -> float | None:
    value = header.get(key)
    if value is None or isinstance(value, bool) or isinstance(value, str):
        return None
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
    for writer, sec_k, us_k, flg_k, pps_k, seq_k, lon_k in schemes:
        stamps: dict[str, Stamp] = {}
        for name, letter in _STAMP_LETTERS:
            sec = _num(header, sec_k.format(letter))
            us = _num(header, us_k.format(letter))
            flg = _num(header, flg_k.format(letter))
            if sec is None or us is None:
                break
            stamps[name] = Stamp(
                flag=_flag_from_state(flg) if flg is not None else 0,
                seconds=int(sec),
                ticks=round(us * 10),
            )
        if len(stamps) != 3:
            continue
        lat = _num(header, "GPS_LAT")
        lon = _num(header, lon_k)
        pps = _num(header, pps_k)
        seq = _num(header, seq_k)
        w = _num(header, "GPS_W")
        h = _num(header, "GPS_H")
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
    return _sharpcap_block(header, width, height)


def _sharpcap_block(
    header: Mapping[str, Any], width: int, height: int
) -> tuple[GpsBlock, str] | None:
    creator = " ".join(str(header.get(k, "")) for k in ("SWCREATE", "CREATOR", "PROGRAM"))
    if "SHARPCAP" not in creator.upper() or "GPS" not in str(header.get("INSTRUME", "")).upper():
        return None
    date_obs = header.get("DATE-OBS")
    if not isinstance(date_obs, str) or not date_obs:
        return None
    from qhytime.timebase import GPS_EPOCH_UNIX_S, NS_PER_S, iso_to_unix_ns

    lost = date_obs.startswith("0001-01-01")
    if lost:
        start_ns, state = GPS_EPOCH_UNIX_S * NS_PER_S, 0
    else:
        try:
            start_ns, state = int(iso_to_unix_ns(date_obs)), 3
        except ValueError:
            return None
    exp = header.get("EXPTIME") or header.get("EXPOSURE") or 0.0
    end_ns = start_ns + round(float(exp) * 1e9)

    def stamp(ns: int) -> Stamp:
        sec, frac = divmod(ns, NS_PER_S)
        return Stamp(flag=state << 4, seconds=sec - GPS_EPOCH_UNIX_S, ticks=frac // 100)

    block = GpsBlock(
        sequence=0, spare=0, width=width, height=height, latitude_raw=0, longitude_raw=0,
        start=stamp(start_ns), end=stamp(end_ns), now=stamp(end_ns), pps_count=10_000_000,
    )  # fmt: skip
    return block, "SharpCap (DATE-OBS; no pps count)"

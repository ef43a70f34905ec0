"""IOD observation lines (satobs.org, G. Lewis' Interactive Orbit Determination format).

Columns (1-based)::

    1-5   NORAD number          7-15  international designator 'YY NNNPPP'
    17-20 station               22    station status (sky condition E G F P B T)
    24-40 YYYYMMDDHHMMSSsss     42-43 time uncertainty ME: M x 10^(E-8) s
    45    angle format (2)      46    epoch (5 = J2000)
    48-61 HHMMmmm+DDMMmm        63-64 position uncertainty ME: M x 10^(E-8) arcmin

All 17 date-time digits are always written (rounded to the millisecond, halves up); the time
uncertainty code is the smallest ``M x 10^(E-8)`` s not below the point's 1-sigma combined with
the millisecond rounding of the written time. The position is in angle format 2 (RA to
0.001 min of time, Dec to 0.01 arcmin), J2000 (ICRS) as a plate solution gives it; its
uncertainty code is the smallest one not below the position's 1-sigma combined with that
rounding.
"""

from __future__ import annotations

import math
import re

from qhytime.errors import QhytimeError
from qhytime.timebase import unix_ns_to_iso

MS_ROUNDING_SIGMA_S = 1e-3 / math.sqrt(12.0)
"""1-sigma of rounding a time to the millisecond (uniform)."""

STATUS_CODES = "EGFPBT"
EPOCH_J2000 = 5
ANGLE_FORMAT = 2


def uncertainty_code(value: float) -> str:
    """The IOD ``ME`` code: the smallest ``M x 10^(E-8)`` (M 1-9, E 0-9) not below ``value``.

    Examples
    --------
    >>> uncertainty_code(3.2e-4), uncertainty_code(1e-3), uncertainty_code(0.05)
    ('44', '15', '56')
    >>> uncertainty_code(0.0)
    '10'
    """
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"an uncertainty must be finite and >= 0, not {value}")
    for e in range(10):
        unit = 10.0 ** (e - 8)
        m = math.ceil(value / unit * (1 - 1e-12))
        if m <= 9:
            return f"{max(m, 1)}{e}"
    return "99"


def code_value(code: str) -> float:
    """The value an ``ME`` code stands for.

    Examples
    --------
    >>> code_value("44")
    0.0004
    """
    return int(code[0]) * 10.0 ** (int(code[1]) - 8)


def designator_columns(cospar: str) -> str:
    """COSPAR id (``98067A``, ``1998-067A``) to columns 7-15 (``'98 067A  '``).

    Examples
    --------
    >>> designator_columns("1998-067A"), designator_columns("98067ABC")
    ('98 067A  ', '98 067ABC')
    """
    m = re.fullmatch(r"(?:\d\d)?(\d\d)-?(\d{3})([A-Z]{1,3})", cospar.strip().upper())
    if not m:
        raise QhytimeError(
            f"COSPAR id {cospar!r} is not YYNNNP(PP) or YYYY-NNNP(PP) (e.g. 98067A)"
        )
    return f"{m[1]} {m[2]}{m[3]:<3}"


def cospar_to_artsat(cospar: str) -> str:
    """COSPAR id to the ADES ``artSat`` form ``YYYY-NNNP``.

    Examples
    --------
    >>> cospar_to_artsat("98067A"), cospar_to_artsat("2024-012BC")
    ('1998-067A', '2024-012BC')
    """
    m = re.fullmatch(r"(\d\d|\d{4})-?(\d{3})([A-Z]{1,3})", cospar.strip().upper())
    if not m:
        raise QhytimeError(f"COSPAR id {cospar!r} is not YYNNNP or YYYY-NNNP (e.g. 98067A)")
    year = m[1] if len(m[1]) == 4 else ("19" if int(m[1]) >= 57 else "20") + m[1]
    return f"{year}-{m[2]}{m[3]}"


def _round_div(num: int, den: int) -> int:
    return (2 * num + den) // (2 * den)


def ra_dec_format2(ra_deg: float, dec_deg: float) -> str:
    """Columns 48-61 in angle format 2: ``HHMMmmm`` and ``+DDMMmm`` (rounded).

    Examples
    --------
    >>> ra_dec_format2(132.5095431194219, -32.08834376389617)
    '0850038-320530'
    >>> ra_dec_format2(359.99999, 0.0)
    '0000000+000000'
    """
    if not (math.isfinite(ra_deg) and math.isfinite(dec_deg)) or abs(dec_deg) > 90:
        raise QhytimeError(f"position RA {ra_deg} Dec {dec_deg} is not a sky position")
    # RA in units of 0.001 minute of time (0.015 arcmin of angle)
    ra_units = round((ra_deg % 360.0) / 15.0 * 60_000.0) % (24 * 60_000)
    hh, rest = divmod(ra_units, 60_000)
    mm, mmm = divmod(rest, 1000)
    dec_units = round(abs(dec_deg) * 6000.0)  # 0.01 arcmin
    dd, rest = divmod(dec_units, 6000)
    dm, dmm = divmod(rest, 100)
    sign = "-" if dec_deg < 0 and dec_units > 0 else "+"
    return f"{hh:02d}{mm:02d}{mmm:03d}{sign}{dd:02d}{dm:02d}{dmm:02d}"


FORMAT2_RA_RES_ARCMIN = 0.015  # 0.001 min of time
FORMAT2_DEC_RES_ARCMIN = 0.01


def iod_line(
    *,
    norad: int | str,
    cospar: str,
    station: int | str,
    unix_ns: int,
    sigma_s: float,
    ra_deg: float,
    dec_deg: float,
    position_sigma_arcsec: float,
    status: str = "G",
) -> str:
    """One IOD observation line (64 columns).

    Parameters
    ----------
    norad : int or str
        Catalogue number (1-99999).
    cospar : str
        International designator, ``98067A`` or ``1998-067A``.
    station : int or str
        Four-digit station number.
    unix_ns : int
        The point's exact time (ns since 1970 UTC): written to the millisecond.
    sigma_s : float
        The time's 1-sigma (s).
    ra_deg, dec_deg : float
        J2000 (ICRS) position.
    position_sigma_arcsec : float
        The position's 1-sigma.
    status : str
        Sky condition code (E, G, F, P, B, T).

    Examples
    --------
    >>> iod_line(norad=25544, cospar="98067A", station=9999, unix_ns=1777600799866751054,
    ...          sigma_s=3.6e-4, ra_deg=132.5095431194219, dec_deg=-32.08834376389617,
    ...          position_sigma_arcsec=1.0)
    '25544 98 067A   9999 G 20260501015959867 54 25 0850038-320530 26'
    """
    n = str(norad).strip()
    if not n.isdigit() or not 0 < int(n) < 100_000:
        raise QhytimeError(f"NORAD number {norad!r} is not 1..99999")
    st = str(station).strip()
    if not st.isdigit() or len(st) > 4:
        raise QhytimeError(f"IOD station {station!r} is not a number of up to four digits")
    if status not in STATUS_CODES:
        raise QhytimeError(f"IOD sky condition {status!r} is not one of {STATUS_CODES}")
    if not (math.isfinite(sigma_s) and sigma_s >= 0):
        raise QhytimeError(f"time sigma {sigma_s} s is not a finite number >= 0")
    ms = _round_div(int(unix_ns), 1_000_000)
    iso = str(unix_ns_to_iso(ms * 1_000_000))  # YYYY-MM-DDTHH:MM:SS.fffffffff
    stamp = iso[0:4] + iso[5:7] + iso[8:10] + iso[11:13] + iso[14:16] + iso[17:19] + iso[20:23]
    tcode = uncertainty_code(math.hypot(sigma_s, MS_ROUNDING_SIGMA_S))
    res = math.hypot(FORMAT2_RA_RES_ARCMIN * math.cos(math.radians(dec_deg)), FORMAT2_DEC_RES_ARCMIN)
    pcode = uncertainty_code(math.hypot(position_sigma_arcsec / 60.0, res / math.sqrt(12.0)))
    line = (
        f"{int(n):05d} {designator_columns(cospar)} {int(st):04d} {status} {stamp} {tcode} "
        f"{ANGLE_FORMAT}{EPOCH_J2000} {ra_dec_format2(ra_deg, dec_deg)} {pcode}"
    )
    assert len(line) == 64, line
    return line

"""ADES PSV (IAU Astrometry Data Exchange Standard, version 2022) for timed points.

One ``optical`` record per timed point: the object (``artSat`` for an artificial satellite,
``permID``/``provID`` for a minor planet, ``trkSub`` for the observer's own tracklet id),
``mode`` ``CMO`` (CMOS), ``stn``, ``obsTime`` (ISO UTC with ``Z``, 6 decimals, rounded from the
exact ns), ``rmsTime`` (the random 1-sigma in s, at most 8 characters, at least 0.000001),
``ra``/``dec`` (degrees, 7 decimals), ``rmsRA``/``rmsDec`` (arcsec) and ``astCat``. The header
carries the observation context (observatory, submitter, observers, measurers, telescope).
``iau-ades``'s ``psvtoxml`` + ``valsubmit`` accept the result (tested).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from qhytime import __version__
from qhytime.errors import QhytimeError
from qhytime.timebase import unix_ns_to_iso


@dataclass(frozen=True)
class AdesContext:
    """Header fields of an ADES submission (defaults are valid placeholders).

    Attributes
    ----------
    station : str
        MPC observatory code (3-4 characters): ``mpcCode`` and every record's ``stn``.
    observers, measurers : sequence of str
        Names, initials then surname.
    submitter : str
        Default: the first observer.
    telescope : str
        Telescope design (``Reflector``, ``Refractor``, ``Lens``, ...).
    aperture_m : float
        Aperture in metres.
    detector : str
        ``CMO`` for CMOS sensors.
    ast_cat : str
        Star catalogue of the plate solution (``Gaia3``, ``Gaia2``, ``UCAC4``, ...).
    """

    station: str
    observers: Sequence[str] = ("A. Observer",)
    measurers: Sequence[str] = ()
    submitter: str | None = None
    telescope: str = "Reflector"
    aperture_m: float = 0.2
    detector: str = "CMO"
    ast_cat: str = "Gaia3"

    def check(self) -> None:
        """Raise :class:`QhytimeError` for a field ADES does not accept."""
        if not re.fullmatch(r"[A-Za-z0-9]{3,4}", self.station):
            raise QhytimeError(f"ADES station {self.station!r}: 3-4 letters or digits (MPC code)")
        names = [*self.observers, *self.measurers, self.submitter or ""]
        for n in names:
            if "|" in n or len(n) > 100:
                raise QhytimeError(f"ADES name {n!r}: at most 100 characters, no '|'")
        if not re.fullmatch(r"[.A-Za-z0-9_]{1,8}", self.ast_cat):
            raise QhytimeError(f"ADES astCat {self.ast_cat!r}: up to 8 of A-Z a-z 0-9 . _")
        if not (math.isfinite(self.aperture_m) and self.aperture_m > 0):
            raise QhytimeError(f"ADES aperture {self.aperture_m} m must be positive")
        for what, v, n in (("telescope", self.telescope, 35), ("detector", self.detector, 25)):
            if not v.strip() or "|" in v or len(v) > n:
                raise QhytimeError(f"ADES {what} {v!r}: 1-{n} characters, no '|'")


@dataclass(frozen=True)
class AdesObject:
    """Who the records are of: ``artSat`` (``1998-067A``), ``permID``, ``provID``, ``trkSub``."""

    art_sat: str | None = None
    perm_id: str | None = None
    prov_id: str | None = None
    trk_sub: str | None = None

    def fields(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.art_sat and (self.perm_id or self.prov_id):
            raise QhytimeError("ADES: an artificial satellite (artSat) has no permID/provID")
        if self.perm_id:
            out["permID"] = self.perm_id
        if self.prov_id:
            out["provID"] = self.prov_id
        if self.art_sat:
            out["artSat"] = self.art_sat
        if self.trk_sub:
            if not re.fullmatch(r"[A-Za-z0-9-]{1,8}", self.trk_sub):
                raise QhytimeError(f"ADES trkSub {self.trk_sub!r}: 1-8 of A-Z a-z 0-9 -")
            out["trkSub"] = self.trk_sub
        if not out:
            raise QhytimeError(
                "ADES needs an object: give art_sat= (an artificial satellite, e.g. 1998-067A), "
                "perm_id=, prov_id= or trk_sub="
            )
        for k, v in out.items():
            if "|" in v or not v.strip():
                raise QhytimeError(f"ADES {k} {v!r} is empty or holds '|'")
        return out


def obs_time(unix_ns: int) -> str:
    """ISO UTC with ``Z`` and 6 decimals, rounded (halves up) from exact ns.

    Examples
    --------
    >>> obs_time(1777600799866751554)
    '2026-05-01T01:59:59.866752Z'
    """
    us = (2 * int(unix_ns) + 1000) // 2000
    return str(unix_ns_to_iso(us * 1000))[:26] + "Z"


def rms_time(sigma_s: float) -> str:
    """``rmsTime``: the 1-sigma in seconds in at most 8 characters, at least 0.000001.

    Examples
    --------
    >>> rms_time(3.6e-4), rms_time(1e-9), rms_time(12.5)
    ('0.000360', '0.000001', '12.50000')
    """
    if not (math.isfinite(sigma_s) and sigma_s >= 0):
        raise QhytimeError(f"time sigma {sigma_s} s is not a finite number >= 0")
    v = max(sigma_s, 1e-6)
    digits = 8 - len(str(int(v))) - 1
    if digits < 0:
        raise QhytimeError(f"time sigma {sigma_s} s does not fit rmsTime")
    text = f"{v:.{digits}f}"
    if float(text) <= 0:
        text = "0.000001"
    return text


def _rms_arcsec(v: float) -> str:
    v = min(max(v, 0.001), 9999.0)
    return f"{v:.3f}"[:7].rstrip(".")


def ades_psv(
    records: Sequence[tuple[int, float, float, float, float]],
    context: AdesContext,
    obj: AdesObject,
    *,
    comment: str | None = None,
) -> str:
    """The PSV text of timed points.

    Parameters
    ----------
    records : sequence of (unix_ns, sigma_s, ra_deg, dec_deg, position_sigma_arcsec)
    context : AdesContext
    obj : AdesObject
    comment : str, optional
        One comment line in the header.

    Examples
    --------
    >>> text = ades_psv([(1777600799866751054, 3.6e-4, 132.5095431, -32.0883438, 1.0)],
    ...                 AdesContext("9999", observers=["J. Doe"]), AdesObject(art_sat="1998-067A"))
    >>> print(text.splitlines()[0]); print(text.splitlines()[-1])
    # version=2022
    1998-067A|CMO|9999|2026-05-01T01:59:59.866751Z|0.000360|132.5095431|-32.0883438|1.000|1.000|Gaia3
    """
    context.check()
    ids = obj.fields()
    lines = ["# version=2022", "# observatory", f"! mpcCode {context.station}"]
    observers = [n for n in context.observers if n.strip()] or ["A. Observer"]
    lines += ["# submitter", f"! name {context.submitter or observers[0]}", "# observers"]
    lines += [f"! name {n}" for n in observers]
    measurers = [n for n in context.measurers if n.strip()] or observers
    lines += ["# measurers", *[f"! name {n}" for n in measurers]]
    lines += [
        "# telescope",
        f"! design {context.telescope}",
        f"! aperture {_aperture(context.aperture_m)}",
        f"! detector {context.detector}",
        "# comment",
        f"! line {comment or f'times from the rolling-shutter row model (qhytime {__version__})'}"[:107],
    ]
    cols = [*ids, "mode", "stn", "obsTime", "rmsTime", "ra", "dec", "rmsRA", "rmsDec", "astCat"]
    lines.append("|".join(cols))
    for unix_ns, sigma_s, ra, dec, pos_sig in records:
        if not (math.isfinite(ra) and math.isfinite(dec)):
            raise QhytimeError("ADES records need RA/Dec: the frame has no WCS")
        ra_text = f"{ra % 360.0:.7f}"
        if ra_text.startswith("360"):  # 359.99999996 rounds up; RA must stay below 360
            ra_text = "0.0000000"
        vals = [
            *ids.values(), "CMO", context.station, obs_time(unix_ns), rms_time(sigma_s),
            ra_text, f"{dec:.7f}", _rms_arcsec(pos_sig), _rms_arcsec(pos_sig), context.ast_cat,
        ]  # fmt: skip
        lines.append("|".join(vals))
    return "\n".join(lines) + "\n"


def _aperture(v: float) -> str:
    text = f"{v:.4f}".rstrip("0").rstrip(".")
    if len(text) > 6:
        raise QhytimeError(f"ADES aperture {v} m does not fit 6 characters")
    return text

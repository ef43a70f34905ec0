"""Calibration records: the setting they belong to and the row-model values measured for it.

A calibration is never edited: a new measurement supersedes an old one, which stays for
history (see :mod:`qhytime.store`). The plain-text exchange format is TOML, one
``[[calibration]]`` table per record, each with its provenance; the shipped calibrations
in ``calibrations/`` use it too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qhytime.errors import CalibrationError
from qhytime.rowmodel import READOUTS, Readout, Reference, RowModel

METHODS = ("vendor", "SDK", "LED fit", "manual")
STREAM_MODES = ("single", "live")
REFERENCES = ("start", "end", "now")
BIT_DEPTHS = (8, 16)
MAX_SENSOR_PX = 100_000
"""Largest ROI coordinate or size accepted (pixels on the sensor)."""


class _Checks:
    """Collects every problem of a record, so one error lists them all."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def whole(self, name: str, v: Any, lo: int, hi: int) -> None:
        if isinstance(v, bool) or not isinstance(v, int):
            self.problems.append(f"{name} = {v!r} is not a whole number")
        elif not lo <= v <= hi:
            self.problems.append(f"{name} = {v} is outside {lo}..{hi}")

    def number(
        self, name: str, v: Any, lo: float, hi: float, *, lo_open: bool = False, none_ok: bool = False
    ) -> None:
        if v is None and none_ok:
            return
        if isinstance(v, bool) or not isinstance(v, int | float):
            self.problems.append(f"{name} = {v!r} is not a number")
        elif not math.isfinite(v):
            self.problems.append(f"{name} = {v} is not finite")
        elif (v <= lo if lo_open else v < lo) or v > hi:
            self.problems.append(f"{name} = {v} is outside {'(' if lo_open else '['}{lo:g}, {hi:g}]")

    def text(self, name: str, v: Any, *, empty_ok: bool = True, none_ok: bool = False) -> None:
        if v is None and none_ok:
            return
        if not isinstance(v, str):
            self.problems.append(f"{name} = {v!r} is not text")
        elif not empty_ok and not v.strip():
            self.problems.append(f"{name} is empty")

    def choice(self, name: str, v: Any, allowed: tuple[Any, ...]) -> None:
        if isinstance(v, bool) or v not in allowed:
            self.problems.append(f"{name} = {v!r} is not one of {', '.join(map(str, allowed))}")

    def flag(self, name: str, v: Any) -> None:
        if not isinstance(v, bool):
            self.problems.append(f"{name} = {v!r} is not true/false")

    def raise_if_any(self, what: str) -> None:
        if self.problems:
            raise CalibrationError(f"invalid {what}: " + "; ".join(self.problems))


def _iso_date_ok(text: str) -> bool:
    """True for an ISO 8601 date or date-time (what ``measured_at`` holds)."""
    try:
        if len(text) == 10:
            dt.date.fromisoformat(text)
        else:
            dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Setting:
    """The camera setting a calibration belongs to.

    ``serial``, ``sdk_version`` and ``firmware_version`` may be None: the calibration then
    applies to any unit / version. The other fields decide the timing and must match.

    Examples
    --------
    >>> s = Setting(camera_model="QHY600PRO", readout_mode="Photographic DSO",
    ...             roi_width=9576, roi_height=6388)
    >>> s.key()
    'QHY600PRO|*|Photographic DSO|pairs|roi=0,0,9576x6388|bin=1|bits=16|usb=0|single|gr=0'
    """

    camera_model: str
    readout_mode: str
    roi_width: int
    roi_height: int
    roi_x: int = 0
    roi_y: int = 0
    is_2cms: bool = False
    binning: int = 1
    bit_depth: int = 16
    usb_traffic: int = 0
    stream_mode: str = "single"
    global_reset: bool = False
    serial: str | None = None
    sdk_version: str | None = None
    firmware_version: str | None = None

    def __post_init__(self) -> None:
        c = _Checks()
        c.text("camera_model", self.camera_model, empty_ok=False)
        c.text("readout_mode", self.readout_mode, empty_ok=False)
        for name in ("roi_width", "roi_height"):
            c.whole(name, getattr(self, name), 1, MAX_SENSOR_PX)
        for name in ("roi_x", "roi_y"):
            c.whole(name, getattr(self, name), 0, MAX_SENSOR_PX)
        c.whole("binning", self.binning, 1, 64)
        c.choice("bit_depth", self.bit_depth, BIT_DEPTHS)
        c.whole("usb_traffic", self.usb_traffic, 0, 255)
        c.choice("stream_mode", self.stream_mode, STREAM_MODES)
        c.flag("is_2cms", self.is_2cms)
        c.flag("global_reset", self.global_reset)
        for name in ("serial", "sdk_version", "firmware_version"):
            c.text(name, getattr(self, name), empty_ok=False, none_ok=True)
        c.raise_if_any("setting")
        if "2CMS" in self.readout_mode.upper() and not self.is_2cms:
            object.__setattr__(self, "is_2cms", True)

    @property
    def readout(self) -> Readout:
        """``"2cms"`` for single-row modes, ``"pairs"`` otherwise."""
        return "2cms" if self.is_2cms else "pairs"

    def key(self) -> str:
        """Canonical text of the timing-relevant fields (serial ``*`` when any)."""
        return (
            f"{self.camera_model}|{self.serial or '*'}|{self.readout_mode}|{self.readout}|"
            f"roi={self.roi_x},{self.roi_y},{self.roi_width}x{self.roi_height}|bin={self.binning}|"
            f"bits={self.bit_depth}|usb={self.usb_traffic}|{self.stream_mode}|"
            f"gr={int(self.global_reset)}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Setting:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise CalibrationError(f"unknown setting field(s): {sorted(unknown)}")
        return cls(**dict(d))


@dataclass(frozen=True)
class Calibration:
    """Row-model values measured (or quoted) for one setting.

    Attributes
    ----------
    setting : Setting
    reference : {"start", "end", "now"}
        The stamp ``offset0`` is measured from.
    offset0_us, offset0_sigma_us : float
        Reference stamp to the end of exposure of the first readout unit, and 1-sigma.
    line_period_ns, line_period_sigma_ns : float
        Line period per sensor row (in GPS time), and 1-sigma.
    exposure_scale, exposure_scale_sigma : float or None
        Measured / nominal exposure, when measured.
    method : str
        ``vendor``, ``SDK``, ``LED fit`` or ``manual``.
    measured_at : str
        ISO date or time of the measurement.
    notes, provenance : str
        Free text; provenance says where the numbers come from.
    frames : list of str
        Frames used by a fit.
    residual_rms_us : float or None
        RMS of the fit residuals.
    id, supersedes : int or None
        Store ids (None until stored).
    created_at : str or None
        When the store received it.
    retracted_at, retraction_reason : str or None
        Set when it was withdrawn: lookups skip it, history keeps it.

    Raises
    ------
    CalibrationError
        Listing every field that is of the wrong type, out of range or not finite.

    Examples
    --------
    >>> s = Setting(camera_model="QHY600PRO", readout_mode="Photographic DSO",
    ...             roi_width=9576, roi_height=6388)
    >>> Calibration(setting=s, reference="end", offset0_us=float("nan"), line_period_ns=0)
    Traceback (most recent call last):
    ...
    qhytime.errors.CalibrationError: invalid calibration: offset0_us = nan is not finite; line_period_ns = 0 is outside (0, 1e+06]
    """

    setting: Setting
    reference: Reference
    offset0_us: float
    line_period_ns: float
    offset0_sigma_us: float = 0.0
    line_period_sigma_ns: float = 0.0
    exposure_scale: float | None = None
    exposure_scale_sigma: float | None = None
    method: str = "manual"
    measured_at: str = ""
    notes: str = ""
    provenance: str = ""
    frames: tuple[str, ...] = field(default_factory=tuple)
    residual_rms_us: float | None = None
    id: int | None = None
    supersedes: int | None = None
    created_at: str | None = None
    retracted_at: str | None = None
    retraction_reason: str | None = None

    @property
    def retracted(self) -> bool:
        """True when the calibration was withdrawn (``qhytime calib retract``)."""
        return self.retracted_at is not None

    def __post_init__(self) -> None:
        c = _Checks()
        if not isinstance(self.setting, Setting):
            c.problems.append(f"setting = {self.setting!r} is not a Setting")
        c.choice("reference", self.reference, REFERENCES)
        c.number("offset0_us", self.offset0_us, -1e8, 1e8)
        c.number("line_period_ns", self.line_period_ns, 0.0, 1e6, lo_open=True)
        c.number("offset0_sigma_us", self.offset0_sigma_us, 0.0, 1e8)
        c.number("line_period_sigma_ns", self.line_period_sigma_ns, 0.0, 1e6)
        c.number("exposure_scale", self.exposure_scale, 0.0, 10.0, lo_open=True, none_ok=True)
        c.number("exposure_scale_sigma", self.exposure_scale_sigma, 0.0, 10.0, none_ok=True)
        c.number("residual_rms_us", self.residual_rms_us, 0.0, 1e8, none_ok=True)
        c.choice("method", self.method, METHODS)
        c.text("notes", self.notes)
        c.text("provenance", self.provenance)
        c.text("measured_at", self.measured_at)
        if isinstance(self.measured_at, str) and self.measured_at and not _iso_date_ok(
            self.measured_at
        ):
            c.problems.append(
                f"measured_at = {self.measured_at!r} is not an ISO date or date-time "
                "(e.g. 2026-03-14 or 2026-03-14T22:10:00)"
            )
        if not isinstance(self.frames, tuple) or not all(isinstance(f, str) for f in self.frames):
            c.problems.append(f"frames = {self.frames!r} is not a list of file names")
        c.raise_if_any("calibration")
        if self.setting.readout not in READOUTS:  # pragma: no cover - Setting guarantees it
            raise CalibrationError("bad readout")

    def row_model(self, *, extra_offset0_sigma_us: float = 0.0) -> RowModel:
        """The :class:`RowModel` of this calibration (sigma widened on request)."""
        sigma = (self.offset0_sigma_us**2 + extra_offset0_sigma_us**2) ** 0.5
        return RowModel.from_us(
            offset0_us=self.offset0_us,
            line_period_ns=self.line_period_ns,
            readout=self.setting.readout,
            reference=self.reference,
            offset0_sigma_us=sigma,
            line_period_sigma_ns=self.line_period_sigma_ns,
            exposure_scale=self.exposure_scale or 1.0,
            global_reset=self.setting.global_reset,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping (TOML / JSON ready; None values left out)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "setting":
                out["setting"] = v.to_dict()
            elif f.name == "frames":
                if v:
                    out["frames"] = list(v)
            elif v is not None and v != "":
                out[f.name] = v
        return out

    def values(self) -> tuple[Any, ...]:
        """The measured values and provenance (not the store's ids and dates): two records
        with the same setting and the same values are the same calibration."""
        return (
            self.setting.key(), self.reference, self.offset0_us, self.line_period_ns,
            self.offset0_sigma_us, self.line_period_sigma_ns, self.exposure_scale,
            self.exposure_scale_sigma, self.method, self.measured_at, self.notes,
            self.provenance, tuple(self.frames), self.residual_rms_us,
        )  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        data = dict(d)
        try:
            setting = Setting.from_dict(data.pop("setting"))
        except KeyError:
            raise CalibrationError("calibration record has no [setting]") from None
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise CalibrationError(f"unknown calibration field(s): {sorted(unknown)}")
        if isinstance(data.get("frames"), list):
            data["frames"] = tuple(data["frames"])
        if isinstance(data.get("measured_at"), dt.date | dt.datetime):
            data["measured_at"] = data["measured_at"].isoformat()
        return cls(setting=setting, **data)

    def replace(self, **changes: Any) -> Calibration:
        return dataclasses.replace(self, **changes)


def load_toml(path: str | Path) -> list[Calibration]:
    """Read calibrations from a TOML file of ``[[calibration]]`` tables, all checked.

    Raises
    ------
    CalibrationError
        Naming the file and the record that is wrong (or saying the file holds none): a
        file is taken whole or not at all.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "empty.toml")
    >>> _ = open(p, "w").close()
    >>> load_toml(p)
    Traceback (most recent call last):
    ...
    qhytime.errors.CalibrationError: ...empty.toml: no [[calibration]] table in the file: nothing to import
    """
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CalibrationError(
            "not a TOML text file (it is not UTF-8 text): give a file written by "
            "`qhytime calib export`",
            path=str(p),
        ) from None
    except OSError as exc:
        raise CalibrationError(f"cannot read calibrations: {exc.strerror or exc}", path=str(p)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise CalibrationError(f"not valid TOML: {exc}", path=str(p)) from exc
    records = doc.get("calibration")
    if records is None:
        raise CalibrationError("no [[calibration]] table in the file: nothing to import", path=str(p))
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise CalibrationError(
            "`calibration` must be an array of tables ([[calibration]])", path=str(p)
        )
    out = []
    for i, rec in enumerate(records):
        try:
            if not isinstance(rec.get("setting"), dict):
                raise CalibrationError("its [calibration.setting] table is missing")
            out.append(Calibration.from_dict(rec))
        except (CalibrationError, TypeError, ValueError) as exc:
            raise CalibrationError(f"record {i}: {exc}", path=str(p)) from exc
    return out


def dump_toml(calibrations: Iterable[Calibration], header: str = "") -> str:
    """TOML text of calibrations, one ``[[calibration]]`` each (round-trips with load)."""
    import tomli_w

    body = tomli_w.dumps({"calibration": [c.to_dict() for c in calibrations]})
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    return ("\n".join(lines) + "\n\n" if lines else "") + body


def shipped_calibration_files() -> list[Path]:
    """The TOML files of the calibrations shipped with qhytime."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_calibrations", here.parent / "calibrations"):
        if candidate.is_dir():
            return sorted(candidate.glob("*.toml"))
    return []

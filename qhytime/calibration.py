"""Calibration records: the setting they belong to and the row-model values measured for it.

A calibration is never edited: a new measurement supersedes an old one, which stays for
history (see :mod:`qhytime.store`). The plain-text exchange format is TOML, one
``[[calibration]]`` table per record, each with its provenance; the shipped calibrations
in ``calibrations/`` use it too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qhytime.errors import CalibrationError
from qhytime.rowmodel import READOUTS, Readout, Reference, RowModel

METHODS = ("vendor", "SDK", "LED fit", "manual")
STREAM_MODES = ("single", "live")


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
        if self.stream_mode not in STREAM_MODES:
            raise CalibrationError(
                f"stream mode must be one of {STREAM_MODES}, not {self.stream_mode!r}"
            )
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

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise CalibrationError(f"method must be one of {METHODS}, not {self.method!r}")
        if self.reference not in ("start", "end", "now"):
            raise CalibrationError(f"reference must be start, end or now, not {self.reference!r}")
        if self.line_period_ns <= 0:
            raise CalibrationError(f"line period must be positive, got {self.line_period_ns} ns")
        if self.offset0_sigma_us < 0 or self.line_period_sigma_ns < 0:
            raise CalibrationError("sigmas must be >= 0")
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
        if "frames" in data:
            data["frames"] = tuple(data["frames"])
        if isinstance(data.get("measured_at"), dt.date | dt.datetime):
            data["measured_at"] = data["measured_at"].isoformat()
        return cls(setting=setting, **data)

    def replace(self, **changes: Any) -> Calibration:
        return dataclasses.replace(self, **changes)


def load_toml(path: str | Path) -> list[Calibration]:
    """Read calibrations from a TOML file of ``[[calibration]]`` tables.

    Raises
    ------
    CalibrationError
        Naming the file and the record that is wrong.
    """
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CalibrationError(f"cannot read calibrations: {exc}", path=str(p)) from exc
    out = []
    for i, rec in enumerate(doc.get("calibration", [])):
        try:
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

"""The calibration store: SQLite by default (any SQLAlchemy URL), append-only history.

- Opens the database at ``--db`` / ``$QHYTIME_DB`` / the user's data directory
  (:func:`default_database_url`), runs the alembic migrations, and on a new database loads
  the shipped calibrations (``calibrations/*.toml``).
- A calibration is never updated or deleted: :meth:`CalibrationStore.add` inserts a new
  row that supersedes the current one of the same setting; every old one can still be
  listed and pinned by id.
- :meth:`CalibrationStore.lookup` matches a setting exactly; a fallback to a neighbouring
  setting is used only when asked for, is warned about, and widens sigma(offset0).
- SQLite runs in WAL mode with a busy timeout; writes take the database lock up front
  (``BEGIN IMMEDIATE``), so concurrent writers from several processes queue, none lost.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, ForeignKey, String, Text, create_engine, event, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from qhytime.calibration import (
    Calibration,
    Setting,
    dump_toml,
    load_toml,
    shipped_calibration_files,
)
from qhytime.errors import CalibrationError
from qhytime.rowmodel import RowModel

ENV_VAR = "QHYTIME_DB"


class CalibrationFallbackWarning(UserWarning):
    """A calibration of a neighbouring setting is used (sigma widened)."""


class CalibrationPinnedWarning(UserWarning):
    """A calibration pinned by id belongs to another setting than the frame's."""


# Widening of sigma(offset0), in us, for each kind of difference a fallback accepts. The
# vendor and SDK figures for one setting differ by 34 us, and the offset is known to move
# with ROI and stream mode by amounts of that order: these make the uncertainty honest.
FALLBACK_WIDENING_US: dict[str, float] = {
    "roi": 50.0,
    "binning": 50.0,
    "stream_mode": 100.0,
    "serial": 5.0,
    "sdk_version": 10.0,
    "firmware_version": 10.0,
}
# Differences no fallback accepts: they change the line period or the row order.
HARD_FIELDS = (
    "camera_model",
    "readout_mode",
    "is_2cms",
    "global_reset",
    "bit_depth",
    "usb_traffic",
)


class Base(DeclarativeBase):
    """Declarative base of the store's tables."""


class CalibrationRow(Base):
    """One stored calibration (a row is never updated)."""

    __tablename__ = "calibrations"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    setting_key: Mapped[str] = mapped_column(String, index=True)
    camera_model: Mapped[str]
    serial: Mapped[str | None]
    readout_mode: Mapped[str]
    is_2cms: Mapped[bool]
    roi_x: Mapped[int]
    roi_y: Mapped[int]
    roi_width: Mapped[int]
    roi_height: Mapped[int]
    binning: Mapped[int]
    bit_depth: Mapped[int]
    usb_traffic: Mapped[int]
    stream_mode: Mapped[str]
    global_reset: Mapped[bool] = mapped_column(default=False)
    sdk_version: Mapped[str | None]
    firmware_version: Mapped[str | None]
    reference: Mapped[str]
    offset0_us: Mapped[float]
    offset0_sigma_us: Mapped[float]
    line_period_ns: Mapped[float]
    line_period_sigma_ns: Mapped[float]
    exposure_scale: Mapped[float | None]
    exposure_scale_sigma: Mapped[float | None]
    method: Mapped[str]
    measured_at: Mapped[str]
    notes: Mapped[str] = mapped_column(Text)
    provenance: Mapped[str] = mapped_column(Text)
    source: Mapped[str]
    created_at: Mapped[str]
    supersedes: Mapped[int | None] = mapped_column(ForeignKey("calibrations.id"))
    frames: Mapped[str] = mapped_column(Text, default="[]")
    residual_rms_us: Mapped[float | None]

    _SETTING_FIELDS = (
        "camera_model", "serial", "readout_mode", "is_2cms", "roi_x", "roi_y", "roi_width",
        "roi_height", "binning", "bit_depth", "usb_traffic", "stream_mode", "global_reset",
        "sdk_version", "firmware_version",
    )  # fmt: skip
    _VALUE_FIELDS = (
        "reference", "offset0_us", "offset0_sigma_us", "line_period_ns", "line_period_sigma_ns",
        "exposure_scale", "exposure_scale_sigma", "method", "measured_at", "notes",
        "provenance", "residual_rms_us",
    )  # fmt: skip

    @classmethod
    def from_calibration(cls, cal: Calibration, *, source: str, created_at: str) -> CalibrationRow:
        s = cal.setting
        kw: dict[str, Any] = {f: getattr(s, f) for f in cls._SETTING_FIELDS}
        kw.update({f: getattr(cal, f) for f in cls._VALUE_FIELDS})
        return cls(
            setting_key=s.key(),
            source=source,
            created_at=created_at,
            frames=json.dumps(list(cal.frames)),
            **kw,
        )

    def to_calibration(self) -> Calibration:
        setting = Setting(**{f: getattr(self, f) for f in self._SETTING_FIELDS})
        values = {f: getattr(self, f) for f in self._VALUE_FIELDS}
        return Calibration(
            setting=setting,
            frames=tuple(json.loads(self.frames or "[]")),
            id=self.id,
            supersedes=self.supersedes,
            created_at=self.created_at,
            **values,
        )


def default_database_url() -> str:
    """``$QHYTIME_DB`` (a path or a SQLAlchemy URL), else SQLite in the user data directory.

    Examples
    --------
    >>> import os
    >>> os.environ["QHYTIME_DB"] = "/tmp/x.sqlite"
    >>> default_database_url()
    'sqlite:////tmp/x.sqlite'
    >>> del os.environ["QHYTIME_DB"]
    """
    value = os.environ.get(ENV_VAR)
    if not value:
        import platformdirs

        value = str(Path(platformdirs.user_data_dir("qhytime", appauthor=False)) / "qhytime.sqlite")
    return as_url(value)


def as_url(value: str | os.PathLike[str]) -> str:
    """A SQLAlchemy URL for a URL or a file path."""
    text = os.fspath(value)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


@dataclass
class LookupResult:
    """A calibration found for a setting, and how it was found.

    Attributes
    ----------
    calibration : Calibration
    kind : {"exact", "fallback", "pinned"}
        ``exact``: the calibration of this very setting; ``fallback``: a neighbouring
        setting, accepted on request with a widened sigma; ``pinned``: chosen by id by the
        user, whatever its setting (``differences`` lists where it differs from the frame's).
    differences : list of str
        The setting fields that differ (fallback and pinned).
    extra_offset0_sigma_us : float
        Added in quadrature to sigma(offset0) for a fallback.
    """

    calibration: Calibration
    kind: str = "exact"
    differences: list[str] = field(default_factory=list)
    extra_offset0_sigma_us: float = 0.0

    @property
    def exact(self) -> bool:
        """True only for the calibration of this very setting, found by lookup."""
        return self.kind == "exact"

    def row_model(self) -> RowModel:
        """The row model, with the fallback's widened sigma."""
        return self.calibration.row_model(extra_offset0_sigma_us=self.extra_offset0_sigma_us)

    @property
    def offset0_sigma_us(self) -> float:
        return float((self.calibration.offset0_sigma_us**2 + self.extra_offset0_sigma_us**2) ** 0.5)

    def describe(self) -> str:
        c = self.calibration
        if self.kind == "exact":
            what = "exact match"
        elif self.kind == "pinned":
            what = "pinned" + (
                f" (its setting differs in {', '.join(self.differences)})" if self.differences else ""
            )
        else:
            what = f"FALLBACK (differs in {', '.join(self.differences)})"
        return (
            f"calibration #{c.id} ({c.method}, {c.reference} stamp, offset0 {c.offset0_us:.3f} "
            f"+/- {self.offset0_sigma_us:.3f} us, LP {c.line_period_ns:.4f} ns): {what}"
        )


def setting_differences(a: Setting, b: Setting) -> list[str]:
    """Every setting field in which ``a`` and ``b`` differ, with both values.

    Examples
    --------
    >>> s = Setting(camera_model="QHY600PRO", readout_mode="Photographic DSO", roi_width=320, roi_height=96)
    >>> setting_differences(s, Setting(**{**s.to_dict(), "roi_width": 9576, "stream_mode": "live"}))
    ['roi_width 320 != 9576', 'stream_mode single != live']
    """
    out = []
    for f in dataclasses.fields(Setting):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if va != vb:
            out.append(f"{f.name} {va} != {vb}")
    return out


def _differences(query: Setting, cand: Any) -> list[str] | None:
    """Fields in which a candidate differs; None when a hard field differs."""
    for f in HARD_FIELDS:
        if getattr(query, f) != getattr(cand, f):
            return None
    diffs = []
    if (query.roi_x, query.roi_y, query.roi_width, query.roi_height) != (
        cand.roi_x,
        cand.roi_y,
        cand.roi_width,
        cand.roi_height,
    ):
        diffs.append("roi")
    for f in ("binning", "stream_mode"):
        if getattr(query, f) != getattr(cand, f):
            diffs.append(f)
    for f in ("serial", "sdk_version", "firmware_version"):
        c = getattr(cand, f)
        if c is not None and c != getattr(query, f):
            diffs.append(f)
    return diffs


class CalibrationStore:
    """Calibrations per camera setting, kept forever.

    Parameters
    ----------
    url : str or os.PathLike, optional
        A SQLAlchemy URL or a SQLite file path; by default :func:`default_database_url`.
    load_shipped : bool
        Load the shipped calibrations into a new, empty database.

    Examples
    --------
    >>> import tempfile, os
    >>> store = CalibrationStore(os.path.join(tempfile.mkdtemp(), "c.sqlite"))
    >>> [c.method for c in store.list()]
    ['vendor', 'SDK']
    >>> old = store.list()[1]
    >>> new = store.add(old.replace(offset0_us=1980.0, offset0_sigma_us=0.1, method="LED fit"))
    >>> new.supersedes == old.id, store.lookup(old.setting).calibration.id == new.id
    (True, True)
    >>> [c.id for c in store.history(old.setting)] == [old.id, new.id]
    True
    >>> store.close()
    """

    def __init__(
        self, url: str | os.PathLike[str] | None = None, *, load_shipped: bool = True
    ) -> None:
        self.url = as_url(url) if url is not None else default_database_url()
        if self.url.startswith("sqlite:///") and not self.url.startswith("sqlite:///:memory:"):
            Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = _make_engine(self.url)
        self._writer = self.engine.execution_options(sqlite_immediate=True)
        self._migrate_and_seed(load_shipped)

    # -- lifecycle -----------------------------------------------------------------------
    def _migrate_and_seed(self, load_shipped: bool) -> None:
        with self._writer.begin() as conn:
            run_migrations(conn)
            if load_shipped:
                with Session(bind=conn) as s:
                    if s.scalar(select(func.count(CalibrationRow.id))) == 0:
                        now = _now()
                        for path in shipped_calibration_files():
                            for cal in load_toml(path):
                                s.add(
                                    CalibrationRow.from_calibration(
                                        cal, source=f"shipped:{path.name}", created_at=now
                                    )
                                )
                        s.flush()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> CalibrationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _session(self, write: bool = False) -> Iterator[Session]:
        with Session(self._writer if write else self.engine) as s, s.begin():
            yield s

    def schema_revision(self) -> str | None:
        """The alembic revision of the database."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    # -- writing ---------------------------------------------------------------------------
    def add(self, calibration: Calibration, *, source: str = "user") -> Calibration:
        """Store a calibration; it supersedes the current one of its setting.

        Returns
        -------
        Calibration
            As stored, with ``id``, ``supersedes`` and ``created_at``.
        """
        key = calibration.setting.key()
        with self._session(write=True) as s:
            current = s.scalar(
                select(func.max(CalibrationRow.id)).where(CalibrationRow.setting_key == key)
            )
            row = CalibrationRow.from_calibration(calibration, source=source, created_at=_now())
            row.supersedes = current
            s.add(row)
            s.flush()
            return row.to_calibration()

    def import_toml(self, path: str | os.PathLike[str]) -> list[Calibration]:
        """Add every calibration of a TOML file (each supersedes its setting's current one)."""
        cals = load_toml(path)
        return [
            self.add(c.replace(id=None, supersedes=None), source=f"import:{Path(path).name}")
            for c in cals
        ]

    def export_toml(self, ids: Iterable[int] | None = None) -> str:
        """TOML text of the given calibrations (all current ones by default)."""
        cals = [self.get(i) for i in ids] if ids is not None else self.list()
        header = f"Exported from {self.url} on {_now()} by qhytime."
        return dump_toml(
            [c.replace(id=None, supersedes=None, created_at=None) for c in cals], header
        )

    # -- reading -----------------------------------------------------------------------
    def get(self, calibration_id: int) -> Calibration:
        """The calibration with this id (current or superseded): pinning by id."""
        with self._session() as s:
            row = s.get(CalibrationRow, calibration_id)
            if row is None:
                raise CalibrationError(f"no calibration with id {calibration_id} in {self.url}")
            return row.to_calibration()

    def pinned(self, calibration_id: int, setting: Setting | None = None) -> LookupResult:
        """A calibration chosen by id, for a frame of ``setting``.

        When its setting differs from the frame's, it is still used (the user asked for
        it), with a :class:`CalibrationPinnedWarning` that lists the differences.
        """
        cal = self.get(calibration_id)
        diffs = [] if setting is None else setting_differences(setting, cal.setting)
        if diffs:
            warnings.warn(
                CalibrationPinnedWarning(
                    f"calibration #{cal.id} is pinned but was measured for another setting "
                    f"(frame vs calibration: {'; '.join(diffs)}); its times may be wrong by "
                    "the difference in offset0 between the two settings"
                ),
                stacklevel=2,
            )
        return LookupResult(calibration=cal, kind="pinned", differences=diffs)

    def list(
        self, *, include_superseded: bool = False, camera_model: str | None = None
    ) -> list[Calibration]:
        """Stored calibrations, current ones only unless ``include_superseded``."""
        with self._session() as s:
            q = select(CalibrationRow)
            if not include_superseded:
                latest = select(func.max(CalibrationRow.id)).group_by(CalibrationRow.setting_key)
                q = q.where(CalibrationRow.id.in_(latest))
            if camera_model is not None:
                q = q.where(CalibrationRow.camera_model == camera_model)
            return [r.to_calibration() for r in s.scalars(q.order_by(CalibrationRow.id))]

    def history(self, setting: Setting) -> list[Calibration]:
        """Every calibration ever stored for exactly this setting, oldest first."""
        with self._session() as s:
            q = (
                select(CalibrationRow)
                .where(CalibrationRow.setting_key == setting.key())
                .order_by(CalibrationRow.id)
            )
            return [r.to_calibration() for r in s.scalars(q)]

    def count(self) -> int:
        with self._session() as s:
            return int(s.scalar(select(func.count(CalibrationRow.id))) or 0)

    def lookup(self, setting: Setting, *, fallback: bool = False) -> LookupResult:
        """The current calibration for a setting.

        Parameters
        ----------
        setting : Setting
        fallback : bool
            When no calibration matches exactly, use the nearest one of the same camera
            model, readout mode, bit depth and USB_TRAFFIC (other ROI, binning, stream
            mode, unit or version), warn with :class:`CalibrationFallbackWarning`, and
            widen sigma(offset0) by :data:`FALLBACK_WIDENING_US`.

        Raises
        ------
        CalibrationError
            When nothing matches (or only a fallback would, and ``fallback`` is False):
            the message names the nearest candidates and what to do.
        """
        with self._session() as s:
            # Fast path: the current calibration of exactly this setting (this unit first,
            # then a model-wide one), by the indexed setting key.
            keys = [setting.key()]
            if setting.serial is not None:
                keys.append(Setting(**{**setting.to_dict(), "serial": None}).key())
            for key in keys:
                row = s.scalars(
                    select(CalibrationRow)
                    .where(CalibrationRow.setting_key == key)
                    .order_by(CalibrationRow.id.desc())
                    .limit(1)
                ).first()
                if row is not None:
                    cal = row.to_calibration()
                    if _differences(setting, cal.setting) == []:
                        return LookupResult(calibration=cal, kind="exact")
            latest = select(func.max(CalibrationRow.id)).group_by(CalibrationRow.setting_key)
            rows = s.scalars(
                select(CalibrationRow).where(
                    CalibrationRow.id.in_(latest),
                    CalibrationRow.camera_model == setting.camera_model,
                    CalibrationRow.readout_mode == setting.readout_mode,
                    CalibrationRow.bit_depth == setting.bit_depth,
                    CalibrationRow.usb_traffic == setting.usb_traffic,
                )
            ).all()
            scored = []
            for r in rows:  # rows carry the setting fields under the same names
                diffs = _differences(setting, r)
                if diffs is None:
                    continue
                widen = sum(FALLBACK_WIDENING_US[d] ** 2 for d in diffs) ** 0.5
                # prefer: lower widening, unit-specific over model-wide, newest
                scored.append((widen, r.serial is None, -r.id, diffs, r))
            scored.sort(key=lambda t: t[:3])
            best = scored[0][4].to_calibration() if scored else None
        if best is not None and not scored[0][3]:
            return LookupResult(calibration=best, kind="exact")
        if not scored:
            raise CalibrationError(
                f"no calibration for {setting.key()} (none for this camera model, readout mode, "
                f"bit depth and USB_TRAFFIC): measure one with `qhytime ledcal --store`, add one "
                f"with `qhytime calib add`, or give --offset0-us/--line-period-ns"
            )
        widen, _, _, diffs, _ = scored[0]
        cal = best
        assert cal is not None
        if not fallback:
            raise CalibrationError(
                f"no calibration matches {setting.key()} exactly; the nearest is #{cal.id} "
                f"({cal.setting.key()}, differs in {', '.join(diffs)}). Use it with "
                f"fallback=True (CLI --fallback), which widens sigma(offset0) by {widen:.0f} us, "
                "or measure this setting with `qhytime ledcal --store`"
            )
        result = LookupResult(
            calibration=cal, kind="fallback", differences=diffs, extra_offset0_sigma_us=widen
        )
        warnings.warn(
            CalibrationFallbackWarning(
                f"no calibration matches {setting.key()} exactly: using {result.describe()}"
            ),
            stacklevel=2,
        )
        return result


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _make_engine(url: str) -> Engine:
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout = 60000")
            if ":memory:" not in url:
                cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA synchronous = NORMAL")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            immediate = conn.get_execution_options().get("sqlite_immediate", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def migrations_dir() -> Path:
    return Path(__file__).resolve().parent / "migrations"


def run_migrations(connection: Any, revision: str = "head") -> None:
    """Upgrade the database on ``connection`` (inside its transaction) to ``revision``."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def head_revision() -> str:
    """The newest migration revision shipped with this qhytime."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return str(ScriptDirectory.from_config(cfg).get_current_head())

"""The calibration store: SQLite by default, PostgreSQL for shared sites; append-only history.

- Opens the database at ``--db`` / ``$QHYTIME_DB`` / the user's data directory
  (:func:`default_database_url`): a SQLite file path, or a SQLAlchemy URL
  (``postgresql://`` is taken as ``postgresql+psycopg://``, the ``postgres`` extra). A new
  database is created (only the default data folder is created on its own), migrated by
  alembic and loaded with the shipped calibrations (``calibrations/*.toml``).
- Opening checks what it opens: a file that is not a qhytime database, a database written
  by a newer qhytime, a missing driver or an unknown URL scheme is a :class:`StoreError`
  that says what to do. A read-only database (file or folder not writable) is opened
  read-only: every query works, every write is refused with a message.
- A calibration is never updated or deleted: :meth:`CalibrationStore.add` inserts a new
  row that supersedes the current one of the same setting; :meth:`CalibrationStore.retract`
  withdraws one (it stays in the history, marked; lookups skip it). Every one can still be
  listed and pinned by id.
- :meth:`CalibrationStore.lookup` matches a setting exactly; a fallback to a neighbouring
  setting is used only when asked for, is warned about, and widens sigma(offset0).
- SQLite runs in WAL mode with a busy timeout set before anything else; a new database is
  created under a lock, so processes racing to create it queue; writes take the database
  lock up front (``BEGIN IMMEDIATE``), so concurrent writers queue, none lost. On
  PostgreSQL, migrations and the supersede step take advisory locks for the same effect.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import os
import sqlite3
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import (
    Engine,
    ForeignKey,
    String,
    Text,
    create_engine,
    event,
    exc,
    func,
    inspect,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import QueuePool

from qhytime.calibration import (
    Calibration,
    Setting,
    dump_toml,
    load_toml,
    shipped_calibration_files,
)
from qhytime.errors import CalibrationError, StoreError
from qhytime.rowmodel import RowModel

ENV_VAR = "QHYTIME_DB"
BUSY_TIMEOUT_S = 60.0
_PG_MIGRATION_LOCK = 0x71687974  # "qhyt": one advisory lock id for schema changes
_T = TypeVar("_T")


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

    def to_calibration(self, retraction: RetractionRow | None = None) -> Calibration:
        setting = Setting(**{f: getattr(self, f) for f in self._SETTING_FIELDS})
        values = {f: getattr(self, f) for f in self._VALUE_FIELDS}
        return Calibration(
            setting=setting,
            frames=tuple(json.loads(self.frames or "[]")),
            id=self.id,
            supersedes=self.supersedes,
            created_at=self.created_at,
            retracted_at=None if retraction is None else retraction.retracted_at,
            retraction_reason=None if retraction is None else retraction.reason,
            **values,
        )


class RetractionRow(Base):
    """A withdrawn calibration (one row each, never updated or deleted)."""

    __tablename__ = "retractions"

    calibration_id: Mapped[int] = mapped_column(ForeignKey("calibrations.id"), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    retracted_at: Mapped[str]


class MetaRow(Base):
    """Facts about the database (``written_by``: the qhytime that last upgraded it)."""

    __tablename__ = "qhytime_meta"

    key: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[str] = mapped_column(Text)


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
    """A SQLAlchemy URL for a URL or a file path.

    ``postgresql://`` and ``postgres://`` become ``postgresql+psycopg://`` (psycopg 3, the
    ``postgres`` extra).

    Raises
    ------
    StoreError
        For an empty value.

    Examples
    --------
    >>> as_url("postgresql://user@host/qhytime")
    'postgresql+psycopg://user@host/qhytime'
    >>> as_url("/data/qhytime.sqlite")
    'sqlite:////data/qhytime.sqlite'
    """
    text = os.fspath(value).strip()
    if not text:
        raise StoreError(
            "empty database path: give a SQLite file path or a SQLAlchemy URL (--db / QHYTIME_DB)"
        )
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme in ("postgresql", "postgres"):
            return f"postgresql+psycopg://{rest}"
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in ("", ":memory:") else path


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


def _exact_keys(setting: Setting) -> list[str]:
    """Setting keys that match ``setting`` exactly: this unit's, then the model-wide one."""
    keys = [setting.key()]
    if setting.serial is not None:
        keys.append(Setting(**{**setting.to_dict(), "serial": None}).key())
    return keys


def _nearest(
    setting: Setting,
    candidates: Iterable[tuple[Any, int, Callable[[], Calibration]]],
    fallback: bool,
) -> LookupResult:
    """The lookup's answer among the current calibrations of ``setting``'s camera model,
    readout mode, bit depth and USB_TRAFFIC, as :meth:`CalibrationStore.lookup` defines it.

    ``candidates`` are ``(fields, id, load)``: an object with the setting's fields, the
    calibration id, and a function that gives the :class:`Calibration` (called for the best
    one only). One scoring for the store and for the workers' snapshot.
    """
    scored = []
    for fields, cid, load in candidates:
        diffs = _differences(setting, fields)
        if diffs is None:
            continue
        widen = sum(FALLBACK_WIDENING_US[d] ** 2 for d in diffs) ** 0.5
        # prefer: lower widening, unit-specific over model-wide, newest
        scored.append((widen, fields.serial is None, -cid, diffs, load))
    if not scored:
        raise CalibrationError(
            f"no calibration for {setting.key()} (none for this camera model, readout mode, "
            f"bit depth and USB_TRAFFIC): measure one with `qhytime ledcal --store`, add one "
            f"with `qhytime calib add`, or give model (an explicit row model)"
        )
    widen, _, _, diffs, load = min(scored, key=lambda t: t[:3])
    cal = load()
    if not diffs:
        return LookupResult(calibration=cal, kind="exact")
    if not fallback:
        raise CalibrationError(
            f"no calibration matches {setting.key()} exactly; the nearest is #{cal.id} "
            f"({cal.setting.key()}, differs in {', '.join(diffs)}). Use it with "
            f"fallback=True, which widens sigma(offset0) by {widen:.0f} us, "
            "or measure this setting with `qhytime ledcal --store`"
        )
    return LookupResult(
        calibration=cal, kind="fallback", differences=diffs, extra_offset0_sigma_us=widen
    )


def _pinned_result(cal: Calibration, setting: Setting | None) -> LookupResult:
    """A calibration chosen by id for a frame of ``setting``, with the pinned warnings."""
    diffs = [] if setting is None else setting_differences(setting, cal.setting)
    if diffs:
        warnings.warn(
            CalibrationPinnedWarning(
                f"calibration #{cal.id} is pinned but was measured for another setting "
                f"(frame vs calibration: {'; '.join(diffs)}); its times may be wrong by "
                "the difference in offset0 between the two settings"
            ),
            stacklevel=3,
        )
    if cal.retracted:
        warnings.warn(
            CalibrationPinnedWarning(
                f"calibration #{cal.id} is pinned but was retracted on {cal.retracted_at}: "
                f"{cal.retraction_reason}"
            ),
            stacklevel=3,
        )
    return LookupResult(calibration=cal, kind="pinned", differences=diffs)


def _warn_if_fallback(result: LookupResult, setting: Setting) -> LookupResult:
    if result.kind == "fallback":
        warnings.warn(
            CalibrationFallbackWarning(
                f"no calibration matches {setting.key()} exactly: using {result.describe()}"
            ),
            stacklevel=4,
        )
    return result


def _db_errors(method: Callable[..., _T]) -> Callable[..., _T]:
    """Turn database failures inside a store method into a :class:`StoreError`."""

    @functools.wraps(method)
    def wrapper(self: CalibrationStore, *args: Any, **kw: Any) -> _T:
        try:
            return method(self, *args, **kw)
        except (exc.SQLAlchemyError, sqlite3.Error) as err:
            raise self._store_error(err) from err

    return wrapper


@dataclass
class ImportResult:
    """What :meth:`CalibrationStore.import_toml` did: records added, and records already present."""

    added: list[Calibration]
    already_present: list[Calibration]


class CalibrationStore:
    """Calibrations per camera setting, kept forever.

    Parameters
    ----------
    url : str or os.PathLike, optional
        A SQLAlchemy URL or a SQLite file path; by default :func:`default_database_url`.
    load_shipped : bool
        Load the shipped calibrations into a new, empty database.

    Attributes
    ----------
    url : str
    readonly : bool
        True when the database could not be written (file or folder permissions, read-only
        file system): queries work, writes raise :class:`StoreError`.

    Raises
    ------
    StoreError
        The database cannot be opened as a qhytime database (see the module's notes).

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
    >>> _ = store.retract(new.id, "LED cable was loose")
    >>> store.lookup(old.setting).calibration.id == old.id   # the retracted one is skipped
    True
    >>> [c.id for c in store.history(old.setting)] == [old.id, new.id]
    True
    >>> store.close()
    """

    def __init__(
        self, url: str | os.PathLike[str] | None = None, *, load_shipped: bool = True
    ) -> None:
        explicit = url is not None or bool(os.environ.get(ENV_VAR))
        self.url = as_url(url) if url is not None else default_database_url()
        self.readonly = False
        self._path = sqlite_file(self.url)
        if self._path is not None:
            self._check_sqlite_file(create_folder=not explicit)
        self.engine = self._make_engine()
        self._writer = self.engine.execution_options(sqlite_immediate=True)
        # Lookups and gets are cached until the database changes (see _generation).
        self._cache: dict[Any, Any] = {}
        self._cache_generation: Any = None
        self._cache_lock = threading.Lock()
        self._probe: sqlite3.Connection | None = None
        try:
            self._open(load_shipped)
        except BaseException:
            self.engine.dispose()
            raise

    # -- opening -------------------------------------------------------------------------
    @property
    def where(self) -> str:
        """The database file, or the URL without its password."""
        if self._path is not None:
            return self._path
        try:
            from sqlalchemy.engine import make_url

            return make_url(self.url).render_as_string(hide_password=True)
        except Exception:  # pragma: no cover - an unparsable URL never gets this far
            return self.url

    def _error(self, reason: str) -> StoreError:
        return StoreError(reason, path=self.where)

    def _store_error(self, err: BaseException) -> StoreError:
        text = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        low = text.lower()
        if "file is not a database" in low or "not a database" in low:
            return self._error(
                "not a qhytime database (the file is not an SQLite database): give another --db"
            )
        if "readonly" in low or "read-only" in low:
            return self._error(
                f"the database cannot be written ({text}): it can be listed and queried, not "
                "changed; fix the permissions or use a writable copy"
            )
        if "locked" in low:
            return self._error(
                f"the database stayed locked for {BUSY_TIMEOUT_S:.0f} s (another process is "
                "writing it): try again"
            )
        if "unable to open" in low:
            return self._error(f"cannot open the database ({text}): check the path and permissions")
        return self._error(f"database error: {text}")

    def _check_sqlite_file(self, *, create_folder: bool) -> None:
        path = Path(self._path)  # type: ignore[arg-type]
        if path.is_dir():
            raise self._error(
                "is a folder, not a database file: give a file path such as "
                f"{path / 'qhytime.sqlite'}"
            )
        folder = path.parent
        if not folder.exists():
            if not create_folder:
                raise self._error(
                    f"the folder {folder} does not exist: create it first (only the default "
                    "data folder is created on its own)"
                )
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise self._error(f"cannot create the data folder {folder}: {err.strerror}") from err
        if path.exists():
            # Whether it is a database at all, SQLite says on the first query (opening the file
            # here and closing it would drop the locks SQLite holds on it in this process).
            if not os.access(path, os.R_OK):
                raise self._error("cannot read the database: permission denied")
            self.readonly = not (os.access(path, os.W_OK) and os.access(folder, os.W_OK))
        elif not os.access(folder, os.W_OK):
            raise self._error(f"cannot create the database: the folder {folder} is not writable")

    def _make_engine(self) -> Engine:
        try:
            if self._path is not None:
                return _sqlite_engine(self._path, readonly=self.readonly)
            engine = create_engine(self.url, pool_pre_ping=True)
        except exc.NoSuchModuleError as err:
            scheme = self.url.split("://", 1)[0]
            raise self._error(
                f"unknown database URL scheme {scheme!r}: give a SQLite file path, a sqlite:/// "
                "URL or a postgresql:// URL"
            ) from err
        except ImportError as err:
            raise self._error(
                f"the database driver is not installed ({err.name or err}): for PostgreSQL, "
                "pip install 'qhytime[postgres]' (psycopg 3)"
            ) from err
        except exc.ArgumentError as err:
            raise self._error(f"not a database URL: {err}") from err
        if engine.dialect.name == "sqlite":  # sqlite:///:memory: and the like
            _sqlite_events(engine, readonly=False)
        return engine

    def _schema_state(self) -> tuple[str, str | None]:
        """("new" | "current" | "old" | "newer" | "foreign", revision)."""
        try:
            with self.engine.connect() as conn:
                tables = set(inspect(conn).get_table_names())
                if not tables:
                    return "new", None
                if "alembic_version" not in tables:
                    return "foreign", ", ".join(sorted(tables)[:6])
                rev = _revision(conn)
                if rev is None:
                    return "new", None
                written_by = None
                if "qhytime_meta" in tables:
                    row = conn.execute(
                        select(MetaRow.value).where(MetaRow.key == "written_by")
                    ).first()
                    written_by = None if row is None else row[0]
        except exc.OperationalError as err:
            # e.g. refused connection, missing database on a server
            raise self._store_error(err) from err
        except exc.DatabaseError as err:
            raise self._store_error(err) from err
        known = known_revisions()
        if rev not in known:
            return "newer", f"{rev}|{written_by or ''}"
        return ("current" if rev == head_revision() else "old"), rev

    def _open(self, load_shipped: bool) -> None:
        state, info = self._schema_state()
        if state == "foreign":
            raise self._error(
                f"not a qhytime database (it holds the tables {info} and no qhytime schema): "
                "give another --db"
            )
        if state == "newer":
            rev, _, by = (info or "").partition("|")
            from qhytime import __version__

            raise self._error(
                f"written by a newer qhytime{f' ({by})' if by else ''}: its schema revision "
                f"{rev} is unknown to qhytime {__version__}, which knows up to "
                f"{head_revision()}. Upgrade qhytime (pip install -U qhytime) to use it"
            )
        if state == "current":
            return
        if self.readonly:
            what = "is empty" if state == "new" else f"has the old schema revision {info}"
            raise self._error(
                f"the database is read-only and {what}: open it once with write access so "
                f"qhytime can {'create' if state == 'new' else 'upgrade'} it"
            )
        self._setup(load_shipped)

    def _setup(self, load_shipped: bool) -> None:
        """Create or upgrade the schema (and seed a new database), one process at a time."""
        from qhytime import __version__

        with _creation_lock(self._path):
            try:
                if self._path is not None:
                    _enable_wal(self.engine)
                with self._writer.begin() as conn:
                    if self.engine.dialect.name == "postgresql":
                        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
                    before = _revision(conn)
                    run_migrations(conn)
                    with Session(bind=conn) as s:
                        if before != head_revision():
                            s.merge(MetaRow(key="written_by", value=f"qhytime {__version__}"))
                        if load_shipped and s.scalar(select(func.count(CalibrationRow.id))) == 0:
                            now = _now()
                            for path in shipped_calibration_files():
                                for cal in load_toml(path):
                                    s.add(
                                        CalibrationRow.from_calibration(
                                            cal, source=f"shipped:{path.name}", created_at=now
                                        )
                                    )
                        s.flush()
            except exc.SQLAlchemyError as err:
                raise self._store_error(err) from err

    def close(self) -> None:
        with self._cache_lock:
            if self._probe is not None:
                self._probe.close()
                self._probe = None
            self._cache.clear()
        self.engine.dispose()

    # -- the cache of lookups ---------------------------------------------------------------
    _GENERATION_SQL = (
        "SELECT (SELECT max(id) FROM calibrations), (SELECT count(*) FROM retractions)"
    )

    def _generation(self) -> Any:
        """A value that changes whenever calibrations or retractions are added, by this or any
        process: the newest calibration id and the number of retractions (rows are never
        updated or deleted, so nothing else can change). On SQLite it is read on a connection
        of our own, a few microseconds.

        (``PRAGMA data_version`` would be cheaper but does not change on a connection that
        holds no cached pages, so it misses commits.)
        """
        if self._path is not None:
            if self._probe is None:
                # A read-only connection reads the WAL index by a path that can miss commits
                # (SQLite's readonly_shm); the probe never writes, so it opens normally unless
                # the database is read-only for us.
                self._probe = (
                    _sqlite_connect_readonly(self._path)
                    if self.readonly
                    else sqlite3.connect(self._path, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
                )
            return self._probe.execute(self._GENERATION_SQL).fetchall()[0]  # to the end: no read left open
        with self.engine.connect() as conn:
            return tuple(conn.exec_driver_sql(self._GENERATION_SQL).one())

    def _cached(self, key: Any, compute: Callable[[], _T]) -> _T:
        """``compute()``, remembered until the database changes."""
        with self._cache_lock:
            gen = self._generation()
            if gen != self._cache_generation:
                self._cache.clear()
                self._cache_generation = gen
            if key in self._cache:
                return self._cache[key]  # type: ignore[no-any-return]
        value = compute()
        with self._cache_lock:
            if self._cache_generation == gen:
                self._cache[key] = value
        return value

    def _forget(self) -> None:
        with self._cache_lock:
            self._cache.clear()
            self._cache_generation = None

    def __enter__(self) -> CalibrationStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _session(self, write: bool = False) -> Iterator[Session]:
        if write and self.readonly:
            raise self._error(
                "the database is read-only (the file or its folder is not writable): it can be "
                "listed and queried, not changed. Fix the permissions, or give a writable --db"
            )
        with Session(self._writer if write else self.engine) as s, s.begin():
            yield s

    @_db_errors
    def schema_revision(self) -> str | None:
        """The alembic revision of the database."""
        with self.engine.connect() as conn:
            return _revision(conn)

    # -- writing ---------------------------------------------------------------------------
    def _lock_setting(self, s: Session, key: str) -> None:
        """Serialise writers of one setting (SQLite: BEGIN IMMEDIATE already does)."""
        if self.engine.dialect.name == "postgresql":
            s.execute(
                select(func.pg_advisory_xact_lock(zlib.crc32(key.encode()) & 0x7FFFFFFF))
            )

    def _current_id(self, s: Session, key: str) -> int | None:
        retracted = select(RetractionRow.calibration_id)
        return s.scalar(
            select(func.max(CalibrationRow.id)).where(
                CalibrationRow.setting_key == key, CalibrationRow.id.not_in(retracted)
            )
        )

    def _insert(self, s: Session, cal: Calibration, source: str) -> CalibrationRow:
        key = cal.setting.key()
        self._lock_setting(s, key)
        row = CalibrationRow.from_calibration(cal, source=source, created_at=_now())
        row.supersedes = self._current_id(s, key)
        s.add(row)
        s.flush()
        return row

    @_db_errors
    def add(self, calibration: Calibration, *, source: str = "user") -> Calibration:
        """Store a calibration; it supersedes the current one of its setting.

        Returns
        -------
        Calibration
            As stored, with ``id``, ``supersedes`` and ``created_at``.

        Raises
        ------
        StoreError
            When the database is read-only.
        """
        self._forget()
        with self._session(write=True) as s:
            return self._insert(s, calibration, source).to_calibration()

    @_db_errors
    def import_toml(self, path: str | os.PathLike[str]) -> ImportResult:
        """Add every calibration of a TOML file, all or none, skipping those already present.

        Every record is checked before anything is written; the new ones are added in one
        transaction (each supersedes its setting's current one). A record equal to one
        already stored (same setting and values, see :meth:`Calibration.values`) is not
        added again, so importing a file twice adds nothing the second time.

        Raises
        ------
        CalibrationError
            Naming the file and the record that is wrong (nothing is written).
        """
        cals = load_toml(path)
        added: list[Calibration] = []
        present: list[Calibration] = []
        source = f"import:{Path(path).name}"
        self._forget()
        with self._session(write=True) as s:
            for c in cals:
                fresh = c.replace(
                    id=None, supersedes=None, created_at=None, retracted_at=None,
                    retraction_reason=None,
                )  # fmt: skip
                same = [
                    r for r in s.scalars(
                        select(CalibrationRow).where(CalibrationRow.setting_key == fresh.setting.key())
                    )
                    if r.to_calibration().values() == fresh.values()
                ]  # fmt: skip
                if same:
                    present.append(same[0].to_calibration(s.get(RetractionRow, same[0].id)))
                else:
                    added.append(self._insert(s, fresh, source).to_calibration())
        return ImportResult(added=added, already_present=present)

    @_db_errors
    def retract(self, calibration_id: int, reason: str) -> Calibration:
        """Withdraw a calibration: it stays in the history, marked; lookups skip it.

        The setting's current calibration becomes the newest one not retracted.

        Raises
        ------
        CalibrationError
            No such id, already retracted, or an empty reason.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise CalibrationError("give the reason for retracting the calibration")
        self._forget()
        with self._session(write=True) as s:
            row = s.get(CalibrationRow, calibration_id)
            if row is None:
                raise CalibrationError(f"no calibration with id {calibration_id} in {self.where}")
            old = s.get(RetractionRow, calibration_id)
            if old is not None:
                raise CalibrationError(
                    f"calibration #{calibration_id} was already retracted on {old.retracted_at}: "
                    f"{old.reason}"
                )
            ret = RetractionRow(calibration_id=calibration_id, reason=reason.strip(), retracted_at=_now())
            s.add(ret)
            s.flush()
            return row.to_calibration(ret)

    def export_toml(self, ids: Iterable[int] | None = None) -> str:
        """TOML text of the given calibrations (all current ones by default)."""
        cals = [self.get(i) for i in ids] if ids is not None else self.list()
        header = f"Exported from {self.where} on {_now()} by qhytime."
        return dump_toml(
            [
                c.replace(id=None, supersedes=None, created_at=None, retracted_at=None,
                          retraction_reason=None)
                for c in cals
            ],
            header,
        )  # fmt: skip

    # -- reading -----------------------------------------------------------------------
    @staticmethod
    def _retractions(s: Session) -> dict[int, RetractionRow]:
        return {r.calibration_id: r for r in s.scalars(select(RetractionRow))}

    @_db_errors
    def get(self, calibration_id: int) -> Calibration:
        """The calibration with this id (current, superseded or retracted): pinning by id."""
        if isinstance(calibration_id, bool) or not isinstance(calibration_id, int) or not (
            1 <= calibration_id <= 2**63 - 1
        ):
            raise CalibrationError(
                f"calibration id {calibration_id!r} is not a whole number from 1 to 2**63-1"
            )
        return self._cached(("get", calibration_id), lambda: self._get(calibration_id))

    def _get(self, calibration_id: int) -> Calibration:
        with self._session() as s:
            row = s.get(CalibrationRow, calibration_id)
            if row is None:
                raise CalibrationError(f"no calibration with id {calibration_id} in {self.where}")
            return row.to_calibration(s.get(RetractionRow, calibration_id))

    def pinned(self, calibration_id: int, setting: Setting | None = None) -> LookupResult:
        """A calibration chosen by id, for a frame of ``setting``.

        When its setting differs from the frame's, it is still used (the user asked for
        it), with a :class:`CalibrationPinnedWarning` that lists the differences; a
        retracted calibration is used with a warning that gives the reason.
        """
        return _pinned_result(self.get(calibration_id), setting)

    @_db_errors
    def list(
        self, *, include_superseded: bool = False, camera_model: str | None = None
    ) -> list[Calibration]:
        """Stored calibrations: the current one of each setting (newest not retracted), or
        with ``include_superseded`` every one ever stored (retracted ones marked)."""
        with self._session() as s:
            q = select(CalibrationRow)
            if not include_superseded:
                q = q.where(CalibrationRow.id.in_(self._current_ids()))
            if camera_model is not None:
                q = q.where(CalibrationRow.camera_model == camera_model)
            rets = self._retractions(s)
            return [
                r.to_calibration(rets.get(r.id)) for r in s.scalars(q.order_by(CalibrationRow.id))
            ]

    @staticmethod
    def _current_ids() -> Any:
        """Subquery: the current calibration id of every setting (newest not retracted)."""
        return (
            select(func.max(CalibrationRow.id))
            .where(CalibrationRow.id.not_in(select(RetractionRow.calibration_id)))
            .group_by(CalibrationRow.setting_key)
        )

    @_db_errors
    def history(self, setting: Setting) -> list[Calibration]:
        """Every calibration ever stored for exactly this setting, oldest first."""
        with self._session() as s:
            q = (
                select(CalibrationRow)
                .where(CalibrationRow.setting_key == setting.key())
                .order_by(CalibrationRow.id)
            )
            rets = self._retractions(s)
            return [r.to_calibration(rets.get(r.id)) for r in s.scalars(q)]

    @_db_errors
    def count(self) -> int:
        """Calibrations ever stored (current, superseded and retracted)."""
        with self._session() as s:
            return int(s.scalar(select(func.count(CalibrationRow.id))) or 0)

    @_db_errors
    def lookup(self, setting: Setting, *, fallback: bool = False) -> LookupResult:
        """The current calibration for a setting (retracted ones are skipped).

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
        result = self._cached(("lookup", setting, fallback), lambda: self._lookup(setting, fallback))
        return _warn_if_fallback(result, setting)

    def _lookup(self, setting: Setting, fallback: bool) -> LookupResult:
        with self._session() as s:
            retracted = select(RetractionRow.calibration_id)
            # Fast path: the current calibration of exactly this setting (this unit first,
            # then a model-wide one), by the indexed setting key.
            for key in _exact_keys(setting):
                row = s.scalars(
                    select(CalibrationRow)
                    .where(CalibrationRow.setting_key == key, CalibrationRow.id.not_in(retracted))
                    .order_by(CalibrationRow.id.desc())
                    .limit(1)
                ).first()
                if row is not None:
                    cal = row.to_calibration()
                    if _differences(setting, cal.setting) == []:
                        return LookupResult(calibration=cal, kind="exact")
            rows = s.scalars(
                select(CalibrationRow).where(
                    CalibrationRow.id.in_(self._current_ids()),
                    CalibrationRow.camera_model == setting.camera_model,
                    CalibrationRow.readout_mode == setting.readout_mode,
                    CalibrationRow.bit_depth == setting.bit_depth,
                    CalibrationRow.usb_traffic == setting.usb_traffic,
                )
            ).all()
            # rows carry the setting fields under the same names
            return _nearest(setting, ((r, r.id, r.to_calibration) for r in rows), fallback)


def _revision(conn: Any) -> str | None:
    """The alembic revision of the database on ``conn`` (None before any migration)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _sqlite_events(engine: Engine, *, readonly: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        # The busy timeout comes first: every later statement may meet another process's lock.
        cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if not readonly:
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_engine(path: str, *, readonly: bool) -> Engine:
    """An engine on a SQLite file; read-only ones open with ``mode=ro`` (``immutable=1`` when
    even the WAL index cannot be created, e.g. in a read-only folder)."""
    uri = f"file:{quote(path)}"

    def connect() -> sqlite3.Connection:
        if not readonly:
            return sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        try:
            con = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                                  check_same_thread=False)  # fmt: skip
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return con
        except sqlite3.OperationalError:
            return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True,
                                   timeout=BUSY_TIMEOUT_S, check_same_thread=False)  # fmt: skip

    # A queue pool: the default for a "sqlite://" URL (one connection per thread, at most
    # five, closing others' in use beyond that) breaks multi-threaded servers.
    engine = create_engine("sqlite://", creator=connect, poolclass=QueuePool)
    _sqlite_events(engine, readonly=readonly)
    return engine


def _sqlite_connect_readonly(path: str) -> sqlite3.Connection:
    """A read-only connection: ``mode=ro``, or ``immutable=1`` when not even the WAL index can
    be created (a WAL database in a read-only folder)."""
    uri = f"file:{quote(path)}"
    try:
        con = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                              check_same_thread=False)  # fmt: skip
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return con
    except sqlite3.OperationalError:
        return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=BUSY_TIMEOUT_S,
                               check_same_thread=False)  # fmt: skip


def _enable_wal(engine: Engine) -> None:
    """Switch a SQLite database to WAL (persistent), retrying while another process holds it."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            raw = engine.raw_connection()  # outside any transaction (a pragma needs that)
            try:
                raw.driver_connection.execute("PRAGMA journal_mode = WAL").fetchall()  # type: ignore[union-attr]
            finally:
                raw.close()
            return
        except (exc.OperationalError, sqlite3.OperationalError) as err:
            if "locked" not in str(err).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def _creation_lock(path: str | None) -> Iterator[None]:
    """An exclusive lock held while one process creates or upgrades a SQLite database.

    ``flock`` on the database's folder: processes that create or upgrade a database there
    queue, and nothing else waits for it. Never on the database file itself: closing any
    descriptor of that file would drop the POSIX locks SQLite holds on it in this process.
    """
    if path is None:
        yield
        return
    import fcntl

    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def migrations_dir() -> Path:
    return Path(__file__).resolve().parent / "migrations"


def _script_directory() -> Any:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return ScriptDirectory.from_config(cfg)


def run_migrations(connection: Any, revision: str = "head") -> None:
    """Upgrade the database on ``connection`` (inside its transaction) to ``revision``."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


@functools.cache
def head_revision() -> str:
    """The newest migration revision shipped with this qhytime."""
    return str(_script_directory().get_current_head())


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every migration revision this qhytime ships."""
    return frozenset(rev.revision for rev in _script_directory().walk_revisions())

"""What every ``qhytime`` command shares: checked option types, the database and model options,
path expansion, warnings as messages, and the translation of Python errors into CLI words.

Nothing here imports astropy, numpy-heavy modules or SQLAlchemy at import time: ``qhytime
--help`` stays fast.
"""

from __future__ import annotations

import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from qhytime.rowmodel import RowModel
    from qhytime.store import CalibrationStore

T = TypeVar("T")

# Python argument names that an API error may tell the user to set, and the CLI flag that
# sets each. The API speaks of its own arguments; the CLI shows its users the flags instead.
FLAG_FOR_ARGUMENT: dict[str, str] = {
    "exposure_ns": "--exposure-s",
    "allow_invalid": "--allow-invalid",
    "fallback": "--fallback",
    "calibration_id": "--calibration",
    "crop_y": "--crop-y",
    "binning": "--binning",
    "offset0_us": "--offset0-us",
    "line_period_ns": "--line-period-ns",
    "model": "--offset0-us/--line-period-ns",
    "in_place": "--in-place",
}
_NAMES = "|".join(sorted(FLAG_FOR_ARGUMENT, key=len, reverse=True))
# Only where a message tells the user to set an argument: "give exposure_ns",
# "allow_invalid=True to ...", "(fallback=True / ...)". A field name in other words (a TOML
# record's "offset0_us = nan is not finite") stays as it is.
_ARG_RE = re.compile(
    rf"\b(?P<b>{_NAMES})=True\b|\b(?P<verb>give|pass|use|with) (?P<a>{_NAMES})\b(?!\s*=)"
)


def cli_words(message: str) -> str:
    """An API message with the Python arguments it tells the user to set replaced by the CLI
    flags that set them.

    Examples
    --------
    >>> cli_words("no exposure in the file: give exposure_ns")
    'no exposure in the file: give --exposure-s'
    >>> cli_words("flagged (allow_invalid=True to compute it anyway)")
    'flagged (--allow-invalid to compute it anyway)'
    >>> cli_words("record 1: offset0_us = nan is not finite")
    'record 1: offset0_us = nan is not finite'
    >>> cli_words("Use it with fallback=True, which widens sigma")
    'Use it with --fallback, which widens sigma'
    """

    def flag(m: re.Match[str]) -> str:
        if m.group("b"):
            return FLAG_FOR_ARGUMENT[m.group("b")]
        return f"{m.group('verb')} {FLAG_FOR_ARGUMENT[m.group('a')]}"

    return _ARG_RE.sub(flag, message)


def reword(text: str, flags: Sequence[tuple[str, str]]) -> str:
    """``text`` with each library argument of ``flags`` (``(argument, flag)`` pairs) replaced
    by the command's flag: for the words a command has beyond :func:`cli_words`.

    Examples
    --------
    >>> reword("give first=1|2 or tle=", [("first=", "--first "), ("tle=", "--tle FILE")])
    'give --first 1|2 or --tle FILE'
    """
    for arg, flag in flags:
        text = text.replace(arg, flag)
    return text


def in_flags(flags: Sequence[tuple[str, str]], fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """``fn(*args, **kw)``; a qhytime error it raises ends the command with its message in
    the command's words (:func:`reword` with ``flags``, then :func:`cli_words`), exit 1."""
    from qhytime.errors import QhytimeError

    try:
        return fn(*args, **kw)
    except QhytimeError as exc:
        fail(reword(str(exc), flags))


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``qhytime: message`` (in CLI words) on stderr and exit with ``code``."""
    click.echo(f"qhytime: {cli_words(message)}", err=True)
    sys.exit(code)


def warn(message: str) -> None:
    """Print a warning on stderr (in CLI words)."""
    click.echo(f"qhytime: warning: {cli_words(message)}", err=True)


@contextmanager
def warnings_as_messages() -> Iterator[None]:
    """Show the warnings raised inside (once each) as ``qhytime: warning:`` lines."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            seen: set[str] = set()
            for w in caught:
                text = str(w.message)
                if text not in seen:
                    seen.add(text)
                    warn(text)


# -- checked numbers ----------------------------------------------------------------------------


class Number(click.ParamType):
    """A finite number within bounds (``nan``, ``inf`` and out-of-range values are usage errors).

    Parameters
    ----------
    integer : bool
        Whole numbers only.
    lo, hi : float, optional
        Inclusive bounds, unless ``lo_open`` / ``hi_open``.
    unit : str
        Shown in messages.

    Examples
    --------
    >>> Number(lo=0, lo_open=True).convert("2.5", None, None)
    2.5
    """

    def __init__(
        self,
        *,
        integer: bool = False,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
        hi_open: bool = False,
        unit: str = "",
    ) -> None:
        self.integer = integer
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open
        self.unit = unit
        self.name = "integer" if integer else "number"

    def _fmt(self, v: float) -> str:
        return str(int(v)) if self.integer else f"{v:g}"

    def _range(self) -> str:
        lo = "" if self.lo is None else f"{'>' if self.lo_open else '>='} {self._fmt(self.lo)}"
        hi = "" if self.hi is None else f"{'<' if self.hi_open else '<='} {self._fmt(self.hi)}"
        return " and ".join(x for x in (lo, hi) if x) + (f" {self.unit}" if self.unit else "")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            v: float | int = value
        else:
            text = str(value).strip()
            try:
                v = int(text) if self.integer else float(text)
            except ValueError:
                self.fail(f"{value!r} is not {'a whole number' if self.integer else 'a number'}", param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.integer and v != int(v):
            self.fail(f"{value!r} is not a whole number", param, ctx)
        bad_lo = self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo)
        bad_hi = self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi)
        if bad_lo or bad_hi:
            self.fail(f"{value} is out of range: it must be {self._range()}", param, ctx)
        return int(v) if self.integer else float(v)


FRAME_INDEX = Number(integer=True, lo=0, hi=2**31 - 1)
OFFSET0_US = Number(lo=-1e8, hi=1e8, unit="us")
LINE_PERIOD_NS = Number(lo=0, lo_open=True, hi=1e6, unit="ns")
SIGMA_US = Number(lo=0, hi=1e8, unit="us")
SIGMA_NS = Number(lo=0, hi=1e6, unit="ns")
EXPOSURE_S = Number(lo=0, lo_open=True, hi=86_400, unit="s")
CROP_Y = Number(integer=True, lo=0, hi=1_000_000)
BINNING = Number(integer=True, lo=1, hi=64)
CAL_ID = Number(integer=True, lo=1, hi=2**63 - 1)


# -- database --------------------------------------------------------------------------------


def db_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--db`` / ``$QHYTIME_DB``: the calibration database (path or SQLAlchemy URL)."""
    return click.option(
        "--db",
        "db",
        default=None,
        envvar="QHYTIME_DB",
        show_envvar=True,
        help="Database: a SQLite file or a SQLAlchemy URL "
        "(default: qhytime.sqlite in the user data directory).",
    )(f)


def in_memory_db(db: str | None) -> bool:
    """Whether ``db`` names an in-memory SQLite database (``sqlite://``, ``sqlite:///:memory:``,
    ``file::memory:``, ``?mode=memory``): one that is gone when the command ends.

    Examples
    --------
    >>> in_memory_db("sqlite://"), in_memory_db("sqlite+pysqlite:///:memory:")
    (True, True)
    >>> in_memory_db("sqlite:///tmp/q.sqlite"), in_memory_db("/tmp/q.sqlite"), in_memory_db(None)
    (False, False, False)
    """
    if db is None or "://" not in db:
        return False  # the default database or a file path
    scheme, rest = db.strip().split("://", 1)
    if scheme.split("+", 1)[0].lower() != "sqlite":
        return False
    path, _, query = rest.removeprefix("/").partition("?")
    return path in ("", ":memory:") or path.startswith("file::memory:") or "mode=memory" in query


def writable_db(db: str | None) -> str | None:
    """``db`` for a command that writes to the database; an in-memory one is a usage error.

    Raises
    ------
    click.BadParameter
        For an in-memory SQLite database (what the command writes would be lost).

    Examples
    --------
    >>> writable_db("/tmp/q.sqlite")
    '/tmp/q.sqlite'
    >>> writable_db("sqlite://")
    Traceback (most recent call last):
    ...
    click.exceptions.BadParameter: sqlite:// is an in-memory database, lost when the command ends: give a file path (or a sqlite:///PATH or postgresql:// URL)
    """
    if in_memory_db(db):
        raise click.BadParameter(
            f"{db} is an in-memory database, lost when the command ends: give a file path "
            "(or a sqlite:///PATH or postgresql:// URL)",
            param_hint="'--db' / QHYTIME_DB",
        )
    return db


def open_store(db: str | None, *, write: bool = False, **kw: Any) -> CalibrationStore:
    """Open the calibration store (errors are :class:`~qhytime.errors.QhytimeError`).

    ``write=True`` for a command that writes to it: an in-memory database is then refused
    (:func:`writable_db`).
    """
    from qhytime.store import CalibrationStore

    return CalibrationStore(writable_db(db) if write else db, **kw)


# -- the explicit row model and frame options shared by rows, stamp, lightcurve, streak ------


def model_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options that choose the timing of a frame: a calibration (looked up, pinned, fallback)
    or an explicit model, the exposure, the crop and the binning.

    The command receives ``calibration_id, offset0_us, line_period_ns, readout, reference,
    exposure_s, crop_y, binning, fallback``; :func:`explicit_model` turns the model ones into
    a :class:`~qhytime.rowmodel.RowModel` (or None).
    """
    opts = [
        click.option("--calibration", "calibration_id", type=CAL_ID, default=None,
                     help="Pin a calibration by id (warned when its setting differs)."),
        click.option("--offset0-us", type=OFFSET0_US, default=None,
                     help="Explicit offset0 (us) instead of a calibration."),
        click.option("--line-period-ns", type=LINE_PERIOD_NS, default=None,
                     help="Explicit line period (ns)."),
        click.option("--readout", type=click.Choice(["pairs", "2cms"]), default=None,
                     help="Explicit model: rows read in pairs (default) or one at a time."),
        click.option("--reference", type=click.Choice(["start", "end", "now"]), default=None,
                     help="Explicit model: the stamp offset0 is measured from (default end)."),
        click.option("--exposure-s", type=EXPOSURE_S, default=None,
                     help="Exposure; default the file's QHY_EXP, else EXPTIME/EXPOSURE."),
        click.option("--crop-y", type=CROP_Y, default=None,
                     help="Sensor row (unbinned) of the image's first row (default CROPOFFY, else 0)."),
        click.option("--binning", type=BINNING, default=None,
                     help="Binning (default XBINNING, else 1)."),
        click.option("--fallback", is_flag=True,
                     help="Allow a warned fallback calibration of a neighbouring setting."),
    ]  # fmt: skip
    for opt in reversed(opts):
        f = opt(f)
    return f


def explicit_model(
    offset0_us: float | None,
    line_period_ns: float | None,
    readout: str | None,
    reference: str | None,
    calibration_id: int | None = None,
) -> RowModel | None:
    """The explicit :class:`~qhytime.rowmodel.RowModel` the options give, or None.

    Raises
    ------
    click.UsageError
        When only half of the model is given, or it is combined with ``--calibration``.
    """
    from qhytime.rowmodel import RowModel

    given = [offset0_us is not None, line_period_ns is not None]
    if any(given) and not all(given):
        raise click.UsageError("--offset0-us and --line-period-ns go together")
    if not any(given):
        if readout or reference:
            raise click.UsageError(
                "--readout/--reference describe an explicit model: add --offset0-us and "
                "--line-period-ns (a calibration carries its own)"
            )
        return None
    if calibration_id is not None:
        raise click.UsageError("--calibration and an explicit model exclude each other")
    return RowModel.from_us(
        offset0_us=float(offset0_us),  # type: ignore[arg-type]
        line_period_ns=float(line_period_ns),  # type: ignore[arg-type]
        readout=readout or "pairs",  # type: ignore[arg-type]
        reference=reference or "end",  # type: ignore[arg-type]
    )


def exposure_ns(exposure_s: float | None) -> int | None:
    """Seconds (checked by :data:`EXPOSURE_S`) to integer ns."""
    return None if exposure_s is None else round(exposure_s * 1e9)


# -- files --------------------------------------------------------------------------------------

FRAME_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fz", ".ser")

PLOT_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg", "ps", "eps", "tif", "tiff", "webp")
"""File name suffixes a ``--plot`` may end in (matplotlib's Agg, PDF, PS and SVG writers); no
suffix writes PNG."""


def output_path_problem(path: str, what: str = "the output") -> str | None:
    """Why ``path`` cannot be written (its folder missing or not writable), or None.

    Examples
    --------
    >>> output_path_problem("/no/such/folder/lc.csv")
    '/no/such/folder/lc.csv: cannot write the output: folder /no/such/folder does not exist'
    """
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return f"{path}: cannot write {what}: folder {parent} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{path}: cannot write {what}: folder {parent} is not writable"
    if os.path.isdir(path):
        return f"{path}: cannot write {what}: it is a folder (give a file name)"
    return None


def plot_path_problem(path: str) -> str | None:
    """Why a plot cannot be written to ``path`` (folder, or a suffix matplotlib cannot write),
    or None.

    Examples
    --------
    >>> plot_path_problem("/tmp/lc.png") is None
    True
    >>> plot_path_problem("/tmp/lc.xyz")
    '/tmp/lc.xyz: cannot write a plot as .xyz: use one of png, pdf, svg, jpg, jpeg, ps, eps, tif, tiff, webp'
    """
    problem = output_path_problem(path, "the plot")
    if problem is not None:
        return problem
    suffix = os.path.splitext(path)[1].lstrip(".").lower()
    if suffix and suffix not in PLOT_FORMATS:
        return f"{path}: cannot write a plot as .{suffix}: use one of {', '.join(PLOT_FORMATS)}"
    return None


def empty_folders(paths: Iterable[str]) -> list[str]:
    """The folders among ``paths`` that hold no FITS/SER file (:func:`expand_paths` keeps them
    as given, so that the command can say so).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     empty_folders([d, "a.fits"]) == [d]
    True
    """
    return [
        p for p in paths
        if os.path.isdir(p)
        and not any(c.is_file() and c.name.lower().endswith(FRAME_SUFFIXES) for c in Path(p).iterdir())
    ]  # fmt: skip


def expand_paths(paths: Iterable[str]) -> list[str]:
    """Files as given, folders replaced by their FITS/SER files in name order (not recursive).

    A folder with no such file is kept as given, so that the command reports it.

    Examples
    --------
    >>> expand_paths(["a.fits", "b.ser"])
    ['a.fits', 'b.ser']
    """
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(
                str(c)
                for c in Path(p).iterdir()
                if c.is_file() and c.name.lower().endswith(FRAME_SUFFIXES)
            )
            out.extend(found or [p])
        else:
            out.append(p)
    return out

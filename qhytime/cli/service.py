"""Service mode: ``qhytime index``, ``query``, ``alerts``, ``watch``, ``gnss`` and ``serve``.

Each is a thin shell over :mod:`qhytime.service`; ``--json`` prints one object per line.
FastAPI/uvicorn (``serve``) and watchdog (``watch``) are imported only when those run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from qhytime.cli._cluster import cluster_executor, cluster_options
from qhytime.cli._common import (
    EXPOSURE_S,
    FRAME_INDEX,
    Number,
    cli_words,
    db_option,
    empty_folders,
    expand_paths,
    exposure_ns,
    fail,
    warn,
    writable_db,
)

LIMIT = Number(integer=True, lo=1, hi=2**62)
OFFSET = Number(integer=True, lo=0, hi=2**62)
SEQUENCE = Number(integer=True, lo=0, hi=2**63 - 1)
SETTLE_S = Number(lo=0.0, hi=3_600, unit="s")
DURATION_S = Number(lo=0.0, lo_open=True, hi=10 * 365 * 86_400, unit="s")
INTERVAL_S = Number(lo=1.0, hi=86_400, unit="s")
PORT = Number(integer=True, lo=0, hi=65_535)
BAUD = Number(integer=True, lo=50, hi=4_000_000)


TIME_MAX_NS = 4_102_444_800 * 1_000_000_000
"""2100-01-01T00:00:00Z: times of ``query`` lie in 1970..2100, as the HTTP API's."""
MAX_ROW = 1_000_000
"""No frame has this many rows (the bound of ``--crop-y`` too)."""


def _iso_ns(value: str | None, flag: str) -> int | None:
    from qhytime.service.index import parse_iso_ns

    if value is None:
        return None
    try:
        t = parse_iso_ns(value)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint=flag) from None
    if not 0 <= t < TIME_MAX_NS:
        raise click.BadParameter(f"{value} is outside 1970..2100", param_hint=flag)
    return t


def _check_rows(spec: str) -> None:
    """``--rows`` as text, before any frame is read: ``A:B`` (either side optional, B
    excluded) or ``r1,r2,...``, rows from 0 to :data:`MAX_ROW`, a range not empty. Each
    frame's own height is checked when its rows are computed.

    Examples
    --------
    >>> _check_rows("0:10"), _check_rows("5,9"), _check_rows(":3")
    (None, None, None)
    >>> _check_rows("-1")
    Traceback (most recent call last):
    ...
    click.exceptions.BadParameter: '-1': row numbers start at 0
    """
    hint = "'--rows'"
    try:
        if ":" in spec:
            a, b = spec.split(":", 1)
            lo = int(a) if a.strip() else 0
            hi = int(b) if b.strip() else None
            values = [lo] if hi is None else [lo, hi]
        else:
            values = [int(x) for x in spec.split(",")]
    except ValueError:
        raise click.BadParameter(f"{spec!r} is not A:B (end excluded) or a list of rows 1,5,9",
                                 param_hint=hint) from None  # fmt: skip
    if any(v < 0 for v in values):
        raise click.BadParameter(f"{spec!r}: row numbers start at 0", param_hint=hint)
    if any(v > MAX_ROW for v in values):
        raise click.BadParameter(f"{spec!r}: row {max(values)} is beyond any frame (rows "
                                 f"0..{MAX_ROW - 1} at most)", param_hint=hint)  # fmt: skip
    if ":" in spec and len(values) == 2 and values[1] <= values[0]:
        raise click.BadParameter(f"{spec!r} is an empty range (A:B needs A < B)", param_hint=hint)


# A library lookup message advises an explicit row model ("give model"): index and watch have
# none, so their messages say how to add a calibration (then refresh) instead.
_NO_CAL_ADVICE = re.compile(
    r"(no calibration for \S+(?: \([^()]*\))?): measure one with [^;\]]*?(?=;|\]|$)"
)
_GIVE_MODEL = re.compile(r",? or give model(?: \([^()]*\))?")
INDEX_CALIBRATION_ADVICE = (
    "add one with `qhytime calib add ...` or `qhytime calib import FILE.toml` (or measure it "
    "with `qhytime ledcal --store`), then `qhytime index --refresh` times the frames indexed "
    "without it"
)


def index_words(message: str) -> str:
    """A message of indexing in the words of ``qhytime index``/``watch``: a missing
    calibration is to be added (these commands take no explicit row model), and the API's
    arguments are the CLI's flags.

    Examples
    --------
    >>> index_words("no calibration: no calibration for CAM|x (none for this camera model): "
    ...             "measure one with `qhytime ledcal --store`, add one with `qhytime calib add`, "
    ...             "or give model (an explicit row model)")  # doctest: +ELLIPSIS
    'no calibration: no calibration for CAM|x (none for this camera model): add one with `qhytime calib add ...` or `qhytime calib import FILE.toml` (or measure it ...'
    >>> index_words("the nearest is #3. Use it with fallback=True, which widens sigma")
    'the nearest is #3. Use it with --fallback, which widens sigma'
    """
    text = _NO_CAL_ADVICE.sub(lambda m: f"{m.group(1)}: {INDEX_CALIBRATION_ADVICE}", message)
    return cli_words(_GIVE_MODEL.sub("", text))


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT (Ctrl-C) and SIGTERM instead of killing the loop."""
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _short(path: str, width: int = 40) -> str:
    return path if len(path) <= width else "…" + path[-(width - 1) :]


# -- index ------------------------------------------------------------------------------------


@click.command("index")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--refresh", is_flag=True,
              help="Look up every indexed file's calibration again (no file access): picks up "
              "calibrations added since.")  # fmt: skip
@click.option("--fallback", is_flag=True,
              help="Accept the nearest setting's calibration (widened sigma) when none matches.")
@click.option("--exposure-s", type=EXPOSURE_S, default=None,
              help="Exposure of files that carry none (SER files).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file per line.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@db_option
@cluster_options
def index_cmd(
    paths: tuple[str, ...], refresh: bool, fallback: bool, exposure_s: float | None,
    as_json: bool, quiet: bool, db: str | None, dask_address: str | None, workers: int | None,
) -> None:  # fmt: skip
    """Index the frames of FITS/SER files (folders expand) into the frame timing index.

    Idempotent: a file already indexed and unchanged adds nothing; a changed file is
    re-indexed (its frames replaced); a growing SER gets its new frames. Each file is
    committed in one transaction.

    \b
    Exit codes (every file gets its status line; the readable ones are indexed either way):
      0  every file indexed (or unchanged; a "partial" file, truncated or without a frame
         count, is indexed up to its last complete frame);
      1  some file ended "error" (unreadable) or "incomplete" (no complete frame), now or
         when it was indexed before and has not changed since;
      2  a usage error (bad options, an in-memory --db).

    With --dask or --workers the files are read and decoded by dask workers (with a
    snapshot of the calibrations); this process writes the index as their records come
    back, in the order given.
    """
    from tqdm import tqdm

    from qhytime.service.index import FrameIndex, IngestResult

    if not paths and not refresh:
        raise click.UsageError("give files or folders to index (or --refresh)")
    writable_db(db)
    empty = empty_folders(paths)
    files = [f for f in expand_paths(paths) if f not in empty]
    counts: Counter[str] = Counter()
    failed = 0
    frames = 0
    shown: set[str] = set()

    def emit(res: Any) -> None:
        nonlocal frames, failed
        counts[res.action] += 1
        frames += res.frames
        bad = res.action in ("error", "incomplete") or res.status in ("error", "incomplete")
        failed += bad
        message = index_words(res.message)
        if as_json:
            click.echo(json.dumps({**res.to_dict(), "message": message}))
            return
        cal = f"calibration #{res.calibration_id}" if res.calibration_id else "no calibration"
        if res.action in ("error", "incomplete"):
            detail, message = message, ""
        elif res.action == "refreshed":
            message = ""  # "calibration #N (kind)": the line says it
        elif res.action == "unchanged":
            detail = f"{res.total_frames} frame(s) indexed" + (
                f" ({res.status} when indexed, and not changed since)" if bad else "")  # fmt: skip
        else:
            detail = (f"{res.frames} frame(s) written, {res.total_frames} indexed, {cal}"
                      + (f", {res.alerts} alert(s)" if res.alerts else ""))  # fmt: skip
        tqdm.write(f"{res.action:<10} {res.path}: {detail}")
        if message and message not in shown:  # the same advice for many files: said once
            shown.add(message)
            tqdm.write(f"{'':<10} ! {message}")

    for folder in empty:  # nothing to index there: said, counted, not recorded
        emit(IngestResult(os.path.abspath(folder), "error", status="error", message=(
            "no FITS/SER files (.fits, .fit, .fts, .fz, .ser) in this folder: give the "
            "folder that holds the frames, or the files themselves")))  # fmt: skip
    with FrameIndex(db) as index, cluster_executor(dask_address, workers) as executor:
        bar = tqdm(total=len(files), unit="file", file=sys.stderr,
                   disable=quiet or not sys.stderr.isatty())  # fmt: skip
        for res in index.ingest_paths(files, fallback=fallback, executor=executor,
                                      exposure_ns=exposure_ns(exposure_s)):  # fmt: skip
            emit(res)
            bar.update(1)
        bar.close()
        if refresh:
            for res in index.refresh(fallback=fallback):
                emit(res)
    summary = ", ".join(f"{n} {a}" for a, n in sorted(counts.items())) or "nothing to do"
    click.echo(f"qhytime: {sum(counts.values())} file(s): {summary}; {frames} frame(s) written",
               err=True)  # fmt: skip
    if failed:
        click.echo(f"qhytime: {failed} file(s) could not be indexed (error or incomplete: see "
                   "their lines)", err=True)  # fmt: skip
    sys.exit(1 if failed else 0)


# -- query ------------------------------------------------------------------------------------


def _frame_line(d: dict[str, Any]) -> str:
    exp = "-" if d["exposure_ns"] is None else f"{d['exposure_ns'] / 1e9:.6f}s"
    cal = "-" if d["calibration_id"] is None else f"#{d['calibration_id']}"
    seq = "-" if d["sequence"] is None else str(d["sequence"])
    return (
        f"{d['id']:>8} {_short(d['file']):<40} {d['frame']:>6} {seq:>10} {d['status']:<7} "
        f"{d['start'] or '-':<29} {d['end'] or '-':<29} {exp:>12} {cal:>5}"
    )


def _rows_text(rows: list[dict[str, Any]]) -> list[str]:
    return [f"{'':>8}   row {r['row']:>6}  {r['start']}  {r['mid']}  {r['end']}  "
            f"{r['sigma_ns']:>8.1f} ns" for r in rows]  # fmt: skip


@click.command("query")
@click.option("--file", "file", default=None, help="A file (path, or its name).")
@click.option("--frame", type=FRAME_INDEX, default=None, help="0-based frame index in the file.")
@click.option("--sequence", type=SEQUENCE, default=None, help="The block's sequence number.")
@click.option("--from", "time_from", default=None,
              help="ISO UTC (1970..2100): frames whose exposure ends at or after this.")  # fmt: skip
@click.option("--to", "time_to", default=None,
              help="ISO UTC (1970..2100): frames whose exposure starts before this.")  # fmt: skip
@click.option("--at", "at_time", default=None,
              help="ISO UTC (1970..2100, Z optional): every frame and row exposed at this "
              "instant (start <= t < end).")  # fmt: skip
@click.option("--rows", "rows_spec", default=None,
              help="Also give these rows' times: A:B (end excluded) or a list 1,5,9 (rows from "
              "0, inside each frame).")  # fmt: skip
@click.option("--allow-invalid", is_flag=True,
              help="Row times (and --at answers) for frames whose time is flagged.")  # fmt: skip
@click.option("--limit", type=LIMIT, default=None, help="At most this many frames.")
@click.option("--offset", type=OFFSET, default=0, help="Skip this many frames first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per frame per line.")
@db_option
def query(
    file: str | None, frame: int | None, sequence: int | None, time_from: str | None,
    time_to: str | None, at_time: str | None, rows_spec: str | None, allow_invalid: bool,
    limit: int | None, offset: int, as_json: bool, db: str | None,
) -> None:  # fmt: skip
    """Frames of the index: all, or by file and frame, sequence, time range or instant.

    Row times come from the stored stamps and calibration (no file access). With --at, one
    object per frame exposing some row at that instant, with those rows; nothing matching
    prints nothing and exits 0.
    """
    from qhytime.errors import NotIndexedError, RowModelError
    from qhytime.service.index import FrameIndex, row_records

    t_at = _iso_ns(at_time, "--at")
    t0, t1 = _iso_ns(time_from, "--from"), _iso_ns(time_to, "--to")
    if t_at is not None and any(
        v is not None for v in (file, frame, sequence, t0, t1, rows_spec)
    ):
        raise click.UsageError("--at stands alone (it gives its own rows)")
    if t0 is not None and t1 is not None and t1 <= t0:
        raise click.UsageError("--to must be after --from")
    if rows_spec is not None:
        _check_rows(rows_spec)
    with FrameIndex(db) as index:
        if t_at is not None:
            n = 0
            for f, rt in index.at(t_at, allow_invalid=allow_invalid):
                n += 1
                if offset and n <= offset:
                    continue
                d = {**f.to_dict(), "rows": row_records(rt)}
                if as_json:
                    click.echo(json.dumps(d))
                else:
                    click.echo(_frame_line(d))
                    click.echo(f"{'':>8}   {len(d['rows'])} row(s) exposed: "
                               f"{d['rows'][0]['row']}..{d['rows'][-1]['row']}")  # fmt: skip
                if limit is not None and n - offset >= limit:
                    break
            return
        try:
            frames = index.iter_frames(file=file, frame=frame, sequence=sequence,
                                       time_from_ns=t0, time_to_ns=t1, limit=limit,
                                       offset=offset)  # fmt: skip
            unavailable = 0
            for f in frames:
                d = f.to_dict()
                if rows_spec is not None:
                    from qhytime.cli.rows import parse_rows

                    d["rows"] = None
                    if f.timed:
                        try:
                            rt = index.row_times(f, parse_rows(rows_spec, int(f.height or 0)),
                                                 allow_invalid=allow_invalid)  # fmt: skip
                            d["rows"] = row_records(rt)
                        except RowModelError as err:
                            warn(str(err))
                    else:
                        unavailable += 1
                if as_json:
                    click.echo(json.dumps(d))
                else:
                    click.echo(_frame_line(d))
                    for r in d["reasons"]:
                        click.echo(f"{'':>8}   ! {r}")
                    for line in _rows_text(d.get("rows") or []):
                        click.echo(line)
            if unavailable:
                warn(f"{unavailable} frame(s) have no row times (see their reasons)")
        except NotIndexedError as err:
            raise click.BadParameter(str(err), param_hint="--file") from None


# -- alerts -----------------------------------------------------------------------------------


@click.command("alerts")
@click.option("--all", "show_all", is_flag=True, help="Cleared alerts too.")
@click.option("--kind", default=None, help="Only this kind (e.g. late_frame).")
@click.option("--limit", type=LIMIT, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per alert per line.")
@db_option
def alerts_cmd(show_all: bool, kind: str | None, limit: int, as_json: bool, db: str | None) -> None:
    """Alerts of the index (timing gone bad), newest first: the active ones, or --all."""
    from qhytime.service.alerts import iter_alerts
    from qhytime.service.index import FrameIndex

    with FrameIndex(db) as index:
        for a in iter_alerts(index, active_only=not show_all, limit=limit, kind=kind):
            d = a.to_dict()
            if as_json:
                click.echo(json.dumps(d))
            else:
                state = "active " if a.active else "cleared"
                click.echo(f"{d['raised']} {state} {a.severity:<7} {a.kind:<22} {a.message}")


# -- watch ------------------------------------------------------------------------------------


@click.command("watch")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--recursive", is_flag=True, help="Watch sub-folders too.")
@click.option("--stamp", "stamp_dir", type=click.Path(file_okay=False), default=None,
              help="Also write stamped copies of FITS files into this folder.")  # fmt: skip
@click.option("--settle", "settle_s", type=SETTLE_S, default=2.0, show_default=True,
              help="Seconds a file's size must stay the same before it counts as complete.")
@click.option("--poll", is_flag=True, help="Poll the folder instead of using inotify.")
@click.option("--fallback", is_flag=True, help="Accept the nearest setting's calibration.")
@click.option("--exposure-s", type=EXPOSURE_S, default=None,
              help="Exposure of files that carry none (SER files).")  # fmt: skip
@click.option("--idle-alert", "idle_alert_s", type=Number(lo=1.0, hi=86_400, unit="s"),
              default=None, help="Alert after this long without a new frame (default: 5 frame "
              "intervals, at least 60 s).")  # fmt: skip
@click.option("--quiet", is_flag=True, help="No per-file lines and no status line.")
@db_option
def watch(
    folder: str, recursive: bool, stamp_dir: str | None, settle_s: float, poll: bool,
    fallback: bool, exposure_s: float | None, idle_alert_s: float | None, quiet: bool,
    db: str | None,
) -> None:  # fmt: skip
    """Index (and optionally stamp) each new FITS/SER file of FOLDER once it is complete.

    A SER growing frame by frame is indexed frame by frame. State lives in the database:
    a restart (even after kill -9) neither indexes a file twice nor misses one. Ctrl-C and
    SIGTERM finish the current file and exit 0.
    """
    import time

    from qhytime.service.index import FrameIndex
    from qhytime.service.watch import Watcher

    if stamp_dir is not None and os.path.abspath(stamp_dir) == os.path.abspath(folder):
        raise click.UsageError("--stamp must be another folder than the one watched")
    writable_db(db)
    tty = sys.stderr.isatty()
    last_line = [0.0]

    def log(text: str) -> None:
        if not quiet:
            if tty:
                click.echo("\r\033[K", nl=False, err=True)
            click.echo(index_words(text))

    def status(stats: Any) -> None:
        if quiet:
            return
        now = time.monotonic()
        if tty:
            click.echo("\r\033[K" + stats.line()[:200], nl=False, err=True)
        elif now - last_line[0] >= 60.0:
            click.echo(stats.line(), err=True)
            last_line[0] = now

    with FrameIndex(db) as index, _stop_on_signals() as stop:
        watcher = Watcher(index, folder, recursive=recursive, settle_s=settle_s,
                          stamp_dir=stamp_dir, poll=poll, fallback=fallback,
                          exposure_ns=exposure_ns(exposure_s), idle_alert_s=idle_alert_s,
                          log=log)  # fmt: skip
        stats = watcher.run(stop, on_status=status)
    if not quiet:
        if tty:
            click.echo("", err=True)
        click.echo(f"qhytime: stopped; {stats.line()}", err=True)


# -- gnss -------------------------------------------------------------------------------------


@click.command("gnss")
@click.argument("url")
@click.option("--duration", "duration_s", type=DURATION_S, default=None,
              help="Stop after this many seconds (default: until Ctrl-C/SIGTERM).")  # fmt: skip
@click.option("--baud", type=BAUD, default=9600, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One status object per second.")
@click.option("--log-interval", "interval_s", type=INTERVAL_S, default=10.0, show_default=True,
              help="Log the receiver's state into the database every this many seconds (and "
              "at each change of fix or silence).")  # fmt: skip
@click.option("--no-log", is_flag=True, help="Do not write to the database.")
@db_option
def gnss(
    url: str, duration_s: float | None, baud: int, as_json: bool, interval_s: float,
    no_log: bool, db: str | None,
) -> None:  # fmt: skip
    """Watch the GPS receiver on a serial line: a port (/dev/ttyUSB0), loop://, socket://...

    NMEA RMC, GGA, GSA, GSV and ZDA give the fix quality, satellites, position and the
    receiver's UTC; bad checksums, partial lines and garbage are counted, never fatal.
    After 2 s without a byte the status says `silent` until data return; a port that fails
    is reopened once a second.

    \b
    Exit codes: 0 the port opened (at some time during the run); 1 it never opened (a
    missing device, no permission, nothing listening); 2 a usage error (a malformed URL,
    an in-memory --db).
    """
    import contextlib
    import importlib.util

    from qhytime.service.gnss import GnssLogger, NmeaMonitor, url_problem

    if "://" in url:
        scheme = url.split("://", 1)[0].lower()
        if not scheme.isidentifier() or importlib.util.find_spec(
            f"serial.urlhandler.protocol_{scheme}") is None:  # fmt: skip
            raise click.BadParameter(
                f"pyserial knows no {scheme}:// ports: give a device (/dev/ttyUSB0, COM3) or a "
                "URL such as socket://host:port, rfc2217://host:port or loop://",
                param_hint="URL",
            )
    if (problem := url_problem(url)) is not None:
        raise click.BadParameter(problem if url in problem else f"{url}: {problem}",
                                 param_hint="URL")  # fmt: skip
    if not no_log:
        writable_db(db)

    monitor = NmeaMonitor(url, baudrate=baud)

    with contextlib.ExitStack() as stack:
        logger = None
        if not no_log:
            from qhytime.service.index import FrameIndex

            index = stack.enter_context(FrameIndex(db))
            logger = GnssLogger(index, monitor.source, interval_s=interval_s)

        def on_status(st: Any, host_ns: int) -> None:
            d = st.to_dict(host_ns)
            if as_json:
                click.echo(json.dumps(d))
            else:
                click.echo(
                    f"{d['host']} utc {d['utc'] or '-'} fix {d['fix_quality']} "
                    f"sats {d['satellites']} lat {d['latitude_deg']} lon {d['longitude_deg']} "
                    f"alt {d['altitude_m']} | bad {d['bad_checksum']} partial {d['partial']} "
                    f"garbage {d['garbage']}" + (" SILENT" if d["silent"] else "")
                )
            if logger is not None:
                logger(st, host_ns)

        def on_change(st: Any, host_ns: int, what: str) -> None:
            if not as_json:
                warn("the receiver is silent" if what == "silent" else "the receiver speaks again")
            if logger is not None:
                logger(st, host_ns)

        stop = stack.enter_context(_stop_on_signals())
        final = monitor.run(duration_s, stop=stop, on_status=on_status, on_change=on_change)
    click.echo(
        f"qhytime: {final.sentences} sentence(s), {final.bad_checksum} bad checksum(s), "
        f"{final.partial} partial, {final.garbage} garbage, {final.unknown} unknown, "
        f"{final.malformed} malformed, {final.io_errors} port error(s)"
        + (f" (last: {final.last_error})" if final.last_error else ""),
        err=True,
    )
    if not monitor.opened:
        fail(
            f"the port {monitor.source} never opened during the run ({final.io_errors} "
            f"attempt(s)): check the device name or URL, that the receiver is plugged in and "
            "powered (or the server listens), and that you may open it (on Linux: the dialout "
            "group)"
        )


# -- serve ------------------------------------------------------------------------------------


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; any but loopback (127.0.0.0/8, ::1) needs --token.")  # fmt: skip
@click.option("--port", type=PORT, default=8765, show_default=True)
@click.option("--token", default=None, envvar="QHYTIME_TOKEN", show_envvar=True,
              help="Bearer token every request must carry (at least 16 characters).")  # fmt: skip
@click.option("--access-log", is_flag=True, help="Log every request.")
@db_option
def serve(host: str, port: int, token: str | None, access_log: bool, db: str | None) -> None:
    """Serve the index and the calibrations as read-only JSON over HTTP (docs at /docs).

    Loopback only by default; binding another address requires a token. Ctrl-C and SIGTERM
    stop the server.
    """
    try:
        from qhytime.service.http import bind_problem
    except ImportError as err:
        from qhytime.cli._common import fail

        fail(f"the HTTP API needs the service extra ({err.name} missing): "
             "pip install 'qhytime[service]'")  # fmt: skip
    problem = bind_problem(host, token)
    if problem is not None:
        raise click.UsageError(problem)
    from qhytime.service.http import serve as run

    run(db, host=host, port=port, token=token, access_log=access_log)


COMMANDS = [index_cmd, query, alerts_cmd, watch, gnss, serve]

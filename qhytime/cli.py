"""The ``qhytime`` command line: a thin shell over :mod:`qhytime.api`.

Scripts read ``--json`` (one object per line); people read the default table.
Exit codes: 0 when every file was read, 1 when a file could not be read (wholly or
partly), 2 for usage errors.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterable

import click

from qhytime import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qhytime")
def main() -> None:
    """Exact time for every row of every frame from QHYCCD GPS cameras."""


def _emit_table(records: Iterable[object]) -> bool:
    from qhytime.decode import DecodedFrame

    all_read = True
    header = f"{'file':<28} {'frame':>5} {'sequence':>9} {'status':<7} {'start (UTC)':<29} {'end (UTC)':<29} {'now (UTC)':<29} {'pps':>9} {'nom-meas end':>13}"
    click.echo(header)
    for rec in records:
        assert isinstance(rec, DecodedFrame)
        if rec.status == "error":
            all_read = False
        name = rec.file if len(rec.file) <= 28 else "…" + rec.file[-27:]
        frame = "-" if rec.frame is None else str(rec.frame)
        if rec.block is not None:
            b = rec.block
            diff = rec.nominal_difference_ns["end"] / 1000
            line = (
                f"{name:<28} {frame:>5} {b.sequence:>9} {rec.status:<7} "
                f"{rec.stamps['start'].utc:<29} {rec.stamps['end'].utc:<29} "
                f"{rec.stamps['now'].utc:<29} {b.pps_count:>9} {diff:>+10.3f} us"
            )
        else:
            line = f"{name:<28} {frame:>5} {'-':>9} {rec.status:<7}"
        click.echo(line)
        for reason in rec.reasons:
            click.echo(f"{'':<28} {'':>5} {'':>9} ! {reason}")
    return all_read


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per frame per line.")
@click.option(
    "--nominal-clock",
    is_flag=True,
    help="Scale ticks by exactly 100 ns instead of the measured pps count.",
)
def decode(paths: tuple[str, ...], as_json: bool, nominal_clock: bool) -> None:
    """Decode the GPS block of every frame of FITS/SER files, with exact UTC times.

    Each frame gets a status: ok, invalid (with the reasons its time cannot be trusted)
    or error (the file, or part of it, could not be read).
    """
    from qhytime.api import decode_paths

    records = decode_paths(paths, nominal_clock=nominal_clock)
    if as_json:
        all_read = True
        for rec in records:
            if rec.status == "error":
                all_read = False
            click.echo(json.dumps(rec.to_dict()))
    else:
        all_read = _emit_table(records)
    sys.exit(0 if all_read else 1)


# -- shared options ------------------------------------------------------------------------


def _db_option(f):  # type: ignore[no-untyped-def]
    return click.option(
        "--db",
        "db",
        default=None,
        envvar="QHYTIME_DB",
        show_envvar=True,
        help="Calibration database: a SQLite file or a SQLAlchemy URL "
        "(default: qhytime.sqlite in the user data directory).",
    )(f)


def _open_store(db: str | None):  # type: ignore[no-untyped-def]
    from qhytime.store import CalibrationStore

    return CalibrationStore(db)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"qhytime: {message}", err=True)
    sys.exit(code)


def _parse_rows(spec: str | None, height: int) -> list[int] | None:
    if spec is None:
        return None
    try:
        if ":" in spec:
            a, b = spec.split(":", 1)
            lo = int(a) if a else 0
            hi = int(b) if b else height
            return list(range(lo, min(hi, height)))
        return [int(x) for x in spec.split(",")]
    except ValueError:
        raise click.BadParameter(
            f"{spec!r} is not A:B or a list of rows", param_hint="--rows"
        ) from None


def _explicit_model(offset0_us, line_period_ns, readout, reference):  # type: ignore[no-untyped-def]
    from qhytime.rowmodel import RowModel

    given = [offset0_us is not None, line_period_ns is not None]
    if any(given) and not all(given):
        raise click.UsageError("--offset0-us and --line-period-ns go together")
    if not any(given):
        return None
    return RowModel.from_us(
        offset0_us=offset0_us,
        line_period_ns=line_period_ns,
        readout=readout or "pairs",
        reference=reference or "end",
    )


@main.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--frame", default=0, show_default=True, help="0-based frame index in the file.")
@click.option(
    "--calibration", "calibration_id", type=int, default=None, help="Pin a calibration by id."
)
@click.option(
    "--offset0-us", type=float, default=None, help="Explicit offset0 (us) instead of a calibration."
)
@click.option("--line-period-ns", type=float, default=None, help="Explicit line period (ns).")
@click.option(
    "--readout", type=click.Choice(["pairs", "2cms"]), default=None, help="With an explicit model."
)
@click.option(
    "--reference",
    type=click.Choice(["start", "end", "now"]),
    default=None,
    help="With an explicit model.",
)
@click.option(
    "--exposure-s", type=float, default=None, help="Exposure; default QHY_EXP/EXPTIME of the file."
)
@click.option(
    "--crop-y",
    type=int,
    default=None,
    help="Sensor row of the image's first row (default CROPOFFY).",
)
@click.option("--binning", type=int, default=None, help="Binning (default XBINNING, else 1).")
@click.option("--rows", "rows_spec", default=None, help="Rows A:B (end excluded) or a list 1,5,9.")
@click.option(
    "--fallback",
    is_flag=True,
    help="Allow a warned fallback calibration of a neighbouring setting.",
)
@click.option(
    "--allow-invalid", is_flag=True, help="Compute times for a frame whose time is flagged."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row per line.")
@_db_option
def rows(
    path: str, frame: int, calibration_id: int | None, offset0_us: float | None,
    line_period_ns: float | None, readout: str | None, reference: str | None,
    exposure_s: float | None, crop_y: int | None, binning: int | None, rows_spec: str | None,
    fallback: bool, allow_invalid: bool, as_json: bool, db: str | None,
) -> None:  # fmt: skip
    """Start, middle and end of every row of one frame, with a 1-sigma per row."""
    import warnings

    from qhytime.api import QhytimeError, frame_row_times, open_frames

    model = _explicit_model(offset0_us, line_period_ns, readout, reference)
    if model is None and (readout or reference):
        raise click.UsageError(
            "--readout/--reference describe an explicit model: add --offset0-us and --line-period-ns"
        )
    try:
        with (
            open_frames(path) as reader,
            contextlib.nullcontext() if model is not None else _open_store(db) as store,
        ):
            row_list = _parse_rows(rows_spec, reader.height)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                frt = frame_row_times(
                    reader, frame, model=model, store=store, calibration_id=calibration_id,
                    fallback=fallback,
                    exposure_ns=None if exposure_s is None else round(exposure_s * 1e9),
                    crop_y=crop_y, binning=binning, rows=row_list, allow_invalid=allow_invalid,
                )  # fmt: skip
            for w in caught:
                click.echo(f"qhytime: warning: {w.message}", err=True)
    except QhytimeError as exc:
        _fail(str(exc))
        return
    if frt.record.reasons:
        click.echo("qhytime: warning: frame flagged: " + "; ".join(frt.record.reasons), err=True)
    if frt.lookup is not None:
        click.echo(f"qhytime: {frt.lookup.describe()}", err=True)
    recs = frt.times.records(0)
    if as_json:
        for r in recs:
            click.echo(json.dumps(r))
        return
    click.echo(
        f"{'row':>6}  {'start (UTC)':<29}  {'mid (UTC)':<29}  {'end (UTC)':<29}  {'sigma':>10}"
    )
    for r in recs:
        click.echo(
            f"{r['row']:>6}  {r['start']:<29}  {r['mid']:<29}  {r['end']:<29}  {r['sigma_ns']:>7.1f} ns"
        )


# -- calibrations ------------------------------------------------------------------------------


@main.group()
def calib() -> None:
    """List, show, add, import and export calibrations (the store keeps every one)."""


def _cal_line(c) -> str:  # type: ignore[no-untyped-def]
    s = c.setting
    return (
        f"#{c.id:<5} {c.method:<8} {s.camera_model:<10} {s.readout_mode[:22]:<22} {s.readout:<5} "
        f"roi {s.roi_x},{s.roi_y},{s.roi_width}x{s.roi_height} bin{s.binning} {s.bit_depth}bit "
        f"usb{s.usb_traffic} {s.stream_mode:<6} ref={c.reference:<5} off0 {c.offset0_us:.3f}"
        f"+/-{c.offset0_sigma_us:.3f} us LP {c.line_period_ns:.4f} ns"
        + (f" (supersedes #{c.supersedes})" if c.supersedes else "")
    )


@calib.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include superseded calibrations (history).")
@click.option("--json", "as_json", is_flag=True)
@_db_option
def calib_list(show_all: bool, as_json: bool, db: str | None) -> None:
    """Current calibrations (with --all: the whole history)."""
    with _open_store(db) as store:
        cals = store.list(include_superseded=show_all)
    for c in cals:
        click.echo(json.dumps(c.to_dict()) if as_json else _cal_line(c))


@calib.command("show")
@click.argument("calibration_id", type=int)
@_db_option
def calib_show(calibration_id: int, db: str | None) -> None:
    """Every field of one calibration, with its provenance."""
    from qhytime.api import CalibrationError

    with _open_store(db) as store:
        try:
            c = store.get(calibration_id)
        except CalibrationError as exc:
            _fail(str(exc))
            return
    click.echo(json.dumps(c.to_dict(), indent=2))


@calib.command("add")
@click.option("--camera", "camera_model", required=True, help="Camera model, e.g. QHY600PRO.")
@click.option("--serial", default=None)
@click.option(
    "--readout-mode", required=True, help="Readout mode name (2CMS in it for single-row modes)."
)
@click.option("--roi", required=True, help="X,Y,WIDTH,HEIGHT on the sensor (unbinned).")
@click.option("--binning", default=1, show_default=True)
@click.option("--bit-depth", default=16, show_default=True)
@click.option("--usb-traffic", default=0, show_default=True)
@click.option(
    "--stream-mode", type=click.Choice(["single", "live"]), default="single", show_default=True
)
@click.option("--global-reset", is_flag=True)
@click.option("--reference", type=click.Choice(["start", "end", "now"]), required=True)
@click.option("--offset0-us", type=float, required=True)
@click.option("--offset0-sigma-us", type=float, default=0.0, show_default=True)
@click.option("--line-period-ns", type=float, required=True)
@click.option("--line-period-sigma-ns", type=float, default=0.0, show_default=True)
@click.option(
    "--method",
    type=click.Choice(["vendor", "SDK", "LED fit", "manual"]),
    default="manual",
    show_default=True,
)
@click.option("--measured-at", default="", help="When it was measured (ISO).")
@click.option("--notes", default="")
@click.option("--provenance", default="")
@_db_option
def calib_add(db: str | None, roi: str, **kw) -> None:  # type: ignore[no-untyped-def]
    """Add a calibration (it supersedes the current one of the same setting)."""
    from qhytime.api import Calibration, QhytimeError, Setting

    try:
        x, y, w, h = (int(v) for v in roi.split(","))
    except ValueError:
        raise click.BadParameter("give X,Y,WIDTH,HEIGHT", param_hint="--roi") from None
    setting_keys = (
        "camera_model",
        "serial",
        "readout_mode",
        "binning",
        "bit_depth",
        "usb_traffic",
        "stream_mode",
        "global_reset",
    )
    try:
        setting = Setting(
            roi_x=x, roi_y=y, roi_width=w, roi_height=h, **{k: kw.pop(k) for k in setting_keys}
        )
        cal = Calibration(setting=setting, **kw)
        with _open_store(db) as store:
            stored = store.add(cal)
    except QhytimeError as exc:
        _fail(str(exc))
        return
    click.echo(_cal_line(stored))


@calib.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@_db_option
def calib_import(path: str, db: str | None) -> None:
    """Import calibrations from a TOML file (each supersedes its setting's current one)."""
    from qhytime.api import QhytimeError

    try:
        with _open_store(db) as store:
            added = store.import_toml(path)
    except QhytimeError as exc:
        _fail(str(exc))
        return
    for c in added:
        click.echo(_cal_line(c))


@calib.command("export")
@click.option(
    "--id", "ids", type=int, multiple=True, help="Calibration id (repeatable); default all current."
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default=None, help="File (default stdout)."
)
@_db_option
def calib_export(ids: tuple[int, ...], output: str | None, db: str | None) -> None:
    """Export calibrations as TOML, for sharing."""
    from qhytime.api import QhytimeError

    try:
        with _open_store(db) as store:
            text = store.export_toml(list(ids) if ids else None)
    except QhytimeError as exc:
        _fail(str(exc))
        return
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        click.echo(text, nl=False)


# -- stamping --------------------------------------------------------------------------------


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write stamped copies here (default: NAME.stamped.fits beside each file).",
)
@click.option("--in-place", is_flag=True, help="Modify the files themselves (pixels untouched).")
@click.option(
    "--calibration", "calibration_id", type=int, default=None, help="Pin a calibration by id."
)
@click.option("--fallback", is_flag=True, help="Allow a warned fallback calibration.")
@click.option("--exposure-s", type=float, default=None)
@click.option(
    "--allow-invalid", is_flag=True, help="Stamp frames whose time is flagged (QT_STAT says so)."
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_db_option
def stamp(
    paths: tuple[str, ...], out_dir: str | None, in_place: bool, calibration_id: int | None,
    fallback: bool, exposure_s: float | None, allow_invalid: bool, quiet: bool, db: str | None,
) -> None:  # fmt: skip
    """Write row times into FITS headers and a ROWTIMES table (N.I.N.A./Siril keywords)."""
    import warnings

    from tqdm import tqdm

    from qhytime.api import stamp_files

    if in_place and out_dir:
        raise click.UsageError("--in-place and --out exclude each other")
    all_ok = True
    with _open_store(db) as store, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = stamp_files(
            paths, out_dir, in_place=in_place, store=store, calibration_id=calibration_id,
            fallback=fallback, allow_invalid=allow_invalid,
            exposure_ns=None if exposure_s is None else round(exposure_s * 1e9),
        )  # fmt: skip
        for res in tqdm(results, total=len(paths), unit="file", disable=quiet, file=sys.stderr):
            if res.status == "error":
                all_ok = False
                tqdm.write(f"error  {res.source}: {res.message}", file=sys.stderr)
            else:
                tqdm.write(f"{res.status:<6} {res.source} -> {res.output}  [{res.message}]")
    for w in {str(w.message) for w in caught}:
        click.echo(f"qhytime: warning: {w}", err=True)
    sys.exit(0 if all_ok else 1)


# -- LED calibration -------------------------------------------------------------------------------


@main.command()
@click.argument("frames", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--pulses",
    "pulses_csv",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="CSV: file, pulse_start_us (relative to the reference stamp), pulse_width_us; several lines per file make a pulse train.",
)
@click.option("--pulse-start-us", type=float, default=None, help="One pulse start for every frame.")
@click.option("--pulse-width-us", type=float, default=None, help="Its width.")
@click.option(
    "--pps-width-us",
    type=float,
    default=None,
    help="A GPS-PPS-driven LED: pulse width; pulses at whole UTC seconds.",
)
@click.option(
    "--pps-delay-us",
    type=float,
    default=0.0,
    show_default=True,
    help="PPS LED: delay after the whole second.",
)
@click.option(
    "--readout",
    type=click.Choice(["pairs", "2cms"]),
    default=None,
    help="Default: 2cms when READOUTM says so, else pairs.",
)
@click.option(
    "--reference", type=click.Choice(["start", "end", "now"]), default="end", show_default=True
)
@click.option(
    "--line-period-ns",
    type=float,
    default=None,
    help="Nominal line period (default QHY_LP, else estimated from the scan).",
)
@click.option(
    "--exposure-s", type=float, default=None, help="Nominal exposure (default QHY_EXP/EXPTIME)."
)
@click.option("--crop-y", type=int, default=None)
@click.option("--binning", type=int, default=None)
@click.option(
    "--bias",
    "bias_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Bias/dark frames (repeatable): their mean row profile is subtracted.",
)
@click.option(
    "--store",
    "store_it",
    is_flag=True,
    help="Store the result as a calibration (supersedes the current one).",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write residual and profile plots (PNG; needs the plot extra).",
)
@click.option("--json", "as_json", is_flag=True)
@_db_option
def ledcal(
    frames: tuple[str, ...], pulses_csv: str | None, pulse_start_us: float | None,
    pulse_width_us: float | None, pps_width_us: float | None, pps_delay_us: float,
    readout: str | None, reference: str, line_period_ns: float | None, exposure_s: float | None,
    crop_y: int | None, binning: int | None, bias_files: tuple[str, ...], store_it: bool,
    plot_path: str | None, as_json: bool, db: str | None,
) -> None:  # fmt: skip
    """Measure offset0, line period and exposure from frames of an LED pulse."""
    import numpy as np

    from qhytime.api import QhytimeError, fit_led, load_scan, open_frames, plot_fit, read_pulses_csv
    from qhytime.ledcal import row_profile

    sources = [pulses_csv is not None, pulse_start_us is not None, pps_width_us is not None]
    if sum(sources) != 1:
        raise click.UsageError(
            "give exactly one of --pulses, --pulse-start-us (with --pulse-width-us), --pps-width-us"
        )
    if pulse_start_us is not None and pulse_width_us is None:
        raise click.UsageError("--pulse-start-us needs --pulse-width-us")
    try:
        bias = None
        if bias_files:
            profs = []
            for bf in bias_files:
                with open_frames(bf) as r:
                    for i in range(len(r)):
                        profs.append(row_profile(r.image(i), bias=0.0)[0])
            bias = np.mean(profs, axis=0)
        pulses = read_pulses_csv(pulses_csv) if pulses_csv else None
        scan, rejected, info = load_scan(
            frames, pulses=pulses, pulse_start_us=pulse_start_us, pulse_width_us=pulse_width_us,
            pps_width_us=pps_width_us, pps_delay_us=pps_delay_us, reference=reference,  # type: ignore[arg-type]
            crop_y=crop_y, binning=binning, bias=bias,
        )  # fmt: skip
        setting = info.get("setting")
        mode = readout or (setting.readout if setting is not None else "pairs")
        exp_ns = round(exposure_s * 1e9) if exposure_s is not None else info.get("exposure_ns")
        fit = fit_led(
            scan, readout=mode, reference=reference,  # type: ignore[arg-type]
            line_period_ns=line_period_ns or info.get("line_period_ns"),
            exposure_ns=exp_ns, rejected=rejected, pps=info.get("pps"),
        )  # fmt: skip
    except QhytimeError as exc:
        _fail(str(exc))
        return
    stored = None
    if store_it:
        if setting is None:
            _fail("cannot store: no frame told its camera setting")
            return
        import dataclasses
        import datetime as dt

        setting = dataclasses.replace(setting, is_2cms=(mode == "2cms"))
        with _open_store(db) as store:
            stored = store.add(fit.to_calibration(setting, measured_at=dt.date.today().isoformat()))
    if plot_path:
        try:
            plot_fit(fit, plot_path)
        except QhytimeError as exc:
            _fail(str(exc))
            return
    out = fit.to_dict()
    if stored is not None:
        out["calibration_id"] = stored.id
    if as_json:
        for name, reason in fit.frames_rejected:
            click.echo(json.dumps({"rejected": name, "reason": reason}))
        click.echo(json.dumps(out))
        return
    click.echo(f"frames used {len(fit.frames_used)}, rejected {len(fit.frames_rejected)}")
    for name, reason in fit.frames_rejected:
        click.echo(f"  rejected {name}: {reason}")
    click.echo(
        f"offset0      {fit.offset0_us:14.6f} +/- {fit.offset0_sigma_us * 1e3:8.3f} ns   (from the {reference} stamp, {mode})"
    )
    click.echo(f"line period  {fit.line_period_ns:14.6f} +/- {fit.line_period_sigma_ns:8.4f} ns")
    click.echo(f"exposure     {fit.exposure_us:14.6f} +/- {fit.exposure_sigma_us * 1e3:8.3f} ns")
    click.echo(
        f"residual RMS {fit.residual_rms_us * 1e3:.3f} ns, reduced chi2 {fit.reduced_chi2:.2f}"
    )
    if stored is not None:
        click.echo(
            f"stored as calibration #{stored.id}"
            + (f" (supersedes #{stored.supersedes})" if stored.supersedes else "")
        )


# -- demo and self-diagnosis ---------------------------------------------------------------------


@main.command()
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False),
    default="qhytime-demo",
    show_default=True,
    help="Where the simulated capture and stamped copies go.",
)
@click.option("--frames", default=2, show_default=True, help="Frames to simulate.")
@_db_option
def demo(workdir: str, frames: int, db: str | None) -> None:
    """Simulate a QHY600PRO capture (full default resolution), stamp it with the shipped
    calibration from the embedded database, and print per-row times."""
    from pathlib import Path

    from qhytime.api import CameraSim, stamp_files
    from qhytime.timebase import unix_ns_to_iso

    work = Path(workdir)
    sim = CameraSim(width=9576, height=6388, exposure_us=100_000.0, frame_interval_us=500_000.0,
                    offset0_us=1974.286, reference="now", readout_mode="Photographic DSO", seed=7)  # fmt: skip
    click.echo(
        f"simulating {frames} frame(s) of {sim.width}x{sim.height} 16-bit into {work / 'capture'} ..."
    )
    paths = sim.write_fits(work / "capture", frames, prefix="qhy600")
    with _open_store(db) as store:
        click.echo(f"calibration database: {store.url}")
        results = list(stamp_files(paths, work / "stamped", store=store))
    for res in results:
        click.echo(f"{res.status:<6} {res.output}  [{res.message}]")
        if res.status == "error":
            sys.exit(1)
    from astropy.io import fits

    for res in results:
        with fits.open(res.output) as hdul:
            h, tab = hdul[0].header, hdul["ROWTIMES"].data
            click.echo(
                f"\n{Path(res.output).name}: GPS_EUTC {h['GPS_EUTC']}  QHY_OFF0 {h['QHY_OFF0']:.3f} us  QHY_LP {h['QHY_LP']} ns  calibration #{h['QT_CALID']}"
            )
            click.echo(
                f"{'row':>6}  {'start (UTC)':<29}  {'mid (UTC)':<29}  {'end (UTC)':<29}  sigma"
            )
            for r in (0, 1, 2, 3, 4171, len(tab) - 1):
                row = tab[r]
                click.echo(
                    f"{row['ROW']:>6}  {unix_ns_to_iso(int(row['START_NS']))}  {unix_ns_to_iso(int(row['MID_NS']))}  {unix_ns_to_iso(int(row['END_NS']))}  {row['SIGMA_NS']:.0f} ns"
                )
    click.echo(f"\nstamped FITS (keywords + ROWTIMES table) in {work / 'stamped'}")


@main.command()
@_db_option
def doctor(db: str | None) -> None:
    """Versions, database path and schema revision, leap-second table, shipped calibrations."""
    from qhytime.api import doctor_report

    click.echo(doctor_report(db))


if __name__ == "__main__":  # pragma: no cover
    main()

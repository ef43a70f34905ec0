"""``qhytime calib``: list, show, add, import, export (and retract) calibrations."""

from __future__ import annotations

import json

import click

from qhytime.cli._common import (
    BINNING,
    CAL_ID,
    LINE_PERIOD_NS,
    OFFSET0_US,
    SIGMA_NS,
    SIGMA_US,
    Number,
    db_option,
    open_store,
)


@click.group()
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
        + (f" RETRACTED {c.retracted_at}: {c.retraction_reason}" if c.retracted else "")
    )


@calib.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include superseded calibrations (history).")
@click.option("--json", "as_json", is_flag=True)
@db_option
def calib_list(show_all: bool, as_json: bool, db: str | None) -> None:
    """Current calibrations (with --all: the whole history)."""
    with open_store(db) as store:
        cals = store.list(include_superseded=show_all)
    for c in cals:
        click.echo(json.dumps(c.to_dict()) if as_json else _cal_line(c))


@calib.command("show")
@click.argument("calibration_id", type=CAL_ID)
@db_option
def calib_show(calibration_id: int, db: str | None) -> None:
    """Every field of one calibration, with its provenance."""
    with open_store(db) as store:
        c = store.get(calibration_id)
    click.echo(json.dumps(c.to_dict(), indent=2))


@calib.command("add")
@click.option("--camera", "camera_model", required=True, help="Camera model, e.g. QHY600PRO.")
@click.option("--serial", default=None)
@click.option(
    "--readout-mode", required=True, help="Readout mode name (2CMS in it for single-row modes)."
)
@click.option("--roi", required=True, help="X,Y,WIDTH,HEIGHT on the sensor (unbinned).")
@click.option("--binning", type=BINNING, default=1, show_default=True)
@click.option("--bit-depth", type=click.Choice(["8", "16"]), default="16", show_default=True)
@click.option("--usb-traffic", type=Number(integer=True, lo=0, hi=255), default=0, show_default=True)
@click.option(
    "--stream-mode", type=click.Choice(["single", "live"]), default="single", show_default=True
)
@click.option("--global-reset", is_flag=True)
@click.option("--reference", type=click.Choice(["start", "end", "now"]), required=True)
@click.option("--offset0-us", type=OFFSET0_US, required=True)
@click.option("--offset0-sigma-us", type=SIGMA_US, default=0.0, show_default=True)
@click.option("--line-period-ns", type=LINE_PERIOD_NS, required=True)
@click.option("--line-period-sigma-ns", type=SIGMA_NS, default=0.0, show_default=True)
@click.option(
    "--method",
    type=click.Choice(["vendor", "SDK", "LED fit", "manual"]),
    default="manual",
    show_default=True,
)
@click.option("--measured-at", default="", help="When it was measured (ISO date or date-time).")
@click.option("--notes", default="")
@click.option("--provenance", default="")
@db_option
def calib_add(db: str | None, roi: str, bit_depth: str, **kw) -> None:  # type: ignore[no-untyped-def]
    """Add a calibration (it supersedes the current one of the same setting)."""
    from qhytime.api import Calibration, Setting

    try:
        x, y, w, h = (int(v) for v in roi.split(","))
    except ValueError:
        raise click.BadParameter(f"{roi!r}: give X,Y,WIDTH,HEIGHT (whole numbers)", param_hint="--roi") from None
    setting_keys = (
        "camera_model", "serial", "readout_mode", "binning", "usb_traffic", "stream_mode",
        "global_reset",
    )  # fmt: skip
    from qhytime.errors import CalibrationError

    try:
        setting = Setting(
            roi_x=x, roi_y=y, roi_width=w, roi_height=h, bit_depth=int(bit_depth),
            **{k: kw.pop(k) for k in setting_keys},
        )  # fmt: skip
        cal = Calibration(setting=setting, **kw)
    except CalibrationError as exc:  # option values out of range: a usage error
        raise click.UsageError(str(exc)) from None
    with open_store(db, write=True) as store:
        stored = store.add(cal)
    click.echo(_cal_line(stored))


@calib.command("import")
@click.argument("path", type=click.Path())
@db_option
def calib_import(path: str, db: str | None) -> None:
    """Import calibrations from a TOML file: all records or none (every one is checked first);
    a record already in the database is not added again. Each new one supersedes its
    setting's current one."""
    with open_store(db, write=True) as store:
        result = store.import_toml(path)
    for c in result.added:
        click.echo(_cal_line(c))
    click.echo(
        f"{len(result.added)} new, {len(result.already_present)} already present"
        + (
            f" (#{', #'.join(str(c.id) for c in result.already_present)})"
            if result.already_present
            else ""
        ),
        err=True,
    )


@calib.command("retract")
@click.argument("calibration_id", type=CAL_ID)
@click.option("--reason", required=True, help="Why it is withdrawn (kept in the history).")
@db_option
def calib_retract(calibration_id: int, reason: str, db: str | None) -> None:
    """Withdraw a calibration: the history keeps it, marked; lookups skip it, and its setting's
    current calibration becomes the newest one not retracted."""
    if not reason.strip():
        raise click.BadParameter("give a reason", param_hint="'--reason'")
    with open_store(db, write=True) as store:
        c = store.retract(calibration_id, reason)
        current = [x for x in store.list() if x.setting == c.setting]
    click.echo(_cal_line(c))
    click.echo(
        "current for this setting: "
        + (f"#{current[0].id}" if current else "none (lookups will find no calibration)"),
        err=True,
    )


@calib.command("export")
@click.option(
    "--id", "ids", type=CAL_ID, multiple=True,
    help="Calibration id (repeatable); default all current.",
)  # fmt: skip
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default=None, help="File (default stdout)."
)
@db_option
def calib_export(ids: tuple[int, ...], output: str | None, db: str | None) -> None:
    """Export calibrations as TOML, for sharing."""
    with open_store(db) as store:
        text = store.export_toml(list(ids) if ids else None)
    if output:
        from qhytime.atomic import write_text_atomic

        write_text_atomic(output, text)
    else:
        click.echo(text, nl=False)


COMMANDS = [calib]

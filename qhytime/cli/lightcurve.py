"""``qhytime lightcurve``: an occultation light curve timed at the target's own row, for PyOTE."""

from __future__ import annotations

import contextlib
import json
import math
import sys
from typing import Any

import click

from qhytime.cli._cluster import cluster_executor, cluster_options, worker_paths
from qhytime.cli._common import (
    Number,
    db_option,
    expand_paths,
    explicit_model,
    exposure_ns,
    model_options,
    open_store,
    output_path_problem,
    plot_path_problem,
    warn,
    warnings_as_messages,
)


class Point(click.ParamType):
    """``X,Y``: two finite numbers (0-based pixel centres).

    Examples
    --------
    >>> Point().convert("70,136.5", None, None)
    (70.0, 136.5)
    """

    name = "X,Y"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        parts = str(value).split(",")
        try:
            x, y = (float(p) for p in parts)
        except ValueError:
            self.fail(f"{value!r} is not X,Y (two numbers separated by a comma)", param, ctx)
        if not (math.isfinite(x) and math.isfinite(y)):
            self.fail(f"{value!r}: X and Y must be finite numbers", param, ctx)
        return (x, y)


class Radii(click.ParamType):
    """``R1,R2``: inner and outer annulus radii, 0 < R1 < R2 <= 500.

    Examples
    --------
    >>> Radii().convert("9,15", None, None)
    (9.0, 15.0)
    """

    name = "R1,R2"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        try:
            r1, r2 = (float(p) for p in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not R1,R2 (two radii separated by a comma)", param, ctx)
        if not (math.isfinite(r1) and math.isfinite(r2) and 0 < r1 < r2 <= 500):
            self.fail(f"{value!r}: the radii must satisfy 0 < R1 < R2 <= 500 px", param, ctx)
        return (r1, r2)


RADIUS = Number(lo=0.5, hi=200, unit="px")


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--target", required=True, type=Point(), help="Target star X,Y in the first frame (0-based; X column, Y row).")
@click.option("--comparison", "comparisons", multiple=True, type=Point(),
              help="Comparison star X,Y (repeat for more): comp1, comp2, ...")
@click.option("--aperture", "radius", type=RADIUS, default=5.0, show_default=True, help="Aperture radius (px).")
@click.option("--annulus", type=Radii(), default=None,
              help="Background annulus radii R1,R2 (px; default 1.8 and 3 aperture radii).")
@click.option("--fixed", is_flag=True, help="Keep apertures at the given positions (timed at those rows); default: track.")
@click.option("--search", type=RADIUS, default=None,
              help="Tracking: search half-size around the predicted position (px; default the aperture radius).")
@click.option("--time", "moment", type=click.Choice(["start", "mid", "end"]), default="start", show_default=True,
              help="Which moment of the row's exposure timeInfo gives (PyOTE assumes start).")
@model_options
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write the PyMovie CSV here (PyOTE reads it).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per frame (every aperture's exact times).")
@click.option("--events", is_flag=True, help="Fit D and R (square well over each sample's exact window).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Save a plot of the light curve (.png, .pdf, .svg, .jpg, .eps, .tif, .webp; no suffix: PNG).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@db_option
@cluster_options
def lightcurve(
    files: tuple[str, ...], target: tuple[float, float], comparisons: tuple[tuple[float, float], ...],
    radius: float, annulus: tuple[float, float] | None, fixed: bool, search: float | None, moment: str,
    calibration_id: int | None, offset0_us: float | None, line_period_ns: float | None,
    readout: str | None, reference: str | None, exposure_s: float | None, crop_y: int | None,
    binning: int | None, fallback: bool, output: str | None, as_json: bool, events: bool,
    plot_path: str | None, quiet: bool, db: str | None, dask_address: str | None,
    workers: int | None,
) -> None:  # fmt: skip
    """Light curve of a target (and comparison stars) over FITS sequences or SER files, every
    sample timed at the exposure window of the row under its aperture.

    FILES are FITS frames (one per file, in the order given; a folder gives its files in name
    order) and/or SER files. The timing is the calibration of the files' setting (looked up,
    or pinned with --calibration) or an explicit model. Frames whose own GPS time cannot be
    trusted are left out of the CSV and listed in its header; frames dropped from the
    sequence are listed there too (the frame after a gap keeps its own time).

    With --dask or --workers each file's blocks are decoded, and its frames measured and
    timed, by dask workers (fixed apertures: files in parallel; tracked ones: one file after
    another, each starting where the previous left the aperture); the result is the same.
    """
    from qhytime.occultation import fit_events, light_curve, plot_light_curve

    if annulus is not None and annulus[0] < radius:
        raise click.BadParameter(
            f"the annulus inner radius {annulus[0]:g} is inside the aperture (radius {radius:g})",
            param_hint="--annulus",
        )
    # Where the results go is checked before the light curve is computed, not after.
    if output and (problem := output_path_problem(output, "the light curve")):
        raise click.BadParameter(problem, param_hint="'-o' / '--output'")
    if plot_path and (problem := plot_path_problem(plot_path)):
        raise click.BadParameter(problem, param_hint="'--plot'")
    paths = expand_paths(files)
    model = explicit_model(offset0_us, line_period_ns, readout, reference, calibration_id)
    bar: Any = None
    if not quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=0, unit="frame", file=sys.stderr, leave=False, desc="lightcurve")

    def progress(done: int, more: int) -> None:
        if bar is None:
            return
        if more:
            bar.total += more
            bar.refresh()
        if done:
            bar.update(done)

    try:
        with (
            contextlib.nullcontext() if model is not None else open_store(db) as store,
            warnings_as_messages(),
            cluster_executor(dask_address, workers) as executor,
        ):
            lc = light_curve(
                worker_paths(paths, dask_address), target, comparisons, radius=radius,
                annulus=annulus, fixed=fixed, search=search, time=moment, model=model,
                store=store, calibration_id=calibration_id, fallback=fallback,
                exposure_ns=exposure_ns(exposure_s), crop_y=crop_y, binning=binning,
                progress=progress, executor=executor,
            )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    for t in lc.timing:
        click.echo(f"qhytime: timing: {t}", err=True)
    n_ok = int(lc.timed.sum())
    left = lc.left_out
    errors = [i for i in left if lc.status[i] == "error"]
    if lc.dropped:
        total = sum(d.count for _, d in lc.dropped)
        warn(f"{total} frame(s) dropped from the sequence numbers (" + "; ".join(
            f"{d.describe()} before {lc.where(i)}" for i, d in lc.dropped[:5]) + ")")  # fmt: skip
    for i in left[:10]:
        warn(f"{lc.where(i)} left out ({lc.status[i]}): " + "; ".join(lc.reasons[i]))
    if len(left) > 10:
        warn(f"... {len(left) - 10} more frames left out (see --json or the CSV header)")
    if output:
        rows = lc.write_csv(output, time=moment)
        click.echo(f"qhytime: wrote {output} ({rows} samples, timeInfo = {moment} of the target's row)", err=True)
    if as_json:
        for rec in lc.records():
            click.echo(json.dumps(rec))
    elif not (output or events or plot_path):
        _table(lc, moment)
    fit = None
    event_error = None
    if events:
        from qhytime.errors import OccultationError

        try:
            fit = fit_events(lc)
        except OccultationError as exc:
            event_error = str(exc)
        if as_json:
            click.echo(json.dumps({"events": fit.to_dict() if fit else {"error": event_error}}))
        if fit is not None:
            for line in fit.summary():
                click.echo(line, err=as_json)
        else:
            click.echo(f"qhytime: events: {event_error}", err=True)
    if plot_path:
        plot_light_curve(lc, fit, plot_path)
        click.echo(f"qhytime: wrote {plot_path}", err=True)
    if n_ok == 0:
        click.echo("qhytime: no frame could be timed and measured", err=True)
    if errors or n_ok == 0 or event_error:
        sys.exit(1)


def _table(lc: Any, moment: str) -> None:
    from qhytime.occultation.pymovie import time_info

    names = lc.names
    click.echo(f"{'frame':>7}  {'status':<7}  {moment + ' (UTC)':<18}  " + "  ".join(f"{n:>12}" for n in names))
    times = lc.target.times_ns(moment)
    for i in range(len(lc)):
        t = time_info(int(times[i])) if lc.status[i] == "ok" else "-"
        vals = "  ".join(f"{a.signal[i]:12.1f}" for a in lc.apertures)
        click.echo(f"{int(lc.index[i]):>7}  {lc.status[i]:<7}  {t:<18}  {vals}")


COMMANDS = [lightcurve]

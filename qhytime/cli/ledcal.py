"""``qhytime ledcal``: offset0, line period and exposure from frames of an LED pulse, and
``qhytime ledcal plan``: a schedule of pulse delays for such a scan.

``ledcal`` is a group whose bare form (``qhytime ledcal [OPTIONS] FRAMES...``) is its ``fit``
command, so the fit's command line is the same as before the plan existed.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

import click

from qhytime.cli._common import (
    BINNING,
    CROP_Y,
    EXPOSURE_S,
    LINE_PERIOD_NS,
    OFFSET0_US,
    Number,
    db_option,
    empty_folders,
    expand_paths,
    fail,
    in_flags,
    open_store,
    plot_path_problem,
    reword,
    warn,
    writable_db,
)

PULSE_START_US = Number(lo=-1e7, hi=1e7, unit="us")
PULSE_WIDTH_US = Number(lo=0, lo_open=True, hi=1e7, unit="us")
PPS_DELAY_US = Number(lo=-1e6, hi=1e6, unit="us")


class _FitByDefault(click.Group):
    """A group that runs its ``fit`` command when the first argument names no command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["fit", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_FitByDefault, context_settings={"help_option_names": ["-h", "--help"]})
def ledcal() -> None:
    """LED calibration: measure offset0, line period and exposure (`qhytime ledcal [fit]
    FRAMES...`), or plan a scan (`qhytime ledcal plan ...`).

    \b
    qhytime ledcal --pulses pulses.csv --reference end scan/*.fits --store
    qhytime ledcal plan --exposure-us 345.552 --line-period-ns 43194 --readout pairs -o pulses.csv
    """


@ledcal.command("fit")
@click.argument("frames", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option(
    "--pulses",
    "pulses_csv",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="CSV: file, pulse_start_us (relative to the reference stamp), pulse_width_us; several "
    "lines per file make a pulse train (`qhytime ledcal plan -o` writes one).",
)
@click.option("--pulse-start-us", type=PULSE_START_US, default=None,
              help="One pulse start for every frame (us after the reference stamp).")  # fmt: skip
@click.option("--pulse-width-us", type=PULSE_WIDTH_US, default=None, help="Its width (us).")
@click.option("--pps-width-us", type=PULSE_WIDTH_US, default=None,
              help="A GPS-PPS-driven LED: pulse width (us); pulses at whole UTC seconds.")  # fmt: skip
@click.option("--pps-delay-us", type=PPS_DELAY_US, default=0.0, show_default=True,
              help="PPS LED: delay after the whole second (us).")  # fmt: skip
@click.option("--readout", type=click.Choice(["pairs", "2cms"]), default=None,
              help="Default: 2cms when READOUTM says so, else pairs.")  # fmt: skip
@click.option("--reference", type=click.Choice(["start", "end", "now"]), default="end",
              show_default=True, help="The stamp pulse starts are relative to.")  # fmt: skip
@click.option("--line-period-ns", type=LINE_PERIOD_NS, default=None,
              help="Nominal line period (default QHY_LP, else estimated from the scan).")  # fmt: skip
@click.option("--exposure-s", type=EXPOSURE_S, default=None,
              help="Nominal exposure (default QHY_EXP/EXPTIME).")  # fmt: skip
@click.option("--crop-y", type=CROP_Y, default=None,
              help="Sensor row of the image's first row (default CROPOFFY, else 0).")  # fmt: skip
@click.option("--binning", type=BINNING, default=None, help="Binning (default XBINNING, else 1).")
@click.option(
    "--bias",
    "bias_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Bias/dark frames (repeatable): their mean row profile (banding included) is subtracted.",
)
@click.option("--illumination-degree", type=Number(integer=True, lo=0, hi=8), default=4,
              show_default=True, help="Degree of the light profile over the rows (0: flat).")  # fmt: skip
@click.option("--no-banding", is_flag=True, help="Do not estimate a row banding pattern.")
@click.option("--clip-sigma", type=Number(lo=3, hi=1000), default=5.0, show_default=True,
              help="Pixels this many sigmas off their row's light profile are cosmic rays.")  # fmt: skip
@click.option("--max-chi2", type=Number(lo=1, hi=1e6), default=5.0, show_default=True,
              help="A fit with a larger reduced chi2 is an error, not a result.")  # fmt: skip
@click.option("--store", "store_it", is_flag=True,
              help="Store the result as a calibration (supersedes the current one).")  # fmt: skip
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Write residuals, profiles and diagnostics (PNG/PDF/SVG; needs the plot extra).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Rejected frames, then the result, as JSON lines.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@db_option
def fit(
    frames: tuple[str, ...], pulses_csv: str | None, pulse_start_us: float | None,
    pulse_width_us: float | None, pps_width_us: float | None, pps_delay_us: float,
    readout: str | None, reference: str, line_period_ns: float | None, exposure_s: float | None,
    crop_y: int | None, binning: int | None, bias_files: tuple[str, ...],
    illumination_degree: int, no_banding: bool, clip_sigma: float, max_chi2: float,
    store_it: bool, plot_path: str | None, as_json: bool, quiet: bool, db: str | None,
) -> None:  # fmt: skip
    """Measure offset0, line period and exposure from FRAMES of an LED pulse (files or folders).

    Frames that cannot be read, are saturated, show no band or whose residuals stand out
    are listed with the reason; the exit code is 1 when a file could not be read (the fit
    of the others is still made) or the scan cannot be fitted (nothing is stored).
    """
    from tqdm import tqdm

    from qhytime.ledcal import fit_led, load_scan, plot_fit, read_bias, read_pulses_csv

    sources = [pulses_csv is not None, pulse_start_us is not None, pps_width_us is not None]
    if sum(sources) != 1:
        raise click.UsageError(
            "give exactly one of --pulses, --pulse-start-us (with --pulse-width-us), --pps-width-us"
        )
    if pulse_start_us is not None and pulse_width_us is None:
        raise click.UsageError("--pulse-start-us needs --pulse-width-us")
    if pulse_width_us is not None and pulse_start_us is None:
        raise click.UsageError("--pulse-width-us goes with --pulse-start-us")
    if plot_path and (problem := plot_path_problem(plot_path)):
        raise click.BadParameter(problem, param_hint="--plot")
    if store_it:
        writable_db(db)  # refused before the fit, not after it
    if empty := empty_folders(frames):
        raise click.BadParameter(
            f"no FITS/SER files (.fits, .fit, .fts, .fz, .ser) found in the folder "
            f"{', '.join(empty)}: give the folder that holds the LED scan's frames, or the "
            "frame files themselves",
            param_hint="FRAMES",
        )
    bias = read_bias(bias_files, clip_sigma=clip_sigma) if bias_files else None
    pulses = read_pulses_csv(pulses_csv) if pulses_csv else None
    paths = expand_paths(frames)
    bar = tqdm(paths, unit="file", file=sys.stderr, disable=quiet or not sys.stderr.isatty(),
               desc="reading frames", leave=False)  # fmt: skip
    scan, rejected, info = load_scan(
        bar, pulses=pulses, pulse_start_us=pulse_start_us, pulse_width_us=pulse_width_us,
        pps_width_us=pps_width_us, pps_delay_us=pps_delay_us, reference=reference,  # type: ignore[arg-type]
        crop_y=crop_y, binning=binning, bias=bias, clip_sigma=clip_sigma,
    )  # fmt: skip
    setting = info.get("setting")
    mode = readout or (setting.readout if setting is not None else "pairs")
    exp_ns = round(exposure_s * 1e9) if exposure_s is not None else info.get("exposure_ns")
    result = in_flags(
        LEDCAL_FLAGS, fit_led,
        scan, readout=mode, reference=reference,  # type: ignore[arg-type]
        line_period_ns=line_period_ns or info.get("line_period_ns"), exposure_ns=exp_ns,
        rejected=rejected, pps=info.get("pps"), illumination_degree=illumination_degree,
        banding=not no_banding, max_reduced_chi2=max_chi2,
    )  # fmt: skip
    problems: list[str] = []
    if plot_path:
        try:
            plot_fit(result, plot_path)
        except Exception as exc:  # a plot that fails is reported; the fit stands
            problems.append(f"the plot was not written: {exc}")
    stored = None
    if store_it:
        if setting is None:
            fail("cannot store: no frame told its camera setting")
        import dataclasses
        import datetime as dt

        setting = dataclasses.replace(setting, is_2cms=(mode == "2cms"))
        with open_store(db, write=True) as store:
            stored = store.add(result.to_calibration(setting, measured_at=dt.date.today().isoformat()))
    failed = list(dict.fromkeys(info.get("failed", [])))
    if failed:
        problems.append(f"{len(failed)} file(s) could not be read, wholly or partly "
                        f"({', '.join(failed[:3])}{' ...' if len(failed) > 3 else ''}): the fit "
                        "uses the others")  # fmt: skip
    _print_fit(result, reference, mode, stored, as_json)
    if problems:
        for p in problems[:-1]:
            warn(p)
        fail(problems[-1])


# fit_led's words for what to check, and the flags that set it here
LEDCAL_FLAGS = (("readout=", "--readout"), ("reference=", "--reference"), ("plot_fit()", "--plot"))


def ledcal_words(text: str) -> str:
    """A library message with the arguments it names replaced by this command's flags.

    Examples
    --------
    >>> ledcal_words("check the pulse list, readout= and reference=")
    'check the pulse list, --readout and --reference'
    """
    return reword(text, LEDCAL_FLAGS)


def _print_fit(result: Any, reference: str, mode: str, stored: Any, as_json: bool) -> None:
    out = result.to_dict()
    if stored is not None:
        out["calibration_id"] = stored.id
    if as_json:
        for name, reason in result.frames_rejected:
            click.echo(json.dumps({"rejected": name, "reason": reason}))
        click.echo(json.dumps(out))
        return
    dg = result.diagnostics
    click.echo(f"frames used {len(result.frames_used)}, rejected {len(result.frames_rejected)}")
    for name, reason in result.frames_rejected:
        click.echo(f"  rejected {name}: {reason}")
    click.echo(f"offset0      {result.offset0_us:16.7f} +/- {result.offset0_sigma_us:.7f} us   "
               f"(from the {reference} stamp, {mode})")  # fmt: skip
    click.echo(f"line period  {result.line_period_ns:16.6f} +/- {result.line_period_sigma_ns:.6f} ns")
    click.echo(f"exposure     {result.exposure_us:16.7f} +/- {result.exposure_sigma_us:.7f} us")
    click.echo(f"residual RMS {result.residual_rms_us * 1e3:.3f} ns, reduced chi2 {result.reduced_chi2:.2f}")
    xg = dg.illumination_x_percent
    click.echo(
        f"LED level {dg.led_level_adu:.0f} ADU: drift +/-{dg.led_drift_percent:.1f} %, jitter "
        f"{dg.led_jitter_percent:.1f} % rms; light +/-{dg.illumination_rows_percent:.1f} % over "
        f"the rows, " + (f"+/-{abs(xg):.1f} % along x" if math.isfinite(xg) else "n/a along x")
    )
    click.echo(
        f"bias drift +/-{dg.bias_drift_adu:.2f} ADU, banding {dg.banding_rms_adu:.2f} ADU rms, row "
        f"noise {dg.row_noise_adu:.2f} ADU rms; {dg.cosmic_ray_pixels} cosmic-ray pixels rejected"
    )
    if stored is not None:
        click.echo(
            f"stored as calibration #{stored.id}"
            + (f" (supersedes #{stored.supersedes})" if stored.supersedes else "")
        )


@ledcal.command("plan")
@click.option("--exposure-us", type=Number(lo=0, lo_open=True, hi=1e7, unit="us"), required=True,
              help="Exposure of the scan's frames (us).")  # fmt: skip
@click.option("--line-period-ns", type=LINE_PERIOD_NS, required=True,
              help="Nominal line period (ns), e.g. QHY_LP.")  # fmt: skip
@click.option("--readout", type=click.Choice(["pairs", "2cms"]), required=True)
@click.option("--frames", "n_frames", type=Number(integer=True, lo=3, hi=10_000), default=60,
              show_default=True)  # fmt: skip
@click.option("--pulse-width-us", type=PULSE_WIDTH_US, default=None,
              help="Default: the shortest pulse that lights partly lit rows in every frame.")  # fmt: skip
@click.option("--rows", type=Number(integer=True, lo=4, hi=100_000), default=200, show_default=True,
              help="Image rows of the strip read out.")  # fmt: skip
@click.option("--crop-y", type=CROP_Y, default=0, show_default=True, help="Its first sensor row.")
@click.option("--binning", type=BINNING, default=1, show_default=True)
@click.option("--offset0-us", type=OFFSET0_US, default=None,
              help="Nominal offset0 (default: the vendor's figure, or the SDK's from now).")  # fmt: skip
@click.option("--reference", type=click.Choice(["start", "end", "now"]), default="end",
              show_default=True)  # fmt: skip
@click.option("--led-adu", type=Number(lo=0, lo_open=True, hi=1e7), default=40_000.0,
              show_default=True, help="LED signal of a fully lit pixel (ADU).")  # fmt: skip
@click.option("--read-noise-adu", type=Number(lo=0, hi=1e5), default=3.0, show_default=True)
@click.option("--width-px", type=Number(integer=True, lo=1, hi=1_000_000), default=9576,
              show_default=True, help="Pixels per row.")  # fmt: skip
@click.option("--row-noise-adu", type=Number(lo=0, hi=1e5), default=0.0, show_default=True,
              help="Random offset of each row (changing banding), ADU rms.")  # fmt: skip
@click.option("--gain-e-per-adu", type=Number(lo=0, lo_open=True, hi=1e5), default=1.0,
              show_default=True)  # fmt: skip
@click.option("--names", default="frame_{i:04d}.fits", show_default=True,
              help="File names of the frames, a pattern of i (as `qhytime demo`/the simulator write them).")  # fmt: skip
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Write the schedule as the pulse CSV `qhytime ledcal --pulses` reads.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON object per frame, then the summary.")
def plan(
    exposure_us: float, line_period_ns: float, readout: str, n_frames: int,
    pulse_width_us: float | None, rows: int, crop_y: int, binning: int, offset0_us: float | None,
    reference: str, led_adu: float, read_noise_adu: float, width_px: int, row_noise_adu: float,
    gain_e_per_adu: float, names: str, out_path: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Plan an LED scan: a pulse delay per frame that steps evenly through the readout unit's
    phase and lights partly lit rows in every frame, with the sigma the fit will reach."""
    from qhytime.ledplan import plan_scan

    if out_path:
        parent = os.path.dirname(os.path.abspath(out_path))
        if not os.path.isdir(parent):
            raise click.BadParameter(f"folder {parent} does not exist", param_hint="--out")
    p = plan_scan(
        exposure_us=exposure_us, line_period_ns=line_period_ns, readout=readout,  # type: ignore[arg-type]
        frames=n_frames, pulse_width_us=pulse_width_us, rows=rows, crop_y=crop_y, binning=binning,
        offset0_us=offset0_us, reference=reference, led_adu=led_adu,  # type: ignore[arg-type]
        read_noise_adu=read_noise_adu, width_px=width_px, row_noise_adu=row_noise_adu,
        gain_e_per_adu=gain_e_per_adu, names=names,
    )  # fmt: skip
    if out_path:
        try:
            p.write_csv(out_path)
        except OSError as exc:
            fail(f"{out_path}: cannot write the schedule: {exc.strerror or exc}")
    for w in p.warnings:
        warn(w)
    if as_json:
        for i, name in enumerate(p.names):
            click.echo(json.dumps({"frame": i, "file": name, "pulse_start_us": round(float(p.pulse_start_us[i]), 6),
                                   "pulse_width_us": p.pulse_width_us, "band_row": int(p.band_row[i]),
                                   "phase": round(float(p.phase[i]), 4)}))  # fmt: skip
        click.echo(json.dumps(p.to_dict()))
        return
    u = p.unit_us
    click.echo(
        f"LED scan plan: {len(p.names)} frames, {readout}, exposure {p.exposure_us:.3f} us = "
        f"{p.exposure_us / u:.3f} readout units of {u:.3f} us, pulse {p.pulse_width_us:.3f} us"
    )
    click.echo(
        f"delays from the {reference} stamp, placed with offset0 {p.offset0_us:.3f} us; rows "
        f"{p.crop_y}..{p.crop_y + p.rows * p.binning - 1}; partly lit rows at "
        f"{100 * p.coverage:.0f} % of the phases"
    )
    lo, hi = p.sigma_offset0_range_ns
    if math.isfinite(p.sigma_offset0_ns) and math.isfinite(hi):
        click.echo(
            f"predicted sigma: offset0 {p.sigma_offset0_ns / 1e3:.7f} us ({lo / 1e3:.7f}..{hi / 1e3:.7f} "
            f"us as offset0 falls in its unit), line period {p.sigma_line_period_ns:.6f} ns, "
            f"exposure {p.sigma_exposure_ns / 1e3:.7f} us"
        )
    else:
        click.echo("predicted sigma: not constrained by this schedule (see the warnings)")
    click.echo(
        f"  for an LED of {led_adu:g} ADU, read noise {read_noise_adu:g} ADU, {width_px} pixels per "
        f"row, row noise {row_noise_adu:g} ADU"
    )
    width = max(len(n) for n in p.names)
    click.echo(f"{'frame':>5}  {'file':<{width}}  {'pulse_start_us':>16}  {'pulse_width_us':>14}  {'band_row':>8}  {'phase':>6}")
    for i, name in enumerate(p.names):
        click.echo(f"{i:>5}  {name:<{width}}  {p.pulse_start_us[i]:16.6f}  {p.pulse_width_us:14.6f}  "
                   f"{int(p.band_row[i]):>8}  {p.phase[i]:6.3f}")  # fmt: skip
    if out_path:
        click.echo(f"schedule written to {out_path}")


COMMANDS = [ledcal]

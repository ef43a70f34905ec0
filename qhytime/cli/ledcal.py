"""``qhytime ledcal``: offset0, line period and exposure from frames of an LED pulse."""

from __future__ import annotations

import json

import click

from qhytime.cli._common import db_option, fail, open_store


@click.command()
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
@db_option
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
        fail(str(exc))
        return
    stored = None
    if store_it:
        if setting is None:
            fail("cannot store: no frame told its camera setting")
            return
        import dataclasses
        import datetime as dt

        setting = dataclasses.replace(setting, is_2cms=(mode == "2cms"))
        with open_store(db) as store:
            stored = store.add(fit.to_calibration(setting, measured_at=dt.date.today().isoformat()))
    if plot_path:
        try:
            plot_fit(fit, plot_path)
        except QhytimeError as exc:
            fail(str(exc))
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


COMMANDS = [ledcal]

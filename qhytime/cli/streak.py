"""``qhytime streak``: satellite trails and point sources to timed sky positions, IOD, ADES."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

import click

from qhytime.cli._common import (
    FRAME_INDEX,
    Number,
    db_option,
    explicit_model,
    exposure_ns,
    fail,
    in_flags,
    model_options,
    open_store,
    reword,
    warn,
    warnings_as_messages,
)

INTERIOR_POINTS = Number(integer=True, lo=0, hi=10_000)
SIGMA_PX = Number(lo=0, lo_open=True, hi=1000, unit="px")
HEIGHT_M = Number(lo=-500, hi=100_000, unit="m")
APERTURE_M = Number(lo=0, lo_open=True, hi=100, unit="m")
NORAD = Number(integer=True, lo=1, hi=99_999)


def parse_numbers(text: str, n: int, option: str) -> list[float]:
    """``"1.5,2,3,4"`` into ``n`` finite numbers (a usage error otherwise).

    Examples
    --------
    >>> parse_numbers("10,20.5", 2, "--point")
    [10.0, 20.5]
    """
    parts = [p.strip() for p in text.split(",")]
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) != n or not all(math.isfinite(v) for v in vals):
        raise click.BadParameter(
            f"{text!r} is not {n} comma-separated numbers", param_hint=f"'{option}'"
        )
    return vals


# measure_streak's and ades_psv's words for what to give, and the flags that give it here
STREAK_FLAGS = (
    ("first=1|2", "--first 1|2"),
    ("next_path=", "--next FRAME2"),
    ("next_frame=", "--next-frame "),
    ("tle=", "--tle FILE"),
    ("wcs=", "--wcs FILE"),
    ("art_sat= (an artificial satellite, e.g. 1998-067A)",
     "--cospar (an artificial satellite, e.g. 98067A)"),
    ("perm_id=", "--perm-id"),
    ("prov_id=", "--prov-id"),
    ("trk_sub=", "--trksub"),
)  # fmt: skip


def streak_words(text: str) -> str:
    """A library message with the arguments it asks for replaced by this command's flags.

    Examples
    --------
    >>> streak_words("give first=1|2, next_path= or tle=")
    'give --first 1|2, --next FRAME2 or --tle FILE'
    """
    return reword(text, STREAK_FLAGS)


def _clean(v: Any) -> Any:
    """NaN and infinities to None, recursively (JSON has neither)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


@click.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--frame", type=FRAME_INDEX, default=0, show_default=True,
              help="0-based frame index in the file.")
@click.option("--ends", "ends_text", metavar="X1,Y1,X2,Y2", default=None,
              help="The trail's two ends (0-based pixel centres).")
@click.option("--first", type=click.Choice(["1", "2"]), default=None,
              help="Which of the --ends came first in time (else from --next or --tle).")
@click.option("--detect", is_flag=True, help="Find the trails in the frame.")
@click.option("--point", "point_texts", metavar="X,Y", multiple=True,
              help="A point source (asteroid, comet, slow satellite), timed at its row's "
                   "middle; repeatable.")
@click.option("--next", "next_path", type=click.Path(dir_okay=False), default=None,
              help="The next frame: the end nearer the object's trail there came last.")
@click.option("--next-frame", type=FRAME_INDEX, default=0, show_default=True,
              help="Frame index in the --next file.")
@model_options
@click.option("--allow-invalid", is_flag=True, help="Time a frame whose GPS time is flagged.")
@click.option("--wcs", "wcs_path", type=click.Path(dir_okay=False), default=None,
              help="Plate solution (FITS or text header); default the frame's own header.")
@click.option("--points", "n_points", type=INTERIOR_POINTS, default=0, show_default=True,
              help="Interior points per trail, evenly spaced (fractions k/(N+1)).")
@click.option("--position-sigma-px", type=SIGMA_PX, default=0.5, show_default=True,
              help="1-sigma of given ends and points.")
@click.option("--systematic-px", type=Number(lo=0, hi=10, unit="px"), default=0.05,  # SYSTEMATIC_PX
              show_default=True,
              help="Systematic along-track 1-sigma added to detected ends (0: statistical only).")
@click.option("--iod", "iod_out", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write IOD lines to FILE ('-' for standard output).")
@click.option("--ades", "ades_out", type=click.Path(dir_okay=False, allow_dash=True),
              default=None, help="Write ADES PSV to FILE ('-' for standard output).")
@click.option("--station", default=None,
              help="Station: IOD station number (4 digits) and ADES stn / MPC code.")
@click.option("--norad", type=NORAD, default=None, help="NORAD catalogue number (IOD).")
@click.option("--cospar", default=None,
              help="International designator, e.g. 98067A (IOD; ADES artSat).")
@click.option("--sky-condition", type=click.Choice(list("EGFPBT")), default="G",
              show_default=True, help="IOD station status (sky condition).")
@click.option("--perm-id", default=None, help="ADES permID (numbered minor planet).")
@click.option("--prov-id", default=None, help="ADES provID (provisional designation).")
@click.option("--trksub", default=None, help="ADES trkSub (your tracklet id, up to 8 chars).")
@click.option("--observer", "observers", multiple=True,
              help="ADES observer name (repeatable; default 'A. Observer').")
@click.option("--measurer", "measurers", multiple=True,
              help="ADES measurer name (repeatable; default the observers).")
@click.option("--submitter", default=None, help="ADES submitter (default the first observer).")
@click.option("--telescope", default="Reflector", show_default=True,
              help="ADES telescope design.")
@click.option("--aperture", type=APERTURE_M, default=0.2, show_default=True,
              help="ADES telescope aperture (m).")
@click.option("--detector", default="CMO", show_default=True, help="ADES detector.")
@click.option("--ast-cat", default="Gaia3", show_default=True,
              help="ADES astCat: the plate solution's star catalogue.")
@click.option("--tle", "tle_path", type=click.Path(dir_okay=False), default=None,
              help="Check the points against this TLE (needs the sat extra).")
@click.option("--height-m", type=HEIGHT_M, default=0.0, show_default=True,
              help="Observer's height for --tle (the GPS block gives latitude, longitude).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per point per line.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Plot the cut-out with the trail and its times (needs the plot extra).")
@db_option
def streak(
    path: str, frame: int, ends_text: str | None, first: str | None, detect: bool,
    point_texts: tuple[str, ...], next_path: str | None, next_frame: int,
    calibration_id: int | None, offset0_us: float | None, line_period_ns: float | None,
    readout: str | None, reference: str | None, exposure_s: float | None, crop_y: int | None,
    binning: int | None, fallback: bool, allow_invalid: bool, wcs_path: str | None,
    n_points: int, position_sigma_px: float, systematic_px: float, iod_out: str | None,
    ades_out: str | None,
    station: str | None, norad: int | None, cospar: str | None, sky_condition: str,
    perm_id: str | None, prov_id: str | None, trksub: str | None,
    observers: tuple[str, ...], measurers: tuple[str, ...], submitter: str | None,
    telescope: str, aperture: float, detector: str, ast_cat: str, tle_path: str | None,
    height_m: float, as_json: bool, plot_path: str | None, db: str | None,
) -> None:  # fmt: skip
    """Time a satellite streak (or point sources) on a rolling-shutter frame.

    The first end of a trail in time is exposed at its row's start, the last at its row's
    end, points between uniformly in time (../shared/spec/streak-timing.md). Give the ends
    with --ends and --first (or --next / --tle to tell the order), or --detect with --next
    FRAME2 (or --tle); or point sources with --point. RA/Dec come from the frame's WCS (or
    --wcs); --iod and --ades write the timed points; --tle checks them against an orbit.
    """
    modes = (ends_text is not None) + detect + bool(point_texts)
    if modes != 1:
        raise click.UsageError("give exactly one of --ends, --detect, --point")
    if first is not None and ends_text is None:
        raise click.UsageError("--first goes with --ends (it says which of them came first)")
    ends = parse_numbers(ends_text, 4, "--ends") if ends_text is not None else None
    pts = [parse_numbers(t, 2, "--point") for t in point_texts]
    if iod_out is not None and (station is None or norad is None or cospar is None):
        raise click.UsageError("--iod needs --station, --norad and --cospar")
    if ades_out is not None and station is None:
        raise click.UsageError("--ades needs --station (the MPC observatory code)")
    model = explicit_model(offset0_us, line_period_ns, readout, reference, calibration_id)
    from qhytime.satellite.streak import measure_streak

    with (
        contextlib.nullcontext() if model is not None else open_store(db) as store,
        warnings_as_messages(),
    ):
        result = in_flags(
            STREAK_FLAGS,
            measure_streak,
            path, frame, ends=ends, first=int(first) if first else None, detect=detect,
            point_sources=pts, next_path=next_path, next_frame=next_frame, model=model,
            store=store, calibration_id=calibration_id, fallback=fallback,
            exposure_ns=exposure_ns(exposure_s), crop_y=crop_y, binning=binning,
            allow_invalid=allow_invalid, wcs=wcs_path, n_interior=n_points,
            position_sigma_px=position_sigma_px, systematic_px=systematic_px, tle=tle_path,
            height_m=height_m,
        )  # fmt: skip
    if result.reasons:
        warn(f"{path}, frame {frame}: flagged: " + "; ".join(result.reasons))
    if result.lookup is not None:
        click.echo(f"qhytime: {path}: {result.lookup.describe()}", err=True)
    for note in result.notes:
        warn(streak_words(note))
    timed_sky = [p for p in result.timed if p.ra_deg is not None]
    if iod_out is not None:
        _write_iod(result, timed_sky, iod_out, station, norad, cospar, sky_condition)  # type: ignore[arg-type]
    if ades_out is not None:
        _write_ades(timed_sky, ades_out, station, cospar, perm_id, prov_id, trksub, observers,  # type: ignore[arg-type]
                    measurers, submitter, telescope, aperture, detector, ast_cat)  # fmt: skip
    if plot_path:
        _plot(result, path, frame, plot_path, tle_path, height_m)
    to_stdout = "-" in (iod_out, ades_out)
    if as_json:
        for rec in result.records():
            click.echo(json.dumps(_clean(rec)))
        if result.orbit is not None:
            click.echo(json.dumps(_clean({"orbit_check": result.orbit.summary()})))
        return
    if to_stdout:
        return
    _table(result)


def _table(result: Any) -> None:
    click.echo(f"{'kind':<9}{'trail':>5}{'x':>10}{'y':>10}{'row':>6}  {'time (UTC)':<29} "
               f"{'sigma':>10}  {'RA (deg)':>12} {'Dec (deg)':>12}  flags")  # fmt: skip
    for p in result.points:
        sig = _duration(p.sigma_ns)
        ra = f"{p.ra_deg:12.7f}" if p.ra_deg is not None else f"{'-':>12}"
        dec = f"{p.dec_deg:+12.7f}" if p.dec_deg is not None else f"{'-':>12}"
        click.echo(f"{p.kind:<9}{p.trail:>5}{p.x:>10.3f}{p.y:>10.3f}{p.row:>6}  "
                   f"{(p.utc or '-'):<29} {sig:>10}  {ra} {dec}  {','.join(p.flags)}")  # fmt: skip
    if result.orbit is not None:
        o = result.orbit
        click.echo("")
        click.echo(f"orbit check against {o.tle.name or 'the TLE'} (NORAD {o.tle.norad}), "
                   f"observer {o.observer.latitude_deg:.5f}, {o.observer.longitude_deg:.5f}, "
                   f"{o.observer.height_m:.0f} m")  # fmt: skip
        click.echo(f"{'kind':<9}{'time (UTC)':<30}{'along':>11}{'cross':>11}{'time offset':>14}")
        for op in o.points:
            from qhytime.timebase import unix_ns_to_iso

            click.echo(f"{op.kind:<9}{unix_ns_to_iso(op.unix_ns):<30}{op.along_arcsec:>9.2f}\" "
                       f"{op.cross_arcsec:>9.2f}\" {op.time_offset_s * 1e3:>11.3f} ms")  # fmt: skip
        s = o.summary()
        click.echo(
            f"time offset (reported - orbit) over {s['count']} independent point(s): mean "
            f"{s['time_offset_mean_s'] * 1e3:.3f} ms, std {s['time_offset_std_s'] * 1e3:.3f} ms, "
            f"standard error {s['time_offset_sem_s'] * 1e3:.3f} ms"
        )
        click.echo(
            f"the TLE is {s['tle_age_days']:.2f} d from its epoch: its own along-track error is "
            f"typically ~{s['tle_time_error_s'] * 1e3:.0f} ms of time (a fresh TLE checks "
            "gross errors; milliseconds need a precise orbit)"
        )


def _duration(ns: float | None) -> str:
    """A sigma for people: ms, us or ns.

    Examples
    --------
    >>> _duration(1_155_000.0), _duration(2_500.0), _duration(28.9), _duration(None)
    ('  1.155 ms', '  2.500 us', '   28.9 ns', '-')
    """
    if ns is None:
        return "-"
    if ns >= 100_000:
        return f"{ns / 1e6:7.3f} ms"
    return f"{ns / 1e3:7.3f} us" if ns >= 1_000 else f"{ns:7.1f} ns"


def _emit(text: str, dest: str) -> None:
    if dest == "-":
        click.echo(text, nl=False)
        return
    from qhytime.atomic import write_text_atomic

    try:
        write_text_atomic(dest, text)
    except OSError as exc:  # an OutputError names the file and says why
        fail(str(exc) if getattr(exc, "path", None) else f"cannot write {dest}: {exc.strerror or exc}")


def _write_iod(result: Any, timed: list[Any], dest: str, station: str, norad: int, cospar: str,
               sky: str) -> None:  # fmt: skip
    from qhytime.satellite.iod import iod_line

    if result.wcs is None:
        fail(f"{result.path}: IOD lines need RA/Dec and the frame has no WCS: give --wcs FILE")
    if not timed:
        fail(f"{result.path}: no timed point to write as IOD (see the warnings)")
    lines = [
        iod_line(norad=norad, cospar=cospar, station=station, unix_ns=p.unix_ns,
                 sigma_s=p.sigma_ns / 1e9, ra_deg=p.ra_deg, dec_deg=p.dec_deg,
                 position_sigma_arcsec=p.sigma_sky_arcsec or 0.0, status=sky)
        for p in sorted(timed, key=lambda q: q.unix_ns)
    ]  # fmt: skip
    _emit("\n".join(lines) + "\n", dest)


def _write_ades(timed: list[Any], dest: str, station: str, cospar: str | None,
                perm_id: str | None, prov_id: str | None, trksub: str | None,
                observers: tuple[str, ...], measurers: tuple[str, ...], submitter: str | None,
                telescope: str, aperture: float, detector: str, ast_cat: str) -> None:  # fmt: skip
    from qhytime.satellite.ades import AdesContext, AdesObject, ades_psv
    from qhytime.satellite.iod import cospar_to_artsat

    if not timed:
        fail("no timed point with a sky position to write as ADES (see the warnings)")
    obj = AdesObject(art_sat=cospar_to_artsat(cospar) if cospar else None, perm_id=perm_id,
                     prov_id=prov_id, trk_sub=trksub)  # fmt: skip
    ctx = AdesContext(station=station, observers=observers or ("A. Observer",),
                      measurers=measurers, submitter=submitter, telescope=telescope,
                      aperture_m=aperture, detector=detector, ast_cat=ast_cat)  # fmt: skip
    recs = [(p.unix_ns, p.sigma_ns / 1e9, p.ra_deg, p.dec_deg, p.sigma_sky_arcsec or 0.0)
            for p in sorted(timed, key=lambda q: q.unix_ns)]  # fmt: skip
    _emit(in_flags(STREAK_FLAGS, ades_psv, recs, ctx, obj), dest)


def _plot(result: Any, path: str, frame: int, plot_path: str, tle_path: str | None,
          height_m: float) -> None:  # fmt: skip
    import numpy as np

    from qhytime.readers import open_frames
    from qhytime.satellite.plot import plot_streak

    with open_frames(path) as reader:
        image = reader.image(frame)
    predicted = None
    if tle_path is not None and result.wcs is not None:
        from qhytime.satellite.orbit import Observer, load_tle, predicted_pixels

        clock = result.clock
        t0, t1 = clock.start_ns(0), clock.end_ns(clock.height - 1)
        ts = np.linspace(t0, t1, 50).astype(np.int64)
        lat, lon = result.observer
        predicted = predicted_pixels(load_tle(tle_path), Observer(lat, lon, height_m), result.wcs, ts)
    fig = plot_streak(result, image, plot_path, predicted=predicted)
    import matplotlib.pyplot as plt

    plt.close(fig)


COMMANDS = [streak]

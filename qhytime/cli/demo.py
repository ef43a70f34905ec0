"""``qhytime demo`` (the main job on built-in defaults) and ``qhytime doctor``."""

from __future__ import annotations

import sys

import click

from qhytime.cli._common import Number, db_option, open_store


@click.command()
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False),
    default="qhytime-demo",
    show_default=True,
    help="Where the simulated capture and stamped copies go.",
)
@click.option("--frames", type=Number(integer=True, lo=1, hi=20), default=2,
              show_default=True, help="Frames to simulate.")  # fmt: skip
@db_option
def demo(workdir: str, frames: int, db: str | None) -> None:
    """Simulate a QHY600PRO capture (full default resolution), stamp it with the shipped
    calibration from the embedded database, and print per-row times."""
    from pathlib import Path

    from qhytime.api import CameraSim, stamp_files
    from qhytime.timebase import unix_ns_to_iso

    work = Path(workdir)
    sim = CameraSim(width=9576, height=6388, exposure_us=100_000.0, frame_interval_us=500_000.0,
                    offset0_us=1974.286, reference="now", readout_mode="Photographic DSO", seed=7)  # fmt: skip
    with open_store(db) as store:  # a bad --db is said before minutes of simulation
        click.echo(f"calibration database: {store.url}")
        click.echo(
            f"simulating {frames} frame(s) of {sim.width}x{sim.height} 16-bit into "
            f"{work / 'capture'} ..."
        )
        paths = sim.write_fits(work / "capture", frames, prefix="qhy600")
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
                f"\n{Path(res.output).name}: GPS_EUTC {h['GPS_EUTC']}  QHY_OFF0 {h['QHY_OFF0']:.3f} us  QHY_LP {h['QHY_LP']} ns (exact {h['QT_LP']} ns; Siril within {h['QT_SIRIL'] / 1000:.1f} us)  calibration #{h['QT_CALID']}"
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


@click.command()
@db_option
def doctor(db: str | None) -> None:
    """Versions, database path and schema revision, leap-second table, shipped calibrations."""
    from qhytime.api import doctor_report

    click.echo(doctor_report(db))


COMMANDS = [demo, doctor]

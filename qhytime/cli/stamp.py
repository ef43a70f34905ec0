"""``qhytime stamp``: row times into FITS headers and a ROWTIMES table."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from qhytime.cli._cluster import cluster_executor, cluster_options, worker_paths
from qhytime.cli._common import (
    cli_words,
    db_option,
    expand_paths,
    explicit_model,
    exposure_ns,
    model_options,
    open_store,
    warnings_as_messages,
)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write stamped copies here (default: NAME.stamped.fits beside each file).",
)
@click.option("--in-place", is_flag=True, help="Modify the files themselves (pixels untouched).")
@model_options
@click.option(
    "--allow-invalid", is_flag=True, help="Stamp frames whose time is flagged (QT_STAT says so)."
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@db_option
@cluster_options
def stamp(
    paths: tuple[str, ...], out_dir: str | None, in_place: bool, calibration_id: int | None,
    offset0_us: float | None, line_period_ns: float | None, readout: str | None,
    reference: str | None, exposure_s: float | None, crop_y: int | None, binning: int | None,
    fallback: bool, allow_invalid: bool, quiet: bool, db: str | None, dask_address: str | None,
    workers: int | None,
) -> None:  # fmt: skip
    """Write row times into FITS headers and a ROWTIMES table (N.I.N.A./Siril keywords).

    PATHS are FITS files (one frame each) or folders of them. The timing options are those
    of `qhytime rows`. Each file gets a status line; the batch goes on past a file that
    fails, and the exit code is 1 when any failed. Every output (in place too) is written to
    a temporary file and renamed: it appears whole or not at all. The pixels are the
    source's bytes; a stamped file reads back with its source's setting and times.

    With --dask or --workers each file is stamped by a dask worker: the output folder (or
    the sources, --in-place) must be storage the workers share. Workers get a snapshot of
    the calibrations, not the database.
    """
    from tqdm import tqdm

    from qhytime.api import stamp_files

    if in_place and out_dir:
        raise click.UsageError("--in-place and --out exclude each other")
    files = expand_paths(paths)
    if out_dir is not None:
        out = Path(out_dir).resolve()
        clash = [f for f in files if Path(f).resolve().parent == out]
        if clash:
            raise click.UsageError(
                f"--out {out_dir} is the folder of {clash[0]}: the stamped copy would replace "
                "its source. Choose another folder (or --in-place to modify the files)"
            )
    model = explicit_model(offset0_us, line_period_ns, readout, reference, calibration_id)
    failed = 0
    with (
        contextlib.nullcontext() if model is not None else open_store(db) as store,
        warnings_as_messages(),
        cluster_executor(dask_address, workers) as executor,
    ):
        results = stamp_files(
            worker_paths(files, dask_address),
            None if out_dir is None else worker_paths([out_dir], dask_address)[0],
            in_place=in_place, model=model, store=store,
            calibration_id=calibration_id, fallback=fallback, allow_invalid=allow_invalid,
            exposure_ns=exposure_ns(exposure_s), crop_y=crop_y, binning=binning,
            executor=executor,
        )  # fmt: skip
        for res in tqdm(results, total=len(files), unit="file", disable=quiet, file=sys.stderr):
            text = cli_words(res.message.removeprefix(f"{res.source}: "))
            if res.status == "error":
                failed += 1
                tqdm.write(f"error  {res.source}: {text}", file=sys.stderr)
            else:
                tqdm.write(f"{res.status:<6} {res.source} -> {res.output}  [{text}]")
    if failed:
        click.echo(f"qhytime: {failed} of {len(files)} files failed", err=True)
    sys.exit(1 if failed else 0)


COMMANDS = [stamp]

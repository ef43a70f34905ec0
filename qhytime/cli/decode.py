"""``qhytime decode``: the GPS block of every frame, with exact UTC times and a status."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable

import click

from qhytime.cli._cluster import cluster_executor, cluster_options, worker_paths


def _emit_table(records: Iterable[object]) -> Counter[str]:
    from qhytime.decode import DecodedFrame

    counts: Counter[str] = Counter()
    header = (
        f"{'file':<28} {'frame':>5} {'sequence':>9} {'status':<7} {'start (UTC)':<29} "
        f"{'end (UTC)':<29} {'now (UTC)':<29} {'pps':>9} {'nom-meas end':>13}"
    )
    click.echo(header)
    for rec in records:
        assert isinstance(rec, DecodedFrame)
        counts[rec.status] += 1
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
            # an error names the file in full (the column above may shorten it)
            where = f"{rec.file}: " if rec.status == "error" else ""
            click.echo(f"{'':<28} {'':>5} {'':>9} ! {where}{reason}")
    return counts


def summary_line(counts: Counter[str]) -> str:
    """``N frames: A ok, B invalid; C errors (...)``: errors are files, or file tails, that
    could not be read (their frames are not counted).

    Examples
    --------
    >>> summary_line(Counter(ok=3, invalid=1))
    '4 frames: 3 ok, 1 invalid; 0 errors'
    >>> summary_line(Counter(ok=1, error=1))
    '1 frame: 1 ok, 0 invalid; 1 error (a file or file tail that could not be read)'
    """
    frames = counts["ok"] + counts["invalid"]
    errors = counts["error"]
    what = (
        ""
        if not errors
        else " (a file or file tail that could not be read)"
        if errors == 1
        else " (files or file tails that could not be read)"
    )
    return (
        f"{frames} frame{'s' if frames != 1 else ''}: {counts['ok']} ok, "
        f"{counts['invalid']} invalid; {errors} error{'s' if errors != 1 else ''}{what}"
    )


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object per frame per line.")
@click.option(
    "--nominal-clock",
    is_flag=True,
    help="Scale ticks by exactly 100 ns instead of the measured pps count.",
)
@cluster_options
def decode(
    paths: tuple[str, ...], as_json: bool, nominal_clock: bool, dask_address: str | None,
    workers: int | None,
) -> None:  # fmt: skip
    """Decode the GPS block of every frame of FITS/SER files, with exact UTC times.

    PATHS are FITS (also .fits.gz and tile-compressed), SER files or folders (a folder
    stands for its FITS/SER files in name order). Each frame gets a status: ok, invalid
    (with the reasons its time cannot be trusted) or error (the file, or part of it, could
    not be read). Frames are checked against their sequence: the frames of one SER or FITS
    cube, or single-frame FITS files in the order given. The table ends with a summary
    line. Exit code 1 when some file could not be read.

    With --dask or --workers each file is decoded by a dask worker; the checks across files
    and the output stay here, in the order given, the same as without (with --dask, relative
    paths are made absolute for the workers, and shown so).
    """
    from qhytime.api import decode_paths

    with cluster_executor(dask_address, workers) as executor:
        files = worker_paths(paths, dask_address)
        records = decode_paths(files, nominal_clock=nominal_clock, executor=executor)
        if as_json:
            counts: Counter[str] = Counter()
            for rec in records:
                counts[rec.status] += 1
                click.echo(json.dumps(rec.to_dict()))
        else:
            counts = _emit_table(records)
            click.echo(summary_line(counts))
    raise SystemExit(0 if counts["error"] == 0 else 1)


COMMANDS = [decode]

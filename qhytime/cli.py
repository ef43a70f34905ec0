"""The ``qhytime`` command line: a thin shell over :mod:`qhytime.api`.

Scripts read ``--json`` (one object per line); people read the default table.
Exit codes: 0 when every file was read, 1 when a file could not be read (wholly or
partly), 2 for usage errors.
"""

from __future__ import annotations

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


if __name__ == "__main__":  # pragma: no cover
    main()

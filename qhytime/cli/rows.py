"""``qhytime rows``: start, middle and end of every row of a frame, for one file or many."""

from __future__ import annotations

import contextlib
import json
import sys

import click

from qhytime.cli._common import (
    FRAME_INDEX,
    cli_words,
    db_option,
    expand_paths,
    explicit_model,
    exposure_ns,
    model_options,
    open_store,
    warn,
    warnings_as_messages,
)


def parse_rows(spec: str | None, height: int) -> list[int] | None:
    """``A:B`` (end excluded, either side optional) or ``r1,r2,...`` into image rows.

    Raises
    ------
    click.BadParameter
        For text that is neither, an empty range, or rows outside ``0..height-1``.

    Examples
    --------
    >>> parse_rows("2:5", 10), parse_rows("0,9", 10), parse_rows(":2", 10)
    ([2, 3, 4], [0, 9], [0, 1])
    >>> parse_rows("5:2", 10)
    Traceback (most recent call last):
    ...
    click.exceptions.BadParameter: '5:2' is an empty range (A:B needs A < B)
    >>> parse_rows("0:99999999999", 10)
    Traceback (most recent call last):
    ...
    click.exceptions.BadParameter: '0:99999999999' reaches outside the frame's rows 0..9 (A:B, B excluded)
    """
    if spec is None:
        return None
    try:
        if ":" in spec:
            a, b = spec.split(":", 1)
            lo = int(a) if a.strip() else 0
            hi = int(b) if b.strip() else height
            if lo >= hi:
                raise click.BadParameter(
                    f"{spec!r} is an empty range (A:B needs A < B)", param_hint="'--rows'"
                )
            if lo < 0 or hi > height:  # checked before anything is built
                raise click.BadParameter(
                    f"{spec!r} reaches outside the frame's rows 0..{height - 1} (A:B, B excluded)",
                    param_hint="'--rows'",
                )
            rows = list(range(lo, hi))
        else:
            rows = [int(x) for x in spec.split(",")]
    except ValueError:
        raise click.BadParameter(
            f"{spec!r} is not A:B or a list of rows", param_hint="'--rows'"
        ) from None
    bad = [r for r in rows if not 0 <= r < height]
    if bad:
        raise click.BadParameter(
            f"row {bad[0]} is outside the frame's rows 0..{height - 1}", param_hint="'--rows'"
        )
    return rows


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--frame", type=FRAME_INDEX, default=0, show_default=True,
              help="0-based frame index in each file.")  # fmt: skip
@model_options
@click.option("--rows", "rows_spec", default=None, help="Rows A:B (end excluded) or a list 1,5,9.")
@click.option(
    "--allow-invalid", is_flag=True, help="Compute times for a frame whose time is flagged."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row per line.")
@db_option
def rows(
    paths: tuple[str, ...], frame: int, calibration_id: int | None, offset0_us: float | None,
    line_period_ns: float | None, readout: str | None, reference: str | None,
    exposure_s: float | None, crop_y: int | None, binning: int | None, fallback: bool,
    rows_spec: str | None, allow_invalid: bool, as_json: bool, db: str | None,
) -> None:  # fmt: skip
    """Start, middle and end of every row of a frame, with a 1-sigma per row.

    PATHS are FITS/SER files or folders. The calibration is looked up by each file's setting
    (INSTRUME, READOUTM, crop, binning, bit depth, ...), pinned with --calibration, or given
    explicitly with --offset0-us and --line-period-ns. A row is exposed from `start`
    (inclusive) to `end` (exclusive).

    With several files, each row line (and JSON object) names its file and frame; a file that
    fails is reported on stderr and the others are done; the exit code is 1 when any failed.
    """
    model = explicit_model(offset0_us, line_period_ns, readout, reference, calibration_id)
    files = expand_paths(paths)
    several = len(files) > 1
    failed = 0
    with contextlib.nullcontext() if model is not None else open_store(db) as store:
        for path in files:
            try:
                _one_file(path, frame, model, store, calibration_id, fallback, exposure_s,
                          crop_y, binning, rows_spec, allow_invalid, as_json, several)  # fmt: skip
            except click.UsageError:
                raise
            except Exception as exc:  # one bad file never ends the batch
                from qhytime.errors import QhytimeError

                if not several:
                    raise
                failed += 1
                text = str(exc) if isinstance(exc, QhytimeError) else f"{path}: {exc}"
                click.echo(f"qhytime: error: {cli_words(text)}", err=True)
    if several and failed:
        click.echo(f"qhytime: {failed} of {len(files)} files failed", err=True)
        sys.exit(1)


def _one_file(path, frame, model, store, calibration_id, fallback, exposure_s, crop_y, binning,
              rows_spec, allow_invalid, as_json, several) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    from qhytime.api import file_timing, open_frames

    with open_frames(path) as reader:
        row_list = parse_rows(rows_spec, reader.height)
        with warnings_as_messages():
            ft = file_timing(
                reader, model=model, store=store, calibration_id=calibration_id,
                fallback=fallback, exposure_ns=exposure_ns(exposure_s), crop_y=crop_y,
                binning=binning,
            )  # fmt: skip
        frt = ft.frame_row_times(frame, row_list, allow_invalid=allow_invalid)
    if frt.record.reasons:
        warn(f"{path}, frame {frame}: flagged: " + "; ".join(frt.record.reasons))
    if frt.lookup is not None:
        click.echo(f"qhytime: {path}: {frt.lookup.describe()}", err=True)
    recs = frt.times.records(0)
    if as_json:
        for r in recs:
            if several:
                r = {"file": path, "frame": frame, **r}
            click.echo(json.dumps(r))
        return
    if several:
        click.echo(f"# {path}, frame {frame}")
    click.echo(
        f"{'row':>6}  {'start (UTC)':<29}  {'mid (UTC)':<29}  {'end (UTC)':<29}  {'sigma':>10}"
    )
    for r in recs:
        click.echo(
            f"{r['row']:>6}  {r['start']:<29}  {r['mid']:<29}  {r['end']:<29}  {r['sigma_ns']:>7.1f} ns"
        )


COMMANDS = [rows]

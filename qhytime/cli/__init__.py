"""The ``qhytime`` command line: a thin shell over :mod:`qhytime.api`, one module per job.

Scripts read ``--json`` (one object per line); people read the default table.

Exit codes: 0 success; 1 when some input could not be done (a file unreadable, a frame
refused, a calibration missing: the message says which and what to do); 2 for usage errors
(an unknown option, a value out of range); 130 when interrupted. No traceback ever reaches
the user: an unexpected failure is reported in one line, with ``QHYTIME_DEBUG=1`` to see
the traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from qhytime import __version__


class QhytimeGroup(click.Group):
    """The root group: turns every error escaping a command into a message and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        from qhytime.cli._common import cli_words
        from qhytime.errors import QhytimeError

        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except QhytimeError as exc:
            click.echo(f"qhytime: {cli_words(str(exc))}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("qhytime: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:  # `qhytime decode ... | head`: the reader left, not an error
            _silence_stdout()
            ctx.exit(0)
        except MemoryError:
            click.echo(
                "qhytime: out of memory: the input is larger than this machine can hold; "
                "process fewer frames or rows at a time",
                err=True,
            )
            ctx.exit(1)
        except OSError as exc:
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            click.echo(f"qhytime: {exc.strerror or exc}{where}", err=True)
            ctx.exit(1)
        except Exception as exc:  # the last line of defence: never a traceback
            if os.environ.get("QHYTIME_DEBUG"):
                raise
            click.echo(
                f"qhytime: internal error ({type(exc).__name__}: {exc}). This is a bug in "
                "qhytime: please report it with the command you ran (QHYTIME_DEBUG=1 shows "
                "the traceback).",
                err=True,
            )
            ctx.exit(1)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:  # pragma: no cover - stdout already gone
        pass


@click.group(cls=QhytimeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qhytime")
def main() -> None:
    """Exact time for every row of every frame from QHYCCD GPS cameras."""


def _register() -> None:
    from qhytime.cli import calib, decode, demo, ledcal, lightcurve, rows, service, stamp, streak

    for module in (decode, rows, calib, stamp, ledcal, lightcurve, streak, service, demo):
        for command in module.COMMANDS:
            main.add_command(command)


_register()

__all__ = ["QhytimeGroup", "main"]

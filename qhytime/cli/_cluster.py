"""``--dask ADDRESS`` / ``--workers N``: the per-file work of a command on a dask cluster.

Shared by ``decode``, ``stamp``, ``index`` and ``lightcurve``. dask is imported only when one
of the options is given (see :mod:`qhytime.cluster`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from qhytime.cli._common import Number

if TYPE_CHECKING:
    from qhytime.cluster import Executor

WORKERS = Number(integer=True, lo=1, hi=1024)


def cluster_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--dask ADDRESS`` and ``--workers N``; the command receives ``dask_address, workers``."""
    f = click.option(
        "--workers", "workers", type=WORKERS, default=None, metavar="N",
        help="Run the per-file work on N local dask worker processes (started and stopped "
        "here; needs the dask extra).",
    )(f)  # fmt: skip
    return click.option(
        "--dask", "dask_address", default=None, metavar="ADDRESS",
        help="Run the per-file work on the dask scheduler at ADDRESS (tcp://host:8786); the "
        "files must be readable by the workers at the same paths (relative paths are made "
        "absolute, and outputs show them so).",
    )(f)  # fmt: skip


@contextmanager
def cluster_executor(dask_address: str | None, workers: int | None) -> Iterator[Executor | None]:
    """The executor the options ask for (None: this process, as without them).

    Raises
    ------
    click.UsageError
        Both options given.
    ClusterError
        dask missing, the scheduler unreachable, the workers on another qhytime version.
    """
    if dask_address is not None and workers is not None:
        raise click.UsageError("--dask and --workers exclude each other")
    if dask_address is None and workers is None:
        yield None
        return
    if dask_address is not None and not dask_address.strip():
        raise click.BadParameter("give the scheduler's address", param_hint="--dask")
    from qhytime.cluster import open_executor

    with open_executor(dask_address, workers=workers) as ex:
        yield ex


def worker_paths(paths: Iterable[str], dask_address: str | None) -> list[str]:
    """Paths as the workers must see them: with ``--dask`` (workers elsewhere, in another
    working folder) relative paths are made absolute.

    Examples
    --------
    >>> worker_paths(["a.fits"], None)
    ['a.fits']
    >>> worker_paths(["/data/a.fits"], "tcp://head:8786")
    ['/data/a.fits']
    """
    if dask_address is None:
        return list(paths)
    return [os.path.abspath(p) for p in paths]

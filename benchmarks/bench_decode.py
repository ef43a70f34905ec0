"""Block decode of a SER video and of a FITS sequence: ``python -m benchmarks --only ser_decode --only fits_decode``.

Kept so that ``python benchmarks/bench_decode.py [--quick] [--json PATH] ...`` still works; the
figures live in the ``benchmarks`` package (see benchmarks/README.md).
"""

from __future__ import annotations

import sys
from pathlib import Path


def _root() -> None:
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)


def __getattr__(name: str) -> object:
    """``from bench_decode import write_sparse_ser``, as older scratch scripts do."""
    if name == "write_sparse_ser":
        _root()
        from benchmarks._data import write_sparse_ser

        return write_sparse_ser
    raise AttributeError(name)


def main() -> int:
    _root()
    from benchmarks.run import main as run

    only = [x for name in ("ser_decode", "fits_decode") for x in ("--only", name)]
    return run(only + sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())

"""The light curve of a long SER against a bare sum over the aperture boxes: ``python -m benchmarks --only lightcurve``.

Kept so that ``python benchmarks/bench_lightcurve.py [--quick] [--json PATH] ...`` still works; the
figures live in the ``benchmarks`` package (see benchmarks/README.md).
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> int:
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from benchmarks.run import main as run

    only = ["--only", "lightcurve"]
    return run(only + sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())

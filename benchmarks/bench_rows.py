"""Row times, pixel-time queries and calibration lookups: ``python -m benchmarks --only row_times --only pixel_times --only calib_lookup``.

Kept so that ``python benchmarks/bench_rows.py [--quick] [--json PATH] ...`` still works; the
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

    only = [x for name in ("row_times", "pixel_times", "calib_lookup") for x in ("--only", name)]
    return run(only + sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())

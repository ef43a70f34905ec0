"""Index ingest against decode alone, and memory against the number of frames: ``python -m benchmarks --only index --only scaling``.

Kept so that ``python benchmarks/bench_index.py [--quick] [--json PATH] ...`` still works; the
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

    only = [x for name in ("index", "scaling") for x in ("--only", name)]
    return run(only + sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())

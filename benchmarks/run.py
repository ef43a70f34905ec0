"""``python -m benchmarks``: every figure of the benchmark table, a JSON file and the plot.

See benchmarks/README.md for the methodology. Usage::

    python -m benchmarks                         # all figures, full sizes (~15-20 min)
    python -m benchmarks --quick                 # small sizes: a smoke test (< 2 min)
    python -m benchmarks --only ser_decode --only index
    python -m benchmarks --json out.json --plot scaling.png
    python -m benchmarks --list                  # the figures' names
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks._core import REPO, Context, Result, machine, other_busy_processes

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "_scratch" / "results.json"
DEFAULT_PLOT = HERE / "_scratch" / "scaling.png"
README = HERE / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"

#: name -> (module, function, what it measures), in the order of the issue's table.
FIGURES: dict[str, tuple[str, str, str]] = {
    "ser_decode": ("fig_decode", "ser_decode", "SER block decode vs a numpy memmap gather"),
    "fits_decode": ("fig_decode", "fits_decode", "FITS block decode vs astropy open + row 0"),
    "stamp": ("fig_stamp", "stamp", "stamp_files vs astropy open + write"),
    "stamp_memory": ("fig_stamp", "stamp_memory", "peak RSS of `qhytime stamp`, full frame"),
    "demo_memory": ("fig_stamp", "demo_memory", "peak RSS of `qhytime demo`"),
    "pixel_times": ("fig_rows", "pixel_times_fig", "pixel_times vs a row-table gather"),
    "calib_lookup": ("fig_rows", "calib_lookup", "store lookup vs sqlite3 SELECT by id"),
    "index": ("fig_service", "index_fig", "FrameIndex.ingest vs decode alone"),
    "ledcal": ("fig_ledcal", "ledcal", "LED fit vs numpy row means"),
    "row_times": ("fig_rows", "row_times_fig", "row_times vs a numpy broadcast"),
    "http": ("fig_service", "http", "HTTP row times, 50 clients, vs the library call"),
    "dask": ("fig_service", "dask_index", "index with 2 dask workers vs the local run"),
    "lightcurve": ("fig_lightcurve", "lightcurve", "light curve vs numpy box sums"),
    "scaling": ("scaling", "scaling", "decode and index, 1,000-100,000 frames (the plot)"),
}


def _figure(name: str) -> Callable[[Context], Result | list[Result]]:
    module, func, _ = FIGURES[name]
    return getattr(importlib.import_module(f"benchmarks.{module}"), func)  # type: ignore[no-any-return]


def run_figure(name: str, ctx: Context) -> list[Result]:
    """Run one figure; a failure becomes a result with status ``error`` (the run goes on)."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        out = _figure(name)(ctx)
        results = out if isinstance(out, list) else [out]
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        results = [Result(name=name, title=FIGURES[name][2], baseline_label="", status="error",
                          notes=[f"{type(exc).__name__}: {exc}"])]  # fmt: skip
    for r in results:
        r.seconds = time.perf_counter() - t0
        r.load_1min = load
    return results


# -- rendering ---------------------------------------------------------------------------------
def fmt_value(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "MiB":
        return f"{v:.1f} MiB"
    a = abs(v)
    if a < 1e-3:
        return f"{v * 1e6:.1f} us"
    if a < 1:
        return f"{v * 1e3:.2f} ms"
    return f"{v:.2f} s"


def fmt_ratio(r: float | None, target: float | None) -> str:
    """2 decimals, or 3 where 2 would round a ratio over its target onto it."""
    if r is None:
        return "-"
    if target is not None and (round(r, 2) <= target) != (r <= target):
        return f"{r:.3f}x"
    return f"{r:.2f}x"


def _memory_cell(r: Result) -> str:
    if r.peak_mib is None:
        return "-"
    tag = "heap" if r.memory.startswith("tracemalloc") else "RSS"
    return f"{r.peak_mib:.1f} MiB {tag}"


def table_rows(results: Sequence[Result]) -> list[list[str]]:
    rows = [["figure", "baseline", "baseline", "qhytime", "ratio", "target", "met", "peak memory"]]
    for r in results:
        if r.status != "ok":
            rows.append(
                [r.title, r.baseline_label, "-", r.status, "-", r.target_text or "-", "-", "-"]
            )
            continue
        ratio = fmt_ratio(r.ratio, r.target)
        met = {True: "yes", False: "**no**", None: "-"}[r.met]
        rows.append([r.title, r.baseline_label, fmt_value(r.baseline, r.unit),
                     fmt_value(r.qhytime, r.unit), ratio, r.target_text or "-", met, _memory_cell(r)])  # fmt: skip
    return rows


def markdown_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(rows[0], widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]  # fmt: skip
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
              for row in rows[1:]]  # fmt: skip
    return "\n".join(lines)


def scaling_table(data: dict[str, Any]) -> str:
    jobs = [job for job in ("decode", "index", "watch") if job in data]  # older runs: no watch
    rows = [["frames"] + [f"{job} {what}" for job in jobs for what in ("time", "peak")]]
    for k, n in enumerate(data["sizes"]):
        rows.append([f"{n:,}"] + [x for job in jobs for x in (
            fmt_value(data[job]["time_s"][k], "s"), fmt_value(data[job]["memory_mib"][k], "MiB"))])  # fmt: skip
    st = data["startup"]
    startup = ", ".join(f"{job} {st[job]['wall_s']:.2f} s" for job in jobs)
    slopes = ", ".join(f"{job} {data[job]['us_per_frame']:.1f} us/frame" for job in jobs)
    return (markdown_table(rows) + f"\n\nTimes are above the command's start-up on a 3-frame file "
            f"({startup}); peaks are above `qhytime --version` ({data['interpreter_mib']:.0f} MiB). "
            f"Slope: {slopes}.")  # fmt: skip


def render(report: dict[str, Any], results: Sequence[Result]) -> str:
    m = report["machine"]
    lb, la = report["load_before"], report["load_after"]
    head = [
        f"Run of {m['date']} ({report['mode']} mode, {report['duration_s'] / 60:.1f} min) on "
        f"{m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM; {m['os']}; Python {m['python']}, "
        f"numpy {m['numpy']}, astropy {m['astropy']}; qhytime {m['qhytime']} ({m['commit']}).",
        f"Load average before: {lb[0]:.2f} / {lb[1]:.2f} / {lb[2]:.2f}; after: "
        f"{la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f} (1 / 5 / 15 min).",
    ]
    if report["busy_before"]:
        head.append(
            f"Other test or benchmark processes at the start: {len(report['busy_before'])}."
        )
    text = "\n".join(head) + "\n\n" + markdown_table(table_rows(results))
    notes = [f"- `{r.name}`: {n}" for r in results for n in r.notes]
    text += ("\n\nPeak memory: *heap* is the tracemalloc peak during qhytime's run in the "
             "benchmark process; *RSS* is a command's `ru_maxrss` minus that of `qhytime --version`.")  # fmt: skip
    if notes:
        text += "\n\n" + "\n".join(notes)
    scaling = next(
        (r.details for r in results if r.name.startswith("scaling_") and r.status == "ok"), None
    )
    if scaling:
        text += "\n\nScaling (one SER of 9600x100 frames):\n\n" + scaling_table(scaling)
    return text


def update_readme(text: str, path: Path = README) -> None:
    doc = path.read_text()
    a, b = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    path.write_text(doc[:a] + "\n" + text + "\n" + doc[b:])


# -- main --------------------------------------------------------------------------------------
def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", choices=list(FIGURES), metavar="NAME",
                    help="Run this figure only (repeatable); see --list")  # fmt: skip
    ap.add_argument(
        "--quick", action="store_true", help="Small sizes and 1-3 repeats: a smoke test"
    )
    ap.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        help=f"Results file (default {DEFAULT_JSON.relative_to(REPO)})",
    )
    ap.add_argument("--plot", type=Path, default=None,
                    help=f"Scaling plot (default {DEFAULT_PLOT.relative_to(REPO)} when the scaling figure runs)")  # fmt: skip
    ap.add_argument(
        "--repeats", type=int, default=None, help="Repeats of every figure (default: its own)"
    )
    ap.add_argument("--data", type=Path, default=None,
                    help="Keep the input files here and reuse them in later runs (default: a temporary folder)")  # fmt: skip
    ap.add_argument("--index-db", default=None,
                    help="Database URL for the index figure (e.g. PostgreSQL; its index tables are emptied)")  # fmt: skip
    ap.add_argument("--update-readme", action="store_true",
                    help="Write the table into benchmarks/README.md (for a full run on a quiet machine)")  # fmt: skip
    ap.add_argument("--list", action="store_true", help="List the figures and exit")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.list:
        for name, (_, _, what) in FIGURES.items():
            print(f"{name:<14} {what}")
        return 0
    names = list(dict.fromkeys(args.only)) if args.only else list(FIGURES)
    work = Path(tempfile.mkdtemp(prefix="qhytime-bench-"))
    data = args.data.resolve() if args.data else work / "data"
    data.mkdir(parents=True, exist_ok=True)
    ctx = Context(quick=args.quick, data=data, work=work / "scratch", repeats=args.repeats,
                  index_db=args.index_db)  # fmt: skip
    ctx.work.mkdir()
    report: dict[str, Any] = {"schema": 1, "mode": "quick" if args.quick else "full",
                              "figures_run": names, "machine": machine(),
                              "load_before": list(os.getloadavg()), "busy_before": other_busy_processes()}  # fmt: skip
    t0 = time.perf_counter()
    results: list[Result] = []
    try:
        for k, name in enumerate(names, 1):
            print(f"[{k}/{len(names)}] {name} ...", file=sys.stderr, flush=True)
            got = run_figure(name, ctx)
            for r in got:
                print(f"    {r.name}: {r.status}, ratio {r.ratio if r.ratio is None else round(r.ratio, 3)}"
                      f" ({r.seconds:.1f} s)", file=sys.stderr, flush=True)  # fmt: skip
            results += got
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["load_after"] = list(os.getloadavg())
    report["busy_after"] = other_busy_processes()
    report["duration_s"] = time.perf_counter() - t0
    report["figures"] = [r.to_dict() for r in results]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    text = render(report, results)
    print(text)
    scaling = next(
        (r.details for r in results if r.name.startswith("scaling_") and r.status == "ok"), None
    )
    if scaling:
        from benchmarks.scaling import plot

        out = plot(scaling, args.plot or DEFAULT_PLOT, report["machine"])
        print(f"\nscaling plot: {out}")
    if args.update_readme:
        update_readme(text)
    print(f"results: {args.json}", file=sys.stderr)
    return 1 if any(r.status == "error" for r in results) else 0

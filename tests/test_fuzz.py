"""Fuzz tests: mutated reference files and random inputs.

- Damaged GPS blocks never give a wrong time with status ``ok``: no frame ``ok`` with a stamp
  1 s or more off the truth anywhere, none with its start or end 1 ms or more off inside a
  sequence (a SER video, a series of single-frame FITS files), none with its now stamp off by
  more than its own jitter allows (:data:`NOW_LIMIT_NS`).
- Damaged files (bit flips, truncation, header edits of FITS and SER, gzip and tile-compressed
  FITS) raise only qhytime's own errors from the API, never hang, and the command line never
  prints a traceback.
- Random TOML and CSV through the calibration import and the pulse CSV reader raise only
  qhytime's own errors.

Each test counts what it tried; the counts are printed at the end of the module's tests
(`pytest tests/test_fuzz.py -q`). ``QHYTIME_FUZZ_SCALE`` multiplies the number of examples
(default 1: all of them together take 30-60 s on a small shared machine).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import struct
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qhytime.api import (
    QhytimeError,
    RowModel,
    decode_file,
    decode_paths,
    frame_row_times,
    load_toml,
    open_frames,
    read_pulses_csv,
)
from qhytime.cli import main
from qhytime.validity import NOW_STEADY_NS

DATA = Path(__file__).parent / "data"
SCALE = float(os.environ.get("QHYTIME_FUZZ_SCALE", "1"))
NS_PER_S, NS_PER_MS = 10**9, 10**6
NOW_LIMIT_NS = NOW_STEADY_NS + 5 * NS_PER_MS
"""A now stamp in a sequence may be off by its tolerance plus the reference data's own now
jitter (now - end spreads over 0.06..4.8 ms there) before it must be caught."""
HANG_S = 20.0

STATS: Counter[str] = Counter(
    {"hangs": 0, "damaged files (API): escapes": 0, "damaged files (CLI): tracebacks": 0,
     "TOML/CSV: escapes": 0}
)  # fmt: skip
TIMES: Counter[str] = Counter()
WORST_MS: dict[str, float] = {}


def _examples(n: int) -> settings:
    return settings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        database=None,  # never write into the repository
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


class _Hang(Exception):
    pass


@contextlib.contextmanager
def no_hang(what: str) -> Iterator[None]:
    """Fail (and count a hang) when the body runs longer than :data:`HANG_S`."""

    def alarm(signum: int, frame: Any) -> None:
        raise _Hang(what)

    if not hasattr(signal, "SIGALRM"):  # no interval timers (Windows): run unguarded
        yield
        return
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_S)
    try:
        yield
    except _Hang:
        STATS["hangs"] += 1
        raise AssertionError(f"hang: {what} ran longer than {HANG_S} s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    TIMES["total"] = round(time.perf_counter() - t0, 1)
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    cap = request.config.pluginmanager.get_plugin("capturemanager")
    if tr is not None:
        with cap.global_and_fixture_disabled() if cap else contextlib.nullcontext():
            tr.write_line("")
            tr.write_line(f"fuzz counts: {json.dumps(dict(sorted(STATS.items())))}")
            tr.write_line(f"fuzz worst error of an ok frame (ms): {json.dumps(WORST_MS)}")
            tr.write_line(f"fuzz wall time (s): {json.dumps(dict(TIMES))}")


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def _timed(name: str) -> Any:
    def deco(fn: Any) -> Any:
        def run(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                TIMES[name] = round(TIMES[name] + time.perf_counter() - t0, 1)

        run.__name__, run.__doc__ = fn.__name__, fn.__doc__
        run.__wrapped__ = fn  # type: ignore[attr-defined]
        return run

    return deco


# -- damaged blocks: no silent wrong time ---------------------------------------------------

TRUTH = json.loads((DATA / "truth.json").read_text())
TRUE_NS = {
    (t["file"], t["frame"]): {s: t[s]["unix_ns"] for s in ("start", "end", "now")}
    for t in TRUTH["frames"]
}
SERIES = [f"fits16_00{i}.fits" for i in range(6)]
SCENARIOS = {
    "ser": ["video16.ser"],  # a sequence: 25 frames
    "fits series": SERIES,  # a sequence: 6 single-frame files
    "single fits": None,  # one of the series alone
    "edge_second": ["edge_second.fits"],  # alone, no exposure keyword
}


def _block_offset(name: str, frame: int, j: int) -> int:
    """File offset of byte ``j`` of the block of ``frame``."""
    if name.endswith(".ser"):
        return 178 + frame * 480 * 40 * 2 + j  # 16-bit little-endian samples
    # BITPIX 16, BZERO 32768, big-endian: block byte 2k (low) is file byte 2k + 1
    return 2880 + (j ^ 1)


@st.composite
def block_damage(draw: st.DrawFn) -> tuple[str, list[str], int, int, list[tuple[int, int]]]:
    scenario = draw(st.sampled_from(sorted(SCENARIOS)))
    files = SCENARIOS[scenario] or [draw(st.sampled_from(SERIES))]
    target = draw(st.integers(0, len(files) - 1))
    frame = draw(st.integers(0, 24)) if files[target].endswith(".ser") else 0
    kind = draw(st.sampled_from(["flip", "flip", "byte", "bytes"]))
    if kind == "flip":
        edits = [(draw(st.integers(0, 43)), -1 - draw(st.integers(0, 7)))]
    else:
        n = 1 if kind == "byte" else draw(st.integers(2, 8))
        edits = [(draw(st.integers(0, 43)), draw(st.integers(0, 255))) for _ in range(n)]
    return scenario, files, target, frame, edits


@_timed("block damage")
@_examples(2000)
@given(case=block_damage())
def test_damaged_blocks_never_give_a_wrong_time_ok(
    work: Path, case: tuple[str, list[str], int, int, list[tuple[int, int]]]
) -> None:
    scenario, files, target, frame, edits = case
    raw = bytearray((DATA / files[target]).read_bytes())
    for j, v in edits:
        off = _block_offset(files[target], frame, j)
        raw[off] = raw[off] ^ (1 << (-1 - v)) if v < 0 else v
    damaged = work / f"damaged_{files[target]}"
    damaged.write_bytes(bytes(raw))
    paths = [damaged if k == target else DATA / f for k, f in enumerate(files)]
    names = {str(p): f for p, f in zip(paths, files, strict=True)}
    in_sequence = len(files) > 1 or files[0].endswith(".ser")
    STATS["block damage: cases"] += 1
    with no_hang(f"decode of {files[target]} with {edits}"):
        recs = list(decode_paths(paths))
    for rec in recs:
        if rec.status != "ok":
            continue
        truth = TRUE_NS[(names[rec.file], rec.frame)]
        for s in ("start", "end", "now"):
            err = abs(rec.stamps[s].unix_ns - truth[s])
            if not err:
                continue
            size = ">= 1 s" if err >= NS_PER_S else ">= 1 ms" if err >= NS_PER_MS else "< 1 ms"
            where = "in sequence" if in_sequence else "alone"
            STATS[f"block damage: ok with {s} {size} off, {where}"] += 1
            key = f"{s} {where}"
            WORST_MS[key] = max(WORST_MS.get(key, 0.0), round(err / 1e6, 3))
            assert err < NS_PER_S, (scenario, edits, rec.file, rec.frame, s, err)
            if in_sequence:
                limit = NOW_LIMIT_NS if s == "now" else NS_PER_MS
                assert err < limit, (scenario, edits, rec.file, rec.frame, s, err)


# -- damaged files: only qhytime's errors, no hang -------------------------------------------


@pytest.fixture(scope="module")
def bases(work: Path) -> dict[str, bytes]:
    """The files mutated: reference frames, plus a tile-compressed and a gzip FITS."""
    out = {n: (DATA / n).read_bytes() for n in (
        "fits16_000.fits", "fits8_000.fits", "video16.ser", "bad_truncated.ser", "edge_second.fits",
    )}  # fmt: skip
    with fits.open(DATA / "fits16_000.fits") as hdul:
        img, hdr = np.asarray(hdul[0].data).copy(), hdul[0].header.copy()
    fits.CompImageHDU(img, header=hdr, compression_type="RICE_1").writeto(work / "rice.fits")
    out["rice.fits"] = (work / "rice.fits").read_bytes()
    out["gz.fits.gz"] = gzip.compress(out["fits16_000.fits"], mtime=0)
    cube = np.stack([img, img, img])
    fits.PrimaryHDU(cube, header=None).writeto(work / "cube.fits")
    out["cube.fits"] = (work / "cube.fits").read_bytes()
    return out


CARD_KEYS = ["SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "BZERO", "BSCALE",
             "EXPTIME", "QHY_EXP", "ROWORDER", "XBINNING", "CROPOFFY", "PCOUNT", "GCOUNT",
             "XTENSION", "ZBITPIX", "ZNAXIS", "ZNAXIS1", "ZCMPTYPE", "END"]  # fmt: skip
CARD_VALUES = ["0", "-1", "1", "2", "3", "8", "16", "-32", "64", "F", "T", "'abc'", "'TOP-DOWN",
               "'TOP-DOWN'", "1.0E999", "400000000", "99999999999999999999", "1.5", "''",
               "'RICE_1'", "1000", "-2147483648"]  # fmt: skip
# SER header: ColorID, LittleEndian, width, height, depth, frame count
SER_FIELDS = [14, 18, 22, 26, 30, 34, 38]
SER_VALUES = [0, 1, -1, 8, 12, 16, 17, 24, 26, 39, 41, 100, 101, 479, 481, 2**31 - 1, -(2**31)]


def _set_card(raw: bytearray, key: str, value: str, hdu_start: int) -> bytearray:
    card = f"{key:<8}= {value}".ljust(80).encode()[:80] if key != "END" else b"".ljust(80)
    for i in range(hdu_start, min(len(raw), hdu_start + 2880) - 79, 80):
        if raw[i : i + 8].decode("latin-1").strip() == key:
            raw[i : i + 80] = card
            return raw
    i = bytes(raw).find(b"END     ", hdu_start)
    if 0 <= i <= len(raw) - 160:
        raw[i : i + 80], raw[i + 80 : i + 160] = card, b"END".ljust(80)
    return raw


@st.composite
def file_damage(draw: st.DrawFn) -> tuple[str, str, list[Any]]:
    base = draw(st.sampled_from(["fits16_000.fits", "fits8_000.fits", "video16.ser",
                                 "bad_truncated.ser", "edge_second.fits", "rice.fits",
                                 "gz.fits.gz", "cube.fits"]))  # fmt: skip
    ser = base.endswith(".ser")
    kinds = ["flip header", "flip anywhere", "truncate", "garbage"]
    kinds += ["ser field"] if ser else ["card"]
    kind = draw(st.sampled_from(kinds))
    if kind == "flip header":
        span = 178 if ser else 2880 * (2 if base == "rice.fits" else 1)
        args: list[Any] = [(draw(st.integers(0, span - 1)), draw(st.integers(0, 7)))
                           for _ in range(draw(st.integers(1, 4)))]  # fmt: skip
    elif kind == "flip anywhere":
        args = [(draw(st.floats(0, 1, exclude_max=True)), draw(st.integers(0, 7)))
                for _ in range(draw(st.integers(1, 8)))]  # fmt: skip
    elif kind == "truncate":
        args = [draw(st.floats(0, 1, exclude_max=True))]
    elif kind == "garbage":
        args = [draw(st.binary(max_size=4000)), draw(st.sampled_from([b"", b"SIMPLE  =",
                                                                      b"LUCAM-RECORDER"]))]  # fmt: skip
    elif kind == "card":
        args = [(draw(st.sampled_from(CARD_KEYS)), draw(st.sampled_from(CARD_VALUES)),
                 draw(st.sampled_from([0, 2880])) if base == "rice.fits" else 0)
                for _ in range(draw(st.integers(1, 3)))]  # fmt: skip
    else:
        args = [(draw(st.sampled_from(SER_FIELDS)), draw(st.sampled_from(SER_VALUES)))
                for _ in range(draw(st.integers(1, 3)))]  # fmt: skip
    return base, kind, args


def _damage(bases: dict[str, bytes], base: str, kind: str, args: list[Any]) -> bytes:
    raw = bytearray(bases[base])
    if base.endswith(".gz") and kind in ("card", "flip header"):
        raw = bytearray(gzip.decompress(bytes(raw)))
    if kind in ("flip header", "flip anywhere"):
        for where, bit in args:
            off = where if isinstance(where, int) else int(where * len(raw))
            if off < len(raw):
                raw[off] ^= 1 << bit
    elif kind == "truncate":
        raw = raw[: int(args[0] * len(raw))]
    elif kind == "garbage":
        raw = bytearray(args[1] + args[0])
    elif kind == "card":
        for key, value, start in args:
            raw = _set_card(raw, key, value, start)
    else:
        for off, value in args:
            raw[off : off + 4] = struct.pack("<i", value)
    if base.endswith(".gz") and kind in ("card", "flip header"):
        raw = bytearray(gzip.compress(bytes(raw), mtime=0))
    return bytes(raw)


MODEL = RowModel.from_us(offset0_us=1974.286, line_period_ns=43194, readout="pairs", reference="end")


@_timed("damaged files, API")
@_examples(2000)
@given(case=file_damage())
def test_damaged_files_raise_only_qhytime_errors(
    work: Path, bases: dict[str, bytes], case: tuple[str, str, list[Any]]
) -> None:
    base, kind, args = case
    path = work / f"api_{base}"
    path.write_bytes(_damage(bases, base, kind, args))
    STATS["damaged files (API): cases"] += 1
    with no_hang(f"{kind} {args!r:.200} of {base}"):
        try:
            recs = list(decode_paths([path]))  # a batch never raises
        except Exception as exc:
            STATS["damaged files (API): escapes"] += 1
            raise AssertionError(f"decode_paths raised {exc!r} on {kind} of {base}") from exc
        assert recs and all(r.status in ("ok", "invalid", "error") for r in recs)
        try:
            with open_frames(path) as reader:
                decoded = decode_file(path)
                for i in range(min(len(reader), 2)):
                    reader.image(i)
                    reader.metadata(i)
                if len(decoded):
                    frame_row_times(reader, 0, model=MODEL, exposure_ns=250_000_000,
                                    allow_invalid=True)  # fmt: skip
            STATS["damaged files (API): read"] += 1
        except QhytimeError:
            STATS["damaged files (API): qhytime error"] += 1
        except Exception as exc:
            STATS["damaged files (API): escapes"] += 1
            raise AssertionError(f"{exc!r} escaped on {kind} {args!r:.200} of {base}") from exc


@_timed("damaged files, CLI")
@_examples(300)
@given(case=file_damage())
def test_cli_never_prints_a_traceback(
    work: Path, bases: dict[str, bytes], case: tuple[str, str, list[Any]]
) -> None:
    base, kind, args = case
    path = work / f"cli_{base}"
    path.write_bytes(_damage(bases, base, kind, args))
    STATS["damaged files (CLI): cases"] += 1
    runner = CliRunner()
    for argv in (["decode", str(path)], ["decode", "--json", str(path)],
                 ["rows", str(path), "--offset0-us", "1974.286", "--line-period-ns", "43194",
                  "--exposure-s", "0.25", "--allow-invalid", "--rows", "0:3"]):  # fmt: skip
        with no_hang(" ".join(argv[:2])):
            res = runner.invoke(main, argv)
        out = res.output + (res.stderr if res.stderr_bytes is not None else "")
        bad = "Traceback" in out or "internal error" in out or res.exit_code not in (0, 1)
        STATS["damaged files (CLI): tracebacks"] += int(bad)
        assert not bad, (argv, kind, args, res.exit_code, out[-500:])
        if res.exit_code == 1 and argv[0] == "rows":
            assert str(path) in out


# -- random TOML and CSV --------------------------------------------------------------------

_KEYS = ["camera_model", "readout_mode", "roi_x", "roi_y", "roi_width", "roi_height", "binning",
         "bit_depth", "reference", "offset0_us", "offset0_sigma_us", "line_period_ns",
         "line_period_sigma_ns", "method", "measured_at", "is_2cms", "usb_traffic",
         "stream_mode", "camera_serial", "global_reset"]  # fmt: skip
_TOML_VALUES = st.one_of(
    st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.booleans(), st.just("2025-08-02"), st.just("yesterday"),
    st.lists(st.integers(), max_size=3),
)  # fmt: skip


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v > 0 else "-inf") if abs(v) == float("inf") else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(str(x) for x in v) + "]"
    return str(v)


@st.composite
def toml_text(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(st.text(max_size=300))  # anything at all
    lines = []
    for _ in range(draw(st.integers(0, 3))):
        lines.append("[[calibration]]")
        for k in draw(st.lists(st.sampled_from(_KEYS), max_size=8, unique=True)):
            lines.append(f"{k} = {_toml_value(draw(_TOML_VALUES))}")
        if draw(st.booleans()):
            lines.append("[calibration.setting]")
            for k in draw(st.lists(st.sampled_from(_KEYS), max_size=10, unique=True)):
                lines.append(f"{k} = {_toml_value(draw(_TOML_VALUES))}")
    return "\n".join(lines) + "\n"


@st.composite
def csv_text(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    cols = draw(st.permutations(["file", "pulse_start_us", "pulse_width_us", "other"]))
    cols = cols[: draw(st.integers(0, 4))]
    cell = st.one_of(st.text(max_size=8), st.floats().map(repr), st.integers().map(str),
                     st.sampled_from(["nan", "inf", "-1", "0", "1e400", "led_000.fits"]))  # fmt: skip
    rows = [",".join(cols)]
    for _ in range(draw(st.integers(0, 4))):
        rows.append(",".join(draw(cell).replace(",", ";").replace("\n", " ") for _ in cols))
    return ("\n".join(rows) + "\n").encode("utf-8", errors="surrogatepass")


@_timed("TOML and CSV")
@_examples(600)
@given(toml=toml_text(), csv=csv_text())
def test_random_toml_and_csv_raise_only_qhytime_errors(work: Path, toml: str, csv: bytes) -> None:
    STATS["TOML/CSV: cases"] += 1
    p = work / "cal.toml"
    p.write_text(toml, encoding="utf-8", errors="surrogatepass")
    q = work / "pulses.csv"
    q.write_bytes(csv)
    for fn, path in ((load_toml, p), (read_pulses_csv, q)):
        try:
            fn(path)
        except QhytimeError as exc:
            assert str(path) in str(exc)
        except Exception as exc:
            STATS["TOML/CSV: escapes"] += 1
            raise AssertionError(f"{fn.__name__} let {exc!r} escape") from exc

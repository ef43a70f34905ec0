"""Stamping's fast paths give astropy's bytes, and the output is on disk before its rename.

The ``ROWTIMES`` table is written from a cached header and one record array, and a plain
capture's layout is found without astropy's walk of the file (:mod:`qhytime.stamp`): both are
checked here against astropy building and writing the same table and file. The ISO strings
are checked against numpy's ``datetime_as_string`` (:func:`qhytime.timebase.unix_ns_to_iso`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import example, given
from hypothesis import strategies as st

from qhytime import atomic, stamp
from qhytime.framerows import frame_row_times
from qhytime.rowmodel import RowModel
from qhytime.simulate import CameraSim
from qhytime.stamp import _iso_bytes, _row_table_bytes, _table_bytes, row_table, stamp_fits
from qhytime.timebase import unix_ns_to_iso

DATA = Path(__file__).parent / "data"
DAY_NS = 86_400 * 10**9
INT64 = np.iinfo(np.int64)


def _model(sim: CameraSim, **kw: Any) -> RowModel:
    return RowModel.from_us(offset0_us=sim.offset0_us, line_period_ns=sim.line_period_ns,
                            readout=sim.readout, reference=sim.reference, **kw)  # fmt: skip


def _frame(tmp_path: Path, top_down: bool = False, **kw: Any) -> tuple[Path, CameraSim]:
    sim = CameraSim(**kw)
    if not top_down:
        (src,) = sim.write_fits(tmp_path / "cap", 1)
        return src, sim
    src = tmp_path / "td.fits"
    hdu = fits.PrimaryHDU(sim.frame(0).image[::-1])  # stored top-down: block in the last row
    hdu.header["ROWORDER"] = "TOP-DOWN"
    hdu.header["EXPTIME"] = sim.exposure_us * 1e-6
    hdu.writeto(src)
    return src, sim


FRAMES = {
    "pairs": dict(width=64, height=40),
    "binned crop": dict(width=48, height=21, binning=2, crop_y=37),
    "binning 3, 8-bit": dict(width=64, height=13, binning=3, crop_y=5, bit_depth=8),
    "2cms now": dict(width=64, height=30, readout="2cms", reference="now"),
    "top-down": dict(width=64, height=17, readout="2cms", top_down=True),
    "across midnight": dict(width=64, height=40, t0_unix_ns=1_754_092_800 * 10**9 + 50_000),
}


@pytest.mark.parametrize("name", list(FRAMES))
@pytest.mark.parametrize("sigma", [False, True])
def test_table_bytes_are_what_astropy_writes(tmp_path: Path, name: str, sigma: bool) -> None:
    src, sim = _frame(tmp_path, **FRAMES[name])
    extra = dict(offset0_sigma_us=0.05, line_period_sigma_ns=0.003) if sigma else {}
    frt = frame_row_times(src, model=_model(sim, **extra), allow_invalid=True)
    ours = _row_table_bytes(frt)
    assert ours == _table_bytes(row_table(frt))  # astropy: BinTableHDU.from_columns + writeto
    # and astropy reads it back to the same integers, strings and sigmas
    path = tmp_path / "t.fits"
    path.write_bytes(fits.PrimaryHDU().header.tostring().encode("ascii") + ours)
    with fits.open(path) as hdul:
        tab = hdul["ROWTIMES"].data
        assert np.array_equal(tab["END_NS"], frt.times.end_ns[0])
        assert np.array_equal(tab["SIGMA_NS"], frt.times.sigma_ns)
        assert list(tab["MID"]) == list(unix_ns_to_iso(frt.times.mid_ns[0]))


def test_global_reset_and_midnight_table(tmp_path: Path) -> None:
    """Rows that start together (global reset) and rows that end on the next day."""
    src, _ = _frame(tmp_path, width=64, height=40, t0_unix_ns=1_754_092_800 * 10**9 + 900)
    m = RowModel.from_us(offset0_us=0.0, line_period_ns=43194.0, global_reset=True)
    frt = frame_row_times(src, model=m)
    days = set(np.asarray(frt.times.end_ns[0]) // DAY_NS) | set(np.asarray(frt.times.start_ns[0]) // DAY_NS)
    assert len(days) == 2  # the case is what it says
    assert _row_table_bytes(frt) == _table_bytes(row_table(frt))


@example(t0=0, span=0)  # the epoch
@example(t0=-1, span=2)  # one ns before it
@example(t0=INT64.max - 5, span=5)  # the last int64 ns
@example(t0=INT64.min + 1, span=10)  # the first after NaT
@example(t0=1_754_092_800 * 10**9 - 3, span=6)  # midnight
@example(t0=0, span=4 * DAY_NS + 1)  # too many days: numpy's own strings
@given(t0=st.integers(INT64.min + 1, INT64.max), span=st.integers(0, 6 * DAY_NS))
def test_iso_bytes_are_numpys_strings(t0: int, span: int) -> None:
    span = min(span, INT64.max - t0)
    ns = np.array([t0 + span * k // 6 for k in range(7)], dtype=np.int64)
    got = _iso_bytes(ns)
    if got is None:  # the times span more than a few days
        assert (t0 + span) // DAY_NS - t0 // DAY_NS > 4
        return
    assert got.dtype == np.dtype("S29")
    assert [g.decode("ascii") for g in got] == list(unix_ns_to_iso(ns))


def test_iso_bytes_refuses_nat() -> None:
    assert _iso_bytes(np.array([INT64.min, 0], dtype=np.int64)) is None


def _stamp_both_ways(src: Path, out: Path, model: RowModel, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, bytes]:
    stamp_fits(src, out / "fast.fits", model=model, allow_invalid=True)
    with monkeypatch.context() as mp:
        mp.setattr(stamp, "_plain_layout", lambda *a: None)  # astropy's walk of the file
        stamp_fits(src, out / "astropy.fits", model=model, allow_invalid=True)
    return (out / "fast.fits").read_bytes(), (out / "astropy.fits").read_bytes()


@pytest.mark.parametrize("name", ["pairs", "binning 3, 8-bit", "top-down"])
def test_plain_layout_writes_the_same_file_as_astropys(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, sim = _frame(tmp_path, **FRAMES[name])
    fast, slow = _stamp_both_ways(src, tmp_path, _model(sim), monkeypatch)
    assert fast == slow


def test_plain_layout_of_a_file_without_its_last_fill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A capture program that stops writing after the pixels (no zero fill): still one span."""
    src, sim = _frame(tmp_path, width=50, height=31)
    raw, hdr = src.read_bytes(), fits.getheader(src)
    head = len(hdr.tostring())
    src.write_bytes(raw[: head + 50 * 31 * 2])
    assert len(raw) > head + 50 * 31 * 2  # there was a fill to cut
    assert stamp._plain_layout(str(src), hdr) == [("PRIMARY", 0, head, len(raw) - head)]
    fast, slow = _stamp_both_ways(src, tmp_path, _model(sim), monkeypatch)
    assert fast == slow


def test_plain_layout_declines_anything_but_a_lone_image(tmp_path: Path) -> None:
    src, sim = _frame(tmp_path, width=64, height=20)
    hdr = fits.getheader(src)
    assert stamp._plain_layout(str(src), hdr) is not None
    # a stamped file (its ROWTIMES table follows the image)
    out = tmp_path / "s.fits"
    stamp_fits(src, out, model=_model(sim))
    assert stamp._plain_layout(str(out), fits.getheader(out)) is None
    # an extension after the image
    ext = tmp_path / "ext.fits"
    with fits.open(src) as hdul:
        fits.HDUList([hdul[0].copy(), fits.ImageHDU(np.zeros((2, 2)))]).writeto(ext)
    assert stamp._plain_layout(str(ext), fits.getheader(ext)) is None
    # a header byte that is not ASCII (astropy and the reader would read it differently)
    bad = tmp_path / "bad.fits"
    raw = bytearray(src.read_bytes())
    at = raw.index(b"INSTRUME= 'QHY600PRO'") + 12
    raw[at] = 0xE9
    bad.write_bytes(bytes(raw))
    assert stamp._plain_layout(str(bad), hdr) is None
    # a truncated image
    short = tmp_path / "short.fits"
    short.write_bytes(src.read_bytes()[:-2880])
    assert stamp._plain_layout(str(short), hdr) is None


def test_the_data_is_on_disk_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole or nothing after a power cut too: the temporary file is complete and fsynced
    before it is renamed onto the final name (without it, ext4 outside its rename-over
    heuristic, XFS and others may commit the rename before the data: an empty file)."""
    src, sim = _frame(tmp_path, width=64, height=20)
    out = tmp_path / "out" / "s.fits"
    events: list[tuple[str, str, int]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        real_fsync(fd)
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"), os.fstat(fd).st_size))

    def replace(a: Any, b: Any) -> None:
        events.append(("replace", os.fspath(a), os.path.getsize(a)))
        real_replace(a, b)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    stamp_fits(src, out, model=_model(sim))
    size = out.stat().st_size
    assert [e[0] for e in events] == ["fsync", "replace"]
    (_, synced, synced_size), (_, renamed, _) = events
    assert os.path.realpath(synced) == os.path.realpath(renamed) and synced_size == size

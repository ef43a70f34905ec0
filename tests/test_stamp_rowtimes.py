"""The ROWTIMES table follows the FITS time standard; stamped files pass fitsverify.

Real clients: astropy's ``Table.read(..., astropy_native=True)`` (its ``fitstime`` reader)
and Debian's ``fitsverify`` (required under ``CI=true``).
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

from qhytime.calibration import Calibration, Setting
from qhytime.rowmodel import RowModel
from qhytime.simulate import CameraSim
from qhytime.stamp import stamp_fits
from qhytime.store import CalibrationStore
from qhytime.timebase import iso_to_unix_ns, time_to_unix_ns

from conftest import need

DATA = Path(__file__).parent / "data"


def _model(sim: CameraSim) -> RowModel:
    return RowModel.from_us(offset0_us=sim.offset0_us, line_period_ns=sim.line_period_ns,
                            readout=sim.readout, reference=sim.reference)  # fmt: skip


def test_astropy_reads_time_columns_exact_to_the_ns(tmp_path: Path) -> None:
    sim = CameraSim(width=40, height=30, crop_y=5, reference="now", line_period_ns=43194.523827)
    (src,) = sim.write_fits(tmp_path / "cap", 1)
    out = tmp_path / "out.fits"
    stamp_fits(src, out, model=_model(sim))
    t = Table.read(out, hdu="ROWTIMES", astropy_native=True)
    shot = sim.frame(0, noise=False)
    truth_end = shot.reference_ns + np.round(shot.row_end_ns).astype(np.int64)
    for name in ("START", "MID", "END"):
        col = t[name]
        assert isinstance(col, Time) and col.scale == "utc", name
        ns = time_to_unix_ns(col)  # astropy's parse of the ISO strings, back to ns
        assert np.array_equal(ns, np.asarray(t[f"{name}_NS"])), name  # full precision
    # the int64 columns are plain integers (not FITS time: that would count leap seconds)
    for name in ("START_NS", "MID_NS", "END_NS"):
        assert not isinstance(t[name], Time) and t[name].dtype.kind == "i" and t[name].dtype.itemsize == 8
        assert str(t[name].unit) == "ns"
    # and they are the simulator's true row ends (tick truncation of the stamp < 100 ns)
    assert np.all(np.abs(np.asarray(t["END_NS"]) - truth_end) <= 100)
    assert np.array_equal(np.asarray(t["MID_NS"]) * 2, np.asarray(t["START_NS"]) + t["END_NS"])
    # the header's time keywords come back as Time too, not dropped
    assert isinstance(t.meta["DATE-BEG"], Time) and isinstance(t.meta["DATE-END"], Time)
    assert time_to_unix_ns(t.meta["DATE-BEG"]) == int(np.min(t["START_NS"]))
    assert time_to_unix_ns(t.meta["DATE-END"]) == int(np.max(t["END_NS"]))
    # without astropy_native the scale is still in the table's metadata
    plain = Table.read(out, hdu="ROWTIMES")
    assert plain.meta["TIMESYS"] == "UTC" and "TIMEUNIT" not in plain.meta
    assert int(iso_to_unix_ns(plain["END"][3])) == int(plain["END_NS"][3])


def _fitsverify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["fitsverify", "-q", str(path)], capture_output=True, text=True)


def _outputs(tmp_path: Path) -> list[Path]:
    """Stamped files of every kind the issue names."""
    outs = []
    # binning 1 and 2, an exact calibration from a store
    for b in (1, 2):
        sim = CameraSim(width=64, height=40 // b * 2, crop_y=37, binning=b, reference="now")
        (src,) = sim.write_fits(tmp_path / f"b{b}", 1)
        s = Setting(camera_model="QHY600PRO", readout_mode=sim.readout_mode, roi_y=37,
                    roi_width=64 * b, roi_height=sim.height * b, binning=b)  # fmt: skip
        with CalibrationStore(tmp_path / f"db{b}.sqlite") as store:
            store.add(Calibration(setting=s, reference="now", offset0_us=sim.offset0_us,
                                  line_period_ns=sim.line_period_ns, method="LED fit"))  # fmt: skip
            out = tmp_path / f"out_b{b}.fits"
            assert stamp_fits(src, out, store=store).status == "ok"
        outs.append(out)
    # a flagged frame (receiver not locked): QT_STAT invalid with QT_WHY
    sim = CameraSim(width=64, height=20, receiver_state=2)
    (src,) = sim.write_fits(tmp_path / "flag", 1)
    out = tmp_path / "out_flagged.fits"
    assert stamp_fits(src, out, model=_model(sim), allow_invalid=True).status == "invalid"
    assert "receiver_state" in fits.getheader(out)["QT_WHY"]
    outs.append(out)
    # fallback and pinned calibrations (QT_CALK, QT_DIFF)
    sim = CameraSim(width=64, height=20, crop_y=10)
    (src,) = sim.write_fits(tmp_path / "fb", 1)
    other = Setting(camera_model="QHY600PRO", readout_mode=sim.readout_mode, roi_y=0,
                    roi_width=9576, roi_height=6388)  # fmt: skip
    with CalibrationStore(tmp_path / "fb.sqlite") as store:
        cal = store.add(Calibration(setting=other, reference="end", offset0_us=1998.92,
                                    line_period_ns=43194.53, method="LED fit"))  # fmt: skip
        with pytest.warns(UserWarning):
            stamp_fits(src, tmp_path / "out_fallback.fits", store=store, fallback=True)
        with pytest.warns(UserWarning):
            stamp_fits(src, tmp_path / "out_pinned.fits", store=store, calibration_id=cal.id)
    assert fits.getheader(tmp_path / "out_fallback.fits")["QT_CALK"] == "fallback"
    h = fits.getheader(tmp_path / "out_pinned.fits")
    assert h["QT_CALK"] == "pinned" and "roi_width" in h["QT_DIFF"]
    outs += [tmp_path / "out_fallback.fits", tmp_path / "out_pinned.fits"]
    # a 2CMS frame, 8-bit
    sim = CameraSim(width=64, height=20, readout="2cms", readout_mode="High Gain 2CMS", bit_depth=8)
    (src,) = sim.write_fits(tmp_path / "2cms", 1)
    out = tmp_path / "out_2cms.fits"
    stamp_fits(src, out, model=_model(sim))
    outs.append(out)
    # the reference frame (no READOUTM, no crop keywords), stamped twice in place
    ref = tmp_path / "ref.fits"
    shutil.copyfile(DATA / "fits16_000.fits", ref)
    m = RowModel.from_us(offset0_us=1998.92, line_period_ns=43194.53, reference="end")
    stamp_fits(ref, in_place=True, model=m)
    stamp_fits(ref, in_place=True, model=m)
    outs.append(ref)
    # a tile-compressed (RICE) image and a gzip file
    with fits.open(ref) as hdul:
        pixels, header = hdul[0].data.copy(), hdul[0].header.copy()
    rice = tmp_path / "rice.fits"
    comp = fits.CompImageHDU(pixels, header=header, compression_type="RICE_1")
    fits.HDUList([fits.PrimaryHDU(), comp]).writeto(rice)
    stamp_fits(rice, tmp_path / "out_rice.fits", model=m)
    gz = tmp_path / "g.fits.gz"
    with open(DATA / "fits16_000.fits", "rb") as a, gzip.open(gz, "wb") as b:
        shutil.copyfileobj(a, b)
    stamp_fits(gz, tmp_path / "out_g.fits.gz", model=m)
    outs += [tmp_path / "out_rice.fits", tmp_path / "out_g.fits.gz"]
    return outs


def test_stamped_files_pass_fitsverify(tmp_path: Path) -> None:
    need(shutil.which("fitsverify") is not None, "fitsverify (Debian package fitsverify)")
    outs = _outputs(tmp_path)
    assert len(outs) == 9
    for out in outs:
        res = _fitsverify(out)
        assert res.returncode == 0, f"{out.name}: {res.stdout}{res.stderr}"
        full = subprocess.run(["fitsverify", str(out)], capture_output=True, text=True).stdout
        assert "0 warning(s) and 0 error(s)" in full, f"{out.name}:\n{full}"


def test_fitsverify_catches_a_broken_file(tmp_path: Path) -> None:
    """The client is real: a damaged stamped file fails it."""
    need(shutil.which("fitsverify") is not None, "fitsverify (Debian package fitsverify)")
    ref = tmp_path / "ref.fits"
    shutil.copyfile(DATA / "fits16_000.fits", ref)
    m = RowModel.from_us(offset0_us=1998.92, line_period_ns=43194.53, reference="end")
    stamp_fits(ref, in_place=True, model=m)
    raw = bytearray(ref.read_bytes())
    raw[-2880 * 2 :] = b""  # cut the table's data
    ref.write_bytes(bytes(raw))
    assert _fitsverify(ref).returncode != 0

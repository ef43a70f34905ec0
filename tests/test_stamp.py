"""Stamped FITS: keywords, the ROWTIMES table, pixels untouched, no fact of the file changed.

Siril's reading is in test_stamp_siril.py, astropy and fitsverify in test_stamp_rowtimes.py,
kill -9 and a full disk in test_stamp_faults.py.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from qhytime.calibration import Calibration, Setting
from qhytime.cli import main
from qhytime.decode import decode_file
from qhytime.errors import FrameReadError, OutputError, RowModelError
from qhytime.framerows import file_timing, setting_from_reader
from qhytime.readers import FitsReader
from qhytime.rowmodel import RowModel
from qhytime.simulate import CameraSim
from qhytime.stamp import stamp_files, stamp_fits
from qhytime.store import CalibrationStore
from qhytime.timebase import iso_to_unix_ns

DATA = Path(__file__).parent / "data"
REF_MODEL = ["--offset0-us", "1998.92", "--line-period-ns", "43194.53", "--reference", "end"]


@pytest.fixture()
def capture(tmp_path: Path) -> tuple[list[Path], CameraSim]:
    sim = CameraSim(width=96, height=40, crop_y=37, exposure_us=20_000.0, reference="now",
                    offset0_us=1974.286, readout_mode="High Gain 2CMS", readout="2cms")  # fmt: skip
    return sim.write_fits(tmp_path / "cap", 2), sim


def sim_calibration(sim: CameraSim, **kw: object) -> Calibration:
    s = Setting(camera_model="QHY600PRO", readout_mode=sim.readout_mode, roi_y=sim.crop_y,
                roi_x=sim.crop_x, roi_width=sim.width * sim.binning,
                roi_height=sim.height * sim.binning, binning=sim.binning, stream_mode="single")  # fmt: skip
    return Calibration(setting=s, reference=sim.reference, offset0_us=sim.offset0_us,
                       line_period_ns=sim.line_period_ns, offset0_sigma_us=0.05,
                       method="LED fit", **kw)  # type: ignore[arg-type]  # fmt: skip


def data_bytes(path: Path) -> bytes:
    """The primary HDU's data bytes, as stored (the pixels, padding included)."""
    with fits.open(path) as hdul:
        info = hdul[0].fileinfo()
    with open(path, "rb") as fh:
        fh.seek(info["datLoc"])
        return fh.read(info["datSpan"])


def setting_of(path: Path) -> Setting:
    with FitsReader(path) as reader:
        return setting_from_reader(reader)


def test_stamped_file_has_keywords_table_and_same_pixels(
    tmp_path: Path, capture: tuple[list[Path], CameraSim]
) -> None:
    paths, sim = capture
    with CalibrationStore(tmp_path / "db.sqlite") as store:
        cal = store.add(sim_calibration(sim))
        res = stamp_fits(paths[0], tmp_path / "out.fits", store=store)
    assert res.status == "ok" and res.calibration_id == cal.id
    with fits.open(tmp_path / "out.fits") as hdul:
        h = hdul[0].header
        for key in ("GPS_EUTC", "GPS_EFLG", "QHY_EXP", "QHY_LP", "QHY_OFF0", "READOUTM",
                    "CROPOFFX", "CROPOFFY", "DATE-OBS", "DATE-END", "QT_CALID", "QT_SIGMA",
                    "QT_LP", "QT_SIRIL"):  # fmt: skip
            assert key in h, key
        assert h["QT_CALID"] == cal.id and h["QT_CALK"] == "exact" and h["GPS_EFLG"] == 3
        assert h["CROPOFFY"] == 37 and h["QT_CROPY"] == 37  # binning 1: the same number
        assert isinstance(h["QHY_LP"], int) and h["QT_LP"] == sim.line_period_ns
        tab = hdul["ROWTIMES"].data
        assert len(tab) == 40 and tab["ROW"].tolist() == list(range(40))
        # the header's first-row times equal the table's
        assert iso_to_unix_ns(h["DATE-OBS"]) == int(tab["START_NS"][0])
        assert iso_to_unix_ns(h["DATE-END"]) == int(tab["END_NS"][0])
        assert tab["END"][0] == h["DATE-END"]
        # QHY_OFF0 is offset0 from the end stamp, exact: the first row's end, by hand
        assert iso_to_unix_ns(h["GPS_EUTC"]) + round(h["QHY_OFF0"] * 1000) + 43194 * 37 == int(
            tab["END_NS"][0]
        )
        # the table holds the simulator's true row ends (tick truncation of the stamp)
        shot = sim.frame(0, noise=False)
        truth_end = shot.reference_ns + shot.row_end_ns
        assert np.all(np.abs(tab["END_NS"] - truth_end) <= 100)
    assert data_bytes(tmp_path / "out.fits") == data_bytes(paths[0])  # byte for byte
    assert fits.getheader(paths[0]).get("GPS_EUTC") is None  # source not modified


def test_reference_file_in_place_keeps_its_setting_and_times(tmp_path: Path) -> None:
    """The issue: `qhytime stamp s.fits --in-place; qhytime rows s.fits` failed because stamp
    wrote READOUTM='normal' where the file had none. Now: same setting, same lookup, same
    times; a re-stamp too; keywords the file lacked say unknown or stay absent."""
    s = tmp_path / "s.fits"
    shutil.copyfile(DATA / "fits16_000.fits", s)
    source = tmp_path / "source.fits"
    shutil.copyfile(s, source)
    db = str(tmp_path / "t.sqlite")
    add = ["calib", "add", "--db", db, "--camera", "QHY600PRO", "--readout-mode", "unknown",
           "--roi", "0,0,320,96", "--reference", "end", "--offset0-us", "1998.92",
           "--line-period-ns", "43194.53"]  # fmt: skip
    r = CliRunner()
    assert r.invoke(main, add).exit_code == 0
    rows = ["rows", "--db", db, "--json"]
    before = r.invoke(main, [*rows, str(s)])
    assert before.exit_code == 0
    for _ in range(2):  # stamp, then re-stamp the stamped file
        res = r.invoke(main, ["stamp", "--db", db, "--in-place", "--quiet", str(s)])
        assert res.exit_code == 0 and "Traceback" not in res.output, res.output
        after = r.invoke(main, [*rows, str(s)])
        assert after.exit_code == 0, after.output
        assert after.stdout == before.stdout
    assert setting_of(s) == setting_of(source)
    h = fits.getheader(s)
    assert h["READOUTM"] == "unknown" and h["QT_MODE"] == "unknown"
    assert h["QT_CROPX"] == h["QT_CROPY"] == h["QT_BIN"] == "unknown"
    for absent in ("CROPOFFX", "CROPOFFY", "XBINNING", "YBINNING", "ROWORDER", "QT_WHY"):
        assert absent not in h, absent
    assert h["QT_EXPNS"] == 250_000_000 and h["EXPTIME"] == 0.25
    # decoding gives the same blocks and times
    a, b = decode_file(source), decode_file(s)
    for k in ("start", "end", "now"):
        assert np.array_equal(a.unix_ns[k], b.unix_ns[k])
    assert data_bytes(s) == data_bytes(source)
    with fits.open(s) as hdul:
        assert [x.name for x in hdul] == ["PRIMARY", "ROWTIMES"]  # one table, not two


@pytest.mark.parametrize(
    ("binning", "crop_y", "readout", "mode"),
    [(2, 37, "pairs", "High Gain"), (1, 10, "2cms", None), (2, 0, "2cms", "Extended Fullwell 2cms")],
)
def test_stamped_setting_and_times_are_the_sources(
    tmp_path: Path, binning: int, crop_y: int, readout: str, mode: str | None
) -> None:
    """Binned crops (CROPOFFY in binned rows for Siril), a 2CMS model on a file without
    READOUTM, a lowercase 2cms: the stamped file has its source's setting, and re-stamping
    it gives the same times and keywords."""
    sim = CameraSim(width=64, height=30, crop_y=crop_y, binning=binning, readout=readout,
                    readout_mode=mode or "x", exposure_us=3000.0)  # fmt: skip
    (src,) = sim.write_fits(tmp_path / "cap", 1)
    if mode is None or mode.endswith("2cms"):
        with fits.open(src, mode="update") as hdul:
            if mode is None:
                del hdul[0].header["READOUTM"]
            else:
                hdul[0].header["READOUTM"] = mode  # the simulator upper-cased it
    model = RowModel.from_us(offset0_us=sim.offset0_us, line_period_ns=43194.523827,
                             readout=readout, reference="end")  # fmt: skip
    one, two = tmp_path / "one.fits", tmp_path / "two.fits"
    stamp_fits(src, one, model=model)
    stamp_fits(one, two, model=model)
    assert setting_of(one) == setting_of(src) == setting_of(two)
    h1, h2 = fits.getheader(one), fits.getheader(two)
    with fits.open(one) as a, fits.open(two) as b:
        assert np.array_equal(a["ROWTIMES"].data["END_NS"], b["ROWTIMES"].data["END_NS"])
        assert np.array_equal(a["ROWTIMES"].data["START_NS"], b["ROWTIMES"].data["START_NS"])
    skip = {"CHECKSUM", "DATASUM"}
    assert {k: h1[k] for k in h1 if k not in skip} == {k: h2[k] for k in h2 if k not in skip}
    assert h1["QT_CROPY"] == crop_y and h1["CROPOFFY"] == -(-crop_y // binning)
    if readout == "2cms":
        assert "2CMS" in h1["READOUTM"]  # Siril's case-sensitive test
        assert h1["QT_MODE"] == (mode or "unknown")
    else:
        assert h1["READOUTM"] == mode and h1["QT_MODE"] == mode


def test_crop_exposure_overrides_are_not_recorded_as_facts(tmp_path: Path) -> None:
    """An explicit crop or exposure is used for the times (and written for Siril) but the
    stamped file still reads back with its source's setting and exposure."""
    s = tmp_path / "s.fits"
    shutil.copyfile(DATA / "fits16_000.fits", s)
    out = tmp_path / "out.fits"
    model = RowModel.from_us(offset0_us=1998.92, line_period_ns=43194.53)
    stamp_fits(s, out, model=model, crop_y=21, exposure_ns=123_456_789, binning=1)
    h = fits.getheader(out)
    assert h["CROPOFFY"] == 21 and h["QHY_EXP"] == 0.123456789  # what the times used
    assert h["QT_CROPY"] == "unknown" and h["QT_EXPNS"] == 250_000_000  # what the file said
    assert setting_of(out) == setting_of(s)
    ft = file_timing(str(out), model=model)
    assert ft.exposure_ns == 250_000_000 and ft.crop_y == 0


def test_calibration_exposure_scale_is_not_applied_twice(tmp_path: Path) -> None:
    sim = CameraSim(width=64, height=20, exposure_us=1000.0)
    (src,) = sim.write_fits(tmp_path / "cap", 1)
    with CalibrationStore(tmp_path / "db.sqlite") as store:
        store.add(sim_calibration(sim, exposure_scale=1.001))
        stamp_fits(src, tmp_path / "one.fits", store=store)
        stamp_fits(tmp_path / "one.fits", tmp_path / "two.fits", store=store)
    with fits.open(tmp_path / "one.fits") as a, fits.open(tmp_path / "two.fits") as b:
        assert a[0].header["QHY_EXP"] == pytest.approx(0.001001, abs=1e-12)
        assert a[0].header["QT_EXPNS"] == b[0].header["QT_EXPNS"] == 1_000_000
        ta, tb = a["ROWTIMES"].data, b["ROWTIMES"].data
        assert np.array_equal(ta["START_NS"], tb["START_NS"])
        assert int(ta["END_NS"][0] - ta["START_NS"][0]) == 1_001_000


def test_capture_programs_date_obs_is_kept(tmp_path: Path) -> None:
    s, t = tmp_path / "s.fits", tmp_path / "t.fits"
    shutil.copyfile(DATA / "fits16_000.fits", s)
    shutil.copyfile(DATA / "fits16_000.fits", t)
    with fits.open(s, mode="update") as hdul:
        hdul[0].header["DATE-OBS"] = "2025-08-02T01:44:51.7"
    m1 = RowModel.from_us(offset0_us=1998.92, line_period_ns=43194.53)
    m2 = RowModel.from_us(offset0_us=2000.00, line_period_ns=43194.53)
    stamp_fits(s, in_place=True, model=m1)
    h = fits.getheader(s)
    assert h["DATE-OBS"] == "2025-08-02T01:44:51.7" and "DATE-END" not in h
    # DATE-OBS/DATE-END that a stamp wrote follow a re-stamp with another model
    stamp_fits(t, in_place=True, model=m1)
    stamp_fits(t, in_place=True, model=m2)
    with fits.open(t) as hdul:
        h, tab = hdul[0].header, hdul["ROWTIMES"].data
        assert iso_to_unix_ns(h["DATE-END"]) == int(tab["END_NS"][0])
        assert h["DATE-END"] == tab["END"][0]
        assert int(tab["END_NS"][0]) == iso_to_unix_ns("2025-08-02T01:44:51.980086527") + 2_000_000


def test_in_place_only_when_asked(tmp_path: Path, capture: tuple[list[Path], CameraSim]) -> None:
    paths, sim = capture
    os.chmod(paths[0], 0o640)
    with CalibrationStore(tmp_path / "db.sqlite") as store:
        store.add(sim_calibration(sim))
        with pytest.raises(OutputError, match="give an output path"):
            stamp_fits(paths[0], None, store=store)
        with pytest.raises(OutputError, match="not both"):
            stamp_fits(paths[0], tmp_path / "x.fits", in_place=True, store=store)
        with pytest.raises(OutputError, match="is the source file itself") as err:
            stamp_fits(paths[0], paths[0].parent / ".." / "cap" / paths[0].name, store=store)
        assert err.value.path == str(paths[0])
        res = stamp_fits(paths[0], in_place=True, store=store)
    assert res.output == str(paths[0])
    assert stat.S_IMODE(paths[0].stat().st_mode) == 0o640  # the file keeps its permissions
    assert sorted(os.listdir(paths[0].parent)) == sorted(p.name for p in paths)  # no temp file
    with fits.open(paths[0]) as hdul:
        assert "ROWTIMES" in [h.name for h in hdul]
        assert hdul[0].header["QT_STAT"] == "ok"


def test_cube_is_refused_clearly(tmp_path: Path) -> None:
    cube = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.zeros((3, 8, 32), dtype=np.uint16)).writeto(cube)
    with pytest.raises(FrameReadError, match="a cube of 3 frames: stamping needs one frame"):
        stamp_fits(cube, tmp_path / "o.fits", model=RowModel.from_us(offset0_us=1, line_period_ns=1))
    assert not (tmp_path / "o.fits").exists()


def test_image_in_an_extension_is_stamped_there(tmp_path: Path) -> None:
    src = tmp_path / "ext.fits"
    with fits.open(DATA / "fits16_000.fits") as hdul:
        img = fits.ImageHDU(hdul[0].data, header=hdul[0].header)
        fits.HDUList([fits.PrimaryHDU(), img]).writeto(src)
    out = tmp_path / "out.fits"
    model = RowModel.from_us(offset0_us=1998.92, line_period_ns=43194.53)
    assert stamp_fits(src, out, model=model).status == "ok"
    with fits.open(out) as o, fits.open(DATA / "fits16_000.fits") as ref:
        assert [h.name for h in o] == ["PRIMARY", "", "ROWTIMES"]
        assert np.array_equal(o[1].data, ref[0].data) and o[1].data.dtype == ref[0].data.dtype
        assert o[1].header["QT_MODE"] == "unknown" and "QT_MODE" not in o[0].header
        assert o["ROWTIMES"].data["END"][0] == "2025-08-02T01:44:51.982085447"


def test_missing_exposure_names_the_argument(tmp_path: Path) -> None:
    s = tmp_path / "noexp.fits"
    shutil.copyfile(DATA / "fits16_000.fits", s)
    with fits.open(s, mode="update") as hdul:
        del hdul[0].header["EXPTIME"]
    model = RowModel.from_us(offset0_us=1998.92, line_period_ns=43194.53)
    with pytest.raises(RowModelError, match="give exposure_ns"):
        stamp_fits(s, tmp_path / "o.fits", model=model)
    res = CliRunner().invoke(main, ["stamp", "--quiet", *REF_MODEL, "--out", str(tmp_path / "o"), str(s)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert str(s) in res.stderr and "give --exposure-s" in res.stderr
    ok = CliRunner().invoke(
        main, ["stamp", "--quiet", *REF_MODEL, "--exposure-s", "0.25", "--out", str(tmp_path / "o"), str(s)]
    )
    assert ok.exit_code == 0, ok.output
    assert fits.getheader(tmp_path / "o" / "noexp.fits")["QT_EXPNS"] == "unknown"


def test_batch_reports_status_per_file(
    tmp_path: Path, capture: tuple[list[Path], CameraSim], data_dir: Path
) -> None:
    paths, sim = capture
    with CalibrationStore(tmp_path / "db.sqlite") as store:
        store.add(sim_calibration(sim))
        results = list(
            stamp_files(
                [paths[0], data_dir / "bad_text.fits", paths[1]], tmp_path / "o", store=store
            )
        )
    assert [r.status for r in results] == ["ok", "error", "ok"]
    assert "bad_text.fits" in results[1].message


def test_same_name_from_two_folders_is_not_overwritten(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    shutil.copyfile(DATA / "fits16_000.fits", a / "f.fits")
    shutil.copyfile(DATA / "fits16_001.fits", b / "f.fits")
    model = RowModel.from_us(offset0_us=1998.92, line_period_ns=43194.53)
    res = list(stamp_files([a / "f.fits", b / "f.fits"], tmp_path / "o", model=model))
    assert [r.status for r in res] == ["ok", "error"]
    assert "also that of" in res[1].message and str(b / "f.fits") in res[1].message
    assert fits.getheader(tmp_path / "o" / "f.fits")["GPS_EUTC"] == fits.getheader(
        res[0].output
    )["GPS_EUTC"]


def bitpix_zero(path: Path) -> None:
    raw = bytearray((DATA / "fits16_000.fits").read_bytes())
    i = raw.index(b"BITPIX  =")
    raw[i : i + 80] = f"{'BITPIX  =':<10}{0:>20}".ljust(80).encode()
    path.write_bytes(bytes(raw))


def test_cli_batch_goes_on_past_bad_files(tmp_path: Path) -> None:
    """Issue: BITPIX = 0 gave a ZeroDivisionError and stamp abandoned its batch."""
    good1, good2 = tmp_path / "g1.fits", tmp_path / "g2.fits"
    shutil.copyfile(DATA / "fits16_000.fits", good1)
    shutil.copyfile(DATA / "fits16_001.fits", good2)
    bad = tmp_path / "bitpix0.fits"
    bitpix_zero(bad)
    missing = tmp_path / "missing.fits"
    out = tmp_path / "out"
    res = CliRunner().invoke(
        main, ["stamp", "--quiet", *REF_MODEL, "--out", str(out), str(good1), str(bad),
               str(DATA / "bad_text.fits"), str(missing), str(good2)],
    )  # fmt: skip
    assert res.exit_code == 1 and "Traceback" not in res.output
    errors = [x for x in res.stderr.splitlines() if x.startswith("error")]
    assert len(errors) == 3
    assert str(bad) in errors[0] and "BITPIX" in errors[0]
    assert "bad_text.fits" in errors[1] and str(missing) in errors[2]
    assert "internal error" not in res.stderr
    assert sorted(os.listdir(out)) == ["g1.fits", "g2.fits"]
    assert res.stdout.count("ok     ") == 2


def test_cli_stamp_takes_the_explicit_model_options(tmp_path: Path) -> None:
    """Issue: `--offset0-us` was "No such option" for stamp."""
    s = tmp_path / "s.fits"
    shutil.copyfile(DATA / "fits16_000.fits", s)
    r = CliRunner()
    res = r.invoke(main, ["stamp", "--quiet", *REF_MODEL, "--readout", "pairs", "--in-place", str(s)])
    assert res.exit_code == 0, res.output
    rows = r.invoke(main, ["rows", *REF_MODEL, str(s), "--rows", "95", "--json"])
    assert rows.exit_code == 0, rows.output
    with fits.open(s) as hdul:
        assert json.loads(rows.stdout)["end"] == hdul["ROWTIMES"].data["END"][95]
        assert hdul[0].header["QT_CALK"] == "explicit"
    # half a model is a usage error
    bad = r.invoke(main, ["stamp", "--offset0-us", "3", "--in-place", str(s)])
    assert bad.exit_code == 2 and "go together" in bad.output


def test_cli_out_in_the_source_folder_is_refused(tmp_path: Path) -> None:
    """Issue: `stamp --out <source folder>` crashed with a TypeError."""
    s = tmp_path / "s.fits"
    shutil.copyfile(DATA / "fits16_000.fits", s)
    before = s.read_bytes()
    res = CliRunner().invoke(main, ["stamp", *REF_MODEL, "--out", str(tmp_path), str(s)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "is the folder of" in res.output and "s.fits" in res.output
    assert s.read_bytes() == before
    res = CliRunner().invoke(main, ["stamp", *REF_MODEL, "--out", str(tmp_path / "o"), "--in-place", str(s)])
    assert res.exit_code == 2 and "exclude each other" in res.output


def test_cli_stamp_and_rows(tmp_path: Path, capture: tuple[list[Path], CameraSim]) -> None:
    paths, sim = capture
    db = str(tmp_path / "db.sqlite")
    with CalibrationStore(db) as store:
        cal = store.add(sim_calibration(sim))
    runner = CliRunner()
    res = runner.invoke(
        main, ["stamp", "--db", db, "--out", str(tmp_path / "st"), *map(str, paths)]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "st" / paths[1].name).exists()
    res = runner.invoke(main, ["rows", "--db", db, str(paths[0]), "--rows", "0:3", "--json"])
    assert res.exit_code == 0, res.output
    objs = [json.loads(x) for x in res.stdout.splitlines()]
    assert [o["row"] for o in objs] == [0, 1, 2] and set(objs[0]) == {
        "row", "start", "mid", "end", "start_ns", "mid_ns", "end_ns", "sigma_ns",
    }  # fmt: skip
    with fits.open(tmp_path / "st" / paths[0].name) as hdul:
        assert objs[2]["end"] == hdul["ROWTIMES"].data["END"][2]
    # the stamped copy looks up the same calibration and gives the same rows
    again = runner.invoke(
        main, ["rows", "--db", db, str(tmp_path / "st" / paths[0].name), "--rows", "0:3", "--json"]
    )
    assert again.exit_code == 0 and again.stdout == res.stdout
    res = runner.invoke(
        main, ["rows", "--db", db, str(paths[0]), "--calibration", str(cal.id), "--rows", "5"]
    )
    assert res.exit_code == 0 and "    5  " in res.output


def test_cli_rows_without_calibration_says_what_to_do(
    tmp_path: Path, capture: tuple[list[Path], CameraSim]
) -> None:
    paths, _ = capture
    res = CliRunner().invoke(main, ["rows", "--db", str(tmp_path / "e.sqlite"), str(paths[0])])
    assert res.exit_code == 1 and "ledcal" in res.output
    res = CliRunner().invoke(
        main, ["rows", "--db", str(tmp_path / "e.sqlite"), str(paths[0]), "--offset0-us", "3"]
    )
    assert res.exit_code == 2


def test_explicit_model_keeps_the_files_crop_and_mode(tmp_path: Path) -> None:
    sim = CameraSim(width=64, height=20, crop_x=24, crop_y=10, exposure_us=1000.0,
                    readout_mode="High Gain Mode")  # fmt: skip
    (src,) = sim.write_fits(tmp_path / "cap", 1)
    model = RowModel.from_us(
        offset0_us=1974.286, line_period_ns=43194, readout="pairs", reference="end"
    )
    res = stamp_fits(src, tmp_path / "out.fits", model=model)
    assert res.status == "ok" and res.calibration_id is None
    h = fits.getheader(tmp_path / "out.fits")
    assert (h["CROPOFFX"], h["CROPOFFY"], h["READOUTM"], h["QT_CALID"]) == (
        24, 10, "High Gain Mode", -1,
    )  # fmt: skip
    # row 0 is sensor row 10: end = end stamp + offset0 + 2 * LP * 5, by hand
    end_stamp = iso_to_unix_ns(h["GPS_EUTC"])
    assert iso_to_unix_ns(h["DATE-END"]) == end_stamp + 1_974_286 + 2 * 43_194 * 5


@pytest.mark.parametrize(
    "opts",
    [["--binning", "1000000000"], ["--exposure-s", "nan"], ["--exposure-s", "1e30"],
     ["--line-period-ns", "0", "--offset0-us", "1"], ["--crop-y", "-1"]],
)  # fmt: skip
def test_cli_stamp_absurd_numbers_are_usage_errors(tmp_path: Path, opts: list[str]) -> None:
    s = tmp_path / "s.fits"
    shutil.copyfile(DATA / "fits16_000.fits", s)
    before = s.read_bytes()
    res = CliRunner().invoke(main, ["stamp", *opts, "--in-place", str(s)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert opts[0] in res.output
    assert s.read_bytes() == before


def test_ser_is_refused_with_what_to_do(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["stamp", "--quiet", *REF_MODEL, "--out", str(tmp_path),
                                    str(DATA / "video16.ser")])  # fmt: skip
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "video16.ser: a SER file: stamp writes FITS files only" in res.stderr
    assert "qhytime rows" in res.stderr


def test_tile_compressed_and_gzip_files_are_stamped(tmp_path: Path) -> None:
    """The image stays where it was (a RICE extension, a gzip stream) with the same pixels;
    the output of a .fits.gz is gzip too."""
    import gzip

    with fits.open(DATA / "fits16_000.fits") as hdul:
        pixels, header = hdul[0].data.copy(), hdul[0].header.copy()
    rice = tmp_path / "rice.fits"
    comp = fits.CompImageHDU(pixels, header=header, compression_type="RICE_1")
    fits.HDUList([fits.PrimaryHDU(), comp]).writeto(rice)
    gz = tmp_path / "g.fits.gz"
    with open(DATA / "fits16_000.fits", "rb") as a, gzip.open(gz, "wb") as b:
        shutil.copyfileobj(a, b)
    model = RowModel.from_us(offset0_us=1998.92, line_period_ns=43194.53)
    res = list(stamp_files([rice, gz], tmp_path / "out", model=model))
    assert [r.status for r in res] == ["ok", "ok"], [r.message for r in res]
    for out in (tmp_path / "out" / "rice.fits", tmp_path / "out" / "g.fits.gz"):
        with FitsReader(out) as reader:
            assert np.array_equal(reader.image(0), pixels)
            assert reader.header["QT_LP"] == 43194.53 and isinstance(reader.header["QHY_LP"], int)
        with fits.open(out) as hdul:
            assert hdul["ROWTIMES"].data["END"][0] == "2025-08-02T01:44:51.982085447"
    assert (tmp_path / "out" / "g.fits.gz").read_bytes()[:2] == b"\x1f\x8b"
    # in place, a stamped gzip file stays gzip and re-stamps to the same times
    stamp_fits(tmp_path / "out" / "g.fits.gz", in_place=True, model=model)
    with fits.open(tmp_path / "out" / "g.fits.gz") as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "ROWTIMES"]
        assert hdul["ROWTIMES"].data["END"][0] == "2025-08-02T01:44:51.982085447"

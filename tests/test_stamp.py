"""Stamped FITS: keywords N.I.N.A./Siril read, the ROWTIMES table, pixels untouched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from qhytime.cli import main
from qhytime.simulate import CameraSim
from qhytime.stamp import stamp_files, stamp_fits
from qhytime.store import CalibrationStore
from qhytime.timebase import iso_to_unix_ns


def siril_end_ns(header: fits.Header, sensor_y: int) -> int:
    """Siril 1.5's formula, written from clients.md: GPS_EUTC + QHY_OFF0 + step(y)."""
    off0_ns = round(header["QHY_OFF0"] * 1000)
    lp = header["QHY_LP"]
    step = 2 * lp * (sensor_y // 2) if "2CMS" not in header["READOUTM"].upper() else lp * sensor_y
    return iso_to_unix_ns(header["GPS_EUTC"]) + off0_ns + round(step)


@pytest.fixture()
def capture(tmp_path: Path) -> tuple[list[Path], CameraSim]:
    sim = CameraSim(width=96, height=40, crop_y=37, exposure_us=20_000.0, reference="now",
                    offset0_us=1974.286, readout_mode="High Gain 2CMS", readout="2cms")  # fmt: skip
    return sim.write_fits(tmp_path / "cap", 2), sim


def test_stamped_file_has_keywords_table_and_same_pixels(
    tmp_path: Path, capture: tuple[list[Path], CameraSim]
) -> None:
    paths, sim = capture
    with CalibrationStore(tmp_path / "db.sqlite") as store:
        cal = store.add(CalibrationStore_cal(sim))
        res = stamp_fits(paths[0], tmp_path / "out.fits", store=store)
    assert res.status == "ok" and res.calibration_id == cal.id
    raw_in = fits.getdata(paths[0], do_not_scale_image_data=True)
    with fits.open(tmp_path / "out.fits") as hdul:
        h = hdul[0].header
        for key in ("GPS_EUTC", "GPS_EFLG", "QHY_EXP", "QHY_LP", "QHY_OFF0", "READOUTM", "CROPOFFX",
                    "CROPOFFY", "DATE-OBS", "DATE-END", "QT_CALID", "QT_SIGMA"):  # fmt: skip
            assert key in h, key
        assert h["QT_CALID"] == cal.id and h["CROPOFFY"] == 37 and h["GPS_EFLG"] == 3
        tab = hdul["ROWTIMES"].data
        assert len(tab) == 40 and tab["ROW"].tolist() == list(range(40))
        # the header's first-row times equal the table's
        assert iso_to_unix_ns(h["DATE-OBS"]) == int(tab["START_NS"][0])
        assert iso_to_unix_ns(h["DATE-END"]) == int(tab["END_NS"][0])
        assert tab["END"][0] == h["DATE-END"]
        # Siril's formula on our keywords gives our times (1 ns tolerance), every row
        for r in range(40):
            assert abs(siril_end_ns(h, 37 + r) - int(tab["END_NS"][r])) <= 1
        # ...and those are the simulator's true row ends (tick truncation < 100 ns)
        shot = sim.frame(0, noise=False)
        truth_end = shot.reference_ns + shot.row_end_ns
        assert np.all(np.abs(tab["END_NS"] - truth_end) <= 1)
    raw_out = fits.getdata(tmp_path / "out.fits", do_not_scale_image_data=True)
    assert np.array_equal(raw_in, raw_out)  # pixels untouched, byte for byte
    assert fits.getheader(paths[0]).get("GPS_EUTC") is None  # source not modified


def CalibrationStore_cal(sim: CameraSim):  # type: ignore[no-untyped-def]
    from qhytime.calibration import Calibration, Setting

    s = Setting(camera_model="QHY600PRO", readout_mode="High Gain 2CMS", roi_y=37, roi_width=96,
                roi_height=40, stream_mode="single")  # fmt: skip
    return Calibration(setting=s, reference="now", offset0_us=sim.offset0_us,
                       line_period_ns=sim.line_period_ns, offset0_sigma_us=0.05, method="LED fit")  # fmt: skip


def test_in_place_only_when_asked(tmp_path: Path, capture: tuple[list[Path], CameraSim]) -> None:
    paths, sim = capture
    with CalibrationStore(tmp_path / "db.sqlite") as store:
        store.add(CalibrationStore_cal(sim))
        with pytest.raises(Exception, match="output"):
            stamp_fits(paths[0], None, store=store)
        res = stamp_fits(paths[0], in_place=True, store=store)
    assert res.output == str(paths[0])
    with fits.open(paths[0]) as hdul:
        assert "ROWTIMES" in [h.name for h in hdul]
        assert hdul[0].header["QT_STAT"] == "ok"


def test_batch_reports_status_per_file(
    tmp_path: Path, capture: tuple[list[Path], CameraSim], data_dir: Path
) -> None:
    paths, sim = capture
    with CalibrationStore(tmp_path / "db.sqlite") as store:
        store.add(CalibrationStore_cal(sim))
        results = list(
            stamp_files(
                [paths[0], data_dir / "bad_text.fits", paths[1]], tmp_path / "o", store=store
            )
        )
    assert [r.status for r in results] == ["ok", "error", "ok"]
    assert "bad_text.fits" in results[1].message


def test_cli_stamp_and_rows(tmp_path: Path, capture: tuple[list[Path], CameraSim]) -> None:
    paths, sim = capture
    db = str(tmp_path / "db.sqlite")
    with CalibrationStore(db) as store:
        cal = store.add(CalibrationStore_cal(sim))
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
    from qhytime.rowmodel import RowModel

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
        24,
        10,
        "High Gain Mode",
        -1,
    )
    # row 0 is sensor row 10: end = end stamp + offset0 + 2 * LP * 5, by hand
    end_stamp = iso_to_unix_ns(h["GPS_EUTC"])
    assert iso_to_unix_ns(h["DATE-END"]) == end_stamp + 1_974_286 + 2 * 43_194 * 5

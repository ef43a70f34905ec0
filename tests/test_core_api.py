"""The one call users make (``exposure_window``), the per-file timing behind every job
(``file_timing``), and qhytime's manners in the user's process (astropy settings scoped, no
network)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from qhytime.api import (
    Calibration,
    CalibrationStore,
    QhytimeError,
    RowModel,
    RowModelError,
    Setting,
    exposure_window,
    file_timing,
    time_to_unix_ns,
)
from qhytime.simulate import CameraSim

from conftest import DATA

LP_NS, OFF0_NS = 43_194, 1_974_286
MODEL = RowModel.from_us(offset0_us=OFF0_NS / 1000, line_period_ns=LP_NS, readout="pairs",
                         reference="end")  # fmt: skip


def _truth(truth: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in truth["frames"] if f["file"] == name)


def test_pixel_time_by_hand(truth: dict[str, Any]) -> None:
    """fits16_000: exposure 0.25 s in the file? No: given. Row 95 is in pair 47."""
    end_stamp = _truth(truth, "fits16_000.fits")["end"]["unix_ns"]
    w = exposure_window(DATA / "fits16_000.fits", x=100.4, y=94.6, model=MODEL,
                        exposure_ns=250_000_000)  # fmt: skip
    end = end_stamp + OFF0_NS + 2 * LP_NS * 47
    assert w.rows.tolist() == [95] and w.start.isscalar
    assert time_to_unix_ns(w.end) == end  # exact, 0 ns
    assert time_to_unix_ns(w.start) == end - 250_000_000
    assert time_to_unix_ns(w.mid) == end - 125_000_000
    assert w.status == "ok" and w.calibration == "explicit model"
    assert w.sigma_s == pytest.approx(100 / np.sqrt(12) * 1e-9)


def test_rows_and_all_rows(truth: dict[str, Any]) -> None:
    end_stamp = _truth(truth, "fits16_001.fits")["end"]["unix_ns"]
    w = exposure_window(DATA / "fits16_001.fits", rows=[0, 1, 2, 95], model=MODEL,
                        exposure_ns=1_000_000)  # fmt: skip
    want = [end_stamp + OFF0_NS + 2 * LP_NS * (r // 2) for r in (0, 1, 2, 95)]
    assert w.end_ns.tolist() == want and time_to_unix_ns(w.end).tolist() == want
    every = exposure_window(DATA / "fits16_001.fits", model=MODEL, exposure_ns=1_000_000)
    assert len(every.rows) == 96 and every.end_ns[95] == want[-1]


def test_default_store_exactly_as_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          truth: dict[str, Any]) -> None:  # fmt: skip
    db = tmp_path / "user.sqlite"
    monkeypatch.setenv("QHYTIME_DB", str(db))
    setting = Setting(camera_model="QHY600PRO", readout_mode="unknown", roi_width=320,
                      roi_height=96)  # fmt: skip
    with CalibrationStore() as s:  # the same default the CLI opens
        cal = s.add(Calibration(setting=setting, reference="now", offset0_us=1998.92,
                                line_period_ns=43194.53, offset0_sigma_us=0.05))  # fmt: skip
    w = exposure_window(DATA / "fits16_000.fits", x=0, y=4171 % 96, exposure_ns=250_000_000)
    now = _truth(truth, "fits16_000.fits")["now"]["unix_ns"]
    r = 4171 % 96
    end = now + 1_998_920 + 2 * 43_194_530 * (r // 2) // 1000  # LP in ps, rounded once to ns
    assert time_to_unix_ns(w.end) == end
    assert f"calibration #{cal.id}" in w.calibration and "exact match" in w.calibration


def test_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(RowModelError, match=r"fits16_000\.fits, frame 0: pixel \(320, 5\) is outside the 320x96 frame"):
        exposure_window(DATA / "fits16_000.fits", x=320, y=5, model=MODEL, exposure_ns=1000)
    with pytest.raises(RowModelError, match="give both x and y"):
        exposure_window(DATA / "fits16_000.fits", x=3, model=MODEL)
    with pytest.raises(RowModelError, match=r"video16\.ser.*SER files carry no exposure; give exposure_ns"):
        exposure_window(DATA / "video16.ser", frame=3, x=1, y=1, model=MODEL)
    with pytest.raises(RowModelError, match=r"frame 25 out of range: the file has 25"):
        exposure_window(DATA / "video16.ser", frame=25, x=1, y=1, model=MODEL, exposure_ns=1000)
    # argument values a script might pass by mistake: qhytime's own errors, naming the file
    with pytest.raises(RowModelError, match=r"fits16_000\.fits: exposure_ns = 10{30} is not"):
        exposure_window(DATA / "fits16_000.fits", x=1, y=1, model=MODEL, exposure_ns=10**30)
    with pytest.raises(RowModelError, match="rows is empty"):
        exposure_window(DATA / "fits16_000.fits", rows=[], model=MODEL, exposure_ns=1000)
    with pytest.raises(RowModelError, match=r"whole image row numbers, got \[1\.5\]"):
        exposure_window(DATA / "fits16_000.fits", rows=[1.5], model=MODEL, exposure_ns=1000)
    with pytest.raises(QhytimeError, match=r"calibration id 10{30} is not a whole number"):
        exposure_window(DATA / "fits16_000.fits", x=1, y=1, calibration_id=10**30,
                        exposure_ns=1000, db=tmp_path / "c.sqlite")  # fmt: skip
    # a flagged frame is refused unless asked, and then says why
    with pytest.raises(RowModelError, match="receiver_state"):
        exposure_window(DATA / "fits8_000.fits", x=1, y=1, model=MODEL, exposure_ns=1000)
    w = exposure_window(DATA / "fits8_000.fits", x=1, y=1, model=MODEL, exposure_ns=1000,
                        allow_invalid=True)  # fmt: skip
    assert w.status == "invalid" and w.reasons[0].startswith("receiver_state")


def test_flipped_frame_counts_rows_from_the_block(tmp_path: Path) -> None:
    sim = CameraSim(width=64, height=10, exposure_us=1000.0, readout="2cms", offset0_us=100.0)
    shot = sim.frame(0, noise=False)
    path = tmp_path / "flip.fits"
    hdu = fits.PrimaryHDU(shot.image[::-1])  # stored top-down: the block is in the last row
    hdu.header["ROWORDER"] = "TOP-DOWN"
    hdu.writeto(path)
    m = RowModel.from_us(offset0_us=100.0, line_period_ns=sim.line_period_ns, readout="2cms")
    w = exposure_window(path, rows=[9, 0], model=m, exposure_ns=1_000_000)
    # stored row 9 is readout row 0; stored row 0 is readout row 9
    assert w.end_ns.tolist() == [shot.reference_ns + round(shot.row_end_ns[0]),
                                 shot.reference_ns + round(shot.row_end_ns[9])]  # fmt: skip


def test_file_timing_decodes_once_and_times_every_frame(truth: dict[str, Any]) -> None:
    ft = file_timing(DATA / "video16.ser", model=MODEL, exposure_ns=20_000_000)
    assert len(ft) == 25 and ft.lookup is None and ft.calibration_id is None
    ser = [f for f in truth["frames"] if f["file"] == "video16.ser"]
    for f in ser[::6]:
        t = ft.row_times(f["frame"], rows=[0, 39])
        want = [f["end"]["unix_ns"] + OFF0_NS, f["end"]["unix_ns"] + OFF0_NS + 2 * LP_NS * 19]
        assert t.end_ns[0].tolist() == want
    assert ft.reference_ns.tolist() == [f["end"]["unix_ns"] for f in ser]


SCOPE = """
import socket
from astropy.utils import iers
iers.conf.auto_download = True
iers.conf.auto_max_age = 30.0
def no_network(*a, **k):
    raise AssertionError("qhytime touched the network")
socket.socket.connect = no_network
socket.create_connection = no_network
import qhytime.api as q
t = q.unix_ns_to_time(1754099091730086727)
assert q.time_to_unix_ns(t) == 1754099091730086727
d = q.decode_file("tests/data/fits16_000.fits")
assert d.frame(0).time("end").isot == "2025-08-02T01:44:51.980086527"
assert q.near_leap_second(q.iso_to_unix_ns("2016-12-31T23:59:59.5"))
assert iers.conf.auto_download is True and iers.conf.auto_max_age == 30.0, "settings changed"
print("ok")
"""


def test_astropy_settings_scoped_and_no_network() -> None:
    p = subprocess.run([sys.executable, "-c", SCOPE], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


def test_import_is_light() -> None:
    code = ("import sys, qhytime.api; heavy = {'matplotlib', 'fastapi', 'dask', "
            "'photutils', 'skimage', 'sgp4', 'skyfield', 'uvicorn', 'watchdog'} & "
            "{m.split('.')[0] for m in sys.modules}; print(sorted(heavy))")  # fmt: skip
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stdout + p.stderr


def test_now_stamp_that_wanders_is_warned_about(truth: dict[str, Any]) -> None:
    """In video16.ser the now stamp follows the end stamp by 0.06..4.83 ms (truth.json): a
    calibration measured from it is warned about; one from the end stamp is not."""
    import warnings

    from qhytime.framerows import ReferenceStampWarning

    delays = [f["now"]["unix_ns"] - f["end"]["unix_ns"] for f in truth["frames"]
              if f["file"] == "video16.ser"]  # fmt: skip
    assert max(delays) - min(delays) > 1_000_000
    now = RowModel.from_us(offset0_us=1974.286, line_period_ns=43194, reference="now")
    with pytest.warns(ReferenceStampWarning, match=r"0\.063\.\.4\.828 ms"):
        file_timing(DATA / "video16.ser", model=now, exposure_ns=20_000_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        file_timing(DATA / "video16.ser", model=MODEL, exposure_ns=20_000_000)

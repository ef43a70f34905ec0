"""Calibration store against real SQLite files: history, concurrency, migrations, lookup."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import warnings
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from qhytime.calibration import Calibration, Setting, dump_toml, load_toml
from qhytime.errors import CalibrationError
from qhytime.store import (
    CalibrationFallbackWarning,
    CalibrationStore,
    default_database_url,
    head_revision,
    run_migrations,
)

SETTING = Setting(camera_model="QHY600PRO", readout_mode="Photographic DSO", roi_width=9576,
                  roi_height=6388, stream_mode="single")  # fmt: skip


def _cal(offset0: float, **kw: object) -> Calibration:
    return Calibration(setting=kw.pop("setting", SETTING), reference="end", offset0_us=offset0,  # type: ignore[arg-type]
                       line_period_ns=43194.0, offset0_sigma_us=0.1, method="LED fit", **kw)  # type: ignore[arg-type]  # fmt: skip


def test_new_database_has_shipped_calibrations_once(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    with CalibrationStore(db) as s:
        first = [(c.method, c.offset0_us, c.reference) for c in s.list()]
    with CalibrationStore(db) as s:
        assert s.count() == 2
    assert first == [("vendor", 2008.444, "end"), ("SDK", 1974.286, "now")]
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_supersede_keeps_history_and_pins(tmp_path: Path) -> None:
    with CalibrationStore(tmp_path / "c.sqlite", load_shipped=False) as s:
        a = s.add(_cal(1990.0))
        b = s.add(_cal(1991.5))
        c = s.add(_cal(1992.25))
        assert (b.supersedes, c.supersedes) == (a.id, b.id)
        assert [x.offset0_us for x in s.history(SETTING)] == [1990.0, 1991.5, 1992.25]
        assert s.lookup(SETTING).calibration.id == c.id
        assert s.get(a.id).offset0_us == 1990.0  # pinned old one still there, unchanged
        assert [x.id for x in s.list()] == [c.id]
        assert [x.id for x in s.list(include_superseded=True)] == [a.id, b.id, c.id]
    # a fresh connection sees the same rows: nothing was updated in place
    rows = sqlite3.connect(tmp_path / "c.sqlite").execute(
        "SELECT id, offset0_us, supersedes FROM calibrations ORDER BY id").fetchall()  # fmt: skip
    assert rows == [(a.id, 1990.0, None), (b.id, 1991.5, a.id), (c.id, 1992.25, b.id)]


def test_fallback_is_explicit_warned_and_widened(tmp_path: Path) -> None:
    roi = Setting(camera_model="QHY600PRO", readout_mode="Photographic DSO", roi_x=0, roi_y=2000,
                  roi_width=9576, roi_height=200, stream_mode="single")  # fmt: skip
    with CalibrationStore(tmp_path / "c.sqlite") as s:
        with pytest.raises(CalibrationError, match="differs in roi"):
            s.lookup(roi)
        with pytest.warns(CalibrationFallbackWarning, match="FALLBACK"):
            res = s.lookup(roi, fallback=True)
        assert not res.exact and res.differences == ["roi"]
        assert res.calibration.method == "SDK"  # same stream mode beats the vendor's live one
        assert res.offset0_sigma_us == pytest.approx((34.158**2 + 50.0**2) ** 0.5)
        assert res.row_model().offset0_sigma_ps == pytest.approx(res.offset0_sigma_us * 1e6)
        # a different bit depth or USB_TRAFFIC changes the line period: never a fallback
        with pytest.raises(CalibrationError, match="none for this camera model"):
            s.lookup(Setting(camera_model="QHY600PRO", readout_mode="Photographic DSO",
                             roi_width=9576, roi_height=6388, usb_traffic=30), fallback=True)  # fmt: skip


def test_exact_match_prefers_unit_specific(tmp_path: Path) -> None:
    unit = Setting(**{**SETTING.to_dict(), "serial": "A123"})
    with CalibrationStore(tmp_path / "c.sqlite") as s:
        specific = s.add(_cal(1977.0, setting=unit))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert s.lookup(unit).calibration.id == specific.id
            assert s.lookup(SETTING).calibration.method == "SDK"  # model-wide entry, exact
        other_unit = Setting(**{**SETTING.to_dict(), "serial": "B999"})
        assert s.lookup(other_unit).calibration.method == "SDK"


def test_import_export_round_trip(tmp_path: Path) -> None:
    with CalibrationStore(tmp_path / "a.sqlite", load_shipped=False) as a:
        a.add(
            _cal(1980.125, notes="bench LED", frames=("f1.fits", "f2.fits"), residual_rms_us=0.004)
        )
        text = a.export_toml()
    (tmp_path / "x.toml").write_text(text)
    (back,) = load_toml(tmp_path / "x.toml")
    assert back.offset0_us == 1980.125 and back.frames == ("f1.fits", "f2.fits")
    with CalibrationStore(tmp_path / "b.sqlite", load_shipped=False) as b:
        (imp,) = b.import_toml(tmp_path / "x.toml").added
        assert imp.setting == SETTING and imp.residual_rms_us == 0.004 and imp.notes == "bench LED"
    assert load_toml(tmp_path / "x.toml") == load_toml_text(dump_toml([back]), tmp_path)


def load_toml_text(text: str, tmp: Path) -> list[Calibration]:
    (tmp / "y.toml").write_text(text)
    return load_toml(tmp / "y.toml")


def test_bad_toml_names_file_and_record(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('[[calibration]]\nreference = "end"\n')
    with pytest.raises(CalibrationError, match=r"bad\.toml.*record 0"):
        load_toml(tmp_path / "bad.toml")


def test_unknown_id(tmp_path: Path) -> None:
    with (
        CalibrationStore(tmp_path / "c.sqlite") as s,
        pytest.raises(CalibrationError, match="no calibration with id 99"),
    ):
        s.get(99)


def test_database_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QHYTIME_DB", str(tmp_path / "env.sqlite"))
    assert default_database_url() == f"sqlite:///{tmp_path / 'env.sqlite'}"
    monkeypatch.setenv("QHYTIME_DB", "sqlite:///:memory:")
    with CalibrationStore() as s:
        assert s.count() == 2
    monkeypatch.delenv("QHYTIME_DB")
    assert default_database_url().endswith("qhytime.sqlite")


def _writer(db: str, tag: int, n: int) -> None:
    with CalibrationStore(db) as s:
        for i in range(n):
            setting = Setting(**{**SETTING.to_dict(), "serial": f"W{tag}-{i % 7}"})
            s.add(_cal(1000.0 + tag * 10_000 + i, setting=setting))


def test_two_processes_adding_1000_each_lose_none(tmp_path: Path) -> None:
    db = str(tmp_path / "race.sqlite")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(db, tag, 1000)) for tag in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    with CalibrationStore(db) as s:
        assert s.count() == 2 + 2000
        offs = {c.offset0_us for c in s.list(include_superseded=True)}
        for tag in (1, 2):
            assert {1000.0 + tag * 10_000 + i for i in range(1000)} <= offs
        # each writer's supersede chains are intact: every setting's history is linear
        for tag in (1, 2):
            for k in range(7):
                hist = s.history(Setting(**{**SETTING.to_dict(), "serial": f"W{tag}-{k}"}))
                assert [h.supersedes for h in hist[1:]] == [h.id for h in hist[:-1]]


def test_migration_from_first_schema_keeps_every_row(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        run_migrations(conn, "0001")
    con = sqlite3.connect(db)
    cols = "setting_key, camera_model, serial, readout_mode, is_2cms, roi_x, roi_y, roi_width, roi_height, binning, bit_depth, usb_traffic, stream_mode, reference, offset0_us, offset0_sigma_us, line_period_ns, line_period_sigma_ns, method, measured_at, notes, provenance, source, created_at"
    old_key = "QHY600PRO|*|Photographic DSO|pairs|roi=0,0,9576x6388|bin=1|bits=16|usb=0|single"
    for i in range(25):
        con.execute(
            f"INSERT INTO calibrations ({cols}) VALUES (?, 'QHY600PRO', NULL, 'Photographic DSO', 0, 0, 0, 9576, 6388, 1, 16, 0, 'single', 'end', ?, 0.1, 43194.0, 0.01, 'LED fit', '2024-01-01', 'n', 'p', 'user', '2024-01-01')",
            (old_key, 1900.0 + i),
        )
    con.commit()
    con.close()
    engine.dispose()
    with CalibrationStore(db) as s:
        assert s.schema_revision() == head_revision()
        every = s.list(include_superseded=True)
        assert [c.offset0_us for c in every] == [1900.0 + i for i in range(25)]
        assert all(
            c.frames == () and c.residual_rms_us is None and not c.setting.global_reset
            for c in every
        )
        # the migrated rows are found by today's setting key
        assert s.lookup(SETTING).calibration.offset0_us == 1924.0
        assert s.count() == 25  # not a new database: shipped ones not added


ADD_IN_OTHER_PROCESS = """
import sys
from qhytime.calibration import Calibration, Setting
from qhytime.store import CalibrationStore
s0 = Setting(camera_model="QHY600PRO", readout_mode="Photographic DSO", roi_width=9576,
             roi_height=6388, stream_mode="single")
with CalibrationStore(sys.argv[1]) as s:
    if sys.argv[2] == "add":
        print(s.add(Calibration(setting=s0, reference="end", offset0_us=1111.0,
                                line_period_ns=43194.0)).id)
    else:
        s.retract(int(sys.argv[2]), "bad")
"""


def test_cached_lookups_see_other_processes_writes(db_url: str) -> None:
    import subprocess
    import sys

    with CalibrationStore(db_url) as s:
        first = s.lookup(SETTING).calibration
        assert first.method == "SDK" and s.lookup(SETTING).calibration == first  # cached
        out = subprocess.run([sys.executable, "-c", ADD_IN_OTHER_PROCESS, db_url, "add"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        new_id = int(out)
        assert s.lookup(SETTING).calibration.id == new_id  # another process's commit is seen
        assert s.get(new_id).offset0_us == 1111.0
        subprocess.run([sys.executable, "-c", ADD_IN_OTHER_PROCESS, db_url, str(new_id)],
                       capture_output=True, text=True, check=True)  # fmt: skip
        assert s.lookup(SETTING).calibration.id == first.id  # and its retraction
        assert s.get(new_id).retracted

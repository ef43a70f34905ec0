"""IOD lines parsed back column by column (the conformance parser), ADES PSV through the real
``iau-ades`` validator (psvtoxml, then valsubmit: it exits 0 either way, so its words count)."""

from __future__ import annotations

import importlib.util
import math
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qhytime.errors import QhytimeError
from qhytime.satellite.ades import AdesContext, AdesObject, ades_psv, obs_time, rms_time
from qhytime.satellite.iod import (
    code_value,
    cospar_to_artsat,
    designator_columns,
    iod_line,
    uncertainty_code,
)
from qhytime.timebase import iso_to_unix_ns

from conftest import need

CONFORMANCE = Path(__file__).resolve().parents[2] / "shared" / "conformance"


def _iod_parser() -> ModuleType:
    path = CONFORMANCE / "iod.py"
    need(path.is_file(), f"the IOD parser of the conformance checks ({path})")
    spec = importlib.util.spec_from_file_location("conformance_iod", path)
    assert spec is not None and spec.loader is not None
    if spec.name in sys.modules:
        return sys.modules[spec.name]
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@given(
    unix_ns=st.integers(946_684_800 * 10**9, 4_102_444_799 * 10**9),
    sigma_s=st.floats(1e-7, 5.0),
    ra=st.floats(0.0, 359.9999999),
    dec=st.floats(-89.999, 89.999),
    pos_sig=st.floats(0.01, 300.0),
)
def test_iod_lines_parse_back_column_by_column(unix_ns: int, sigma_s: float, ra: float,
                                               dec: float, pos_sig: float) -> None:  # fmt: skip
    iod = _iod_parser()
    line = iod_line(norad=25544, cospar="98067A", station="0433", unix_ns=unix_ns,
                    sigma_s=sigma_s, ra_deg=ra, dec_deg=dec, position_sigma_arcsec=pos_sig)  # fmt: skip
    o = iod.parse(line)
    assert (o.norad, o.designator, o.station, o.status, o.epoch, o.angle_format) == (
        "25544", "98 067A  ", "0433", "G", 5, 2)  # fmt: skip
    # the time, all 17 digits, rounded to the millisecond
    assert o.unix_ns == (2 * unix_ns + 1_000_000) // 2_000_000 * 1_000_000
    # the time code: never better than the sigma, no worse than 10 x max(sigma, 1 ms)
    assert sigma_s <= o.time_sigma_s <= 10 * max(sigma_s, 1e-3)
    # the position within one unit of its last digit
    dra = abs((o.ra_deg - ra + 180) % 360 - 180)
    assert dra <= o.ra_res_deg / 2 * 1.000001 + 1e-12 or 360 - dra <= o.ra_res_deg
    assert abs(o.dec_deg - dec) <= o.dec_res_deg / 2 * 1.000001 + 1e-12
    assert o.pos_sigma_deg * 3600 >= pos_sig


@given(st.floats(0.0, 9e1))
def test_uncertainty_code_is_the_smallest_not_below(value: float) -> None:
    code = uncertainty_code(value)
    v = code_value(code)
    assert v >= value * (1 - 1e-12)
    if code[0] != "1" and code != "99":  # one step down would be too small
        assert int(code[0]) - 1 == 0 or (int(code[0]) - 1) * 10.0 ** (int(code[1]) - 8) < value


def test_designators() -> None:
    assert designator_columns("2024-012BC") == "24 012BC "
    assert cospar_to_artsat("57001A") == "1957-001A"
    with pytest.raises(QhytimeError, match="COSPAR"):
        designator_columns("ISS")
    with pytest.raises(QhytimeError, match="NORAD"):
        iod_line(norad=0, cospar="98067A", station=1, unix_ns=0, sigma_s=0.1, ra_deg=0.0,
                 dec_deg=0.0, position_sigma_arcsec=1.0)  # fmt: skip


def test_ades_time_fields() -> None:
    assert obs_time(iso_to_unix_ns("2026-05-01T01:59:59.9999995")) == "2026-05-01T02:00:00.000000Z"
    assert obs_time(iso_to_unix_ns("2026-05-01T01:59:59.000000499")) == "2026-05-01T01:59:59.000000Z"
    assert [rms_time(v) for v in (0.0, 3.14159e-4, 99.0)] == ["0.000001", "0.000314", "99.00000"]
    assert all(len(rms_time(10.0**e)) <= 8 for e in range(-9, 7))


def _validators() -> tuple[Path, Path]:
    found = []
    for name in ("psvtoxml.py", "valsubmit.py"):
        cand = Path(sys.executable).parent / name
        where = cand if cand.is_file() else shutil.which(name)
        found.append(Path(where) if where else None)
    need(all(found), "the iau-ades validator scripts (pip install iau-ades)")
    return found[0], found[1]  # type: ignore[return-value]


def validate(text: str, tmp_path: Path) -> str:
    """psvtoxml then valsubmit; returns valsubmit's output (it exits 0 even on failure)."""
    psvtoxml, valsubmit = _validators()
    (tmp_path / "in.psv").write_text(text)
    c = subprocess.run([sys.executable, str(psvtoxml), "in.psv", "out.xml"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert c.returncode == 0, c.stdout + c.stderr
    v = subprocess.run([sys.executable, str(valsubmit), "out.xml"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    return v.stdout + v.stderr


RECS = [
    (iso_to_unix_ns("2026-05-01T01:59:59.866751054"), 3.6e-4, 132.5095431194, -32.0883437639, 1.0),
    (iso_to_unix_ns("2026-05-01T02:00:00.068997111"), 4.1e-4, 0.0000001, 89.999, 0.8),
    (iso_to_unix_ns("2026-05-01T02:00:00.468997111"), 4.1e-4, 359.99999996, -89.5, 0.8),
]


def test_ades_satellite_submission_is_accepted(tmp_path: Path) -> None:
    text = ades_psv(RECS, AdesContext("9999", observers=["J. Doe", "R. Roe"], measurers=["J. Doe"],
                                      telescope="Refractor", aperture_m=0.05),
                    AdesObject(art_sat="1998-067A"))  # fmt: skip
    out = validate(text, tmp_path)
    assert "submit is OK" in out, out
    header = next(ln for ln in text.splitlines() if ln.startswith("artSat"))
    assert header.split("|") == ["artSat", "mode", "stn", "obsTime", "rmsTime", "ra", "dec",
                                 "rmsRA", "rmsDec", "astCat"]  # fmt: skip


@pytest.mark.parametrize("obj", [AdesObject(perm_id="433"), AdesObject(prov_id="2024 AB12"),
                                 AdesObject(trk_sub="qt0001"),
                                 AdesObject(perm_id="433", trk_sub="k1")])  # fmt: skip
def test_ades_minor_planet_submissions_are_accepted(tmp_path: Path, obj: AdesObject) -> None:
    out = validate(ades_psv(RECS, AdesContext("I41"), obj), tmp_path)
    assert "submit is OK" in out, out


def test_the_validator_does_reject(tmp_path: Path) -> None:
    """The check can fail: a record with 7 decimals of obsTime is refused by valsubmit."""
    text = ades_psv(RECS[:1], AdesContext("9999"), AdesObject(art_sat="1998-067A"))
    bad = text.replace("01:59:59.866751Z", "01:59:59.8667511Z")
    assert "submit is OK" not in validate(bad, tmp_path)


def test_ades_refuses_what_it_cannot_write() -> None:
    with pytest.raises(QhytimeError, match="station"):
        ades_psv(RECS, AdesContext("99"), AdesObject(art_sat="1998-067A"))
    with pytest.raises(QhytimeError, match="object"):
        ades_psv(RECS, AdesContext("9999"), AdesObject())
    with pytest.raises(QhytimeError, match="artSat"):
        ades_psv(RECS, AdesContext("9999"), AdesObject(art_sat="1998-067A", perm_id="433"))
    with pytest.raises(QhytimeError, match="WCS"):
        ades_psv([(0, 0.1, math.nan, 0.0, 1.0)], AdesContext("9999"), AdesObject(trk_sub="a"))

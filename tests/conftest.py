"""Shared fixtures: the reference frames of the independent encoder and block builders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qhytime.gpsblock import GpsBlock, Stamp

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def truth() -> dict[str, Any]:
    return json.loads((DATA / "truth.json").read_text())


def make_block(**kw: Any) -> GpsBlock:
    """A plausible locked block (values from fits16_000 of the reference set), overridable."""
    base: dict[str, Any] = dict(
        sequence=1000,
        spare=0,
        width=320,
        height=96,
        latitude_raw=521290180,
        longitude_raw=1000523572,
        start=Stamp(0x33, 940815891, 7300584),
        end=Stamp(0x33, 940815891, 9800485),
        now=Stamp(0x33, 940815891, 9809860),
        pps_count=9999612,
    )
    base.update(kw)
    return GpsBlock(**base)

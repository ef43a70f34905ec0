"""Shared fixtures: the reference frames of the independent encoder and block builders."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qhytime.gpsblock import GpsBlock, Stamp

DATA = Path(__file__).parent / "data"
SHARED_TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
"""The large shared reference sets (occultation, satellite, LED scans); CI has them beside the
checkout."""

PG_ENV = "QHYTIME_TEST_PG"
"""Admin URL of the PostgreSQL server the tests may use (``.ci/run`` sets it), e.g.
``postgresql+psycopg:///postgres?host=/var/run/postgresql``."""


def need(available: bool, what: str) -> None:
    """Skip a test whose real client or server is missing, but fail it under CI (``CI=true``)."""
    if not available:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} is missing, and CI=true requires it")
        pytest.skip(f"{what} is missing")


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """The PostgreSQL admin URL (skips locally, fails under CI, when there is no server)."""
    url = os.environ.get(PG_ENV, "")
    need(bool(url), f"a PostgreSQL server (${PG_ENV})")
    return url


@pytest.fixture()
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    name = f"qt_{uuid.uuid4().hex[:16]}"
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # a configured server that does not answer is a failure
        admin.dispose()
        pytest.fail(f"PostgreSQL at ${PG_ENV} does not answer: {exc}")
    try:
        yield make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL, once on a SQLite file and once on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'qhytime.sqlite'}"
    return str(request.getfixturevalue("pg_url"))


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


def make_series_block(i: int, **kw: Any) -> GpsBlock:
    """Frame ``i`` of a plausible sequence: :func:`make_block`'s stamps advanced by ``i`` x
    4,000,000 ticks (~0.4 s) and its sequence number by ``i``; overridable."""
    pps = int(kw.get("pps_count", 9999612))

    def at(s: Stamp) -> Stamp:
        total = s.ticks + i * 4_000_000
        return Stamp(s.flag, s.seconds + total // pps, total % pps)

    base = make_block()
    stamps = {name: at(getattr(base, name)) for name in ("start", "end", "now")}
    return make_block(**{"sequence": 1000 + i, **stamps, **kw})

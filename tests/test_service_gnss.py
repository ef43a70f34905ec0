"""The GPS receiver on a serial line: a hand-labelled NMEA corpus (bad checksums, partial lines,
garbage, an unknown type and a silence) through the parser, through ``loop://`` and through a
real pty fed by a replay writer; counts exact, no exception, no hang. The receiver log and the
cross-check with indexed frames against hand-worked offsets."""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
import time
import tty
from pathlib import Path
from typing import Any

import pytest
import serial
from click.testing import CliRunner

from qhytime.cli import main
from qhytime.service.alerts import list_alerts
from qhytime.service.gnss import GnssLogger, GnssStatus, NmeaMonitor, NmeaParser, latest_gnss
from qhytime.service.index import FrameIndex, parse_iso_ns
from qhytime.simulate import CameraSim

CORPUS = Path(__file__).parent / "data" / "nmea"
DATA = (CORPUS / "corpus.nmea").read_bytes()
TRUTH = json.loads((CORPUS / "corpus.json").read_text())
SPLIT = TRUTH["silence_after_byte"]


def counts(st: GnssStatus) -> dict[str, int]:
    return {k: getattr(st, k) for k in TRUTH["counts"]}


def check_final(st: GnssStatus) -> None:
    f = TRUTH["final"]
    assert counts(st) == TRUTH["counts"]
    assert st.utc == f["utc"] and st.bytes == TRUTH["bytes"]
    assert (st.fix_quality, st.fix_type, st.satellites, st.satellites_in_view) == (
        f["fix_quality"], f["fix_type"], f["satellites"], f["satellites_in_view"])  # fmt: skip
    assert st.latitude_deg == pytest.approx(f["latitude_deg"], abs=1e-9)
    assert st.longitude_deg == pytest.approx(f["longitude_deg"], abs=1e-9)
    assert st.altitude_m == f["altitude_m"]


def test_parser_counts_do_not_depend_on_how_bytes_arrive() -> None:
    whole = NmeaParser()
    whole.feed(DATA)
    whole.finish()
    check_final(whole.status)
    one = NmeaParser()
    for b in DATA:
        one.feed(bytes([b]))
    one.finish()
    check_final(one.status)
    rng = random.Random(7)
    for _ in range(20):
        p, i = NmeaParser(), 0
        while i < len(DATA):
            n = rng.randint(1, 97)
            p.feed(DATA[i : i + n])
            i += n
        p.finish()
        assert counts(p.status) == TRUTH["counts"]
    before = NmeaParser()
    before.feed(DATA[:SPLIT])
    b = TRUTH["before_silence"]
    assert (before.status.utc, before.status.fix_quality, before.status.satellites) == (
        b["utc"], b["fix_quality"], b["satellites"])  # fmt: skip


class Recorder:
    """Statuses and changes as the monitor reports them, with the monotonic time of each."""

    def __init__(self) -> None:
        self.statuses: list[tuple[float, dict[str, Any]]] = []
        self.changes: list[tuple[float, str]] = []

    def on_status(self, st: GnssStatus, host_ns: int) -> None:
        self.statuses.append((time.monotonic(), st.to_dict(host_ns)))

    def on_change(self, st: GnssStatus, host_ns: int, what: str) -> None:
        self.changes.append((time.monotonic(), what))


def check_run(st: GnssStatus, rec: Recorder, t0: float, resumed_at: float) -> None:
    check_final(st)
    assert not st.silent and st.io_errors == 0
    # silent 2 s after the last byte, cleared when the data came back
    assert [w for _, w in rec.changes] == ["silent", "spoke"]
    (t_silent, _), (t_spoke, _) = rec.changes
    assert 1.9 <= t_silent - t0 <= resumed_at - t0
    assert t_spoke >= resumed_at - 0.05
    # one status a second at most, and the silence shows in them
    times = [t for t, _ in rec.statuses]
    assert all(b - a >= 0.95 for a, b in itertools.pairwise(times))
    assert any(d["silent"] and "silent" in d["alerts"] for _, d in rec.statuses)
    keys = {"utc", "fix_quality", "satellites", "latitude_deg", "longitude_deg", "altitude_m",
            "bad_checksum", "partial", "garbage"}  # fmt: skip
    assert all(keys <= set(d) for _, d in rec.statuses)


def _stop_when_all_read(monitor: NmeaMonitor, stop: threading.Event) -> None:
    """Set ``stop`` once the monitor has counted every byte of the corpus (the runs end on
    what was read, not on a guess of how long a loaded machine takes to deliver it)."""
    deadline = time.monotonic() + 30.0
    while monitor.status.bytes < len(DATA) and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()


def test_loop_url_with_a_silence() -> None:
    port = serial.serial_for_url("loop://", timeout=0.05)
    port.write(DATA[:SPLIT])
    rec = Recorder()
    resumed = {}
    monitor, stop = NmeaMonitor(port), threading.Event()

    def later() -> None:
        time.sleep(3.0)
        resumed["t"] = time.monotonic()
        port.write(DATA[SPLIT:])
        _stop_when_all_read(monitor, stop)

    writer = threading.Thread(target=later)
    t0 = time.monotonic()
    writer.start()
    st = monitor.run(duration_s=60.0, stop=stop, on_status=rec.on_status, on_change=rec.on_change)
    writer.join()
    assert time.monotonic() - t0 < 40.0  # no hang: it ended on what it read
    port.close()
    check_run(st, rec, t0, resumed["t"])


def test_pty_fed_by_a_replay_writer() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)  # a serial line: no echo, no line editing, CR and LF as sent
    path = os.ttyname(slave)
    rec = Recorder()
    resumed = {}
    rng = random.Random(3)

    def replay() -> None:
        # pyserial flushes the input when it opens a port: a receiver's bytes count from then on
        deadline = time.monotonic() + 30.0
        while monitor._port is None and time.monotonic() < deadline:
            time.sleep(0.005)
        i = 0
        while i < len(DATA):
            if i == SPLIT:
                time.sleep(3.0)  # the receiver falls silent
                resumed["t"] = time.monotonic()
            n = min(rng.randint(1, 120), (SPLIT - i) if i < SPLIT else len(DATA) - i)
            os.write(master, DATA[i : i + n])
            i += n
            time.sleep(0.002)

    monitor, stop = NmeaMonitor(path, baudrate=9600), threading.Event()
    writer = threading.Thread(target=lambda: (replay(), _stop_when_all_read(monitor, stop)))
    t0 = time.monotonic()
    writer.start()
    try:
        st = monitor.run(duration_s=60.0, stop=stop, on_status=rec.on_status,
                         on_change=rec.on_change)  # fmt: skip
        writer.join()
    finally:
        os.close(master)
        os.close(slave)
    assert time.monotonic() - t0 < 40.0  # no hang: it ended on what it read
    check_run(st, rec, t0, resumed["t"])


def test_a_port_that_cannot_be_opened_is_counted_not_raised(tmp_path: Path) -> None:
    st = NmeaMonitor(str(tmp_path / "no-such-tty")).run(duration_s=2.3)
    assert st.io_errors >= 1 and "no-such-tty" in (st.last_error or "") and st.silent


def test_cli_json_statuses_and_the_log(tmp_path: Path) -> None:
    db = str(tmp_path / "i.sqlite")
    out = CliRunner().invoke(main, ["gnss", "loop://", "--duration", "2.6", "--json",
                                    "--log-interval", "1", "--db", db])  # fmt: skip
    assert out.exit_code == 0, out.output
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert 2 <= len(lines) <= 3
    assert lines[-1]["silent"] is True and lines[0]["silent"] is False
    assert lines[-1]["utc"] is None and lines[-1]["bad_checksum"] == 0
    with FrameIndex(db) as index:
        log = latest_gnss(index, limit=10)
        assert log and log[0]["silent"] is True and log[0]["source"] == "loop://"
        assert [a.kind for a in list_alerts(index)] == ["gnss_silent"]
    bad = CliRunner().invoke(main, ["gnss", "loop://", "--duration", "-1"])
    assert bad.exit_code == 2
    scheme = CliRunner().invoke(main, ["gnss", "nope://x", "--no-log"])
    assert scheme.exit_code == 2 and "no nope:// ports" in scheme.output


def _fix(utc: str, lat: float, lon: float) -> GnssStatus:
    return GnssStatus(utc_ns=parse_iso_ns(utc), fix_quality=1, satellites=9,
                      latitude_deg=lat, longitude_deg=lon, altitude_m=100.0)  # fmt: skip


def test_cross_check_whole_seconds_and_position(db_url: str, tmp_path: Path) -> None:
    """By hand: frame a ends at E (a whole second); its file is written 0.3 s later by the host
    clock. The receiver says E - 18 s (no leap-second count yet) for the second it reports
    0.15 s after that second began: (E - H_f) - (U - H_r) = -0.3 s - (-18.15 s) = 17.85 s,
    18 s. Its position is 0.002 deg of latitude north of the block's: 0.002 x pi/180 x
    6,371,008.8 m = 222.39 m. Frame b, 20 s later, written 0.2 s after its end; the receiver
    right this time, reporting 0.5 s into the second: -0.2 s - (-0.5 s) = 0.3 s, 0 s."""
    sim = CameraSim(width=64, height=16, exposure_us=5000.0, frame_interval_us=20e6)
    a, b = sim.write_fits(tmp_path, 2)
    e = [sim.block_for(i)[1] for i in range(2)]  # end stamps (the simulator's VSYNC)
    assert e[0] % 1_000_000_000 == 0 and e[1] - e[0] == 20_000_000_000
    with FrameIndex(db_url) as index:
        logger = GnssLogger(index, "loop://", interval_s=1.0, clock=iter([0.0, 10.0]).__next__)
        # frame a: the receiver's record is logged first, then the file is indexed
        os.utime(a, ns=(e[0] + 300_000_000, e[0] + 300_000_000))
        fix = _fix("2025-08-02T01:44:33", 52.21503 + 0.002, -0.87262)
        assert fix.utc_ns == e[0] - 18_000_000_000
        logger(fix, e[0] + 150_000_000)
        assert index.ingest(a).alerts == 2
        (fa,) = index.frames(file=str(a))
        assert fa.gnss_offset_s == 18
        assert fa.gnss_distance_m == pytest.approx(222.39, abs=0.01)
        # frame b: indexed first (no record near it yet), then the record comes
        os.utime(b, ns=(e[1] + 200_000_000, e[1] + 200_000_000))
        assert index.ingest(b).alerts == 0
        assert index.frames(file=str(b))[0].gnss_offset_s is None
        logger(_fix("2025-08-02T01:45:11", 52.21503, -0.87262), e[1] + 500_000_000)
        (fb,) = index.frames(file=str(b))
        assert fb.gnss_offset_s == 0 and fb.gnss_distance_m == pytest.approx(0.0, abs=0.5)
        alerts = list_alerts(index)
        assert sorted(x.kind for x in alerts) == ["gnss_position", "gnss_second_offset"]
        off = next(x for x in alerts if x.kind == "gnss_second_offset")
        assert off.frame_id == fa.id and "+18 s" in off.message and off.frames == 1

"""The GPS receiver on a serial line: NMEA through pynmea2, counted, never raised.

:class:`NmeaParser` turns a byte stream into the receiver's state (:class:`GnssStatus`):
fix quality, satellites, position, altitude and the receiver's UTC from RMC, GGA, GSA, GSV
and ZDA sentences. Whatever else arrives is counted, never raised:

============  ==========================================================================
bad_checksum  a complete sentence (``$...*hh``) whose checksum does not match
partial       a sentence without its ``*hh`` end: cut by the next ``$``, by a line end,
              or by the end of the stream
garbage       bytes that are no sentence: a line without ``$``, junk before a ``$``,
              non-ASCII or control bytes in a sentence, :data:`MAX_LINE` bytes without a
              line end (counted once per :data:`MAX_LINE` bytes)
unknown       a well-formed sentence of a type pynmea2 does not know
malformed     a known sentence whose fields cannot be read
============  ==========================================================================

The counts depend only on the bytes, not on how they are split into reads (tested on
``loop://`` and on a pty). :class:`NmeaMonitor` reads a port opened by pyserial's
``serial_for_url`` (a device, ``loop://``, ``socket://host:port``, ...) or an open port;
timeouts use ``time.monotonic``; after :data:`SILENCE_S` without a byte the status says
``silent`` until data return; a port that fails is reopened.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qhytime.service.index import iso

if TYPE_CHECKING:
    from qhytime.service.index import FrameIndex

SILENCE_S = 2.0
"""Seconds without a byte after which the receiver is silent."""
MAX_LINE = 512
"""Bytes without a line end after which they are dropped as garbage (NMEA lines are <= 82)."""
NS_PER_S = 1_000_000_000
_CHECKSUM_END = re.compile(r"\*[0-9A-Fa-f]{2}$")
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


def _int(v: Any) -> int | None:
    if v is None or v == "":
        return None
    return int(v)


def _float(v: Any) -> float | None:
    if v is None or v == "":
        return None
    return float(v)


def _time_of_day_ns(t: dt.time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * NS_PER_S + t.microsecond * 1000


def _date_ns(d: dt.date) -> int:
    return (d.toordinal() - _EPOCH_ORDINAL) * 86_400 * NS_PER_S


@dataclass
class GnssStatus:
    """The receiver's state and the counts of what could not be used.

    ``utc_ns`` is the receiver's UTC (date from RMC or ZDA, time from the latest RMC, GGA
    or ZDA), unix ns; ``fix_quality`` is GGA's (0 none, 1 GPS, 2 DGPS, ...), ``fix_type``
    GSA's (1 none, 2 2-D, 3 3-D), ``satellites`` the satellites used (GGA),
    ``satellites_in_view`` GSV's.
    """

    utc_ns: int | None = None
    fix_quality: int | None = None
    fix_type: int | None = None
    rmc_valid: bool | None = None
    satellites: int | None = None
    satellites_in_view: int | None = None
    latitude_deg: float | None = None
    longitude_deg: float | None = None
    altitude_m: float | None = None
    sentences: int = 0
    bad_checksum: int = 0
    partial: int = 0
    garbage: int = 0
    unknown: int = 0
    malformed: int = 0
    bytes: int = 0
    silent: bool = False
    io_errors: int = 0
    last_error: str | None = None
    updated_host_ns: int | None = None
    _date_ns: int | None = field(default=None, repr=False)

    @property
    def utc(self) -> str | None:
        """The receiver's UTC, ISO with 9 decimals (None before a dated sentence)."""
        return iso(self.utc_ns)

    @property
    def has_fix(self) -> bool | None:
        """True with a fix, False without, None before the receiver has said."""
        if self.fix_quality is not None:
            return self.fix_quality > 0
        if self.rmc_valid is not None:
            return self.rmc_valid
        if self.fix_type is not None:
            return self.fix_type >= 2
        return None

    @property
    def alerts(self) -> list[str]:
        out = []
        if self.silent:
            out.append("silent")
        if self.has_fix is False:
            out.append("no_fix")
        return out

    def to_dict(self, host_ns: int | None = None) -> dict[str, Any]:
        """The JSON object ``qhytime gnss --json`` prints once a second."""
        out: dict[str, Any] = {
            "utc": iso(self.utc_ns), "utc_ns": self.utc_ns, "fix_quality": self.fix_quality,
            "fix_type": self.fix_type, "satellites": self.satellites,
            "satellites_in_view": self.satellites_in_view,
            "latitude_deg": self.latitude_deg, "longitude_deg": self.longitude_deg,
            "altitude_m": self.altitude_m, "sentences": self.sentences,
            "bad_checksum": self.bad_checksum, "partial": self.partial,
            "garbage": self.garbage, "unknown": self.unknown, "malformed": self.malformed,
            "bytes": self.bytes, "silent": self.silent, "alerts": self.alerts,
            "io_errors": self.io_errors,
        }  # fmt: skip
        if host_ns is not None:
            out["host"], out["host_ns"] = iso(host_ns), host_ns
        return out


class NmeaParser:
    """Bytes in, :class:`GnssStatus` out (see the module's notes for the counts).

    Examples
    --------
    >>> p = NmeaParser()
    >>> p.feed(b"$GPZDA,201530.00,04,07,2002,00,00*60\\r\\n$GPGGA,201531,4807.038,N,")
    >>> p.feed(b"01131.000,E,1,08,0.9,545.4,M,46.9,M,,*4E\\r\\n\\xff\\xfe junk\\r\\n$GPRMC,1*00\\r\\n")
    >>> s = p.status
    >>> s.utc, s.fix_quality, s.satellites, round(s.latitude_deg, 4), s.altitude_m
    ('2002-07-04T20:15:31.000000000', 1, 8, 48.1173, 545.4)
    >>> s.sentences, s.garbage, s.bad_checksum, s.partial
    (2, 1, 1, 0)
    """

    def __init__(self) -> None:
        self.status = GnssStatus()
        self._buf = b""

    def feed(self, data: bytes, host_ns: int | None = None) -> None:
        """Take bytes as they arrive (any split)."""
        self.status.bytes += len(data)
        buf = self._buf + data
        while True:
            nl = buf.find(b"\n", 0, MAX_LINE + 1)
            if nl >= 0:
                line, buf = buf[:nl], buf[nl + 1 :]
                self._line(line.rstrip(b"\r"), host_ns)
            elif len(buf) > MAX_LINE:
                buf = buf[MAX_LINE:]
                self.status.garbage += 1
            else:
                break
        self._buf = buf

    def finish(self, host_ns: int | None = None) -> None:
        """The stream ended: whatever is left is a last line."""
        if self._buf:
            buf, self._buf = self._buf, b""
            self._line(buf.rstrip(b"\r"), host_ns)

    def _line(self, line: bytes, host_ns: int | None) -> None:
        st = self.status
        if not line.strip():
            return
        i = line.find(b"$")
        if i < 0:
            st.garbage += 1
            return
        if i > 0:
            st.garbage += 1
        parts = line[i + 1 :].split(b"$")
        st.partial += len(parts) - 1  # each cut off by the next "$"
        self._sentence(b"$" + parts[-1], host_ns)

    def _sentence(self, raw: bytes, host_ns: int | None) -> None:
        import pynmea2

        st = self.status
        if any(b < 32 or b > 126 for b in raw):
            st.garbage += 1
            return
        text = raw.decode("ascii")
        if not _CHECKSUM_END.search(text):
            st.partial += 1
            return
        try:
            msg = pynmea2.parse(text, check=True)
        except pynmea2.ChecksumError:
            st.bad_checksum += 1
            return
        except pynmea2.SentenceTypeError:
            st.unknown += 1
            return
        except (pynmea2.ParseError, ValueError):
            st.malformed += 1
            return
        try:
            known = self._apply(msg)
        except (ValueError, TypeError, AttributeError):
            st.malformed += 1
            return
        if known:
            st.sentences += 1
            st.updated_host_ns = host_ns
        else:
            st.unknown += 1

    def _utc_from(self, tod: dt.time | None, date: dt.date | None = None) -> None:
        st = self.status
        if date is not None:
            st._date_ns = _date_ns(date)
        if tod is None or st._date_ns is None:
            return
        t = st._date_ns + _time_of_day_ns(tod)
        if date is None and st.utc_ns is not None and t < st.utc_ns - 43_200 * NS_PER_S:
            t += 86_400 * NS_PER_S  # past midnight before a dated sentence says so
        st.utc_ns = t

    def _apply(self, msg: Any) -> bool:
        st = self.status
        kind = msg.sentence_type
        if kind == "RMC":
            self._utc_from(msg.timestamp, msg.datestamp)
            st.rmc_valid = msg.status == "A"
            self._position(msg)
        elif kind == "GGA":
            self._utc_from(msg.timestamp)
            st.fix_quality = _int(msg.gps_qual)
            st.satellites = _int(msg.num_sats)
            st.altitude_m = _float(msg.altitude)
            self._position(msg)
        elif kind == "GSA":
            st.fix_type = _int(msg.mode_fix_type)
        elif kind == "GSV":
            st.satellites_in_view = _int(msg.num_sv_in_view)
        elif kind == "ZDA":
            if msg.year and msg.month and msg.day:
                self._utc_from(msg.timestamp, dt.date(int(msg.year), int(msg.month), int(msg.day)))
            else:
                self._utc_from(msg.timestamp)
        else:
            return False
        return True

    def _position(self, msg: Any) -> None:
        if msg.lat and msg.lon:
            lat, lon = float(msg.latitude), float(msg.longitude)
            if -90 <= lat <= 90 and -180 <= lon <= 180:
                self.status.latitude_deg, self.status.longitude_deg = round(lat, 9), round(lon, 9)


def _redact(url: str) -> str:
    return re.sub(r"//[^/@]*@", "//", url)[:255]


_URL_OPTIONS = {"logging": {"debug", "info", "warning", "error"}}


def url_problem(url: str) -> str | None:
    """What is wrong with a pyserial URL's syntax, or None (a port that is not there yet is
    not a syntax problem: it is retried).

    Examples
    --------
    >>> url_problem("loop://"), url_problem("/dev/ttyUSB0"), url_problem("socket://gps:2947")
    (None, None, None)
    >>> url_problem("socket://127.0.0.1:99999")
    'socket:// needs HOST:PORT with a port 1..65535, not 127.0.0.1:99999'
    >>> url_problem("loop://?bad=1")
    "unknown option 'bad' in loop://?bad=1 (pyserial takes: logging=debug|error|info|warning)"
    """
    from urllib.parse import parse_qs, urlsplit

    if "://" not in url:
        return None  # a device path
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    for key, values in parse_qs(parts.query, keep_blank_values=True).items():
        allowed = _URL_OPTIONS.get(key)
        if allowed is None:
            return (f"unknown option {key!r} in {url} (pyserial takes: logging="
                    f"{'|'.join(sorted(_URL_OPTIONS['logging']))})")  # fmt: skip
        if any(v not in allowed for v in values):
            return f"option {key}={values[0]!r} in {url} must be one of {', '.join(sorted(allowed))}"
    if scheme in ("socket", "rfc2217"):
        host, _, port = parts.netloc.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            return f"{scheme}:// needs HOST:PORT with a port 1..65535, not {parts.netloc or '(none)'}"
    elif scheme not in ("loop", "spy", "alt", "hwgrep", "cp2110"):
        return f"unknown URL scheme {scheme!r}: give a port (/dev/ttyUSB0, COM3) or loop://, socket://HOST:PORT, rfc2217://HOST:PORT"
    return None


class NmeaMonitor:
    """Read NMEA from a serial port until a duration ends or a stop is asked for.

    Parameters
    ----------
    port : str or serial.SerialBase
        A pyserial URL (``/dev/ttyUSB0``, ``loop://``, ``socket://host:4001``, ...) or an
        open port (used as is, not closed here).
    baudrate : int
    silence_s : float
        Seconds without a byte before the receiver counts as silent.
    clock : callable
        Monotonic seconds (for every timeout); injected in tests.
    now_ns : callable
        Host time in unix ns (stamps of statuses and the log).

    Examples
    --------
    >>> import serial
    >>> port = serial.serial_for_url("loop://", timeout=0.05)
    >>> _ = port.write(b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\\r\\n")
    >>> status = NmeaMonitor(port).run(duration_s=0.3)
    >>> status.fix_quality, status.satellites, status.sentences
    (1, 8, 1)
    >>> NmeaMonitor("/dev/qhytime-no-such-port").run(duration_s=0.2).io_errors > 0
    True
    >>> port.close()
    """

    def __init__(
        self,
        port: Any,
        *,
        baudrate: int = 9600,
        silence_s: float = SILENCE_S,
        read_timeout_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._url = port if isinstance(port, str) else None
        self._port = None if isinstance(port, str) else port
        self.source = _redact(self._url) if self._url else str(getattr(port, "port", "port"))
        self.baudrate = baudrate
        self.silence_s = silence_s
        self.read_timeout_s = read_timeout_s
        self.clock = clock
        self.now_ns = now_ns
        self.parser = NmeaParser()
        self.opened = self._port is not None
        """True once the port has been open (at any time during the run)."""

    @property
    def status(self) -> GnssStatus:
        return self.parser.status

    def _open(self) -> Any:
        import serial

        if self._port is None and self._url is not None:
            try:
                self._port = serial.serial_for_url(
                    self._url, baudrate=self.baudrate, timeout=self.read_timeout_s,
                    do_not_open=False,
                )  # fmt: skip
            except (serial.SerialException, OSError):
                raise
            except (KeyError, ValueError, TypeError) as err:
                # pyserial's URL handlers fail while formatting their own messages (a brace in
                # the text): say what is wrong in words
                raise serial.SerialException(
                    f"cannot open {self.source}: {url_problem(self._url) or err}"
                ) from err
        self.opened = self.opened or self._port is not None
        return self._port

    def _close(self) -> None:
        if self._url is not None and self._port is not None:
            try:
                self._port.close()
            except Exception:  # closing a failed port: nothing more to do
                pass
            self._port = None

    def run(
        self,
        duration_s: float | None = None,
        *,
        stop: threading.Event | None = None,
        on_status: Callable[[GnssStatus, int], None] | None = None,
        on_change: Callable[[GnssStatus, int, str], None] | None = None,
    ) -> GnssStatus:
        """Read until ``duration_s`` has passed (monotonic) or ``stop`` is set.

        Parameters
        ----------
        on_status : callable(status, host_ns), optional
            Called once per second at most (every whole second since the start).
        on_change : callable(status, host_ns, what), optional
            Called when the receiver falls silent (``"silent"``) or speaks again
            (``"spoke"``).

        Returns
        -------
        GnssStatus
            The last state, with every count. Never raises for what the port sends; a port
            that cannot be opened or read is counted in ``io_errors`` (``last_error``) and
            reopened once a second.
        """
        import serial

        t0 = self.clock()
        last_byte = t0
        next_emit = t0 + 1.0
        st = self.status
        try:
            while True:
                now = self.clock()
                if duration_s is not None and now - t0 >= duration_s:
                    break
                if stop is not None and stop.is_set():
                    break
                data = b""
                try:
                    port = self._open()
                    data = port.read(max(1, min(int(port.in_waiting or 0), 65_536)))
                except (serial.SerialException, OSError, ValueError) as err:
                    st.io_errors += 1
                    st.last_error = str(err)[:200]
                    self._close()
                    wait = min(1.0, max(0.0, (t0 + duration_s - now) if duration_s else 1.0))
                    if stop is not None:
                        stop.wait(wait)
                    else:
                        time.sleep(wait)
                now = self.clock()
                host = self.now_ns()
                if data:
                    self.parser.feed(data, host)
                    last_byte = now
                    if st.silent:
                        st.silent = False
                        if on_change is not None:
                            on_change(st, host, "spoke")
                elif not st.silent and now - last_byte >= self.silence_s:
                    st.silent = True
                    if on_change is not None:
                        on_change(st, host, "silent")
                if now >= next_emit:
                    next_emit = now + 1.0
                    if on_status is not None:
                        on_status(st, host)
        finally:
            self.parser.finish(self.now_ns())
            self._close()
        return st


class GnssLogger:
    """Log the receiver's state into the index at a bounded rate; raise and clear its alerts;
    cross-check the frames indexed meanwhile (:func:`qhytime.service.alerts.gnss_check`).

    Parameters
    ----------
    index : FrameIndex
    source : str
        The receiver (its URL).
    interval_s : float
        A row every ``interval_s`` seconds at most, and one at each change of fix or
        silence (at most one a second).
    """

    def __init__(
        self, index: FrameIndex, source: str, *, interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.index = index
        self.source = source
        self.interval_s = max(1.0, float(interval_s))
        self.clock = clock
        self._last: float | None = None
        self._last_state: tuple[Any, ...] | None = None
        self._checked_to: int | None = None
        self.rows = 0

    def __call__(self, st: GnssStatus, host_ns: int) -> None:
        from qhytime.service.alerts import clear_alerts, gnss_check, raise_alert
        from qhytime.service.index import GnssLogRow

        now = self.clock()
        state = (st.silent, st.has_fix)
        due = self._last is None or now - self._last >= self.interval_s
        changed = state != self._last_state and (self._last is None or now - self._last >= 1.0)
        if not (due or changed):
            return
        if state != self._last_state:
            if st.silent:
                raise_alert(self.index, "gnss_silent",
                            f"the GPS receiver at {self.source} sent nothing for {SILENCE_S:g} s",
                            source="gnss", now_ns=host_ns)  # fmt: skip
            else:
                clear_alerts(self.index, "gnss_silent", source="gnss", now_ns=host_ns)
            if st.has_fix is False and not st.silent:
                raise_alert(self.index, "gnss_no_fix",
                            f"the GPS receiver at {self.source} reports no fix",
                            source="gnss", now_ns=host_ns)  # fmt: skip
            elif st.has_fix:
                clear_alerts(self.index, "gnss_no_fix", source="gnss", now_ns=host_ns)
        self._last, self._last_state = now, state
        with self.index.session(write=True) as s:
            s.add(GnssLogRow(
                host_ns=host_ns, source=self.source, utc_ns=None if st.silent else st.utc_ns,
                fix_quality=st.fix_quality, fix_type=st.fix_type, satellites=st.satellites,
                satellites_in_view=st.satellites_in_view, latitude_deg=st.latitude_deg,
                longitude_deg=st.longitude_deg, altitude_m=st.altitude_m,
                sentences=st.sentences, bad_checksum=st.bad_checksum, partial=st.partial,
                garbage=st.garbage, silent=st.silent,
            ))  # fmt: skip
            s.flush()
            start = self._checked_to if self._checked_to is not None else host_ns
            gnss_check(s, host_ns, host_from_ns=start, host_to_ns=host_ns)
        self._checked_to = host_ns
        self.rows += 1


def latest_gnss(index: FrameIndex, *, limit: int = 1) -> list[dict[str, Any]]:
    """The newest receiver log rows (newest first) as JSON objects."""
    from sqlalchemy import select

    from qhytime.service.index import GnssLogRow

    with index.session() as s:
        rows = s.scalars(select(GnssLogRow).order_by(GnssLogRow.id.desc()).limit(limit)).all()
        return [
            {
                "id": int(r.id), "host": iso(r.host_ns), "host_ns": r.host_ns, "source": r.source,
                "utc": iso(r.utc_ns), "utc_ns": r.utc_ns, "fix_quality": r.fix_quality,
                "fix_type": r.fix_type, "satellites": r.satellites,
                "satellites_in_view": r.satellites_in_view, "latitude_deg": r.latitude_deg,
                "longitude_deg": r.longitude_deg, "altitude_m": r.altitude_m,
                "sentences": r.sentences, "bad_checksum": r.bad_checksum,
                "partial": r.partial, "garbage": r.garbage, "silent": bool(r.silent),
            }
            for r in rows
        ]

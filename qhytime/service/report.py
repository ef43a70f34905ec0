"""What ``qhytime doctor`` says about service mode: the index, serial ports, the extra."""

from __future__ import annotations

import os
from importlib import metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qhytime.store import CalibrationStore

SERVICE_PACKAGES = ("fastapi", "uvicorn", "watchdog", "httpx")


def service_extra() -> tuple[bool, list[str]]:
    """Whether the ``service`` extra (FastAPI, uvicorn, watchdog) is installed, and a line per
    package.

    Examples
    --------
    >>> ok, lines = service_extra()
    >>> lines[0].split()[0]
    'fastapi'
    """
    lines, ok = [], True
    for pkg in SERVICE_PACKAGES:
        try:
            lines.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            lines.append(f"{pkg} not installed")
            ok = ok and pkg == "httpx"  # httpx is for the tests only
    return ok, lines


def serial_ports() -> list[str]:
    """Serial ports pyserial finds (device and description), for ``qhytime gnss``."""
    from serial.tools import list_ports

    return [f"{p.device} ({p.description})" for p in sorted(list_ports.comports())]


def doctor_lines(store: CalibrationStore) -> list[str]:
    """The doctor's lines about the frame timing index in ``store``'s database, the serial
    ports and the service extra."""
    from qhytime.service.index import FrameIndex

    out = []
    index = FrameIndex(store)
    summary = index.summary()
    size = ""
    path = store.where
    if os.path.isfile(path):
        size = f", database file {os.path.getsize(path) / 1e6:.1f} MB"
    out.append(
        f"frame index: {summary['files']} file(s), {summary['frames']} frame(s){size}, "
        f"{summary['active_alerts']} active alert(s)"
    )
    last = summary["last_frame"]
    if last is not None:
        out.append(
            f"  last frame indexed: #{last['id']} {last['file']} frame {last['frame']} "
            f"(end {last['end'] or '-'}, {last['status']})"
        )
    ports = serial_ports()
    out.append("serial ports: " + (", ".join(ports) if ports else "none found"))
    ok, pkgs = service_extra()
    out.append(
        "service extra: " + ("installed" if ok else "missing (pip install 'qhytime[service]')")
        + " (" + ", ".join(pkgs) + ")"
    )
    return out

"""Self-diagnosis: ``qhytime doctor`` / ``python -m qhytime``."""

from __future__ import annotations

import platform
from importlib import metadata


def doctor_report(db: str | None = None) -> str:
    """Versions, database path and schema revision, leap-second table expiry, shipped data.

    Opening the store creates and migrates the database if needed (that is its job).
    """
    from qhytime import __version__
    from qhytime.calibration import shipped_calibration_files
    from qhytime.store import CalibrationStore, head_revision
    from qhytime.timebase import leap_second_unix_ns, leap_table_expiry, unix_ns_to_iso

    lines = [f"qhytime {__version__} on Python {platform.python_version()} ({platform.platform()})"]
    for pkg in (
        "numpy",
        "scipy",
        "astropy",
        "sqlalchemy",
        "alembic",
        "pyserial",
        "pynmea2",
        "click",
    ):
        try:
            lines.append(f"  {pkg:<11} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            lines.append(f"  {pkg:<11} not installed")
    leaps = leap_second_unix_ns()
    lines.append(
        f"leap seconds: bundled astropy table, {len(leaps)} steps, last "
        f"{unix_ns_to_iso(int(leaps[-1]))[:10]}, expires {leap_table_expiry()} (no download)"
    )
    with CalibrationStore(db) as store:
        rev = store.schema_revision()
        lines.append(f"database: {store.url}")
        lines.append(
            f"  schema revision {rev} (head {head_revision()}), {store.count()} calibration(s) stored"
        )
        current = store.list()
        lines.append(f"  {len(current)} current:")
        for c in current:
            lines.append(
                f"    #{c.id} {c.method} {c.setting.key()} ref={c.reference} "
                f"offset0={c.offset0_us:.3f}+/-{c.offset0_sigma_us:.3f} us LP={c.line_period_ns} ns"
            )
        from qhytime.service.report import doctor_lines

        lines.extend(doctor_lines(store))
    files = shipped_calibration_files()
    lines.append("shipped calibrations: " + (", ".join(str(f) for f in files) or "none found"))
    return "\n".join(lines)

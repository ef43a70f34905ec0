"""The public names of qhytime, gathered in one place.

Importing this module imports numpy but opens no database, touches no network and does
not import matplotlib; astropy is imported when a time is first converted.
"""

from typing import TYPE_CHECKING

from qhytime.calibration import Calibration, Setting, dump_toml, load_toml
from qhytime.cluster import open_executor
from qhytime.decode import (
    DECODE_CHUNK_FRAMES,
    WHOLE_FILE_FRAMES,
    ChunkPlan,
    DecodedFile,
    DecodedFrame,
    SeriesFile,
    StampTime,
    decode_chunks,
    decode_file,
    decode_paths,
    decode_reader,
    decode_series,
    plan_chunks,
)
from qhytime.doctor import doctor_report
from qhytime.errors import (
    CalibrationError,
    ClusterError,
    FrameReadError,
    GpsBlockError,
    LedFitError,
    OccultationError,
    OrbitError,
    OutputError,
    QhytimeError,
    RowModelError,
    TemporaryCopyError,
    TruncatedFileError,
)
from qhytime.framerows import (
    ExposureWindow,
    FileTiming,
    FrameRowTimes,
    ReferenceStampWarning,
    exposure_ns_from_metadata,
    exposure_window,
    file_timing,
    frame_row_times,
    setting_from_reader,
)
from qhytime.gpsblock import (
    BLOCK_SIZE,
    GpsBlock,
    GpsBlockArray,
    Stamp,
    decode_image,
    decode_stack,
    embed_block,
)
from qhytime.ledcal import (
    BiasProfile,
    LedDiagnostics,
    LedFit,
    LedFrame,
    RowProfile,
    fit_led,
    load_scan,
    plot_fit,
    read_bias,
    read_pulses_csv,
    row_profile,
    write_pulses_csv,
)
from qhytime.ledplan import LedPlan, plan_scan
from qhytime.occultation import (
    Aperture,
    ApertureSeries,
    EdgeTime,
    EventTimes,
    LightCurve,
    PhotometryOptions,
    SquareWell,
    fit_events,
    fit_square_well,
    light_curve,
    plot_light_curve,
    time_info,
    write_pymovie_csv,
)
from qhytime.readers import (
    ArrayReader,
    FitsReader,
    Frame,
    FrameReader,
    SerReader,
    expand_paths,
    frames_from_buffer,
    open_frames,
    write_ser,
)
from qhytime.rowmodel import (
    FrameGeometry,
    RowModel,
    RowTimes,
    pixel_times,
    polyline_times,
    row_times,
)
from qhytime.satellite.ades import AdesContext, AdesObject, ades_psv
from qhytime.satellite.detect import Trail, detect_trails, refine_trail
from qhytime.satellite.iod import iod_line
from qhytime.satellite.orbit import Observer, OrbitCheck, Tle, load_tle, orbit_check
from qhytime.satellite.plot import plot_streak
from qhytime.satellite.sim import simulate_pass, trail_truth
from qhytime.satellite.sky import pixel_to_icrs, read_wcs, tan_wcs
from qhytime.satellite.streak import StreakResult, measure_streak
from qhytime.satellite.timing import FrameClock, StreakPoint, time_point, time_streak
from qhytime.simulate import (
    CameraSim,
    LedFaults,
    LedFaultTruth,
    LedPulse,
    Mover,
    Star,
    TrackMover,
    pulse_table,
)
from qhytime.stamp import StampResult, stamp_files, stamp_fits
from qhytime.store import (
    CalibrationFallbackWarning,
    CalibrationPinnedWarning,
    CalibrationStore,
    LookupResult,
    default_database_url,
    setting_differences,
)
from qhytime.timebase import (
    iso_to_unix_ns,
    near_leap_second,
    stamp_unix_ns,
    time_to_unix_ns,
    unix_ns_to_iso,
    unix_ns_to_time,
)

__all__ = [
    "BLOCK_SIZE",
    "DECODE_CHUNK_FRAMES",
    "WHOLE_FILE_FRAMES",
    "AdesContext",
    "AdesObject",
    "Alert",
    "Aperture",
    "ApertureSeries",
    "ArrayReader",
    "BiasProfile",
    "Calibration",
    "CalibrationError",
    "CalibrationFallbackWarning",
    "CalibrationPinnedWarning",
    "CalibrationStore",
    "CameraSim",
    "ChunkPlan",
    "ClusterError",
    "DecodedFile",
    "DecodedFrame",
    "EdgeTime",
    "EventTimes",
    "ExposureWindow",
    "FileRecords",
    "FileTiming",
    "FitsReader",
    "Frame",
    "FrameClock",
    "FrameGeometry",
    "FrameIndex",
    "FrameReadError",
    "FrameReader",
    "FrameRowTimes",
    "GnssStatus",
    "GpsBlock",
    "GpsBlockArray",
    "GpsBlockError",
    "IndexedFrame",
    "IngestResult",
    "LedDiagnostics",
    "LedFaultTruth",
    "LedFaults",
    "LedFit",
    "LedFitError",
    "LedFrame",
    "LedPlan",
    "LedPulse",
    "LightCurve",
    "LookupResult",
    "Mover",
    "NmeaMonitor",
    "NmeaParser",
    "Observer",
    "OccultationError",
    "OrbitCheck",
    "OrbitError",
    "OutputError",
    "PhotometryOptions",
    "QhytimeError",
    "ReferenceStampWarning",
    "RowModel",
    "RowModelError",
    "RowProfile",
    "RowTimes",
    "SerReader",
    "SeriesFile",
    "Setting",
    "SquareWell",
    "Stamp",
    "StampResult",
    "StampTime",
    "Star",
    "StreakPoint",
    "StreakResult",
    "TemporaryCopyError",
    "Tle",
    "TrackMover",
    "Trail",
    "TruncatedFileError",
    "Watcher",
    "ades_psv",
    "decode_chunks",
    "decode_file",
    "decode_image",
    "decode_paths",
    "decode_reader",
    "decode_series",
    "decode_stack",
    "default_database_url",
    "detect_trails",
    "doctor_report",
    "dump_toml",
    "embed_block",
    "expand_paths",
    "exposure_ns_from_metadata",
    "exposure_window",
    "file_records",
    "file_timing",
    "fit_events",
    "fit_led",
    "fit_square_well",
    "frame_row_times",
    "frames_from_buffer",
    "iod_line",
    "iso_to_unix_ns",
    "light_curve",
    "load_scan",
    "load_tle",
    "load_toml",
    "measure_streak",
    "near_leap_second",
    "open_executor",
    "open_frames",
    "orbit_check",
    "parse_iso_ns",
    "pixel_times",
    "pixel_to_icrs",
    "plan_chunks",
    "plan_scan",
    "plot_fit",
    "plot_light_curve",
    "plot_streak",
    "polyline_times",
    "pulse_table",
    "read_bias",
    "read_pulses_csv",
    "read_wcs",
    "refine_trail",
    "row_profile",
    "row_times",
    "setting_differences",
    "setting_from_reader",
    "simulate_pass",
    "stamp_files",
    "stamp_fits",
    "stamp_unix_ns",
    "tan_wcs",
    "time_info",
    "time_point",
    "time_streak",
    "time_to_unix_ns",
    "trail_truth",
    "unix_ns_to_iso",
    "unix_ns_to_time",
    "write_pulses_csv",
    "write_pymovie_csv",
    "write_ser",
]

# Service mode, loaded on first use: importing qhytime.api neither registers the index's tables
# on the store's metadata nor imports FastAPI, uvicorn or watchdog.
if TYPE_CHECKING:
    from qhytime.service.alerts import Alert
    from qhytime.service.gnss import GnssStatus, NmeaMonitor, NmeaParser
    from qhytime.service.index import (
        FileRecords,
        FrameIndex,
        IndexedFrame,
        IngestResult,
        file_records,
        parse_iso_ns,
    )
    from qhytime.service.watch import Watcher

_LAZY = {
    "FrameIndex": "qhytime.service.index",
    "IndexedFrame": "qhytime.service.index",
    "FileRecords": "qhytime.service.index",
    "IngestResult": "qhytime.service.index",
    "file_records": "qhytime.service.index",
    "parse_iso_ns": "qhytime.service.index",
    "Alert": "qhytime.service.alerts",
    "GnssStatus": "qhytime.service.gnss",
    "NmeaMonitor": "qhytime.service.gnss",
    "NmeaParser": "qhytime.service.gnss",
    "Watcher": "qhytime.service.watch",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qhytime.api' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

"""The public names of qhytime, gathered in one place.

Importing this module imports numpy but opens no database, touches no network and does
not import matplotlib; astropy is imported when a time is first converted.
"""

from qhytime.calibration import Calibration, Setting, dump_toml, load_toml
from qhytime.decode import (
    DecodedFile,
    DecodedFrame,
    StampTime,
    decode_file,
    decode_paths,
    decode_reader,
)
from qhytime.doctor import doctor_report
from qhytime.errors import (
    CalibrationError,
    FrameReadError,
    GpsBlockError,
    LedFitError,
    QhytimeError,
    RowModelError,
    TruncatedFileError,
)
from qhytime.framerows import (
    FrameRowTimes,
    exposure_ns_from_metadata,
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
from qhytime.ledcal import LedFit, LedFrame, fit_led, load_scan, plot_fit, read_pulses_csv
from qhytime.readers import (
    ArrayReader,
    FitsReader,
    Frame,
    FrameReader,
    SerReader,
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
from qhytime.simulate import CameraSim, LedPulse, Mover, Star, pulse_table
from qhytime.stamp import StampResult, stamp_files, stamp_fits
from qhytime.store import (
    CalibrationFallbackWarning,
    CalibrationStore,
    LookupResult,
    default_database_url,
)
from qhytime.timebase import (
    near_leap_second,
    stamp_unix_ns,
    time_to_unix_ns,
    unix_ns_to_iso,
    unix_ns_to_time,
)

__all__ = [
    "BLOCK_SIZE",
    "ArrayReader",
    "Calibration",
    "CalibrationError",
    "CalibrationFallbackWarning",
    "CalibrationStore",
    "CameraSim",
    "DecodedFile",
    "DecodedFrame",
    "FitsReader",
    "Frame",
    "FrameGeometry",
    "FrameReadError",
    "FrameReader",
    "FrameRowTimes",
    "GpsBlock",
    "GpsBlockArray",
    "GpsBlockError",
    "LedFit",
    "LedFitError",
    "LedFrame",
    "LedPulse",
    "LookupResult",
    "Mover",
    "QhytimeError",
    "RowModel",
    "RowModelError",
    "RowTimes",
    "SerReader",
    "Setting",
    "Stamp",
    "StampResult",
    "StampTime",
    "Star",
    "TruncatedFileError",
    "decode_file",
    "decode_image",
    "decode_paths",
    "decode_reader",
    "decode_stack",
    "default_database_url",
    "doctor_report",
    "dump_toml",
    "embed_block",
    "exposure_ns_from_metadata",
    "fit_led",
    "frame_row_times",
    "frames_from_buffer",
    "load_scan",
    "load_toml",
    "near_leap_second",
    "open_frames",
    "pixel_times",
    "plot_fit",
    "polyline_times",
    "pulse_table",
    "read_pulses_csv",
    "row_times",
    "setting_from_reader",
    "stamp_files",
    "stamp_fits",
    "stamp_unix_ns",
    "time_to_unix_ns",
    "unix_ns_to_iso",
    "unix_ns_to_time",
    "write_ser",
]

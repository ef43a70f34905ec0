"""The public names of qhytime, gathered in one place.

Importing this module imports numpy but opens no database, touches no network and does
not import matplotlib; astropy is imported when a time is first converted.
"""

from qhytime.decode import (
    DecodedFile,
    DecodedFrame,
    StampTime,
    decode_file,
    decode_paths,
    decode_reader,
)
from qhytime.errors import (
    CalibrationError,
    FrameReadError,
    GpsBlockError,
    LedFitError,
    QhytimeError,
    RowModelError,
    TruncatedFileError,
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
    "CalibrationError",
    "DecodedFile",
    "DecodedFrame",
    "FitsReader",
    "Frame",
    "FrameReadError",
    "FrameReader",
    "GpsBlock",
    "GpsBlockArray",
    "GpsBlockError",
    "LedFitError",
    "QhytimeError",
    "RowModelError",
    "SerReader",
    "Stamp",
    "StampTime",
    "TruncatedFileError",
    "decode_file",
    "decode_image",
    "decode_paths",
    "decode_reader",
    "decode_stack",
    "embed_block",
    "frames_from_buffer",
    "near_leap_second",
    "open_frames",
    "stamp_unix_ns",
    "time_to_unix_ns",
    "unix_ns_to_iso",
    "unix_ns_to_time",
    "write_ser",
]

"""One error root for qhytime, with builtin bases and the data that explains each error.

Every error derives from :class:`QhytimeError` and from the builtin exception that
describes its kind (``ValueError``, ``OSError``, ``LookupError``), so callers can catch
either. The errors pickle (they carry their fields through ``__reduce__``).
"""

from __future__ import annotations

from typing import Any


class QhytimeError(Exception):
    """Root of every error raised by qhytime."""


class _FieldError(QhytimeError):
    """Base for errors that carry ``path``, ``frame`` and ``reason`` fields."""

    def __init__(self, reason: str, *, path: str | None = None, frame: int | None = None) -> None:
        self.reason = reason
        self.path = path
        self.frame = frame
        where = []
        if path is not None:
            where.append(str(path))
        if frame is not None:
            where.append(f"frame {frame}")
        prefix = f"{', '.join(where)}: " if where else ""
        super().__init__(f"{prefix}{reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.reason, self.path, self.frame, self.__dict__))


def _rebuild(cls: type, reason: str, path: str | None, frame: int | None, state: dict) -> Any:
    err = cls.__new__(cls)
    _FieldError.__init__(err, reason, path=path, frame=frame)
    err.__dict__.update(state)
    return err


class GpsBlockError(_FieldError, ValueError):
    """A GPS block is missing, malformed or cannot be decoded.

    Attributes
    ----------
    reason : str
        What is wrong, starting with a short code such as ``no_gps_block``.
    path, frame : str or None, int or None
        Where the block was looked for, when known.
    """


class FrameReadError(_FieldError, OSError):
    """A frame file cannot be read (unknown format, damaged header, I/O error)."""


class TemporaryCopyError(FrameReadError):
    """The temporary copy of a long file's block bytes (the first pass of
    :func:`qhytime.decode.decode_chunks`) cannot be written or read back: not the file's fault
    (set ``TMPDIR`` to a folder with room)."""


class TruncatedFileError(FrameReadError):
    """A file ends before its last frame; the complete frames before it are still readable.

    Attributes
    ----------
    complete_frames : int
        How many frames are complete in the file.
    declared_frames : int
        How many frames the header announces.
    """

    def __init__(
        self,
        reason: str,
        *,
        path: str | None = None,
        frame: int | None = None,
        complete_frames: int = 0,
        declared_frames: int = 0,
    ) -> None:
        super().__init__(reason, path=path, frame=frame)
        self.complete_frames = complete_frames
        self.declared_frames = declared_frames


class CalibrationError(_FieldError, LookupError):
    """No usable calibration for a setting, or a calibration record is inconsistent."""


class StoreError(_FieldError, OSError):
    """The database cannot be opened, read or written (not a qhytime database, written by a
    newer qhytime, read-only, missing driver, ...). ``path`` is the database file or URL."""


class RowModelError(_FieldError, ValueError):
    """Row-timing inputs are inconsistent (row out of range, missing exposure, ...)."""


class LedFitError(_FieldError, ValueError):
    """An LED scan cannot be fitted (no lit band, saturated band, pulse longer than exposure)."""


class OccultationError(_FieldError, ValueError):
    """A light curve or an event fit cannot be made (aperture outside the frame, no event)."""


class OrbitError(_FieldError, ValueError):
    """A TLE cannot be read or used for the orbit check (bad lines or checksum, an element set
    sgp4 rejects, the ``sat`` extra missing)."""


class OutputError(_FieldError, OSError):
    """An output file cannot be written (disk full, no permission, the output is the source);
    nothing was written under its name. ``path`` is the input it was made from."""


class NotIndexedError(_FieldError, LookupError):
    """A frame, file or alert asked of the frame timing index is not in it (``path``: the
    file asked for, when one was)."""


class ClusterError(_FieldError, RuntimeError):
    """A dask cluster cannot be used (dask.distributed not installed, the scheduler cannot be
    reached, the workers run another qhytime version)."""

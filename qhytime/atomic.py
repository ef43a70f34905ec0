"""Output files that appear whole or not at all.

Every file qhytime writes for a user (stamped FITS, light-curve CSV, IOD and ADES files,
exported calibrations, benchmark tables) is written to a temporary name in the same folder,
flushed to disk, and renamed over the final name in one step (:func:`os.replace`). A full
disk, an error or a kill leaves the final name untouched (absent, or the old complete file)
and no temporary file behind (except after a kill, when it carries the ``.qhytime-tmp``
marker in its name).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from qhytime.errors import OutputError

TMP_MARK = ".qhytime-tmp"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path``; renamed onto ``path`` when the block succeeds.

    For writers that want a file name (astropy's ``writeto``). The temporary file exists
    (empty) when the block starts; on an exception it is removed and ``path`` is untouched.
    With ``fsync`` (the default) the data reach the disk before the rename, so a power cut
    cannot leave an empty file under the final name; files that can be made again (simulated
    captures) may skip it.

    Examples
    --------
    >>> import os, tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "out.txt") as tmp:
    ...     _ = tmp.write_text("whole")
    >>> (d / "out.txt").read_text(), os.listdir(d)
    ('whole', ['out.txt'])
    """
    final = Path(path)
    folder = final.parent if str(final.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=TMP_MARK, dir=folder)
    except OSError as err:
        why = "the folder does not exist" if not folder.is_dir() else (err.strerror or str(err))
        raise OutputError(f"cannot write it: {why} ({folder}); nothing was written", path=str(final)) from err
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _mode_for(final))
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError) and not isinstance(err, OutputError) and (
            err.filename in (str(tmp), tmp, str(final), final) or (err.filename is None
            and err.errno in _WRITE_ERRNOS)
        ):
            raise OutputError(
                f"cannot write it: {err.strerror or err}; nothing was written under that name",
                path=str(final),
            ) from err
        raise


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def _mode_for(final: Path) -> int:
    """The mode the output gets: that of the file it replaces, else what ``open`` would give a
    new file (0o666 less the umask); ``mkstemp`` alone would leave it private (0o600)."""
    try:
        return stat.S_IMODE(os.stat(final).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    try:  # Linux tells it without changing it
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting (briefly) and restoring it
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "w", *, fsync: bool = True, **kw: Any
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; rename it onto ``path`` on success.

    Parameters
    ----------
    mode : {"w", "wb"}
    **kw
        Passed to :func:`open` (``encoding``, ``newline``).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes new files: mode 'w' or 'wb', not {mode!r}")
    if mode == "w":
        kw.setdefault("encoding", "utf-8")
    with atomic_path(path, fsync=fsync) as tmp, open(tmp, mode, **kw) as fh:
        yield fh
        fh.flush()


def write_text_atomic(path: str | os.PathLike[str], text: str, **kw: Any) -> None:
    """Write ``text`` to ``path`` whole or not at all (UTF-8 unless ``encoding`` is given)."""
    with atomic_open(path, "w", **kw) as fh:
        fh.write(text)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)

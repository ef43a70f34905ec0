"""Frames that are already in memory: numpy arrays and raw SDK buffers."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from qhytime.errors import FrameReadError
from qhytime.gpsblock import block_bytes_from_rows
from qhytime.readers.base import FrameReader


class ArrayReader(FrameReader):
    """Frames from a numpy array ``(H, W)`` or ``(N, H, W)`` of uint8 or uint16 pixels.

    Parameters
    ----------
    images : array
        Raw frames as the camera sent them (16-bit values as in the little-endian buffer).
    name : str
        What to call the source in messages.
    top_down : bool
        True when rows are stored top-down (block in the last row).
    exposure_ns : int, optional
        The frames' exposure, when known (used by the consistency checks).

    Examples
    --------
    >>> import numpy as np
    >>> reader = ArrayReader(np.zeros((2, 4, 32), dtype=np.uint16))
    >>> len(reader), [f.why_no_block.split(':')[0] for f in reader]
    (2, ['no_gps_block', 'no_gps_block'])
    """

    kind = "array"

    def __init__(
        self,
        images: NDArray[Any],
        *,
        name: str = "<array>",
        top_down: bool = False,
        exposure_ns: int | None = None,
    ) -> None:
        super().__init__(name)
        arr = np.asarray(images)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise FrameReadError(
                f"expected an (H, W) or (N, H, W) array, got {arr.shape}", path=name
            )
        if arr.dtype.kind not in "ui" or arr.dtype.itemsize not in (1, 2):
            raise FrameReadError(
                f"raw frames are 8- or 16-bit integers, got {arr.dtype}", path=name
            )
        self._arr = arr
        self._top_down = top_down
        self._exposure_ns = exposure_ns
        self._n = self._declared = int(arr.shape[0])
        self._height, self._width = int(arr.shape[1]), int(arr.shape[2])
        self._depth = 8 * arr.dtype.itemsize

    @property
    def stored_top_down(self) -> bool:
        return self._top_down

    @property
    def exposure_ns(self) -> int | None:
        return self._exposure_ns

    def block_bytes(self, *, last_row: bool = False) -> NDArray[np.uint8]:
        return block_bytes_from_rows(self._arr[:, -1 if last_row else 0, :])

    ranged_blocks = True

    def block_bytes_range(self, lo: int, hi: int, *, last_row: bool = False) -> NDArray[np.uint8]:
        return block_bytes_from_rows(self._arr[lo:hi, -1 if last_row else 0, :])

    def image(self, index: int) -> NDArray[Any]:
        return self._arr[self._check_index(index)]


def frames_from_buffer(
    buffer: bytes | bytearray | memoryview | NDArray[np.uint8],
    width: int,
    height: int,
    bit_depth: int,
    *,
    name: str = "<buffer>",
) -> ArrayReader:
    """Frames from raw SDK buffers laid end to end (16-bit samples little-endian).

    Raises
    ------
    FrameReadError
        When the buffer does not hold a whole number of frames.

    Examples
    --------
    >>> reader = frames_from_buffer(bytes(2 * 4 * 32 * 2), 32, 4, 16)
    >>> len(reader), reader.bit_depth
    (2, 16)
    """
    raw = np.frombuffer(buffer, dtype=np.uint8) if not isinstance(buffer, np.ndarray) else buffer
    bps = 1 if bit_depth <= 8 else 2
    frame_bytes = width * height * bps
    if raw.size % frame_bytes:
        raise FrameReadError(
            f"buffer of {raw.size} bytes is not a whole number of {width}x{height}x{bps}-byte "
            f"frames ({raw.size // frame_bytes} complete)",
            path=name,
        )
    dtype = np.uint8 if bps == 1 else np.dtype("<u2")
    arr = raw.view(dtype).reshape(-1, height, width)
    return ArrayReader(arr, name=name)

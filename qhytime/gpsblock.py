"""The 44-byte GPS block that QHY GPS cameras write into the first pixels of a frame.

Byte layout (``../shared/spec/gps-block.md``; all integers big-endian, unsigned):

====== ============= ==========================================================
bytes  field         meaning
====== ============= ==========================================================
0-3    sequence      frame sequence number
4      spare         kept, never interpreted
5-6    width         image width the camera believes it sent
7-8    height        image height
9-12   latitude      decimal digits ``S DD MMMMMMM`` (S=1 south, minutes x 1e5)
13-16  longitude     decimal digits ``S DDD MMMMMM`` (S=1 west, minutes x 1e4)
17     start flag    receiver state in bits 4-5
18-21  start seconds whole seconds since 1995-10-10T00:00:00 UTC
22-24  start ticks   ~10 MHz oscillator counts since the last PPS edge
25-32  end           flag, seconds, ticks as for start
33-40  now           flag, seconds, ticks as for start
41-43  pps count     oscillator counts between the last two PPS edges
====== ============= ==========================================================

Scalar work uses :class:`GpsBlock`; many frames at once use :class:`GpsBlockArray`,
which decodes an ``(N, 44)`` byte array in one numpy pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qhytime.errors import GpsBlockError

BLOCK_SIZE = 44
"""Bytes in one GPS block."""

STAMP_NAMES: tuple[str, str, str] = ("start", "end", "now")
"""The three stamps of a block, in byte order."""

# (name, first byte, number of bytes) for every field, in byte order.
_LAYOUT: tuple[tuple[str, int, int], ...] = (
    ("sequence", 0, 4),
    ("spare", 4, 1),
    ("width", 5, 2),
    ("height", 7, 2),
    ("latitude_raw", 9, 4),
    ("longitude_raw", 13, 4),
    ("start_flag", 17, 1),
    ("start_seconds", 18, 4),
    ("start_ticks", 22, 3),
    ("end_flag", 25, 1),
    ("end_seconds", 26, 4),
    ("end_ticks", 30, 3),
    ("now_flag", 33, 1),
    ("now_seconds", 34, 4),
    ("now_ticks", 38, 3),
    ("pps_count", 41, 3),
)
FIELD_NAMES: tuple[str, ...] = tuple(name for name, _, _ in _LAYOUT)
"""Every integer field of the block, in byte order."""

FIELD_MAX: dict[str, int] = {name: (1 << (8 * size)) - 1 for name, _, size in _LAYOUT}
"""Largest value each field can hold."""

# The block as a numpy record: every field a big-endian integer at its byte offset, so that
# decoding N blocks is one conversion per field. A 3-byte field is read as the 4 bytes that end
# with it (every one has a byte before it) and masked.
_RECORD = np.dtype(
    {
        "names": list(FIELD_NAMES),
        "formats": [{1: "u1", 2: ">u2", 3: ">u4", 4: ">u4"}[size] for _, _, size in _LAYOUT],
        "offsets": [first - 1 if size == 3 else first for _, first, size in _LAYOUT],
        "itemsize": 44,
    }
)
_THREE_BYTES = tuple(name for name, _, size in _LAYOUT if size == 3)


def receiver_state(flag: ArrayLike) -> Any:
    """Receiver state (0..3) held in bits 4-5 of a raw flag byte.

    Parameters
    ----------
    flag : int or array of int
        The raw flag byte(s).

    Returns
    -------
    int or numpy.ndarray
        0 powered on, 1 searching, 2 locking (time valid, not locked), 3 locked.

    Examples
    --------
    >>> receiver_state(0x33)
    3
    >>> receiver_state(0x23)
    2
    """
    if isinstance(flag, int | np.integer):
        return (int(flag) >> 4) & 3
    return (np.asarray(flag, dtype=np.int64) >> 4) & 3


def latitude_deg_from_raw(raw: ArrayLike) -> Any:
    """Latitude in degrees (north positive) from the block's ``S DD MMMMMMM`` integer.

    Examples
    --------
    >>> round(latitude_deg_from_raw(1351234567), 7)
    -35.2057612
    """
    v = np.asarray(raw, dtype=np.int64)
    sign = np.where(v // 1_000_000_000 == 1, -1.0, 1.0)
    deg = (v // 10_000_000) % 100 + (v % 10_000_000) / 1e5 / 60.0
    out = sign * deg
    return float(out) if out.ndim == 0 else out


def longitude_deg_from_raw(raw: ArrayLike) -> Any:
    """Longitude in degrees (east positive) from the block's ``S DDD MMMMMM`` integer.

    Examples
    --------
    >>> round(longitude_deg_from_raw(149123456), 5)
    149.20576
    """
    v = np.asarray(raw, dtype=np.int64)
    sign = np.where(v // 1_000_000_000 == 1, -1.0, 1.0)
    deg = (v // 1_000_000) % 1000 + (v % 1_000_000) / 1e4 / 60.0
    out = sign * deg
    return float(out) if out.ndim == 0 else out


def _deg_to_raw(deg: float, deg_digits_scale: int, minute_scale: int) -> int:
    south = deg < 0
    a = abs(deg)
    whole = int(a)
    minutes = round((a - whole) * 60.0 * minute_scale)
    if minutes >= 60 * minute_scale:  # rounding reached a full degree
        whole, minutes = whole + 1, 0
    return (1_000_000_000 if south else 0) + whole * deg_digits_scale + minutes


def latitude_raw_from_deg(deg: float) -> int:
    """The block's latitude integer for a latitude in degrees (0.00001' resolution).

    Examples
    --------
    >>> latitude_raw_from_deg(-35.2057612)
    1351234567
    """
    if not -90.0 <= deg <= 90.0:
        raise GpsBlockError(f"latitude {deg} deg is outside -90..90")
    return _deg_to_raw(deg, 10_000_000, 100_000)


def longitude_raw_from_deg(deg: float) -> int:
    """The block's longitude integer for a longitude in degrees (0.0001' resolution).

    Examples
    --------
    >>> longitude_raw_from_deg(149.20576)
    149123456
    """
    if not -180.0 <= deg <= 180.0:
        raise GpsBlockError(f"longitude {deg} deg is outside -180..180")
    return _deg_to_raw(deg, 1_000_000, 10_000)


@dataclass(frozen=True, slots=True)
class Stamp:
    """One GPS stamp of a block: raw flag byte, whole GPS seconds and oscillator ticks.

    Examples
    --------
    >>> s = Stamp(flag=0x33, seconds=940815891, ticks=7300584)
    >>> s.state
    3
    """

    flag: int
    seconds: int
    ticks: int

    @property
    def state(self) -> int:
        """Receiver state 0..3 (bits 4-5 of the flag byte)."""
        return (self.flag >> 4) & 3


@dataclass(frozen=True, slots=True)
class GpsBlock:
    """A decoded GPS block, every field as the camera wrote it.

    Positions are kept as the raw integers; :attr:`latitude_deg` and
    :attr:`longitude_deg` convert them.

    Examples
    --------
    >>> blk = GpsBlock(sequence=7, spare=0, width=320, height=96,
    ...                latitude_raw=521290180, longitude_raw=1000523572,
    ...                start=Stamp(0x33, 940815891, 7300584),
    ...                end=Stamp(0x33, 940815891, 9800485),
    ...                now=Stamp(0x33, 940815891, 9809860), pps_count=9999612)
    >>> GpsBlock.from_bytes(blk.to_bytes()) == blk
    True
    >>> round(blk.latitude_deg, 5), round(blk.longitude_deg, 5)
    (52.21503, -0.87262)
    """

    sequence: int
    spare: int
    width: int
    height: int
    latitude_raw: int
    longitude_raw: int
    start: Stamp
    end: Stamp
    now: Stamp
    pps_count: int

    @property
    def latitude_deg(self) -> float:
        """Latitude in degrees, north positive."""
        return float(latitude_deg_from_raw(self.latitude_raw))

    @property
    def longitude_deg(self) -> float:
        """Longitude in degrees, east positive."""
        return float(longitude_deg_from_raw(self.longitude_raw))

    def stamp(self, name: str) -> Stamp:
        """The stamp called ``name`` (``"start"``, ``"end"`` or ``"now"``)."""
        if name not in STAMP_NAMES:
            raise ValueError(f"stamp must be one of {STAMP_NAMES}, not {name!r}")
        return getattr(self, name)

    def fields(self) -> dict[str, int]:
        """Every integer field by its :data:`FIELD_NAMES` name."""
        out = {
            "sequence": self.sequence,
            "spare": self.spare,
            "width": self.width,
            "height": self.height,
            "latitude_raw": self.latitude_raw,
            "longitude_raw": self.longitude_raw,
            "pps_count": self.pps_count,
        }
        for name in STAMP_NAMES:
            s = self.stamp(name)
            out[f"{name}_flag"] = s.flag
            out[f"{name}_seconds"] = s.seconds
            out[f"{name}_ticks"] = s.ticks
        return out

    @classmethod
    def from_fields(cls, fields: dict[str, int]) -> GpsBlock:
        """Build a block from a mapping of :data:`FIELD_NAMES` to integers."""
        stamps = {
            n: Stamp(
                int(fields[f"{n}_flag"]), int(fields[f"{n}_seconds"]), int(fields[f"{n}_ticks"])
            )
            for n in STAMP_NAMES
        }
        return cls(
            sequence=int(fields["sequence"]),
            spare=int(fields["spare"]),
            width=int(fields["width"]),
            height=int(fields["height"]),
            latitude_raw=int(fields["latitude_raw"]),
            longitude_raw=int(fields["longitude_raw"]),
            pps_count=int(fields["pps_count"]),
            **stamps,
        )

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview | NDArray[np.uint8]) -> GpsBlock:
        """Decode the first 44 bytes of ``data``.

        Raises
        ------
        GpsBlockError
            When fewer than 44 bytes are given.
        """
        return GpsBlockArray.from_bytes(_as_block_bytes(data)[None, :])[0]

    def to_bytes(self) -> bytes:
        """Encode to the 44 bytes the camera writes.

        Raises
        ------
        GpsBlockError
            When a field does not fit its bytes.
        """
        return GpsBlockArray.from_blocks([self]).to_bytes()[0].tobytes()


def _as_block_bytes(data: bytes | bytearray | memoryview | NDArray[np.uint8]) -> NDArray[np.uint8]:
    arr = np.frombuffer(bytes(data), dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    arr = np.asarray(arr).reshape(-1)
    if arr.dtype != np.uint8:
        raise GpsBlockError(f"block bytes must be uint8, got {arr.dtype}")
    if arr.size < BLOCK_SIZE:
        raise GpsBlockError(f"short_block: {arr.size} bytes given, a GPS block has {BLOCK_SIZE}")
    return arr[:BLOCK_SIZE]


class GpsBlockArray:
    """The GPS blocks of N frames, one int64 array per field (columnar, vectorised).

    Parameters
    ----------
    fields : dict of str to array of int
        One array of length N for every name in :data:`FIELD_NAMES`.

    Examples
    --------
    >>> import numpy as np
    >>> raw = np.zeros((3, 44), dtype=np.uint8)
    >>> raw[:, 3] = [1, 2, 3]                      # sequence numbers 1, 2, 3
    >>> blocks = GpsBlockArray.from_bytes(raw)
    >>> blocks.sequence.tolist()
    [1, 2, 3]
    >>> len(blocks), blocks[1].sequence
    (3, 2)
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, NDArray[np.int64]]) -> None:
        missing = [n for n in FIELD_NAMES if n not in fields]
        if missing:
            raise ValueError(f"missing fields: {missing}")
        arrays = {n: np.asarray(fields[n], dtype=np.int64).reshape(-1) for n in FIELD_NAMES}
        sizes = {a.size for a in arrays.values()}
        if len(sizes) != 1:
            raise ValueError("all fields must have the same length")
        self._fields = arrays

    @classmethod
    def _of(cls, fields: dict[str, NDArray[np.int64]]) -> GpsBlockArray:
        """Wrap int64 arrays of one length, one per field in :data:`FIELD_NAMES` order, as
        they are (the caller guarantees it: no checks, no copies)."""
        out = cls.__new__(cls)
        out._fields = fields
        return out

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_bytes(cls, raw: NDArray[np.uint8]) -> GpsBlockArray:
        """Decode an ``(N, >=44)`` uint8 array, one block per row, in one numpy pass."""
        raw = np.asarray(raw)
        if raw.ndim != 2 or raw.shape[1] < BLOCK_SIZE or raw.dtype != np.uint8:
            raise GpsBlockError(
                f"expected an (N, {BLOCK_SIZE}) uint8 array, got {raw.shape} {raw.dtype}"
            )
        rec = np.ascontiguousarray(raw[:, :BLOCK_SIZE]).view(_RECORD)[:, 0]
        fields: dict[str, NDArray[np.int64]] = {}
        for name in FIELD_NAMES:
            v = fields[name] = np.empty(rec.shape, dtype=np.int64)
            v[...] = rec[name]  # numpy's assignment converts faster than astype here
        for name in _THREE_BYTES:
            fields[name] &= 0xFFFFFF
        return cls._of(fields)

    @classmethod
    def from_blocks(cls, blocks: list[GpsBlock]) -> GpsBlockArray:
        """Gather scalar blocks into columns."""
        cols: dict[str, list[int]] = {n: [] for n in FIELD_NAMES}
        for blk in blocks:
            for n, v in blk.fields().items():
                cols[n].append(v)
        return cls({n: np.array(v, dtype=np.int64) for n, v in cols.items()})

    # -- access ---------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._fields["sequence"].size)

    def __getitem__(self, index: int) -> GpsBlock:
        return GpsBlock.from_fields({n: int(a[index]) for n, a in self._fields.items()})

    def __iter__(self) -> Iterator[GpsBlock]:
        for i in range(len(self)):
            yield self[i]

    def __getattr__(self, name: str) -> NDArray[np.int64]:
        if name.startswith("_"):  # not a field: a dunder, or the slot unset while unpickling
            raise AttributeError(name)
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(name) from None

    def field(self, name: str) -> NDArray[np.int64]:
        """The int64 array of one field."""
        return self._fields[name]

    def take(self, index: ArrayLike) -> GpsBlockArray:
        """A new array with the blocks at ``index`` (an int array or a boolean mask)."""
        idx = np.asarray(index)
        if idx.ndim != 1:
            return GpsBlockArray({n: a[index] for n, a in self._fields.items()})
        return GpsBlockArray._of({n: a[idx] for n, a in self._fields.items()})

    def stamp_columns(
        self, name: str
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """``(flag, seconds, ticks)`` arrays of stamp ``name``."""
        if name not in STAMP_NAMES:
            raise ValueError(f"stamp must be one of {STAMP_NAMES}, not {name!r}")
        f = self._fields
        return f[f"{name}_flag"], f[f"{name}_seconds"], f[f"{name}_ticks"]

    @property
    def latitude_deg(self) -> NDArray[np.float64]:
        """Latitudes in degrees."""
        return np.asarray(latitude_deg_from_raw(self._fields["latitude_raw"]), dtype=np.float64)

    @property
    def longitude_deg(self) -> NDArray[np.float64]:
        """Longitudes in degrees."""
        return np.asarray(longitude_deg_from_raw(self._fields["longitude_raw"]), dtype=np.float64)

    # -- encoding -----------------------------------------------------------------------
    def to_bytes(self) -> NDArray[np.uint8]:
        """Encode to an ``(N, 44)`` uint8 array.

        Raises
        ------
        GpsBlockError
            When a field is negative or does not fit its bytes.
        """
        out = np.zeros((len(self), BLOCK_SIZE), dtype=np.uint8)
        for name, first, size in _LAYOUT:
            v = self._fields[name]
            bad = (v < 0) | (v > FIELD_MAX[name])
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise GpsBlockError(
                    f"field {name}={int(v[i])} does not fit {size} byte(s)", frame=i
                )
            for k in range(size):
                out[:, first + k] = (v >> (8 * (size - 1 - k))) & 0xFF
        return out


# -- blocks inside images ---------------------------------------------------------------


def block_bytes_from_rows(rows: NDArray[Any]) -> NDArray[np.uint8]:
    """The 44 block bytes of each frame from its first stored row(s).

    Parameters
    ----------
    rows : array, shape (W,) or (N, W)
        Row 0 of one frame or of N frames, uint8 (8-bit readout) or uint16 (16-bit
        readout, pixel values as the raw little-endian buffer holds them).

    Returns
    -------
    numpy.ndarray of uint8, shape (N, 44)

    Examples
    --------
    >>> import numpy as np
    >>> row = np.zeros(32, dtype=np.uint16); row[0] = 0x0201
    >>> block_bytes_from_rows(row)[0, :3].tolist()      # low byte first
    [1, 2, 0]
    """
    rows = np.asarray(rows)
    if rows.ndim == 1:
        rows = rows[None, :]
    if rows.dtype.itemsize == 1:
        need = BLOCK_SIZE
    elif rows.dtype.kind in "ui" and rows.dtype.itemsize == 2:
        need = BLOCK_SIZE // 2
    else:
        raise GpsBlockError(
            f"no_gps_block: pixels of type {rows.dtype} cannot hold a raw GPS block "
            "(processed or floating-point data)"
        )
    if rows.shape[1] < need:
        raise GpsBlockError(f"no_gps_block: row has {rows.shape[1]} pixels, block needs {need}")
    head = rows[:, :need]
    if head.dtype.itemsize == 1:
        return np.ascontiguousarray(head).view(np.uint8)
    return np.ascontiguousarray(head.astype("<u2", copy=False)).view(np.uint8)


def decode_image(image: NDArray[Any], *, flipped: bool = False) -> GpsBlock:
    """Decode the GPS block of one raw frame (8- or 16-bit image array).

    Parameters
    ----------
    image : array, shape (H, W)
        The frame as the camera sent it.
    flipped : bool
        True when rows are stored top-down, so the block is in the last stored row.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((4, 64), dtype=np.uint8)
    >>> img[0, :4] = [0, 0, 1, 0]
    >>> decode_image(img).sequence
    256
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise GpsBlockError(f"expected a 2-D image, got shape {image.shape}")
    return GpsBlockArray.from_bytes(block_bytes_from_rows(image[-1 if flipped else 0]))[0]


def decode_stack(images: NDArray[Any], *, flipped: bool = False) -> GpsBlockArray:
    """Decode the GPS blocks of a stack of frames ``(N, H, W)`` in one numpy pass."""
    images = np.asarray(images)
    if images.ndim != 3:
        raise GpsBlockError(f"expected an (N, H, W) stack, got shape {images.shape}")
    return GpsBlockArray.from_bytes(block_bytes_from_rows(images[:, -1 if flipped else 0, :]))


def embed_block(image: NDArray[Any], block: GpsBlock, *, flipped: bool = False) -> None:
    """Write ``block`` into the first pixels of ``image`` in place, as the camera does.

    Examples
    --------
    >>> import numpy as np
    >>> blk = GpsBlock(5, 0, 64, 4, 0, 0, Stamp(0x33, 1, 2), Stamp(0x33, 1, 3),
    ...                Stamp(0x33, 1, 4), 10_000_000)
    >>> img = np.zeros((4, 64), dtype=np.uint16)
    >>> embed_block(img, blk)
    >>> decode_image(img) == blk
    True
    """
    data = np.frombuffer(block.to_bytes(), dtype=np.uint8)
    row = image[-1 if flipped else 0]
    if image.dtype.itemsize == 1:
        row[:BLOCK_SIZE] = data
    elif image.dtype.itemsize == 2:
        row[: BLOCK_SIZE // 2] = data.view("<u2")
    else:
        raise GpsBlockError(f"cannot embed a GPS block into {image.dtype} pixels")

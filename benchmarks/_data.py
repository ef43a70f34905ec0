"""The benchmarks' input files, written once per run (or kept in ``--data DIR``).

Large captures are written sparse: a SER of 100,000 frames of 9600x100 is 192 GB long but
holds only each frame's GPS block (4 KiB of disk per frame); reading a block touches one
page per frame either way. FITS strips come from the simulator (``CameraSim.write_fits``);
full frames hold a flat bias and the simulator's GPS block (pixel values do not matter to
stamping, which copies the bytes).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from qhytime.gpsblock import GpsBlockArray, Stamp, embed_block
from qhytime.readers.serfile import _HEADER, HEADER_SIZE, SER_MAGIC
from qhytime.simulate import CameraSim

FULL_WIDTH, FULL_HEIGHT = 9576, 6388  # QHY600PRO, default resolution


def cached(path: Path, make: Callable[[Path], object]) -> Path:
    """``path``, written by ``make(path)`` unless a previous run completed it (marker file)."""
    done = path.with_name(path.name + ".done")
    if not done.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path)
        done.touch()
    return path


def write_sparse_ser(path: str | os.PathLike[str], n: int, width: int, height: int) -> None:
    """A SER of ``n`` 16-bit frames whose only data are their GPS blocks (5 frames/s, locked).

    Examples
    --------
    >>> import tempfile, os
    >>> from qhytime.decode import decode_file
    >>> p = os.path.join(tempfile.mkdtemp(), "s.ser")
    >>> write_sparse_ser(p, 12, 64, 8)
    >>> int(decode_file(p).ok.sum())
    12
    """
    frame_bytes = width * height * 2
    head = _HEADER.pack(SER_MAGIC, 0, 0, 1, width, height, 16, n, b"", b"QHY600PRO", b"", 0, 0)
    seq = np.arange(n, dtype=np.int64) + 1
    secs = 940815891 + seq // 5
    ticks = (seq % 5) * 2_000_000 + 1234
    fields = {
        "sequence": seq, "spare": np.zeros(n), "width": np.full(n, width),
        "height": np.full(n, height), "latitude_raw": np.full(n, 521290180),
        "longitude_raw": np.full(n, 1000523572), "pps_count": np.full(n, 9_999_612),
    }  # fmt: skip
    for name, dt in (("start", 0), ("end", 200_000), ("now", 210_000)):
        fields[f"{name}_flag"] = np.full(n, Stamp(0x33, 0, 0).flag)
        fields[f"{name}_seconds"] = secs
        fields[f"{name}_ticks"] = ticks + dt
    raw = GpsBlockArray({k: np.asarray(v, dtype=np.int64) for k, v in fields.items()}).to_bytes()
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(HEADER_SIZE + n * frame_bytes)
        for i in range(n):
            fh.seek(HEADER_SIZE + i * frame_bytes)
            fh.write(raw[i].tobytes())


def strip_sim(width: int, height: int) -> CameraSim:
    """The camera of the FITS strips: 20 ms exposures every 25 ms."""
    return CameraSim(width=width, height=height, exposure_us=20_000.0, frame_interval_us=25_000.0,
                     seed=11)  # fmt: skip


def write_fits_strips(folder: Path, count: int, width: int, height: int) -> list[Path]:
    """``count`` single-frame FITS files from the simulator (a sequence, in name order)."""
    return strip_sim(width, height).write_fits(folder, count, prefix="strip")


def full_sim() -> CameraSim:
    """The camera of the full frames (as ``qhytime demo``)."""
    return CameraSim(width=FULL_WIDTH, height=FULL_HEIGHT, exposure_us=100_000.0,
                     frame_interval_us=500_000.0, reference="now", seed=7)  # fmt: skip


def write_full_frames(folder: Path, count: int, width: int = FULL_WIDTH,
                      height: int = FULL_HEIGHT) -> list[Path]:  # fmt: skip
    """``count`` full frames: a flat bias of 800 ADU and the simulator's GPS block."""
    from astropy.io import fits

    sim = full_sim()
    sim.width, sim.height = width, height
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        image = np.full((height, width), 800, dtype=np.uint16)
        embed_block(image, sim.block_for(i)[0])
        hdu = fits.PrimaryHDU(image)
        for k, v in sim.fits_header().items():
            hdu.header[k] = v
        path = folder / f"full_{i:04d}.fits"
        hdu.writeto(path, overwrite=True)
        paths.append(path)
    return paths


STARS = ((1000.3, 50.2, 40_000.0), (4800.7, 47.6, 60_000.0), (8000.1, 52.9, 25_000.0))
STAR_BOX = 20  # half-size of the written box around each star


def add_stars(path: str | os.PathLike[str], n: int, width: int, seed: int = 1) -> None:
    """Write sky and a Gaussian star into a box around each of ``STARS`` in every frame of a
    sparse SER of 100-row frames (16 noise realisations, cycled)."""
    rng = np.random.default_rng(seed)
    size = 2 * STAR_BOX + 1
    frame_bytes = width * 100 * 2
    with open(path, "r+b") as fh:
        for x, y, flux in STARS:
            ix, iy = round(x), round(y)
            yy, xx = np.indices((size, size))
            psf = flux * np.exp(
                -((xx - STAR_BOX - (x - ix)) ** 2 + (yy - STAR_BOX - (y - iy)) ** 2) / 3.6
            )
            psf /= 2 * np.pi * 1.8
            variants = [
                np.clip(rng.normal(800 + psf, np.sqrt(800 + psf)), 0, 65535).astype("<u2")
                for _ in range(16)
            ]
            for i in range(n):
                box = variants[i % 16]
                base = HEADER_SIZE + i * frame_bytes + ((iy - STAR_BOX) * width + ix - STAR_BOX) * 2
                for r in range(size):
                    fh.seek(base + r * width * 2)
                    fh.write(box[r].tobytes())

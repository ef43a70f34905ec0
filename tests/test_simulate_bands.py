"""Large simulated frames are made in bands of rows, with the same pixels as in one piece.

:meth:`CameraSim.frame_rows` computes a frame larger than ``SINGLE_PASS_PIXELS`` band by band
(``qhytime demo`` writes two full 9576x6388 frames without holding a float copy). Here the
limits are lowered so that small frames take the banded path, and every kind of signal and
both random streams (photon and read noise) are compared with the one-piece frame of the same
seed; and the files ``write_fits`` streams are compared with the file astropy writes for the
whole image.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from qhytime import simulate
from qhytime.simulate import DEFAULT_T0_UNIX_NS as T0
from qhytime.simulate import CameraSim, LedPulse, Mover, Star, TrackMover

SOURCES: dict[str, dict[str, Any]] = {
    "dark (no signal: read noise only)": {},
    "stars, one occulted": dict(stars=[
        Star(20.3, 9.7, 4e5, occulted=(T0 - 120_000_000, T0 - 60_000_000)),
        Star(50.0, 2.0, 1e5, fwhm_px=4.0),
    ]),
    "mover and track": dict(movers=[
        Mover(3.0, 2.0, 400.0, 90.0, T0 - 100_000_000, 3e5),
        TrackMover((T0 - 10**9, T0, T0 + 10**9), (1.0, 30.0, 70.0), (1.0, 12.0, 20.0), 2e5),
    ]),
    "LED pulses": dict(led=[LedPulse(-100e6, 3e5, 90.0), LedPulse(-50e6, 1e6, 60.0)]),
}
CAMERAS: dict[str, dict[str, Any]] = {
    "16-bit pairs": dict(width=73, height=23),
    "16-bit sky, binned 2": dict(width=73, height=12, binning=2, crop_y=5, sky_adu_per_s=300.0),
    "8-bit 2cms, sky": dict(width=64, height=23, bit_depth=8, readout="2cms", sky_adu_per_s=40.0,
                            bias_adu=20.0),
}  # fmt: skip


def _banded(monkeypatch: pytest.MonkeyPatch, band_pixels: int) -> None:
    monkeypatch.setattr(simulate, "SINGLE_PASS_PIXELS", 0)
    monkeypatch.setattr(simulate, "BAND_PIXELS", band_pixels)


@pytest.mark.parametrize("camera", list(CAMERAS))
@pytest.mark.parametrize("sources", list(SOURCES))
@pytest.mark.parametrize("noise", [True, False])
def test_banded_frame_equals_the_one_piece_frame(
    monkeypatch: pytest.MonkeyPatch, camera: str, sources: str, noise: bool
) -> None:
    sim = CameraSim(exposure_us=200_000.0, seed=11, **CAMERAS[camera])
    whole = sim.frame(0, noise=noise, **SOURCES[sources]).image
    assert len(list(sim.frame_rows(0, noise=noise, **SOURCES[sources]))) == 1  # one piece
    for band_pixels in (1, 3 * sim.width, 7 * sim.width + 5):  # 1 row, 3 rows, 7 rows per band
        with monkeypatch.context() as mp:
            _banded(mp, band_pixels)
            bands = list(sim.frame_rows(0, noise=noise, **SOURCES[sources]))
            assert len(bands) == -(-sim.height // max(1, band_pixels // sim.width))
            banded = sim.frame(0, noise=noise, **SOURCES[sources]).image
        assert banded.dtype == whole.dtype
        assert np.array_equal(banded, whole), f"{band_pixels} pixels per band"
        assert np.array_equal(np.vstack([rows for _, rows in bands]), whole)
        assert [r0 for r0, _ in bands] == list(range(0, sim.height, max(1, band_pixels // sim.width)))
    # the case is not trivial: noise varies the pixels, the sources are in the frame
    if noise:
        assert len(np.unique(whole[1:])) > 3
    elif SOURCES[sources]:
        bare = sim.frame(0, noise=False).image
        assert (whole[1:].astype(int) - bare[1:]).max() > 20


def test_frames_are_not_all_alike() -> None:
    """The comparison above would hold for a simulator that ignored its seed or frame."""
    a, b, c = (CameraSim(width=40, height=10, seed=s).frame(i).image for s, i in ((1, 0), (1, 1), (2, 0)))
    assert not np.array_equal(a[1:], b[1:]) and not np.array_equal(a[1:], c[1:])


def test_bands_of_a_large_frame_are_bounded() -> None:
    """Above SINGLE_PASS_PIXELS a frame comes in bands of about BAND_PIXELS pixels."""
    sim = CameraSim(width=4096, height=1 + simulate.SINGLE_PASS_PIXELS // 4096)
    rows = simulate.BAND_PIXELS // 4096
    starts = []
    for r0, band in sim.frame_rows(0, noise=False):
        assert band.shape == (min(rows, sim.height - r0), 4096)
        starts.append(r0)
    assert starts == list(range(0, sim.height, rows))


def _astropy_file(sim: CameraSim, image: np.ndarray, wcs: dict[str, Any]) -> bytes:
    hdu = fits.PrimaryHDU(image)
    for k, v in {**sim.fits_header(), **wcs}.items():
        hdu.header[k] = v
    buf = io.BytesIO()
    hdu.writeto(buf)
    return buf.getvalue()


@pytest.mark.parametrize("camera", list(CAMERAS))
@pytest.mark.parametrize("banded", [False, True])
def test_write_fits_is_astropys_file_of_the_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, camera: str, banded: bool
) -> None:
    sim = CameraSim(seed=4, **CAMERAS[camera])
    wcs = {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 150.1, "CRVAL2": 2.2,
           "CRPIX1": 30.0, "CRPIX2": 10.0, "CDELT1": -0.0003, "CDELT2": 0.0003}  # fmt: skip
    stars = [Star(30.0, 11.0, 5e5)]
    if banded:
        _banded(monkeypatch, 2 * sim.width)
    paths = sim.write_fits(tmp_path, 2, stars=stars, wcs=wcs)
    monkeypatch.undo()
    for i, path in enumerate(paths):
        expected = _astropy_file(sim, sim.frame(i, stars=stars).image, wcs)
        assert path.read_bytes() == expected
    with fits.open(paths[1]) as hdul:  # and it reads back as the camera's unsigned pixels
        assert np.array_equal(hdul[0].data, sim.frame(1, stars=stars).image)

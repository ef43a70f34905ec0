"""Sky positions of image pixels from a celestial WCS (astropy.wcs), 0-based pixel centres.

The WCS is the frame's own (as plate solvers write it into the header: TAN, TAN-SIP, ...) or
one read from a separate file (``--wcs``: astrometry.net's ``.wcs``, ASTAP's ``.wcs`` text
header, or any FITS file whose header holds a solution). Positions are ICRS degrees; a WCS
in FK5 (J2000) or another frame is transformed to ICRS. Pixels are converted with
``all_pix2world(x, y, 0)``: distortions (SIP, ...) included, ``origin=0`` as everywhere in
qhytime.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qhytime.errors import FrameReadError

if TYPE_CHECKING:
    from astropy.wcs import WCS


def celestial_wcs(header: Any) -> WCS | None:
    """The celestial part of the WCS in a FITS header, or None when it has none.

    Examples
    --------
    >>> celestial_wcs({"NAXIS": 2}) is None
    True
    >>> w = tan_wcs(150.0, 20.0, width=100, height=80, scale_arcsec=2.0)
    >>> celestial_wcs(w.to_header()).wcs.ctype[0]
    'RA---TAN'
    """
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    if not isinstance(header, fits.Header):
        header = fits.Header(dict(header).items() if hasattr(header, "items") else header)
    if not any(str(header.get(f"CTYPE{i}", "")).strip() for i in (1, 2)):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            w = WCS(header)
    except Exception:  # a header astropy cannot read as a WCS holds no usable solution
        return None
    return w.celestial if w.has_celestial else None


def read_wcs(path: str | os.PathLike[str]) -> WCS:
    """The celestial WCS of a file: a FITS file (first header with a celestial WCS) or a
    plain-text FITS header (ASTAP and some solvers write ``.wcs`` files as text).

    Raises
    ------
    FrameReadError
        The file cannot be read or holds no celestial WCS.
    """
    from astropy.io import fits

    p = os.fspath(path)
    try:
        with open(p, "rb") as fh:
            magic = fh.read(9)
    except OSError as exc:
        raise FrameReadError(f"cannot read the WCS file: {exc.strerror or exc}", path=p) from exc
    headers: list[Any] = []
    try:
        if magic == b"SIMPLE  =":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with fits.open(p) as hdul:
                    headers = [h.header.copy() for h in hdul]
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                headers = [fits.Header.fromtextfile(p)]
    except Exception as exc:
        raise FrameReadError(f"not a FITS file or FITS header: {exc}", path=p) from exc
    for h in headers:
        w = celestial_wcs(h)
        if w is not None:
            return w
    raise FrameReadError(
        "holds no celestial WCS (CTYPE1/2 RA---*/DEC--*): give a plate solution", path=p
    )


def pixel_to_icrs(wcs: WCS, x: ArrayLike, y: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """ICRS RA, Dec (degrees) of pixels ``(x, y)``, 0-based pixel centres.

    Examples
    --------
    >>> w = tan_wcs(150.0, 20.0, width=100, height=80, scale_arcsec=2.0)
    >>> ra, dec = pixel_to_icrs(w, [49.5], [39.5])    # the reference pixel
    >>> round(float(ra[0]), 9), round(float(dec[0]), 9)
    (150.0, 20.0)
    """
    xa = np.atleast_1d(np.asarray(x, dtype=np.float64))
    ya = np.atleast_1d(np.asarray(y, dtype=np.float64))
    ra, dec = wcs.all_pix2world(xa, ya, 0)
    ra, dec = np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64)
    frame = _frame_name(wcs)
    if frame != "icrs":
        from astropy.coordinates import SkyCoord
        from astropy.wcs.utils import wcs_to_celestial_frame

        c = SkyCoord(ra, dec, unit="deg", frame=wcs_to_celestial_frame(wcs)).icrs
        ra, dec = c.ra.deg, c.dec.deg
    return np.mod(ra, 360.0), dec


def icrs_to_pixel(wcs: WCS, ra_deg: ArrayLike, dec_deg: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Pixels ``(x, y)`` (0-based) of ICRS positions: the inverse of :func:`pixel_to_icrs`."""
    ra = np.atleast_1d(np.asarray(ra_deg, dtype=np.float64))
    dec = np.atleast_1d(np.asarray(dec_deg, dtype=np.float64))
    if _frame_name(wcs) != "icrs":
        from astropy.coordinates import SkyCoord
        from astropy.wcs.utils import wcs_to_celestial_frame

        c = SkyCoord(ra, dec, unit="deg", frame="icrs").transform_to(wcs_to_celestial_frame(wcs))
        ra, dec = c.spherical.lon.deg, c.spherical.lat.deg
    x, y = wcs.all_world2pix(ra, dec, 0)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def _frame_name(wcs: WCS) -> str:
    """The celestial frame astropy reads from the WCS (``icrs``, ``fk5``, ...)."""
    from astropy.wcs.utils import wcs_to_celestial_frame

    try:
        return str(wcs_to_celestial_frame(wcs).name)
    except ValueError:  # no frame astropy knows: take the coordinates as ICRS
        return "icrs"


def pixel_scale_arcsec(wcs: WCS, x: float, y: float) -> float:
    """Local pixel scale (arcsec per pixel, geometric mean of the two axes) at ``(x, y)``.

    Examples
    --------
    >>> round(pixel_scale_arcsec(tan_wcs(10.0, -5.0, width=64, height=64, scale_arcsec=3.5), 5, 5), 4)
    3.5
    """
    ra, dec = pixel_to_icrs(wcs, [x, x + 1.0, x], [y, y, y + 1.0])
    d1 = _sep_arcsec(ra[0], dec[0], ra[1], dec[1])
    d2 = _sep_arcsec(ra[0], dec[0], ra[2], dec[2])
    return float(math.sqrt(d1 * d2))


def _sep_arcsec(ra1: float, de1: float, ra2: float, de2: float) -> float:
    r1, d1, r2, d2 = map(math.radians, (ra1, de1, ra2, de2))
    s = math.sin((d2 - d1) / 2) ** 2 + math.cos(d1) * math.cos(d2) * math.sin((r2 - r1) / 2) ** 2
    return math.degrees(2 * math.asin(math.sqrt(min(1.0, s)))) * 3600


def tan_wcs(
    ra_deg: float,
    dec_deg: float,
    *,
    width: int,
    height: int,
    scale_arcsec: float,
    rotation_deg: float = 0.0,
    flip: bool = True,
) -> WCS:
    """A TAN (gnomonic) WCS centred on ``(ra_deg, dec_deg)``, as a plate solver writes it.

    Parameters
    ----------
    width, height : int
        Image size; the reference pixel is the image centre.
    scale_arcsec : float
        Pixel scale.
    rotation_deg : float
        Position angle of the image's +y axis east of north.
    flip : bool
        RA increasing to the left (the sky seen through a telescope without a mirror).

    Examples
    --------
    >>> w = tan_wcs(83.8, -5.4, width=200, height=100, scale_arcsec=2.0)
    >>> w.wcs.crpix.tolist(), w.wcs.radesys
    ([100.5, 50.5], 'ICRS')
    """
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [float(ra_deg) % 360.0, float(dec_deg)]
    w.wcs.crpix = [(width + 1) / 2.0, (height + 1) / 2.0]
    s = scale_arcsec / 3600.0
    th = math.radians(rotation_deg)
    sx = -s if flip else s
    # columns of CD: the sky directions (east, north) of the +x and +y pixel axes
    w.wcs.cd = [[sx * math.cos(th), s * math.sin(th)], [-sx * math.sin(th), s * math.cos(th)]]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = "ICRS"
    w.wcs.set()
    return w

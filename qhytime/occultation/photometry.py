"""Aperture photometry on small cut-outs: apertures, annuli and centroids from photutils.

Each frame contributes one small box per aperture (centred on the pixel nearest the
aperture's position, NaN outside the frame and over the GPS block's pixels), never a float
copy of the whole image. Boxes are gathered in chunks of frames and measured together:

- the aperture sum uses photutils' exact circular aperture mask (sub-pixel overlap);
- the background is the sigma-clipped median of the annulus pixels (astropy ``SigmaClip``,
  pixel centres inside photutils' circular annulus), its standard deviation the clipped std;
- signal = aperture sum - background x aperture area (the PyMovie convention);
- the peak pixel and a saturation flag (peak at the top of the bit depth).

A tracked aperture is recentred every frame (:class:`Tracker`): a search box around the
position predicted from the recent good centroids, the brightest 3x3 peak there, then an
iterated windowed centre of mass (photutils ``centroid_com``) of the background-subtracted
pixels. When the star is too faint to centroid (its aperture signal-to-noise below
``min_snr``, e.g. during an occultation) the aperture follows the drift fitted to the last
good centroids (or stays at the last good one).

photutils and astropy are imported when first used: importing this module stays light.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qhytime.errors import OccultationError

CHUNK_FRAMES = 256
"""Frames measured together (boxes of all apertures are held for one chunk only)."""

HISTORY = 20
"""Good centroids a tracker fits its drift to."""


@dataclass(frozen=True)
class Aperture:
    """A star to measure: its name and (x, y) in the first frame.

    Parameters
    ----------
    name : str
        ``target``, ``comp1``, ... (no ``-`` or ``,``: PyOTE cuts column names at ``-``).
    x, y : float
        0-based pixel centres: ``x`` the column, ``y`` the row of the image as stored.
    tracked : bool
        Recentre every frame (else the aperture stays at ``(x, y)``).

    Examples
    --------
    >>> Aperture("target", 70, 136.2).row
    136
    """

    name: str
    x: float
    y: float
    tracked: bool = True

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in "-, \t\n#"):
            raise OccultationError(
                f"aperture name {self.name!r} must be non-empty without '-', ',', '#' or spaces "
                "(PyOTE cuts column names at '-')"
            )
        if not (math.isfinite(self.x) and math.isfinite(self.y)):
            raise OccultationError(f"aperture {self.name}: position ({self.x}, {self.y}) is not finite")

    @property
    def row(self) -> int:
        """Image row of the given position (nearest pixel centre)."""
        return math.floor(self.y + 0.5)

    @property
    def col(self) -> int:
        """Image column of the given position (nearest pixel centre)."""
        return math.floor(self.x + 0.5)


@dataclass(frozen=True)
class PhotometryOptions:
    """How apertures are measured.

    Parameters
    ----------
    radius : float
        Aperture radius (px).
    annulus : (float, float)
        Inner and outer radius of the background annulus (px); inner >= radius.
    search : float, optional
        Half-size of a tracked aperture's search box around its predicted position
        (default: the aperture radius).
    min_snr : float
        Signal-to-noise below which a tracked star is "too faint to centroid".
    clip_sigma : float
        Sigma-clipping threshold of the background.

    Examples
    --------
    >>> PhotometryOptions(radius=5, annulus=(9, 15)).search_px
    5.0
    """

    radius: float = 5.0
    annulus: tuple[float, float] = (9.0, 15.0)
    search: float | None = None
    min_snr: float = 5.0
    clip_sigma: float = 3.0

    def __post_init__(self) -> None:
        r1, r2 = self.annulus
        vals = (self.radius, r1, r2, self.min_snr, self.clip_sigma, self.search or 1.0)
        if not all(math.isfinite(v) and v > 0 for v in vals):
            raise OccultationError(
                f"radii, search box, min_snr and clip sigma must be positive: radius {self.radius}, "
                f"annulus {self.annulus}, search {self.search}"
            )
        if not self.radius <= r1 < r2:
            raise OccultationError(
                f"annulus {r1:g}-{r2:g} px: the inner radius must be >= the aperture radius "
                f"({self.radius:g} px) and below the outer radius"
            )
        if r2 > 500:
            raise OccultationError(f"annulus outer radius {r2:g} px is larger than 500 px")

    @property
    def search_px(self) -> float:
        return float(self.search if self.search is not None else self.radius)

    @property
    def half_box(self) -> int:
        """Half-size of a photometry box: the annulus and one pixel of margin."""
        return math.ceil(self.annulus[1]) + 1


def cutout(img: NDArray[Any], ix: int, iy: int, half: int, blank: tuple[int, int] | None = None) -> NDArray[np.float64]:
    """The ``(2 half + 1)`` square box of ``img`` centred on pixel ``(ix, iy)``, float64,
    NaN outside the image and over ``blank`` = (row, number of leading pixels) (the GPS block).

    Examples
    --------
    >>> import numpy as np
    >>> b = cutout(np.arange(16).reshape(4, 4), 0, 0, 1)
    >>> b.tolist()
    [[nan, nan, nan], [nan, 0.0, 1.0], [nan, 4.0, 5.0]]
    """
    h, w = img.shape[:2]
    n = 2 * half + 1
    y0, x0 = iy - half, ix - half
    y1, x1 = y0 + n, x0 + n
    if y0 >= 0 and x0 >= 0 and y1 <= h and x1 <= w:
        out = np.asarray(img[y0:y1, x0:x1], dtype=np.float64)
    else:
        out = np.full((n, n), np.nan)
        ys0, ys1, xs0, xs1 = max(y0, 0), min(y1, h), max(x0, 0), min(x1, w)
        if ys0 < ys1 and xs0 < xs1:
            out[ys0 - y0 : ys1 - y0, xs0 - x0 : xs1 - x0] = img[ys0:ys1, xs0:xs1]
    if blank is not None:
        row, cols = blank
        if y0 <= row < y1 and x0 < cols:
            if out.base is not None or not out.flags.writeable:
                out = out.copy()
            out[row - y0, : max(0, min(cols - x0, n))] = np.nan
    return out


_GRIDS: dict[int, tuple[NDArray[np.float64], NDArray[np.float64]]] = {}


def _grid(n: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    g = _GRIDS.get(n)
    if g is None:
        yy, xx = np.indices((n, n), dtype=np.float64)
        g = _GRIDS[n] = (yy, xx)
    return g


def find_centroid(
    img: NDArray[Any],
    x: float,
    y: float,
    *,
    radius: float,
    search: float,
    min_snr: float,
    blank: tuple[int, int] | None = None,
) -> tuple[float, float, float]:
    """Centroid of the star nearest ``(x, y)``: ``(xc, yc, snr)``; NaN position when none.

    The brightest 3x3 sum within ``search`` px of ``(x, y)`` seeds an iterated centre of
    mass (photutils ``centroid_com``) of the background-subtracted, non-negative pixels
    within ``radius`` px; the background and noise are the median and MAD of the search box.
    ``snr`` is the aperture's summed signal over its noise.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.indices((40, 40))
    >>> img = 100 + 5000 * np.exp(-((xx - 20.3) ** 2 + (yy - 17.6) ** 2) / 2.5)
    >>> xc, yc, snr = find_centroid(img, 19, 18, radius=4, search=4, min_snr=5)
    >>> round(xc, 2), round(yc, 2), snr > 5
    (20.3, 17.6, True)
    """
    from photutils.centroids import centroid_com

    half = math.ceil(search + radius) + 1
    ix, iy = math.floor(x + 0.5), math.floor(y + 0.5)
    box = cutout(img, ix, iy, half, blank)
    valid = np.isfinite(box)
    nan3 = (math.nan, math.nan, 0.0)
    if valid.sum() < 9:
        return nan3
    vals = box[valid]
    med = float(np.median(vals))
    noise = 1.4826 * float(np.median(np.abs(vals - med)))
    if not noise > 0:
        noise = float(np.std(vals)) or 1.0
    sub = np.where(valid, box - med, 0.0)
    n = box.shape[0]
    pad = np.pad(sub, 1)
    smooth = sum(pad[dy : dy + n, dx : dx + n] for dy in range(3) for dx in range(3))
    yy, xx = _grid(n)
    px, py = half + (x - ix), half + (y - iy)
    in_search = (xx - px) ** 2 + (yy - py) ** 2 <= max(search, 0.75) ** 2
    k = int(np.argmax(np.where(in_search & valid, smooth, -np.inf)))
    cy, cx = divmod(k, n)
    cxf, cyf = float(cx), float(cy)
    r2 = radius**2
    positive = np.clip(sub, 0.0, None)
    w = math.ceil(radius) + 1
    for k in range(4):
        # the centre of mass of the positive pixels within `radius` of the current estimate;
        # the window settles in a step or two, photutils gives the final centroid
        x0, y0 = max(0, round(cxf) - w), max(0, round(cyf) - w)
        sl = (slice(y0, round(cyf) + w + 1), slice(x0, round(cxf) + w + 1))
        gy, gx = yy[sl], xx[sl]
        data = np.where((gx - cxf) ** 2 + (gy - cyf) ** 2 <= r2, positive[sl], 0.0)
        total = float(data.sum())
        if not total > 0:
            return nan3
        nx, ny = float((data * gx).sum()) / total, float((data * gy).sum()) / total
        moved = abs(nx - cxf) + abs(ny - cyf)
        cxf, cyf = nx, ny
        if moved < 0.02 or k == 3:
            x0, y0 = max(0, round(cxf) - w), max(0, round(cyf) - w)
            sl = (slice(y0, round(cyf) + w + 1), slice(x0, round(cxf) + w + 1))
            disc = (xx[sl] - cxf) ** 2 + (yy[sl] - cyf) ** 2 <= r2
            fx, fy = centroid_com(np.where(disc, positive[sl], 0.0))
            cxf, cyf = float(fx) + x0, float(fy) + y0
            break
    disc = ((xx - cxf) ** 2 + (yy - cyf) ** 2 <= r2) & valid
    snr = float(sub[disc].sum()) / (noise * math.sqrt(max(int(disc.sum()), 1)))
    if math.hypot(cxf - px, cyf - py) > search + 1.0:
        return (math.nan, math.nan, snr)
    return (ix - half + cxf, iy - half + cyf, snr)


@dataclass
class Tracker:
    """Where a tracked aperture goes next: a line fitted to its last good centroids.

    Examples
    --------
    >>> t = Tracker(10.0, 20.0)
    >>> for i in range(5):
    ...     t.good(i, 10.0 + 0.5 * i, 20.0)
    >>> t.predict(7)
    (13.5, 20.0)
    """

    x: float
    y: float
    history: deque[tuple[int, float, float]] = field(default_factory=lambda: deque(maxlen=HISTORY))

    def good(self, index: int, x: float, y: float) -> None:
        """Record a good centroid at capture index ``index``."""
        self.history.append((index, x, y))
        self.x, self.y = x, y

    def predict(self, index: int) -> tuple[float, float]:
        """Expected position at capture index ``index``: the least-squares line through the
        recent good centroids (the last good one while there are fewer than 3)."""
        h = self.history
        m = len(h)
        if m < 3:
            return (self.x, self.y)
        tm = sum(p[0] for p in h) / m
        den = sum((p[0] - tm) ** 2 for p in h)
        if den == 0:
            return (self.x, self.y)
        out = []
        for col in (1, 2):
            vm = sum(p[col] for p in h) / m
            slope = sum((p[0] - tm) * (p[col] - vm) for p in h) / den
            out.append(vm + slope * (index - tm))
        return (out[0], out[1])


@dataclass
class ChunkResult:
    """Photometry of one aperture over a chunk of frames (arrays of length k)."""

    appsum: NDArray[np.float64]
    area: NDArray[np.float64]
    background: NDArray[np.float64]
    background_std: NDArray[np.float64]
    signal: NDArray[np.float64]
    peak: NDArray[np.float64]
    xcom: NDArray[np.float64]
    ycom: NDArray[np.float64]


def aperture_weights(dx: float, dy: float, radius: float, half: int) -> NDArray[np.float64]:
    """photutils' exact circular-aperture weights on a ``(2 half + 1)`` box whose centre pixel
    is offset ``(dx, dy)`` from the aperture centre.

    Examples
    --------
    >>> w = aperture_weights(0.3, -0.2, 5.0, 8)
    >>> round(float(w.sum()), 6) == round(3.141592653589793 * 25, 6)
    True
    """
    from photutils.aperture import CircularAperture

    n = 2 * half + 1
    return CircularAperture((half + dx, half + dy), radius).to_mask(method="exact").to_image((n, n))


def annulus_mask(dx: float, dy: float, r_in: float, r_out: float, half: int) -> NDArray[np.bool_]:
    """Pixels whose centres lie in photutils' circular annulus, on the same box.

    Examples
    --------
    >>> int(annulus_mask(0.0, 0.0, 1.5, 2.5, 3).sum())   # 4 pixels at 2 px, 8 at 2.24 px
    12
    """
    from photutils.aperture import CircularAnnulus

    n = 2 * half + 1
    m = CircularAnnulus((half + dx, half + dy), r_in, r_out).to_mask(method="center")
    return m.to_image((n, n)) > 0


def measure_chunk(
    boxes: NDArray[np.float64],
    weights: NDArray[np.float64],
    annulus: NDArray[np.bool_],
    clip_sigma: float,
) -> ChunkResult:
    """Measure ``k`` boxes at once.

    Parameters
    ----------
    boxes : (k, n, n) float
        NaN where there is no pixel.
    weights : (n, n) or (k, n, n) float
        Aperture weights (one set for a fixed aperture, one per frame for a tracked one).
    annulus : (n, n) bool
    clip_sigma : float

    Examples
    --------
    >>> import numpy as np
    >>> boxes = np.full((2, 21, 21), 100.0)
    >>> boxes[:, 10, 10] += [500.0, 800.0]
    >>> r = measure_chunk(boxes, aperture_weights(0, 0, 3, 10), annulus_mask(0, 0, 5, 9, 10), 3.0)
    >>> r.signal.round(6).tolist(), r.background.tolist()
    ([500.0, 800.0], [100.0, 100.0])
    """
    from astropy.stats import SigmaClip

    k = boxes.shape[0]
    finite = np.isfinite(boxes)
    clean = np.where(finite, boxes, 0.0)
    w = np.broadcast_to(weights, boxes.shape)
    area = (w * finite).sum(axis=(1, 2))
    appsum = (w * clean).sum(axis=(1, 2))
    vals = boxes[:, annulus]
    clipper = SigmaClip(sigma=clip_sigma, maxiters=5, cenfunc="median", stdfunc="std")
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        # NaN (outside the frame) are what astropy warns about; they are meant as missing.
        warnings.filterwarnings("ignore", message=".*invalid values.*")
        warnings.filterwarnings("ignore", message=".*(All-NaN|Mean of empty|Degrees of freedom).*")
        if vals.size and np.isfinite(vals).any():
            clipped = clipper(vals, axis=1, masked=False, copy=True)
            bkg = np.nanmedian(clipped, axis=1)
            std = np.nanstd(clipped, axis=1)
        else:
            bkg = std = np.full(k, np.nan)
        inside = w > 0
        peak = np.nanmax(np.where(inside & finite, boxes, -np.inf), axis=(1, 2))
        peak[~np.isfinite(peak)] = np.nan
        pos = np.where(inside & finite, np.clip(boxes - bkg[:, None, None], 0.0, None) * w, 0.0)
        tot = pos.sum(axis=(1, 2))
        yy, xx = _grid(boxes.shape[1])
        xcom = np.where(tot > 0, (pos * xx).sum(axis=(1, 2)) / np.where(tot > 0, tot, 1), np.nan)
        ycom = np.where(tot > 0, (pos * yy).sum(axis=(1, 2)) / np.where(tot > 0, tot, 1), np.nan)
    area = np.where(area > 0, area, np.nan)
    signal = appsum - bkg * area
    return ChunkResult(appsum, area, bkg, std, signal, peak, xcom, ycom)

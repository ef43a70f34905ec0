"""Reading an LED scan: pulse lists, bias frames and row profiles robust to what real frames do.

A frame of an LED scan is reduced to one number per row (its mean above the bias) and that
number's standard error. Real frames carry cosmic rays, light that falls unevenly along the
row, saturated pixels and the GPS block, so :func:`row_profile` does more than a mean:

- every row of the frame is measured on a sample of columns spread across it (16 runs of
  32 pixels, 512 in all); the rows that are lit (and a margin of 3 rows around them) are
  then measured over their full width. Dark rows only set the bias and the banding, which
  a sample measures well enough; the lit rows, which carry the timing, use every pixel;
- each row is fitted across x with a smooth light profile (Legendre polynomials of degree
  2) and pixels more than ``clip_sigma`` pixel-sigmas from it are rejected (cosmic rays)
  and counted; the row mean is taken with the rejected pixels replaced by the profile, so
  uneven light does not bias it;
- the pixel noise comes from differences of neighbouring pixels, which a smooth light
  profile does not inflate, so the standard error of each mean is honest;
- a frame whose lit rows reach the top of the ADC is marked saturated.
"""

from __future__ import annotations

import csv
import functools
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qhytime.atomic import atomic_open
from qhytime.decode import decode_reader
from qhytime.errors import LedFitError, QhytimeError
from qhytime.framerows import exposure_ns_from_metadata, setting_from_reader
from qhytime.gpsblock import BLOCK_SIZE
from qhytime.readers import FrameReader, open_frames
from qhytime.rowmodel import FrameGeometry, Reference

NS_PER_S = 1_000_000_000
SAMPLE_COLUMNS = 512
"""Columns (16 runs of 32) on which every row is measured; lit rows use all of them."""
_RUN = 32
_X_DEGREE = 2
MAX_PULSE_US = 1e7
"""Longest pulse, and largest |pulse start|, a pulse list may give (10 s)."""


@dataclass
class LedFrame:
    """The measured row profile of one frame of an LED scan.

    Attributes
    ----------
    name : str
        ``path`` or ``path#index``.
    sensor_rows : int array (R, b)
        Sensor rows of each image row.
    signal : float array (R,)
        Mean of each row above ``level_adu`` (ADU).
    sigma : float array (R,)
        Standard error of each row mean, from the pixel noise.
    pulses : float array (M, 2)
        ``(start_ns, width_ns)`` of each pulse relative to the frame's reference stamp.
    saturated : bool
        Whether the lit rows reach the top of the ADC.
    reference_ns : int
        The frame's reference stamp (unix ns).
    full : bool array (R,), optional
        Rows measured over their full width (the others on a sample of columns); None when
        all are.
    level_adu : float
        The bias level subtracted (a bias frame's mean, or the frame's dark level).
    cosmic_pixels : int
        Pixels rejected as cosmic rays.
    x_gradient : float
        Relative change of the light along the row, from the centre to either end, measured
        on the brightest rows (NaN when none is bright).

    Examples
    --------
    >>> import numpy as np
    >>> f = LedFrame("a.fits", np.arange(4)[:, None], np.zeros(4), np.ones(4), np.array([[0.0, 10.0]]))
    >>> f.signal.shape, f.full is None
    ((4,), True)
    """

    name: str
    sensor_rows: NDArray[np.int64]
    signal: NDArray[np.float64]
    sigma: NDArray[np.float64]
    pulses: NDArray[np.float64]
    saturated: bool = False
    reference_ns: int = 0
    full: NDArray[np.bool_] | None = None
    level_adu: float = 0.0
    cosmic_pixels: int = 0
    x_gradient: float = math.nan


@dataclass
class RowProfile:
    """What :func:`row_profile` measures in one frame.

    Attributes
    ----------
    signal, sigma : float arrays (R,)
        Row means above ``level_adu`` and their standard errors (ADU).
    full : bool array (R,)
        Rows measured over their full width.
    saturated : bool
    cosmic_pixels : int
        Pixels rejected (cosmic rays), block pixels not counted.
    level_adu : float
        Mean bias level subtracted.
    x_gradient : float
        See :class:`LedFrame`.

    Examples
    --------
    :func:`row_profile` returns one.
    """

    signal: NDArray[np.float64]
    sigma: NDArray[np.float64]
    full: NDArray[np.bool_]
    saturated: bool
    cosmic_pixels: int
    level_adu: float
    x_gradient: float


@dataclass
class BiasProfile:
    """The mean row profile of bias (or dark) frames, subtracted from every frame of a scan.

    Attributes
    ----------
    levels : float array (H,)
        Mean level of each row (ADU), banding included.
    width, height : int
    sources : list of str
        The files it was made from.
    frames : int
        Frames averaged.

    Examples
    --------
    >>> import numpy as np
    >>> BiasProfile(np.full(96, 800.0), 320, 96, ["bias.fits"], 3).describe()
    'bias.fits (3 frame(s), 320x96)'
    """

    levels: NDArray[np.float64]
    width: int
    height: int
    sources: list[str]
    frames: int

    def describe(self) -> str:
        """``'bias.fits (3 frames, 800x120)'``."""
        names = ", ".join(self.sources[:2]) + (f" and {len(self.sources) - 2} more" if len(self.sources) > 2 else "")
        return f"{names} ({self.frames} frame(s), {self.width}x{self.height})"


# -- pulse lists -----------------------------------------------------------------------------


def read_pulses_csv(path: str | os.PathLike[str]) -> dict[str, list[tuple[float, float]]]:
    """Per-frame pulses from a CSV with columns ``file``, ``pulse_start_us``, ``pulse_width_us``.

    Several lines for one file make a pulse train; other columns are ignored; ``file`` is
    matched by file name (``name#3`` for frame 3 of a multi-frame file).

    Returns
    -------
    dict
        File name -> list of ``(start_ns, width_ns)``.

    Raises
    ------
    LedFitError
        Naming the file and the line that is wrong (not text, a column missing, a value not
        a finite number, a width not positive, no pulse at all).

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "pulses.csv")
    >>> with open(p, "w") as fh:
    ...     _ = fh.write("file,pulse_start_us,pulse_width_us\\nled_000.fits,1723.4775,10\\n")
    >>> read_pulses_csv(p)
    {'led_000.fits': [(1723477.5, 10000.0)]}
    """
    out: dict[str, list[tuple[float, float]]] = {}
    p = os.fspath(path)
    need = ("file", "pulse_start_us", "pulse_width_us")
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not set(need) <= set(reader.fieldnames):
                found = ", ".join(reader.fieldnames or []) or "nothing"
                raise LedFitError(
                    f"a pulse CSV needs a header with the columns {', '.join(need)} (found: "
                    f"{found[:120]})",
                    path=p,
                )
            for line, row in enumerate(reader, start=2):
                name = (row.get("file") or "").strip()
                if not name:
                    raise LedFitError(f"line {line}: no file name", path=p)
                try:
                    start = float(row["pulse_start_us"])
                    width = float(row["pulse_width_us"])
                except (TypeError, ValueError):
                    raise LedFitError(
                        f"line {line}: pulse_start_us/pulse_width_us are not numbers", path=p
                    ) from None
                if not (math.isfinite(start) and math.isfinite(width)):
                    raise LedFitError(f"line {line}: pulse start/width are not finite", path=p)
                if not 0 < width <= MAX_PULSE_US or abs(start) > MAX_PULSE_US:
                    raise LedFitError(
                        f"line {line}: pulse width must be > 0 and <= {MAX_PULSE_US:g} us and "
                        f"|start| <= {MAX_PULSE_US:g} us (got start {start:g}, width {width:g})",
                        path=p,
                    )
                out.setdefault(Path(name).name, []).append((start * 1e3, width * 1e3))
    except UnicodeDecodeError:
        raise LedFitError(
            "not a text CSV file (its bytes are not UTF-8 text): give the pulse list as CSV",
            path=p,
        ) from None
    except csv.Error as exc:
        raise LedFitError(f"not a readable CSV file: {exc}", path=p) from None
    except OSError as exc:
        raise LedFitError(f"cannot read the pulse CSV: {exc.strerror or exc}", path=p) from exc
    if not out:
        raise LedFitError("the pulse CSV lists no pulse", path=p)
    return out


def write_pulses_csv(
    path: str | os.PathLike[str],
    names: Sequence[str],
    pulses: Sequence[Sequence[tuple[float, float]]],
    *,
    extra: Mapping[str, Sequence[Any]] | None = None,
) -> None:
    """Write a pulse CSV that :func:`read_pulses_csv` reads (atomically).

    Parameters
    ----------
    names : list of str
        File name of each frame.
    pulses : list of list of (start_ns, width_ns)
        Pulses of each frame (relative to its reference stamp).
    extra : dict, optional
        More columns, one value per frame (repeated on each line of a pulse train).

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "plan.csv")
    >>> write_pulses_csv(p, ["a.fits"], [[(1000.0, 10.0)]])
    >>> read_pulses_csv(p)
    {'a.fits': [(1000.0, 10.0)]}
    """
    extra = dict(extra or {})
    with atomic_open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "pulse_start_us", "pulse_width_us", *extra])
        for i, (name, plist) in enumerate(zip(names, pulses, strict=True)):
            for start_ns, width_ns in plist:
                w.writerow([name, f"{start_ns / 1e3:.6f}", f"{width_ns / 1e3:.6f}",
                            *(v[i] for v in extra.values())])  # fmt: skip


def pps_pulses(
    reference_ns: int, window: tuple[float, float], width_ns: float, delay_ns: float = 0.0
) -> list[tuple[float, float]]:
    """Pulses of a GPS-PPS-driven LED (one at every whole UTC second + ``delay_ns``) that fall
    in ``window`` (ns relative to the reference stamp).

    Examples
    --------
    >>> pps_pulses(1_754_099_091_999_000_000, (0.0, 5e6), 10_000.0)
    [(1000000.0, 10000.0)]
    """
    # integers for the absolute instants: a float64 of unix ns would lose ~100 ns
    lo = int(reference_ns) + int(np.floor(window[0] - delay_ns - width_ns))
    hi = int(reference_ns) + int(np.ceil(window[1] - delay_ns))
    first = -(-lo // NS_PER_S)
    return [
        (float(s * NS_PER_S - int(reference_ns)) + delay_ns, width_ns)
        for s in range(first, hi // NS_PER_S + 1)
    ]


# -- robust row profiles ------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _columns(width: int, sample: int) -> tuple[NDArray[np.intp] | None, int]:
    """Sampled columns (runs of ``_RUN`` evenly spread across the row, clear of the block) or
    None for all columns; and the step between runs."""
    runs = sample // _RUN
    if runs < 2 or width - BLOCK_SIZE < 2 * sample:
        return None, 0
    step = (width - BLOCK_SIZE - _RUN) // (runs - 1)
    starts = BLOCK_SIZE + step * np.arange(runs)
    cols = (starts[:, None] + np.arange(_RUN)[None, :]).ravel()
    return cols, step


def _sample(img: NDArray[Any], sample: int) -> NDArray[np.float32]:
    """The sampled columns of every row, ``(H, runs * _RUN)`` float32, read as runs of
    contiguous pixels (a strided view, then one copy)."""
    h, w = img.shape
    cols, step = _columns(w, sample)
    assert cols is not None
    runs = cols.size // _RUN
    base = img[:, BLOCK_SIZE:]
    view = np.lib.stride_tricks.as_strided(
        base, shape=(h, runs, _RUN), strides=(base.strides[0], step * base.strides[1], base.strides[1]),
        writeable=False,
    )
    return view.astype(np.float32).reshape(h, runs * _RUN)


@functools.lru_cache(maxsize=32)
def _x_basis(width: int, sample: int) -> NDArray[np.float64]:
    """Orthonormal columns spanning Legendre polynomials 0.._X_DEGREE of the position along
    the row, at the columns used (``(m, q)``)."""
    cols, _ = _columns(width, sample)
    x = np.arange(width, dtype=np.float64) if cols is None else cols.astype(np.float64)
    u = 2.0 * x / max(width - 1, 1) - 1.0
    v = np.polynomial.legendre.legvander(u, _X_DEGREE)
    q, _ = np.linalg.qr(v)
    return np.ascontiguousarray(q)


def _robust_rows(
    pix: NDArray[Any],
    basis: NDArray[np.float64],
    clip: float,
    run: int,
    block: int | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """Row means robust to outliers, their variances and the pixels rejected in each row.

    The pixel sigma of a row comes from neighbour differences (within runs of ``run``
    columns when sampled), which a smooth light profile does not inflate. A row whose
    largest difference stays within ``clip`` sigmas is clean: its mean is the plain mean.
    The others (and row ``block``, whose first ``BLOCK_SIZE`` pixels are left out) are
    fitted with ``basis`` (a smooth light profile along x) by least squares over the pixels
    kept; pixels further than ``clip`` sigmas from it are rejected and the fit repeated;
    the mean counts the rejected pixels at the fitted profile.
    """
    n, m = pix.shape
    d = np.diff(pix.reshape(n, m // run, run), axis=2).reshape(n, -1) if run else np.diff(pix, axis=1)
    nd = d.shape[1]
    d2 = np.square(d, out=d)
    s2 = d2.sum(axis=1, dtype=np.float64) / (2.0 * nd)
    suspect = d2.max(axis=1) > (clip * clip * 2.0) * s2
    if block is not None:
        suspect[block] = True
    mean = pix.mean(axis=1, dtype=np.float64)
    var = s2 / m
    rejected = np.zeros(n, dtype=np.int64)
    for i in np.flatnonzero(suspect):
        row, d2i = pix[i].astype(np.float64), d2[i].astype(np.float64)
        v = float(s2[i])  # inflated by the outliers; clipping brings it down in a few steps
        keep_d = np.ones(nd, dtype=bool)
        for _ in range(8):
            keep_d = d2i <= clip * clip * 2.0 * max(v, 1e-12)
            new = float(d2i[keep_d].mean()) / 2.0 if keep_d.any() else v
            if abs(new - v) <= 1e-3 * v:
                v = new
                break
            v = new
        v = max(v, 1e-12)
        ok = np.ones(m, dtype=bool)
        if block == i:
            ok[: min(BLOCK_SIZE, m)] = False
        # start without the pixels on either side of an outlying difference
        keep = ok.copy()
        out_d = np.flatnonzero(~keep_d)
        if out_d.size:
            if run:
                out_d = (out_d // (run - 1)) * run + out_d % (run - 1)
            keep[out_d] = False
            keep[out_d + 1] = False
        lim = clip * math.sqrt(v)
        # least squares over the kept pixels: the basis is orthonormal, so only the pixels
        # left out change the normal equations (I - B_out' B_out) c = B' row - B_out' row_out
        full_rhs = basis.T @ row
        eye = np.eye(basis.shape[1])
        model = np.full(m, float(row[keep].mean()) if keep.any() else float(row.mean()))
        for _ in range(4):
            out = np.flatnonzero(~keep)
            if m - out.size <= 2 * basis.shape[1]:
                break  # too little left for a light profile: keep the flat one
            b_out = basis[out]
            coef = np.linalg.solve(eye - b_out.T @ b_out, full_rhs - b_out.T @ row[out])
            model = basis @ coef
            new_keep = ok & (np.abs(row - model) <= lim)
            if np.array_equal(new_keep, keep):
                break
            keep = new_keep
        mean[i] = (row[keep].sum() + model[~keep].sum()) / m
        var[i] = v / max(int(keep.sum()), 1)
        rejected[i] = int((ok & ~keep).sum())
    return mean, var, rejected


def _edge_ratio(row: NDArray[np.float64], basis: NDArray[np.float64], signal: float) -> float:
    """Light at the right end minus the left, over twice the row's signal (the +- along x)."""
    coef = basis.T @ row
    ends = basis[[0, -1]] @ coef
    return float((ends[1] - ends[0]) / 2.0 / signal)


def row_profile(
    image: NDArray[Any],
    *,
    block_row: int | None = 0,
    bias: NDArray[np.float64] | None = None,
    clip_sigma: float = 5.0,
    sample_columns: int = SAMPLE_COLUMNS,
    margin_rows: int = 3,
) -> RowProfile:
    """Robust row means of one frame above its bias, their standard errors and what was seen.

    Parameters
    ----------
    image : array (H, W)
        The frame's pixels.
    block_row : int or None
        The row holding the GPS block (its first 44 pixels are left out).
    bias : float array (H,), optional
        A bias row profile (:class:`BiasProfile` levels); without it the level subtracted is
        the median of the dimmer half of the rows.
    clip_sigma : float
        Pixels further than this many pixel-sigmas from the row's light profile are rejected.
    sample_columns : int
        Columns on which dark rows are measured (0: every row over its full width).
    margin_rows : int
        Rows around the lit ones also measured over their full width.

    Returns
    -------
    RowProfile

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(800.0, 3.0, (20, 2000))
    >>> img[8:12] += 1000.0
    >>> img[9, 700] += 20000.0                       # a cosmic ray on a lit row
    >>> prof = row_profile(img.round().astype(np.uint16))
    >>> prof.cosmic_pixels, bool(prof.full[5:15].all()), round(float(prof.signal[9]))
    (1, True, 1000)
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"a frame is 2-D, got shape {img.shape}")
    h, w = img.shape
    top = float(np.iinfo(img.dtype).max) if img.dtype.kind in "ui" else math.inf
    levels = None if bias is None else np.asarray(bias, dtype=np.float64)
    if levels is not None and levels.shape != (h,):
        raise ValueError(f"bias profile of {levels.shape} rows for a frame of {h} rows")
    br = None if block_row is None else block_row % h
    cols, _ = _columns(w, sample_columns)
    if cols is None:
        full = np.ones(h, dtype=bool)
        mean = np.zeros(h)
        var = np.zeros(h)
        rej = np.zeros(h, dtype=np.int64)
        sat_sample = False
    else:
        sub = _sample(img, sample_columns)
        sat_sample = bool(sub.max() >= top) and bool(
            ((sub >= top).sum(axis=1) > max(3, cols.size // 100)).any()
        )
        mean, var, rej = _robust_rows(sub, _x_basis(w, sample_columns), clip_sigma, _RUN)
        lvl = mean - (levels if levels is not None else 0.0)
        dim = np.sort(lvl)[: max(1, (6 * h) // 10)]
        base = float(np.median(dim))
        spread = 1.4826 * float(np.median(np.abs(dim - base)))
        thr = base + max(6.0 * spread, 6.0 * float(np.sqrt(np.median(var))))
        lit = lvl > thr
        full = lit.copy()
        for k in range(1, margin_rows + 1):
            full[k:] |= lit[:-k]
            full[:-k] |= lit[k:]
    idx = np.flatnonzero(full)
    sat_full = False
    rows_f = np.zeros((0, w))
    if idx.size:
        rows = img[idx]
        sat_full = sat_sample or (
            bool(rows.max() >= top) and bool(((rows >= top).sum(axis=1) > max(3, w // 1000)).any())
        )
        rows_f = rows.astype(np.float64)
        if sat_full:  # the frame is rejected: plain means are enough to show it
            mean[idx] = rows_f.mean(axis=1)
            var[idx] = rows_f.var(axis=1) / w
        else:
            blk = int(np.searchsorted(idx, br)) if br is not None and br in idx else None
            mean[idx], var[idx], rej[idx] = _robust_rows(rows_f, _x_basis(w, 0), clip_sigma, 0, blk)
    if levels is not None:
        level_rows = levels
        level = float(levels.mean())
    else:
        level = float(np.median(np.sort(mean)[: max(1, h // 2)]))
        level_rows = np.full(h, level)
    signal = mean - level_rows
    x_grad = math.nan
    if idx.size:
        k = int(np.argmax(signal[idx]))
        if signal[idx][k] > 20.0 * math.sqrt(var[idx][k]) and (br is None or idx[k] != br):
            x_grad = _edge_ratio(rows_f[k], _x_basis(w, 0), float(signal[idx][k]))
    return RowProfile(
        signal=signal,
        sigma=np.sqrt(np.maximum(var, 1e-12)),
        full=full,
        saturated=sat_sample or sat_full,
        cosmic_pixels=int(rej.sum()),
        level_adu=level,
        x_gradient=x_grad,
    )


def read_bias(
    paths: Iterable[str | os.PathLike[str]], *, clip_sigma: float = 5.0
) -> BiasProfile:
    """The mean row profile of bias or dark frames (every file the same size).

    Raises
    ------
    LedFitError
        Naming the bias file: unreadable, truncated without a complete frame, of another
        size than the first, or none given.

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> from astropy.io import fits
    >>> p = os.path.join(tempfile.mkdtemp(), "bias.fits")
    >>> fits.PrimaryHDU(np.full((6, 64), 800, dtype=np.int16)).writeto(p)
    >>> b = read_bias([p])
    >>> b.levels.round(1).tolist(), b.frames
    ([800.0, 800.0, 800.0, 800.0, 800.0, 800.0], 1)
    """
    profiles: list[NDArray[np.float64]] = []
    sources: list[str] = []
    shape: tuple[int, int] | None = None
    for p in paths:
        name = os.fspath(p)
        try:
            reader = open_frames(name)
        except QhytimeError as exc:
            raise LedFitError(f"cannot use it as a bias frame: {exc}", path=name) from None
        with reader:
            if len(reader) == 0:
                why = _reason(reader.truncation, name) if reader.truncation else "it holds no frame"
                raise LedFitError(
                    f"bias file has no complete frame ({why}); give complete bias frames",
                    path=name,
                )
            here = (reader.width, reader.height)
            if shape is None:
                shape = here
            elif here != shape:
                raise LedFitError(
                    f"bias frame is {here[0]}x{here[1]} but {sources[0]} is "
                    f"{shape[0]}x{shape[1]}: give bias frames of one size",
                    path=name,
                )
            for i in range(len(reader)):
                img = reader.image(i)
                prof = row_profile(img, block_row=None, bias=np.zeros(img.shape[0]),
                                   clip_sigma=clip_sigma, sample_columns=0)  # fmt: skip
                profiles.append(prof.signal)
            sources.append(name)
    if shape is None:
        raise LedFitError("no bias file given")
    return BiasProfile(
        levels=np.mean(profiles, axis=0),
        width=shape[0],
        height=shape[1],
        sources=sources,
        frames=len(profiles),
    )


# -- reading a scan ---------------------------------------------------------------------------


def load_scan(
    paths: Iterable[str | os.PathLike[str] | FrameReader],
    *,
    pulses: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    pulse_start_us: float | None = None,
    pulse_width_us: float | None = None,
    pps_width_us: float | None = None,
    pps_delay_us: float = 0.0,
    reference: Reference = "end",
    crop_y: int | None = None,
    binning: int | None = None,
    bias: BiasProfile | NDArray[np.float64] | None = None,
    allow_invalid: bool = False,
    clip_sigma: float = 5.0,
    sample_columns: int = SAMPLE_COLUMNS,
) -> tuple[list[LedFrame], list[tuple[str, str]], dict[str, Any]]:
    """Read the frames of a scan into robust row profiles with their pulses.

    ``paths`` may also hold open readers (e.g. an :class:`~qhytime.readers.ArrayReader`).
    Pulses come from ``pulses`` (file name, or ``name#index`` for a frame of a multi-frame
    source -> list of (start_ns, width_ns)), from one
    ``pulse_start_us``/``pulse_width_us`` for every frame, or from a PPS-driven LED
    (``pps_width_us``, at whole UTC seconds + ``pps_delay_us``). A file that cannot be read
    (or the missing frames of a truncated one) is listed with its reason, and the rest of
    the scan is read.

    Parameters
    ----------
    bias : BiasProfile or float array (H,), optional
        Subtracted from every frame's row means (:func:`read_bias`).
    clip_sigma, sample_columns
        See :func:`row_profile`.

    Returns
    -------
    frames, rejected, info
        Usable frames, ``(name, reason)`` for frames left out, and facts from the files
        (``exposure_ns``, ``setting``, ``line_period_ns``, ``failed``: the sources that
        could not be read, wholly or partly).

    Raises
    ------
    LedFitError
        When no pulse source is given.

    Examples
    --------
    >>> from qhytime.readers import ArrayReader
    >>> from qhytime.simulate import CameraSim, pulse_table
    >>> sim = CameraSim(width=400, height=30, exposure_us=345.552, seed=2)
    >>> pulses = sim.led_scan_pulses(3, 10.0)
    >>> frames, rejected, info = load_scan([ArrayReader(sim.led_stack(pulses))], pulses=pulse_table(pulses))
    >>> len(frames), rejected, frames[0].signal.shape
    (3, [], (30,))
    """
    if pulses is None and pulse_start_us is None and pps_width_us is None:
        raise LedFitError(
            "give pulses: a pulse list (pulses), one pulse_start_us with pulse_width_us, or "
            "pps_width_us for a PPS-driven LED"
        )
    if pulses is None and pps_width_us is None and pulse_width_us is None:
        raise LedFitError("pulse_start_us needs pulse_width_us")
    levels = bias.levels if isinstance(bias, BiasProfile) else bias
    frames: list[LedFrame] = []
    rejected: list[tuple[str, str]] = []
    info: dict[str, Any] = {"failed": []}
    opts = dict(pulses=pulses, pulse_start_us=pulse_start_us, pulse_width_us=pulse_width_us,
                pps_width_us=pps_width_us, reference=reference, crop_y=crop_y, binning=binning,
                bias=bias, levels=levels, allow_invalid=allow_invalid, clip_sigma=clip_sigma,
                sample_columns=sample_columns)  # fmt: skip
    for p in paths:
        if isinstance(p, FrameReader):
            reader, name = p, p.path
        else:
            name = os.fspath(p)
            try:
                reader = open_frames(name)
            except QhytimeError as exc:
                rejected.append((name, f"unreadable: {_reason(exc, name)}"))
                info["failed"].append(name)
                continue
        with reader:
            try:
                _read_frames(reader, name, frames, rejected, info, **opts)  # type: ignore[arg-type]
            except QhytimeError as exc:  # a file that fails while being read: its status, go on
                rejected.append((name, f"unreadable: {_reason(exc, name)}"))
                info["failed"].append(name)
    if pps_width_us is not None:
        info["pps"] = (pps_width_us * 1e3, pps_delay_us * 1e3)
    return frames, rejected, info


def _reason(exc: Exception, name: str) -> str:
    """An error's message without the file name it starts with (the caller names the file)."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and getattr(exc, "path", None) in (None, name):
        return reason
    text = str(exc)
    return text[len(name) + 2 :] if text.startswith(f"{name}: ") else text


def _read_frames(
    reader: FrameReader, name: str, frames: list[LedFrame], rejected: list[tuple[str, str]],
    info: dict[str, Any], *, pulses: Mapping[str, Sequence[tuple[float, float]]] | None,
    pulse_start_us: float | None, pulse_width_us: float | None, pps_width_us: float | None,
    reference: Reference, crop_y: int | None, binning: int | None,
    bias: BiasProfile | NDArray[np.float64] | None, levels: NDArray[np.float64] | None,
    allow_invalid: bool, clip_sigma: float, sample_columns: int,
) -> None:  # fmt: skip
    decoded = decode_reader(reader)
    if decoded.truncation is not None:
        missing = reader.declared_frames - len(decoded)
        label = name if reader.declared_frames == 1 else f"{name}#{len(decoded)}.."
        why = _reason(decoded.truncation, name)
        why = why if why.startswith("truncated") else f"truncated: {why}"
        rejected.append((label, f"{why} ({missing} frame(s) missing)"))
        info["failed"].append(name)
    if "setting" not in info and len(decoded):
        meta = reader.metadata(0)
        info["setting"] = setting_from_reader(reader, 0)
        info["exposure_ns"] = exposure_ns_from_metadata(meta)
        qlp = meta.get("QHY_LP")
        ok = isinstance(qlp, int | float) and not isinstance(qlp, bool) and math.isfinite(qlp)
        info["line_period_ns"] = float(qlp) if ok and 0 < float(qlp) < 1e6 else None
    setting = info.get("setting")
    # crop origin and binning default to the file's, as its setting read them
    cy = crop_y if crop_y is not None else (setting.roi_y if setting else 0)
    b = binning if binning is not None else (setting.binning if setting else 1)
    base = Path(name).name
    for i in range(len(decoded)):
        rec = decoded.frame(i)
        label = name if reader.declared_frames == 1 else f"{name}#{i}"
        if rec.block is None:
            rejected.append((label, "; ".join(rec.reasons)))
            continue
        if rec.reasons and not allow_invalid:
            rejected.append((label, "time flagged: " + "; ".join(rec.reasons)))
            continue
        if (levels is not None and levels.shape[0] != reader.height) or (
            isinstance(bias, BiasProfile) and bias.width != reader.width
        ):
            what = bias.describe() if isinstance(bias, BiasProfile) else f"{levels.shape[0]} rows"  # type: ignore[union-attr]
            rejected.append((label, f"a {reader.width}x{reader.height} frame, but the bias is "
                                    f"{what}: give bias frames of the scan's size and binning"))  # fmt: skip
            continue
        if pulses is not None:
            plist = list(pulses.get(label, pulses.get(f"{base}#{i}", pulses.get(base, []))))
            if not plist:
                rejected.append((label, "no pulse for this file in the pulse list"))
                continue
        elif pps_width_us is not None:
            plist = []  # placed once the band is located (fit_led)
        else:
            plist = [(float(pulse_start_us) * 1e3, float(pulse_width_us) * 1e3)]  # type: ignore[arg-type]
        geom = FrameGeometry(height=reader.height, crop_y=cy, binning=b, flipped=rec.flipped)
        sensor = geom.sensor_rows(np.arange(reader.height))
        image = reader.image(i)
        block_row = (reader.height - 1) if rec.flipped else 0
        prof = row_profile(image, block_row=block_row, bias=levels, clip_sigma=clip_sigma,
                           sample_columns=sample_columns)  # fmt: skip
        frames.append(
            LedFrame(
                name=label,
                sensor_rows=sensor,
                signal=prof.signal,
                sigma=prof.sigma,
                pulses=np.asarray(plist, dtype=np.float64).reshape(-1, 2),
                saturated=prof.saturated,
                reference_ns=int(rec.stamps[reference].unix_ns),
                full=prof.full,
                level_adu=prof.level_adu,
                cosmic_pixels=prof.cosmic_pixels,
                x_gradient=prof.x_gradient,
            )
        )

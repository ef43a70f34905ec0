"""Light curves of a frame sequence, each sample timed at the row under its own aperture.

:func:`light_curve` walks FITS sequences (one frame per file, in the order given) and SER
files (many frames, read from a memory map frame by frame), measures a target and any
number of comparison stars (:mod:`qhytime.occultation.photometry`) and times every sample
of every aperture at the exposure window of the image row under that aperture (its
centroid when tracked, its given position when fixed), with the file's row model
(calibration from the store, or explicit) exactly as ``qhytime rows`` does.

Frame validity: the blocks of each file are decoded with the sequence context of the files
before it. A frame whose only reasons are about its neighbours
(:func:`qhytime.validity.own_time_trusted`, e.g. ``sequence_gap``) keeps its time; the
sequence numbers missing before it are recorded. Any other reason leaves the frame out of
the timed samples (status ``invalid``, reasons kept); an unreadable frame or file is
``error``. Nothing is dropped silently: every frame read has a record.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
from numpy.typing import NDArray

from qhytime.cluster import LocalExecutor, for_workers, task_failure
from qhytime.decode import DecodedFile, SeriesFile, decode_series
from qhytime.errors import ClusterError, FrameReadError, OccultationError, QhytimeError
from qhytime.framerows import FileTiming, file_timing
from qhytime.occultation.photometry import (
    CHUNK_FRAMES,
    Aperture,
    PhotometryOptions,
    Tracker,
    annulus_mask,
    aperture_weights,
    cutout,
    find_centroid,
    measure_chunk,
)
from qhytime.readers import open_frames
from qhytime.rowmodel import FrameGeometry, RowModel, row_times
from qhytime.timebase import unix_ns_to_iso
from qhytime.validity import own_time_trusted

if TYPE_CHECKING:
    from qhytime.cluster import Executor
    from qhytime.store import CalibrationStore, LookupResult

TIME_CHOICES = ("start", "mid", "end")
_SEQ_MOD = 1 << 32

STATUS_OK = "ok"
STATUS_INVALID = "invalid"
STATUS_ERROR = "error"


@dataclass
class ApertureSeries:
    """One aperture's samples, aligned with the frames of a :class:`LightCurve`.

    Attributes
    ----------
    aperture : Aperture
    x, y : float arrays
        Where the aperture was placed (the centroid, the drift prediction while the star is
        too faint, or the fixed position).
    xcentroid, ycentroid : float arrays
        The measured centroid (NaN where none: too faint, or outside the frame).
    centroid_ok : bool array
        True where a tracked aperture found its star (always True for fixed ones with a
        centroid).
    row : int64 array
        Image row the sample is timed at (-1 where the frame has no position).
    sensor_row : int64 array
        First sensor row of that image row (crop, binning and flips applied; -1 where the
        frame is not timed).
    start_ns, mid_ns, end_ns : int64 arrays
        Exposure window of that row (unix ns); 0 where the frame's time is not trusted.
    sigma_ns : float array
        1-sigma of those times (NaN where not timed).
    appsum, area, background, background_std, signal, peak : float arrays
        Aperture sum, aperture area (px), sigma-clipped median and std of the annulus per
        pixel, sum - background x area, brightest aperture pixel.
    saturated : bool array
        The peak reached the top of the bit depth.

    Examples
    --------
    >>> import tempfile
    >>> from qhytime.rowmodel import RowModel
    >>> from qhytime.simulate import CameraSim, Star
    >>> sim = CameraSim(width=48, height=30, crop_y=3000, exposure_us=10_000, frame_interval_us=12_000)
    >>> paths = sim.write_fits(tempfile.mkdtemp(), 2, stars=[Star(20, 14.4, 2e6, fwhm_px=3)])
    >>> m = RowModel.from_us(offset0_us=sim.offset0_us, line_period_ns=sim.line_period_ns)
    >>> tg = light_curve(paths, (20, 14), radius=4, annulus=(7, 11), model=m).target
    >>> tg.name, tg.row.tolist(), tg.sensor_row.tolist(), bool(abs(tg.ycentroid[0] - 14.4) < 0.1)
    ('target', [14, 14], [3014, 3014], True)
    >>> bool(abs(tg.signal[0] / 20_000 - 1) < 0.05)   # 2e6 ADU/s x 10 ms
    True
    """

    aperture: Aperture
    x: NDArray[np.float64]
    y: NDArray[np.float64]
    xcentroid: NDArray[np.float64]
    ycentroid: NDArray[np.float64]
    centroid_ok: NDArray[np.bool_]
    row: NDArray[np.int64]
    sensor_row: NDArray[np.int64]
    start_ns: NDArray[np.int64]
    mid_ns: NDArray[np.int64]
    end_ns: NDArray[np.int64]
    sigma_ns: NDArray[np.float64]
    appsum: NDArray[np.float64]
    area: NDArray[np.float64]
    background: NDArray[np.float64]
    background_std: NDArray[np.float64]
    signal: NDArray[np.float64]
    peak: NDArray[np.float64]
    saturated: NDArray[np.bool_]

    @property
    def name(self) -> str:
        return self.aperture.name

    def times_ns(self, which: str = "start") -> NDArray[np.int64]:
        """``start_ns``, ``mid_ns`` or ``end_ns``."""
        if which not in TIME_CHOICES:
            raise OccultationError(f"time must be one of {TIME_CHOICES}, not {which!r}")
        return {"start": self.start_ns, "mid": self.mid_ns, "end": self.end_ns}[which]


@dataclass
class Dropped:
    """Frames missing from the sequence numbers just before a frame.

    Examples
    --------
    >>> Dropped(2, 5007, 5008).describe()
    '2 frame(s), sequence 5007-5008'
    """

    count: int
    first: int
    last: int

    def describe(self) -> str:
        seqs = str(self.first) if self.first == self.last else f"{self.first}-{self.last}"
        return f"{self.count} frame(s), sequence {seqs}"


@dataclass
class LightCurve:
    """Samples of every frame read (timed or not), and how they were made.

    Build it with :func:`light_curve`. ``timed`` marks the samples whose own time is trusted
    and whose photometry succeeded: those go into the PyMovie CSV and the event fit.

    Attributes
    ----------
    apertures : list of ApertureSeries
        ``target`` first, then ``comp1``, ``comp2``, ...
    file : list of str
    frame : int64 array
        Frame index in its file (-1 for a file that could not be opened).
    index : int64 array
        Capture index: 0 for the first frame, counting frames dropped from the sequence
        numbers (-1 for a file that could not be opened).
    sequence : int64 array
        Sequence number of the frame's block (-1 without one).
    status : list of str
        ``ok`` (timed), ``invalid`` (its own time cannot be trusted) or ``error``.
    reasons : list of list of str
        Validity reasons (``sequence_gap`` on a timed frame), read or photometry errors.
    dropped_before : list of Dropped or None
    frame_start_ns, frame_end_ns : int64 arrays
        Window of the frame's first readout row (image row 0 unless flipped): what a
        frame-level time (row 0 / DATE-OBS) says.
    time : str
        The moment chosen for ``timeInfo`` (``start``, ``mid`` or ``end``).
    options : PhotometryOptions
    sources : list of str
        The files, in the order read.
    timing : list of str
        One line per distinct timing used (calibration or explicit model, setting, exposure).
    calibration_ids : list of int or None
    saturation_adu : float

    Examples
    --------
    >>> import tempfile
    >>> from qhytime.rowmodel import RowModel
    >>> from qhytime.simulate import CameraSim, Star
    >>> sim = CameraSim(width=48, height=30, crop_y=3000, exposure_us=10_000, frame_interval_us=12_000)
    >>> paths = sim.write_fits(tempfile.mkdtemp(), 2, stars=[Star(20, 14, 2e6, fwhm_px=3)])
    >>> m = RowModel.from_us(offset0_us=sim.offset0_us, line_period_ns=sim.line_period_ns)
    >>> lc = light_curve(paths, (20, 14), [(35, 20)], radius=4, annulus=(7, 11), model=m)
    >>> lc.names, lc.status, lc.timed.tolist()
    (['target', 'comp1'], ['ok', 'ok'], [True, True])
    >>> rec = next(lc.records())
    >>> rec["status"], sorted(rec["apertures"]), rec["apertures"]["target"]["start"]
    ('ok', ['comp1', 'target'], '2025-08-02T01:44:51.122161002')
    """

    apertures: list[ApertureSeries]
    file: list[str]
    frame: NDArray[np.int64]
    index: NDArray[np.int64]
    sequence: NDArray[np.int64]
    status: list[str]
    reasons: list[list[str]]
    dropped_before: list[Dropped | None]
    frame_start_ns: NDArray[np.int64]
    frame_end_ns: NDArray[np.int64]
    time: str
    options: PhotometryOptions
    sources: list[str]
    timing: list[str]
    calibration_ids: list[int | None]
    saturation_adu: float
    settings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.status)

    @property
    def names(self) -> list[str]:
        """Aperture names, target first."""
        return [a.name for a in self.apertures]

    @property
    def target(self) -> ApertureSeries:
        return self.apertures[0]

    @property
    def timed(self) -> NDArray[np.bool_]:
        """Samples with a trusted time and a measurement (the CSV's rows)."""
        return np.array([s == STATUS_OK for s in self.status], dtype=bool)

    def aperture(self, name: str) -> ApertureSeries:
        """The series of one aperture by name."""
        for a in self.apertures:
            if a.name == name:
                return a
        raise KeyError(name)

    @property
    def dropped(self) -> list[tuple[int, Dropped]]:
        """``(sample, Dropped)`` for every gap in the sequence numbers."""
        return [(i, d) for i, d in enumerate(self.dropped_before) if d is not None]

    @property
    def left_out(self) -> list[int]:
        """Samples not timed (invalid or error), in order."""
        return [i for i, s in enumerate(self.status) if s != STATUS_OK]

    def where(self, i: int) -> str:
        """``file frame N`` (or just the file) of sample ``i``."""
        name = os.path.basename(self.file[i])
        return name if self.frame[i] < 0 else f"{name} frame {int(self.frame[i])}"

    def records(self) -> Iterator[dict[str, Any]]:
        """One JSON-ready object per frame read: file, frame, capture index, sequence,
        status, reasons, dropped frames before it, and per aperture its position, row,
        window (ISO UTC with 9 decimals and int unix ns; null where the frame's time is not
        trusted), sigma and photometry."""
        starts = {a.name: _iso_or_none(a.start_ns, self.timed) for a in self.apertures}
        mids = {a.name: _iso_or_none(a.mid_ns, self.timed) for a in self.apertures}
        ends = {a.name: _iso_or_none(a.end_ns, self.timed) for a in self.apertures}
        timed = self.timed
        for i in range(len(self)):
            d = self.dropped_before[i]
            aps: dict[str, Any] = {}
            for a in self.apertures:
                ok = bool(timed[i])
                aps[a.name] = {
                    "x": _num(a.x[i], 3),
                    "y": _num(a.y[i], 3),
                    "xcentroid": _num(a.xcentroid[i], 3),
                    "ycentroid": _num(a.ycentroid[i], 3),
                    "tracked": a.aperture.tracked,
                    "centroid_ok": bool(a.centroid_ok[i]),
                    "row": int(a.row[i]) if a.row[i] >= 0 else None,
                    "sensor_row": int(a.sensor_row[i]) if a.sensor_row[i] >= 0 else None,
                    "start": starts[a.name][i],
                    "mid": mids[a.name][i],
                    "end": ends[a.name][i],
                    "start_ns": int(a.start_ns[i]) if ok else None,
                    "mid_ns": int(a.mid_ns[i]) if ok else None,
                    "end_ns": int(a.end_ns[i]) if ok else None,
                    "sigma_ns": _num(a.sigma_ns[i], 3) if ok else None,
                    "signal": _num(a.signal[i], 3),
                    "appsum": _num(a.appsum[i], 3),
                    "background": _num(a.background[i], 4),
                    "background_std": _num(a.background_std[i], 4),
                    "area": _num(a.area[i], 4),
                    "peak": _num(a.peak[i], 1),
                    "saturated": bool(a.saturated[i]),
                }
            yield {
                "file": self.file[i],
                "frame": int(self.frame[i]) if self.frame[i] >= 0 else None,
                "index": int(self.index[i]) if self.index[i] >= 0 else None,
                "sequence": int(self.sequence[i]) if self.sequence[i] >= 0 else None,
                "status": self.status[i],
                "reasons": list(self.reasons[i]),
                "dropped_before": None
                if d is None
                else {"count": d.count, "first_sequence": d.first, "last_sequence": d.last},
                "apertures": aps,
            }

    def write_csv(self, path: str | os.PathLike[str], *, time: str | None = None) -> int:
        """Write the PyMovie-format CSV (see :func:`~qhytime.occultation.write_pymovie_csv`)."""
        from qhytime.occultation.pymovie import write_pymovie_csv

        return write_pymovie_csv(self, path, time=time)

    def fit_events(self) -> Any:
        """The square-well event fit of the target (see
        :func:`~qhytime.occultation.fit_events`)."""
        from qhytime.occultation.events import fit_events

        return fit_events(self)


def _num(v: Any, nd: int) -> float | None:
    f = float(v)
    return round(f, nd) if np.isfinite(f) else None


def _iso_or_none(ns: NDArray[np.int64], ok: NDArray[np.bool_]) -> list[str | None]:
    out: list[str | None] = [None] * len(ns)
    idx = np.flatnonzero(ok)
    if idx.size:
        for k, s in zip(idx, unix_ns_to_iso(ns[idx]), strict=True):
            out[int(k)] = str(s)
    return out


# -- building a light curve --------------------------------------------------------------------


@dataclass
class _ApAcc:
    """Per-aperture accumulation while frames are read."""

    aperture: Aperture
    tracker: Tracker | None
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    xc: list[float] = field(default_factory=list)
    yc: list[float] = field(default_factory=list)
    cok: list[bool] = field(default_factory=list)
    row: list[int] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)  # ChunkResult per flushed chunk
    boxes: list[Any] = field(default_factory=list)
    weights: list[Any] = field(default_factory=list)
    fixed_weights: Any = None
    fixed_annulus: Any = None
    times: list[tuple[Any, ...]] = field(default_factory=list)


class _Builder:
    def __init__(
        self, apertures: Sequence[Aperture], opts: PhotometryOptions, masks: Any = None
    ) -> None:
        self.opts = opts
        self.aps = [_ApAcc(a, Tracker(a.x, a.y) if a.tracked else None) for a in apertures]
        self.half = opts.half_box
        self.file: list[str] = []
        self.frame: list[int] = []
        self.index: list[int] = []
        self.sequence: list[int] = []
        self.status: list[str] = []
        self.reasons: list[list[str]] = []
        self.dropped: list[Dropped | None] = []
        self.pending = 0
        self.last_index = -1
        self.last_seq: tuple[int, int, int] | None = None
        self.blockless_since = 0
        if masks is None:
            center = annulus_mask(0.0, 0.0, *opts.annulus, self.half)
            fixed = []
            for acc in self.aps:
                dx = acc.aperture.x - acc.aperture.col
                dy = acc.aperture.y - acc.aperture.row
                fixed.append((aperture_weights(dx, dy, opts.radius, self.half),
                              annulus_mask(dx, dy, *opts.annulus, self.half)))  # fmt: skip
            masks = (center, fixed)
        self.center_annulus = masks[0]
        for acc, (w, ann) in zip(self.aps, masks[1], strict=True):
            acc.fixed_weights, acc.fixed_annulus = w, ann

    @property
    def masks(self) -> Any:
        """The aperture masks that do not move (computed once, shared with each file's work)."""
        return (self.center_annulus, [(acc.fixed_weights, acc.fixed_annulus) for acc in self.aps])

    def extend(self, out: _FileOut) -> None:
        """Append one file's records and measurements (its chunks measured already)."""
        for k in _RECORD_FIELDS:
            getattr(self, k).extend(out.records[k])
        for acc, ap in zip(self.aps, out.aps, strict=True):
            for k in _AP_FIELDS:
                getattr(acc, k).extend(ap[k])

    # one record per frame (or per unreadable file)
    def add_record(
        self, file: str, frame: int, sequence: int, status: str, reasons: list[str],
        index: int, dropped: Dropped | None,
    ) -> None:  # fmt: skip
        self.file.append(file)
        self.frame.append(frame)
        self.sequence.append(sequence)
        self.status.append(status)
        self.reasons.append(reasons)
        self.index.append(index)
        self.dropped.append(dropped)

    def capture_index(self, seq: int | None, width: int, height: int) -> tuple[int, Dropped | None]:
        """Capture index of the next frame and the frames dropped before it."""
        dropped = None
        missing = 0
        if seq is None:
            self.blockless_since += 1
        else:
            if self.last_seq is not None and self.last_seq[1:] == (width, height):
                step = (seq - self.last_seq[0]) % _SEQ_MOD
                if 1 < step < _SEQ_MOD // 2:
                    missing = step - 1 - self.blockless_since
                    if missing > 0:
                        first = (self.last_seq[0] + 1) % _SEQ_MOD
                        last = (seq - 1) % _SEQ_MOD
                        dropped = Dropped(missing, first, last)
                    missing = max(missing, 0)
            self.last_seq = (seq, width, height)
            self.blockless_since = 0
        self.last_index += 1 + missing
        return self.last_index, dropped

    def add_image(self, img: Any, index: int, blank: tuple[int, int] | None) -> None:
        """Place every aperture on this frame and keep its box for the chunk measurement."""
        o = self.opts
        for acc in self.aps:
            a = acc.aperture
            if acc.tracker is None:
                x, y = a.x, a.y
                xc = yc = float("nan")
                ok = True
            else:
                px, py = acc.tracker.predict(index)
                xc, yc, _snr = find_centroid(
                    img, px, py, radius=o.radius, search=o.search_px, min_snr=o.min_snr,
                    blank=blank,
                )  # fmt: skip
                ok = bool(np.isfinite(xc)) and _snr >= o.min_snr
                if ok:
                    acc.tracker.good(index, xc, yc)
                    x, y = xc, yc
                else:
                    x, y = px, py
                    xc = yc = float("nan")
            ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
            acc.boxes.append(cutout(img, ix, iy, self.half, blank))
            if acc.tracker is not None:
                acc.weights.append(aperture_weights(x - ix, y - iy, o.radius, self.half))
            acc.x.append(x)
            acc.y.append(y)
            acc.xc.append(xc)
            acc.yc.append(yc)
            acc.cok.append(ok)
            acc.row.append(min(max(iy, 0), img.shape[0] - 1))  # the nearest row of the frame
        self.pending += 1
        if self.pending >= CHUNK_FRAMES:
            self.flush()

    def add_no_image(self) -> None:
        n = 2 * self.half + 1
        for acc in self.aps:
            acc.boxes.append(np.full((n, n), np.nan))
            if acc.tracker is not None:
                acc.weights.append(np.zeros((n, n)))
            for lst in (acc.x, acc.y, acc.xc, acc.yc):
                lst.append(float("nan"))
            acc.cok.append(False)
            acc.row.append(-1)
        self.pending += 1
        if self.pending >= CHUNK_FRAMES:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        for acc in self.aps:
            boxes = np.stack(acc.boxes)
            if acc.tracker is None:
                w, ann = acc.fixed_weights, acc.fixed_annulus
            else:
                w, ann = np.stack(acc.weights), self.center_annulus
            acc.results.append(measure_chunk(boxes, w, ann, self.opts.clip_sigma))
            acc.boxes.clear()
            acc.weights.clear()
        self.pending = 0


def _file_times(
    ft: FileTiming, frames: NDArray[np.int64], rows: NDArray[np.int64]
) -> tuple[NDArray[np.int64], ...]:
    """Start, mid, end, sigma and first sensor row of image ``rows[k]`` of frame ``frames[k]``
    (vectorised by row)."""
    n = len(frames)
    start = np.zeros(n, dtype=np.int64)
    mid = np.zeros(n, dtype=np.int64)
    end = np.zeros(n, dtype=np.int64)
    sigma = np.full(n, np.nan)
    sensor = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return start, mid, end, sigma, sensor
    exp = ft.require_exposure()
    ref = ft.reference_ns[frames]
    flipped = ft.decoded.scan.flipped[frames]
    rows = np.clip(rows, 0, ft.height - 1)
    for fl in np.unique(flipped):
        geom = FrameGeometry(height=ft.height, crop_y=ft.crop_y, binning=ft.binning, flipped=bool(fl))
        sel_f = flipped == fl
        for r in np.unique(rows[sel_f]):
            sel = sel_f & (rows == r)
            t = row_times(ft.model, geom, ref[sel], exp, [int(r)])
            start[sel], mid[sel], end[sel] = t.start_ns[:, 0], t.mid_ns[:, 0], t.end_ns[:, 0]
            sigma[sel] = t.sigma_ns[0]
            sensor[sel] = int(geom.sensor_rows([int(r)]).min())
    return start, mid, end, sigma, sensor


def _describe_timing(ft: FileTiming, lookup: LookupResult | None) -> str:
    m: RowModel = ft.model
    how = lookup.describe() if lookup is not None else "explicit model"
    exp = "unknown" if ft.exposure_ns is None else f"{ft.exposure_ns / 1e6:g} ms"
    return (
        f"{how}: offset0 {m.offset0_us:.3f} us from the {m.reference} stamp, line period "
        f"{m.line_period_ns:.3f} ns, {m.readout} readout; exposure {exp}; crop y {ft.crop_y}, "
        f"binning {ft.binning}"
    )


def _describe_setting(ft: FileTiming) -> str:
    s = ft.setting
    return (
        f"{s.camera_model}, readout mode {s.readout_mode!r}{' (2CMS)' if s.is_2cms else ''}, "
        f"ROI x {s.roi_x} y {s.roi_y} {s.roi_width}x{s.roi_height}, binning {s.binning}, "
        f"{s.bit_depth}-bit, USB traffic {s.usb_traffic}, {s.stream_mode} stream"
    )


def light_curve(
    paths: Sequence[str | os.PathLike[str]],
    target: tuple[float, float],
    comparisons: Sequence[tuple[float, float]] = (),
    *,
    radius: float = 5.0,
    annulus: tuple[float, float] | None = None,
    fixed: bool = False,
    search: float | None = None,
    min_snr: float = 5.0,
    time: str = "start",
    model: RowModel | None = None,
    store: CalibrationStore | None = None,
    calibration_id: int | None = None,
    fallback: bool = False,
    exposure_ns: int | None = None,
    crop_y: int | None = None,
    binning: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    executor: Executor | None = None,
) -> LightCurve:
    """Light curve of a target and comparison stars, every sample timed at its own row.

    Parameters
    ----------
    paths : sequence of path
        FITS files (one frame each, in the order given) and/or SER files.
    target : (x, y)
        The target's position in the first frame (0-based pixel centres, x the column).
    comparisons : sequence of (x, y)
        Comparison stars, named ``comp1``, ``comp2``, ...
    radius : float
        Aperture radius (px).
    annulus : (float, float), optional
        Background annulus radii (default ``1.8 radius, 3 radius``).
    fixed : bool
        Keep every aperture at its given position (timed at that row); by default each is
        recentred every frame and timed at its centroid's row.
    search, min_snr
        Tracking: search half-size (default the radius) and the signal-to-noise below which
        a star is too faint to centroid (the aperture then follows its fitted drift).
    time : {"start", "mid", "end"}
        The moment the CSV's ``timeInfo`` gives (PyOTE assumes ``start``).
    model, store, calibration_id, fallback, exposure_ns, crop_y, binning
        The timing, as for :func:`qhytime.framerows.file_timing` (SER files carry no
        exposure: give ``exposure_ns``).
    progress : callable, optional
        Called as ``progress(done, more)``: ``more`` frames announced when a file's blocks
        are decoded, ``done`` frames finished.
    executor : qhytime.cluster.Executor, optional
        Where the per-file work runs (in this process by default, or on a dask cluster):
        each file's blocks are decoded there, and its frames measured and timed there, from
        a snapshot of the calibrations. The checks across files, the capture indices and the
        light curve's assembly stay here, in order. Fixed apertures make every file
        independent (files measured in parallel); a tracked aperture starts each file where
        the previous file left it, so files are measured one after another (their blocks are
        still decoded ahead in parallel). The result is the same either way.

    Returns
    -------
    LightCurve

    Raises
    ------
    OccultationError
        An aperture outside the first frame, bad radii, no frame read at all.
    CalibrationError, RowModelError
        No calibration for a file's setting, no exposure, a bad crop or binning.

    Examples
    --------
    >>> import tempfile
    >>> from qhytime.rowmodel import RowModel
    >>> from qhytime.simulate import CameraSim, Star
    >>> sim = CameraSim(width=64, height=40, crop_y=3400, exposure_us=20_000,
    ...                 frame_interval_us=25_000, seed=3)
    >>> paths = sim.write_fits(tempfile.mkdtemp(), 5, stars=[Star(30, 25, 2e6, fwhm_px=3)])
    >>> m = RowModel.from_us(offset0_us=sim.offset0_us, line_period_ns=sim.line_period_ns)
    >>> lc = light_curve(paths, (30, 25), radius=4, annulus=(7, 12), model=m)
    >>> lc.status, lc.target.row.tolist()
    (['ok', 'ok', 'ok', 'ok', 'ok'], [25, 25, 25, 25, 25])
    >>> t = m.relative_end_ps([3425])[0] // 1000 - 20_000_000   # start of sensor row 3425
    >>> bool(int(lc.target.start_ns[0] - sim.block_for(0)[2]) == t)
    True
    """
    if time not in TIME_CHOICES:
        raise OccultationError(f"time must be one of {TIME_CHOICES}, not {time!r}")
    if annulus is None:
        annulus = (1.8 * radius, 3.0 * radius)
    opts = PhotometryOptions(radius=radius, annulus=tuple(annulus), search=search, min_snr=min_snr)  # type: ignore[arg-type]
    pts = [tuple(target), *[tuple(c) for c in comparisons]]
    names = ["target", *[f"comp{i}" for i in range(1, len(comparisons) + 1)]]
    aps = [Aperture(n, float(p[0]), float(p[1]), tracked=not fixed) for n, p in zip(names, pts, strict=True)]
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise OccultationError("no files given")
    b = _Builder(aps, opts)
    timing = _Timing(model=model, store=for_workers(executor, store), calibration_id=calibration_id,
                     fallback=fallback, exposure_ns=exposure_ns, crop_y=crop_y, binning=binning)  # fmt: skip
    here = executor is None or not executor.remote
    work = partial(_measure_file, timing=timing, apertures=aps, opts=opts, masks=b.masks,
                   progress=progress if here else None)  # fmt: skip
    ex = executor or LocalExecutor()
    jobs = _plan_files(b, decode_series(paths, exposure_ns=exposure_ns, executor=executor), progress)
    if fixed:  # every file on its own: in parallel on a cluster
        outs = ex.map(work, jobs, on_error=_raise_lost)
    else:  # each file starts from where the previous one left the trackers: one at a time
        outs = _chained(ex, work, jobs, [acc.tracker for acc in b.aps])
    times: dict[str, list[Any]] = {a.name: [] for a in aps}
    frame_windows: list[Any] = []
    sources: list[str] = []
    timing_lines: list[str] = []
    settings: list[str] = []
    cal_ids: list[int | None] = []
    top = 0.0
    for out in outs:
        if out.raised is not None:
            raise out.raised
        if progress is not None and not here:
            progress(out.frames_done, 0)
        b.extend(out)
        for name, t in out.times.items():
            times[name].append(t)
        frame_windows.append(out.window)
        if out.timing is None:  # the file could not be opened
            continue
        sources.append(out.path)
        if out.timing not in timing_lines:
            timing_lines.append(out.timing)
        if out.setting not in settings:
            settings.append(out.setting)  # type: ignore[arg-type]
        if out.calibration_id not in cal_ids:
            cal_ids.append(out.calibration_id)
        top = max(top, out.top)
    b.flush()
    if not b.status:
        raise OccultationError("no frame could be read from the files given")
    return _assemble(b, times, frame_windows, opts, time, sources, timing_lines, settings, cal_ids, top)


# -- the per-file work (in this process or on a dask worker) ------------------------------------


@dataclass
class _Timing:
    """The timing arguments of :func:`light_curve`, sent with each file's work (``store`` a
    :class:`~qhytime.cluster.CalibrationSnapshot` for remote workers)."""

    model: RowModel | None
    store: Any
    calibration_id: int | None
    fallback: bool
    exposure_ns: int | None
    crop_y: int | None
    binning: int | None


@dataclass
class _FileJob:
    """One file of a light curve: its blocks (checked with their sequence), the capture index
    of each frame and the frames dropped before it (worked out here, in order)."""

    path: str
    decoded: DecodedFile | None
    error: str | None
    index: list[int]
    dropped: list[Dropped | None]
    check: bool
    trackers: list[Tracker | None] | None = None


@dataclass
class _FileOut:
    """What one file adds to a light curve (see :meth:`_Builder.extend`)."""

    path: str
    raised: QhytimeError | None = None
    timing: str | None = None
    setting: str | None = None
    calibration_id: int | None = None
    top: float = 0.0
    frames_done: int = 0
    records: dict[str, list[Any]] = field(default_factory=dict)
    aps: list[dict[str, list[Any]]] = field(default_factory=list)
    times: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    window: tuple[Any, Any] = (None, None)
    trackers: list[Tracker | None] = field(default_factory=list)


def _plan_files(
    b: _Builder, items: Iterator[SeriesFile], progress: Callable[[int, int], None] | None
) -> Iterator[_FileJob]:
    """Jobs in order, with the capture indices (which only the sequence of files gives)."""
    checked = False
    for item in items:
        if item.decoded is None:
            yield _FileJob(item.path, None, item.error, [], [], False)
            continue
        decoded = item.decoded
        blocks = decoded.scan.blocks
        index: list[int] = []
        dropped: list[Dropped | None] = []
        for i in range(len(decoded)):
            present = bool(decoded.scan.present[i])
            idx, drop = b.capture_index(
                int(blocks.sequence[i]) if present else None,
                int(blocks.width[i]) if present else 0, int(blocks.height[i]) if present else 0,
            )  # fmt: skip
            index.append(idx)
            dropped.append(drop)
        check = not checked and len(decoded) > 0
        checked = checked or check
        if progress is not None:
            progress(0, len(decoded))
        yield _FileJob(item.path, decoded, None, index, dropped, check)


def _chained(
    ex: Executor, work: Callable[[_FileJob], _FileOut], jobs: Iterator[_FileJob],
    trackers: list[Tracker | None],
) -> Iterator[_FileOut]:  # fmt: skip
    """Tracked apertures: each file's work starts from the trackers the previous file left.

    On a cluster, consecutive files go to a worker together (as many as take about
    :data:`~qhytime.cluster.BATCH_TARGET_S`), the trackers carried from one to the next
    there: one round trip per batch, not per file."""
    from itertools import islice

    from qhytime.cluster import BATCH_TARGET_S, MAX_BATCH

    size = 1
    while batch := list(islice(jobs, size)):
        t0 = time.perf_counter()
        try:
            outs = ex.call(_measure_chain, batch, trackers, work)
        except Exception as exc:
            _raise_lost(batch[0], exc)
        elapsed = time.perf_counter() - t0
        if ex.remote:
            size = max(1, min(MAX_BATCH, int(BATCH_TARGET_S * len(outs) / max(elapsed, 1e-4))))
        for out in outs:
            if out.raised is None:
                trackers = out.trackers
            yield out


def _measure_chain(
    jobs: list[_FileJob], trackers: list[Tracker | None], work: Callable[[_FileJob], _FileOut]
) -> list[_FileOut]:
    """Files one after another, each starting from the trackers the one before left (stops
    at a file whose light curve cannot go on)."""
    outs = []
    for job in jobs:
        job.trackers = trackers
        out = work(job)
        outs.append(out)
        if out.raised is not None:
            break
        trackers = out.trackers
    return outs


def _raise_lost(job: _FileJob, exc: BaseException) -> NoReturn:
    if isinstance(exc, QhytimeError) or type(exc).__module__.split(".")[0] not in (
        "distributed", "concurrent", "asyncio",
    ):  # fmt: skip
        raise exc
    raise ClusterError(f"no light curve: {task_failure(exc)}", path=job.path) from exc


def _measure_file(
    job: _FileJob, *, timing: _Timing, apertures: Sequence[Aperture], opts: PhotometryOptions,
    masks: Any = None, progress: Callable[[int, int], None] | None = None,
) -> _FileOut:  # fmt: skip
    """Photometry and times of one file's frames: a pure function of the file, its blocks,
    the timing and the trackers' state at the file's start."""
    b = _Builder(apertures, opts, masks)
    if job.trackers is not None:
        for acc, tr in zip(b.aps, job.trackers, strict=True):
            acc.tracker = tr
    path = job.path
    times: dict[str, list[Any]] = {a.name: [] for a in apertures}
    windows: list[Any] = []
    out = _FileOut(path)
    try:
        if job.decoded is None:
            raise FrameReadError(job.error or "unreadable", path=path)
        reader = open_frames(path)
    except FrameReadError as exc:
        why = exc.reason if exc.reason.startswith("unreadable") else f"unreadable: {exc.reason}"
        b.add_record(path, -1, -1, STATUS_ERROR, [why], -1, None)
        b.add_no_image()
        _pad_times(times, windows, 1)
    else:
        try:
            with reader:
                _measure_frames(b, reader, job, timing, times, windows, out, progress)
        except QhytimeError as exc:
            out.raised = exc
            return out
    b.flush()
    out.records = {k: getattr(b, k) for k in _RECORD_FIELDS}
    out.aps = [{k: getattr(acc, k) for k in _AP_FIELDS} for acc in b.aps]
    out.times = {name: tuple(np.concatenate([t[k] for t in ts]) for k in range(5))
                 for name, ts in times.items()}  # fmt: skip
    out.window = (np.concatenate([w[0] for w in windows]), np.concatenate([w[1] for w in windows]))
    out.trackers = [acc.tracker for acc in b.aps]
    return out


_RECORD_FIELDS = ("file", "frame", "index", "sequence", "status", "reasons", "dropped")
_AP_FIELDS = ("x", "y", "xc", "yc", "cok", "row", "results")


def _measure_frames(
    b: _Builder, reader: Any, job: _FileJob, timing: _Timing, times: dict[str, list[Any]],
    windows: list[Any], out: _FileOut, progress: Callable[[int, int], None] | None,
) -> None:  # fmt: skip
    path = job.path
    decoded = job.decoded
    assert decoded is not None
    if reader.kind == "ser" and getattr(reader, "planes", 1) != 1:
        raise OccultationError("colour SER files are not supported: convert to mono", path=path)
    if job.check and len(reader):
        _check_positions([acc.aperture for acc in b.aps], reader.width, reader.height, path)
    t = timing
    ft = file_timing(reader, model=t.model, store=t.store, calibration_id=t.calibration_id,
                     fallback=t.fallback, exposure_ns=t.exposure_ns, crop_y=t.crop_y,
                     binning=t.binning, decoded=decoded)  # fmt: skip
    if len(reader):
        ft.require_exposure()
    out.timing = _describe_timing(ft, ft.lookup)
    out.setting = _describe_setting(ft)
    out.calibration_id = None if ft.lookup is None else ft.lookup.calibration.id
    out.top = float(2 ** min(reader.bit_depth, 16) - 1)
    block_cols = -(-44 // (1 if reader.bit_depth <= 8 else 2))
    blocks = decoded.scan.blocks
    for i in range(len(decoded)):
        present = bool(decoded.scan.present[i])
        seq = int(blocks.sequence[i]) if present else None
        idx, dropped = job.index[i], job.dropped[i]
        reasons = list(decoded.reasons[i])
        trusted = present and own_time_trusted(reasons)
        status = STATUS_OK if trusted else STATUS_INVALID
        try:
            img = reader.image(i)
        except FrameReadError as exc:
            b.add_record(path, i, -1 if seq is None else seq, STATUS_ERROR,
                         [*reasons, f"unreadable image: {exc.reason}"], idx, dropped)  # fmt: skip
            b.add_no_image()
        else:
            b.add_record(path, i, -1 if seq is None else seq, status, reasons, idx, dropped)
            flipped = bool(decoded.scan.flipped[i])
            blank = ((reader.height - 1) if flipped else 0, block_cols) if present else None
            b.add_image(img, idx, blank)
        out.frames_done += 1
        if progress is not None:
            progress(1, 0)
    if decoded.truncation is not None:
        b.add_record(path, decoded.truncation.complete_frames, -1, STATUS_ERROR,
                     [decoded.truncation.reason], -1, None)  # fmt: skip
        b.add_no_image()
    # times of this file's samples, vectorised per row
    n_here = len(b.status)
    local = np.array(b.frame, dtype=np.int64)
    ok_here = np.array([s == STATUS_OK for s in b.status], dtype=bool)
    fr = local[ok_here]
    for acc in b.aps:
        rows = np.array(acc.row, dtype=np.int64)[ok_here]
        s, m, e, sg, sr = _file_times(ft, fr, rows)
        full = [np.zeros(n_here, np.int64) for _ in range(3)] + [np.full(n_here, np.nan)]
        full.append(np.full(n_here, -1, np.int64))
        for arr, val in zip(full, (s, m, e, sg, sr), strict=True):
            arr[ok_here] = val
        times[acc.aperture.name].append(tuple(full))
    first_rows = np.where(ft.decoded.scan.flipped[fr], ft.height - 1, 0) if fr.size else fr
    s, _m, e, _sg, _sr = _file_times(ft, fr, first_rows)
    fs, fe = np.zeros(n_here, np.int64), np.zeros(n_here, np.int64)
    fs[ok_here], fe[ok_here] = s, e
    windows.append((fs, fe))


def _pad_times(times: dict[str, list[Any]], frame_windows: list[Any], n: int) -> None:
    for lst in times.values():
        z = np.zeros(n, np.int64)
        lst.append((z, z, z, np.full(n, np.nan), np.full(n, -1, np.int64)))
    frame_windows.append((np.zeros(n, np.int64), np.zeros(n, np.int64)))


def _check_positions(aps: Sequence[Aperture], width: int, height: int, path: str) -> None:
    for a in aps:
        if not (-0.5 <= a.x < width - 0.5 and -0.5 <= a.y < height - 0.5):
            raise OccultationError(
                f"aperture {a.name} at ({a.x:g}, {a.y:g}) is outside the {width}x{height} first "
                "frame (0-based pixel centres: x the column, y the row)",
                path=path,
            )


def _assemble(
    b: _Builder, times: dict[str, list[Any]], frame_windows: list[Any], opts: PhotometryOptions,
    time: str, sources: list[str], timing_lines: list[str], settings: list[str],
    cal_ids: list[int | None], top: float,
) -> LightCurve:  # fmt: skip
    n = len(b.status)
    status = list(b.status)
    reasons = [list(r) for r in b.reasons]
    series: list[ApertureSeries] = []
    for acc in b.aps:
        res = acc.results

        def cat(name: str, res: list[Any] = res) -> NDArray[np.float64]:
            return np.concatenate([getattr(r, name) for r in res]) if res else np.zeros(0)

        t = times[acc.aperture.name]
        start, mid, end = (np.concatenate([x[k] for x in t]) for k in range(3))
        sigma = np.concatenate([x[3] for x in t])
        sensor = np.concatenate([x[4] for x in t])
        xcen = np.array(acc.xc, dtype=np.float64)
        ycen = np.array(acc.yc, dtype=np.float64)
        if acc.tracker is None:  # the informative centroid of a fixed aperture: in-aperture COM
            xcen = cat("xcom") + _offsets(acc, b.half, "x")
            ycen = cat("ycom") + _offsets(acc, b.half, "y")
        peak = cat("peak")
        s = ApertureSeries(
            aperture=acc.aperture,
            x=np.array(acc.x, dtype=np.float64),
            y=np.array(acc.y, dtype=np.float64),
            xcentroid=xcen,
            ycentroid=ycen,
            centroid_ok=np.array(acc.cok, dtype=bool) & np.isfinite(xcen),
            row=np.array(acc.row, dtype=np.int64),
            sensor_row=sensor,
            start_ns=start,
            mid_ns=mid,
            end_ns=end,
            sigma_ns=sigma,
            appsum=cat("appsum"),
            area=cat("area"),
            background=cat("background"),
            background_std=cat("background_std"),
            signal=cat("signal"),
            peak=peak,
            saturated=np.nan_to_num(peak, nan=0.0) >= top,
        )
        series.append(s)
    for i in range(n):
        if status[i] == STATUS_ERROR:
            continue
        bad = [a.name for a in series if not np.isfinite(a.signal[i])]
        if bad:
            reasons[i].append(
                "photometry: no measurement for " + ", ".join(bad)
                + " (aperture or annulus outside the frame)"
            )
            status[i] = STATUS_ERROR
    fs = np.concatenate([w[0] for w in frame_windows])
    fe = np.concatenate([w[1] for w in frame_windows])
    return LightCurve(
        apertures=series,
        file=list(b.file),
        frame=np.array(b.frame, dtype=np.int64),
        index=np.array(b.index, dtype=np.int64),
        sequence=np.array(b.sequence, dtype=np.int64),
        status=status,
        reasons=reasons,
        dropped_before=list(b.dropped),
        frame_start_ns=fs,
        frame_end_ns=fe,
        time=time,
        options=opts,
        sources=sources,
        timing=timing_lines,
        calibration_ids=cal_ids,
        saturation_adu=top,
        settings=settings,
    )


def _offsets(acc: _ApAcc, half: int, axis: str) -> NDArray[np.float64]:
    """Image coordinate of each box's (0, 0) pixel along ``axis``."""
    pos = np.array(acc.x if axis == "x" else acc.y, dtype=np.float64)
    return np.floor(pos + 0.5) - half

"""A deterministic rolling-shutter camera with a GPS box: frames for tests, docs and demos.

:class:`CameraSim` makes frames whose rows are exposed per the row model with a *true*
``offset0``, a true line period (the nominal SDK value scaled by a ppm error: the camera
clock is not GPS), pairs or 2CMS readout, ROI and binning; it writes the GPS block (stamps
from a chosen true VSYNC time, a pps count off nominal, a receiver state) into row 0, and
adds photon and read noise, stars (optionally occulted), moving objects and LED pulses.
A row's LED signal is proportional to the overlap of its exposure window with the pulse.

Times inside are int64 unix ns for absolute instants; relative quantities (offsets, line
periods, exposure) are float ns, small enough for float64 to be exact to far below 1 ps.

Examples
--------
>>> sim = CameraSim(width=64, height=12, exposure_us=1000.0, seed=1)
>>> shot = sim.frame(0)
>>> shot.image.shape, shot.block.sequence, shot.block.width
((12, 64), 1, 64)
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qhytime.atomic import atomic_open
from qhytime.gpsblock import (
    GpsBlock,
    Stamp,
    embed_block,
    latitude_raw_from_deg,
    longitude_raw_from_deg,
)
from qhytime.rowmodel import Readout, Reference
from qhytime.timebase import GPS_EPOCH_UNIX_S, NS_PER_S, stamp_unix_ns

DEFAULT_T0_UNIX_NS = 1_754_099_091_000_000_000  # 2025-08-02T01:44:51 UTC
NOMINAL_LP_NS = 43_194.0

SINGLE_PASS_PIXELS = 1 << 22
"""Frames of up to this many pixels are simulated in one piece; larger ones in bands of
rows (:meth:`CameraSim.frame_rows`), with the same pixel values."""
BAND_PIXELS = 1 << 20
"""About how many pixels a band of a large frame holds (its float64 work arrays: 8 MiB)."""


@dataclass(frozen=True)
class LedPulse:
    """An LED pulse: start relative to the frame's reference stamp (ns), width (ns)."""

    start_ns: float
    width_ns: float
    amplitude_adu: float = 40_000.0


@dataclass(frozen=True)
class LedFaults:
    """What real LED scans do to the clean overlap model (:meth:`CameraSim.led_fault_stack`).

    Attributes
    ----------
    led_drift : float
        Smooth drift of the LED level over the scan, as a fraction (0.10: +-10 %).
    led_jitter : float
        Frame-to-frame jitter of the LED level (relative rms).
    illumination : float
        Uneven light: a smooth profile over rows and columns spanning ``1 +- illumination``.
    bias_drift_adu : float
        Smooth drift of the bias level over the scan (+- ADU).
    banding_adu : float
        Rms of a fixed horizontal banding pattern (the same rows in every frame).
    row_noise_adu : float
        Rms of a random offset of every row of every frame (banding that changes).
    cosmic_rays : float
        Mean number of cosmic-ray hits per frame (Poisson), 300-30,000 ADU each, 1-4 pixels.
    cosmic_on_band : float
        Fraction of the hits that land on rows the LED lights (half of them on partly lit
        rows).
    saturated_frames : int
        Frames in which the LED fires ``saturate_factor`` times too bright.
    bandless_frames : int
        Frames in which the LED does not fire (their pulse is still listed).
    saturate_factor : float
    seed : int
        Chooses the drift shapes, the banding pattern, the light profile and the faulty frames.

    Examples
    --------
    >>> f = LedFaults.typical(seed=1)
    >>> f.led_drift, f.illumination, f.saturated_frames, f.bandless_frames
    (0.1, 0.15, 3, 1)
    """

    led_drift: float = 0.0
    led_jitter: float = 0.0
    illumination: float = 0.0
    bias_drift_adu: float = 0.0
    banding_adu: float = 0.0
    row_noise_adu: float = 0.0
    cosmic_rays: float = 0.0
    cosmic_on_band: float = 0.5
    saturated_frames: int = 0
    bandless_frames: int = 0
    saturate_factor: float = 3.0
    seed: int = 0

    @classmethod
    def typical(cls, seed: int = 0) -> LedFaults:
        """The sizes of a real scan (issue 12): LED drift +-10 % with 2 % jitter, light +-15 %,
        bias drift +-15 ADU with 3 ADU banding (+0.3 ADU changing), 4 cosmic rays per frame,
        2-3 saturated and 1-2 band-less frames."""
        return cls(led_drift=0.10, led_jitter=0.02, illumination=0.15, bias_drift_adu=15.0,
                   banding_adu=3.0, row_noise_adu=0.3, cosmic_rays=4.0, cosmic_on_band=0.5,
                   saturated_frames=2 + seed % 2, bandless_frames=1 + (seed // 2) % 2,
                   seed=seed)  # fmt: skip


@dataclass
class LedFaultTruth:
    """The faults a simulated LED scan was given, frame by frame.

    Attributes
    ----------
    led_scale : float array (N,)
        LED level of each frame relative to the pulses' amplitude (0 in band-less frames).
    bias_adu : float array (N,)
        Bias level of each frame.
    banding_adu : float array (H,)
        The fixed banding pattern (mean 0).
    illumination : float array (H, W)
        Relative light reaching each pixel.
    saturated, bandless : list of int
        Frames made too bright, frames without LED.
    cosmic_pixels : int array (N,)
        Pixels hit by cosmic rays in each frame.

    Examples
    --------
    :meth:`CameraSim.led_fault_stack` returns one.
    """

    led_scale: NDArray[np.float64]
    bias_adu: NDArray[np.float64]
    banding_adu: NDArray[np.float64]
    illumination: NDArray[np.float64]
    saturated: list[int]
    bandless: list[int]
    cosmic_pixels: NDArray[np.int64]


@dataclass(frozen=True)
class Star:
    """A point source; ``occulted`` = (start, end) in unix ns during which it is hidden."""

    x: float
    y: float
    flux_adu_per_s: float
    fwhm_px: float = 2.5
    occulted: tuple[int, int] | None = None


@dataclass(frozen=True)
class Mover:
    """A moving point source (a satellite or asteroid): position at ``t0`` and velocity.

    Rendered by integrating its moving image over each row's own exposure window (each
    sensor row of a binned row on its own), so the trail is the sheared one of
    ``../shared/spec/streak-timing.md``: row ``y`` holds the object only while it is both on
    that row and inside ``[start(y), end(y)]``.
    """

    x: float
    y: float
    vx_px_per_s: float
    vy_px_per_s: float
    t0_unix_ns: int
    flux_adu_per_s: float
    fwhm_px: float = 2.5

    def segments(self, reference_ns: int) -> list[tuple[float, float, float, float, float, float]]:
        """``(t_start_s, t_end_s, x, y, vx, vy)`` pieces of linear motion, times in seconds
        from ``reference_ns``, ``(x, y)`` the position at ``t_start_s`` (one unbounded piece)."""
        t0 = (self.t0_unix_ns - reference_ns) * 1e-9
        return [(-np.inf, np.inf, self.x - self.vx_px_per_s * t0, self.y - self.vy_px_per_s * t0,
                 self.vx_px_per_s, self.vy_px_per_s)]  # fmt: skip

    def position(self, unix_ns: Any) -> tuple[Any, Any]:
        """True ``(x, y)`` at ``unix_ns`` (int or int64 array)."""
        dt = (np.asarray(unix_ns, dtype=np.int64) - self.t0_unix_ns) * 1e-9
        return self.x + self.vx_px_per_s * dt, self.y + self.vy_px_per_s * dt


@dataclass(frozen=True)
class TrackMover:
    """A point source moving along a sampled track (e.g. a satellite predicted by sgp4),
    linear between the samples; absent outside ``[t_unix_ns[0], t_unix_ns[-1]]``.

    Rendered like :class:`Mover`, exactly integrated over every row's window piece by piece.

    Examples
    --------
    >>> m = TrackMover((0, 1_000_000_000), (10.0, 30.0), (5.0, 5.0), flux_adu_per_s=1e4)
    >>> m.position(500_000_000)
    (20.0, 5.0)
    """

    t_unix_ns: tuple[int, ...]
    x: tuple[float, ...]
    y: tuple[float, ...]
    flux_adu_per_s: float
    fwhm_px: float = 2.5

    def __post_init__(self) -> None:
        t = np.asarray(self.t_unix_ns, dtype=np.int64)
        if len(t) < 2 or len(self.x) != len(t) or len(self.y) != len(t) or (np.diff(t) <= 0).any():
            raise ValueError("a track needs >= 2 samples, increasing times, as many x and y")

    def segments(self, reference_ns: int) -> list[tuple[float, float, float, float, float, float]]:
        """As :meth:`Mover.segments`, one piece per pair of samples."""
        t = (np.asarray(self.t_unix_ns, dtype=np.int64) - reference_ns) * 1e-9
        x, y = np.asarray(self.x, dtype=np.float64), np.asarray(self.y, dtype=np.float64)
        vx, vy = np.diff(x) / np.diff(t), np.diff(y) / np.diff(t)
        return [(float(t[i]), float(t[i + 1]), float(x[i]), float(y[i]), float(vx[i]), float(vy[i]))
                for i in range(len(t) - 1)]  # fmt: skip

    def position(self, unix_ns: Any) -> tuple[Any, Any]:
        """``(x, y)`` at ``unix_ns``, linear between samples (NaN outside the track)."""
        t = np.asarray(self.t_unix_ns, dtype=np.int64)
        q = np.asarray(unix_ns, dtype=np.int64)
        rel, tr = (q - t[0]) * 1e-9, (t - t[0]) * 1e-9
        out = (np.interp(rel, tr, self.x, left=np.nan, right=np.nan),
               np.interp(rel, tr, self.y, left=np.nan, right=np.nan))  # fmt: skip
        return (float(out[0]), float(out[1])) if q.ndim == 0 else out


@dataclass
class Shot:
    """One simulated frame and its truth."""

    image: NDArray[Any]
    block: GpsBlock
    reference_ns: int
    row_end_ns: NDArray[np.float64]  # true end of each image row, relative to reference (ns)
    vsync_unix_ns: int
    truth: dict[str, Any] = field(default_factory=dict)


@dataclass
class CameraSim:
    """A deterministic rolling-shutter camera with a QHY GPS box.

    Parameters
    ----------
    width, height : int
        Image size (after binning).
    crop_x, crop_y : int
        ROI origin on the sensor (unbinned rows).
    binning : int
        In-camera binning (the camera writes the block into the binned frame).
    bit_depth : {8, 16}
    readout : {"pairs", "2cms"}
    reference : {"start", "end", "now"}
        Which stamp ``offset0_us`` is measured from.
    offset0_us : float
        True offset from the reference stamp to the end of exposure of the first readout unit.
    line_period_ns : float
        Nominal (SDK) line period; the true one is scaled by ``lp_ppm``.
    lp_ppm : float
        Camera-clock error: true LP = nominal x (1 + ppm x 1e-6).
    exposure_us : float
        True exposure.
    pps_count : int
        Oscillator counts per PPS written into the block (and used for the stamps).
    receiver_state : int
        Written into every stamp's flag.
    frame_interval_us : float
        VSYNC to VSYNC.
    t0_unix_ns : int
        True VSYNC of frame 0.
    bias_adu, read_noise_adu, sky_adu_per_s : float
    seed : int
    readout_mode : str
        Name written to ``READOUTM``.
    camera_model : str
    """

    width: int = 320
    height: int = 96
    crop_x: int = 0
    crop_y: int = 0
    binning: int = 1
    bit_depth: int = 16
    readout: Readout = "pairs"
    reference: Reference = "end"
    offset0_us: float = 1974.286
    line_period_ns: float = NOMINAL_LP_NS
    lp_ppm: float = 0.0
    exposure_us: float = 250_000.0
    pps_count: int = 9_999_612
    receiver_state: int = 3
    frame_interval_us: float = 400_000.0
    t0_unix_ns: int = DEFAULT_T0_UNIX_NS
    bias_adu: float = 800.0
    read_noise_adu: float = 3.0
    sky_adu_per_s: float = 0.0
    seed: int = 0
    readout_mode: str = "Photographic DSO"
    camera_model: str = "QHY600PRO"
    latitude_deg: float = 52.21503
    longitude_deg: float = -0.87262
    sequence0: int = 1
    now_delay_us: float = 1000.0

    @property
    def true_line_period_ns(self) -> float:
        return self.line_period_ns * (1.0 + self.lp_ppm * 1e-6)

    # -- timing truth ----------------------------------------------------------------------
    def sensor_rows(self) -> NDArray[np.int64]:
        """Sensor rows of each image row, ``(height, binning)``."""
        first = self.crop_y + self.binning * np.arange(self.height, dtype=np.int64)
        return first[:, None] + np.arange(self.binning, dtype=np.int64)[None, :]

    def row_end_rel_ns(self) -> NDArray[np.float64]:
        """True end of exposure of every sensor row of each image row, relative to the
        reference stamp, ``(height, binning)`` float ns."""
        y = self.sensor_rows()
        units = 2 * (y // 2) if self.readout == "pairs" else y
        return self.offset0_us * 1e3 + units * self.true_line_period_ns

    def _stamp_for(self, unix_ns: int) -> Stamp:
        """The stamp a GPS box writes for a true instant (ticks truncated)."""
        sec, frac = divmod(int(unix_ns), NS_PER_S)
        ticks = frac * self.pps_count // NS_PER_S
        return Stamp(
            flag=(self.receiver_state << 4) | 0x03, seconds=sec - GPS_EPOCH_UNIX_S, ticks=ticks
        )

    def block_for(self, index: int) -> tuple[GpsBlock, int, int]:
        """The GPS block of frame ``index``, its true VSYNC and its reference time (unix ns).

        The end stamp is the VSYNC, start = VSYNC - exposure, now = VSYNC + ``now_delay_us``
        (as the reference encoder writes them).
        """
        vsync = int(self.t0_unix_ns + round(index * self.frame_interval_us * 1e3))
        stamps = {
            "start": self._stamp_for(vsync - round(self.exposure_us * 1e3)),
            "end": self._stamp_for(vsync),
            "now": self._stamp_for(vsync + round(self.now_delay_us * 1e3)),
        }
        block = GpsBlock(
            sequence=self.sequence0 + index,
            spare=0,
            width=self.width,
            height=self.height,
            latitude_raw=latitude_raw_from_deg(self.latitude_deg),
            longitude_raw=longitude_raw_from_deg(self.longitude_deg),
            pps_count=self.pps_count,
            **stamps,
        )
        ref = stamps[self.reference]
        ref_ns = int(stamp_unix_ns(ref.seconds, ref.ticks, self.pps_count))
        return block, vsync, ref_ns

    # -- images --------------------------------------------------------------------------
    def frame(
        self,
        index: int,
        *,
        led: Sequence[LedPulse] = (),
        stars: Sequence[Star] = (),
        movers: Sequence[Mover | TrackMover] = (),
        noise: bool = True,
    ) -> Shot:
        """Simulate frame ``index``.

        A frame of more than :data:`SINGLE_PASS_PIXELS` pixels is made in bands of rows (see
        :meth:`frame_rows`), so that only the image itself is held whole: the same pixels
        as in one piece.
        """
        block, vsync, ref_ns = self.block_for(index)
        end_rel = self.row_end_rel_ns()  # (H, b)
        bands = self.frame_rows(index, led=led, stars=stars, movers=movers, noise=noise)
        r0, image = next(bands)
        if len(image) < self.height:  # in bands: gathered into the whole image
            whole = np.empty((self.height, self.width), dtype=image.dtype)
            whole[: len(image)] = image
            for r0, rows in bands:
                whole[r0 : r0 + len(rows)] = rows
            image = whole
        return Shot(
            image=image,
            block=block,
            reference_ns=ref_ns,
            row_end_ns=end_rel.max(axis=1),
            vsync_unix_ns=vsync,
            truth={
                "offset0_us": self.offset0_us,
                "line_period_ns": self.true_line_period_ns,
                "exposure_us": self.exposure_us,
                "readout": self.readout,
                "reference": self.reference,
            },
        )

    def frame_rows(
        self,
        index: int,
        *,
        led: Sequence[LedPulse] = (),
        stars: Sequence[Star] = (),
        movers: Sequence[Mover | TrackMover] = (),
        noise: bool = True,
    ) -> Iterator[tuple[int, NDArray[Any]]]:
        """The pixels of frame ``index`` as ``(first row, rows)`` bands, top to bottom, the GPS
        block in row 0: the image of :meth:`frame` without holding it whole.

        A frame of at most :data:`SINGLE_PASS_PIXELS` pixels is one band. A larger one comes
        in bands of about :data:`BAND_PIXELS` pixels with the same values: every pixel's
        signal is computed from whole-frame row vectors by the same operations, and the
        random numbers are the same streams in the same order (numpy's ``Generator`` draws
        array elements one after another, so bands drawn in turn continue one stream). The
        read noise follows all the photon noise in the frame's stream, so when the signal
        is not zero everywhere a first pass over the bands draws the photon noise only to
        find where the read noise starts (the signal is computed twice; memory stays at a
        few bands).

        Examples
        --------
        >>> sim = CameraSim(width=64, height=12, seed=1)
        >>> np.array_equal(np.vstack([r for _, r in sim.frame_rows(0)]), sim.frame(0).image)
        True
        """
        block, _, ref_ns = self.block_for(index)
        end_rel = self.row_end_rel_ns()  # (H, b)
        exp_ns = self.exposure_us * 1e3
        start_rel = end_rel - exp_ns
        h, w = self.height, self.width
        sky = self.sky_adu_per_s * exp_ns * 1e-9 * self.binning**2
        # Row vectors of the whole frame; each band takes its rows of them.
        # LED: each sensor row gets amplitude x overlap / width; a binned row sums its rows.
        led_rows = []
        for p in led:
            lo = np.maximum(start_rel, p.start_ns)
            hi = np.minimum(end_rel, p.start_ns + p.width_ns)
            frac = np.clip(hi - lo, 0.0, None) / p.width_ns
            led_rows.append(p.amplitude_adu * frac.sum(axis=1) * self.binning)
        # Stars: flux x time visible in each row's window, Gaussian across.
        star_rows = []
        if stars:
            xs = np.arange(w, dtype=np.float64)
            ys = np.arange(h, dtype=np.float64)
            for s in stars:
                visible = np.full(h, exp_ns)
                if s.occulted is not None:
                    # The hidden time is removed from each sensor row's own window (a binned
                    # row averages its rows), counted from the reference stamp in integers
                    # first: absolute ns in float64 would be quantised to 256 ns.
                    d_rel = float(int(s.occulted[0]) - ref_ns)
                    r_rel = float(int(s.occulted[1]) - ref_ns)
                    lo = np.maximum(start_rel, d_rel)
                    hi = np.minimum(end_rel, r_rel)
                    visible = visible - np.clip(hi - lo, 0.0, None).mean(axis=1)
                sig = s.fwhm_px / 2.3548
                gx = np.exp(-0.5 * ((xs - s.x) / sig) ** 2)
                gy = np.exp(-0.5 * ((ys - s.y) / sig) ** 2)
                star_rows.append((gy, gx, 2 * np.pi * sig**2, s.flux_adu_per_s * visible * 1e-9))
        mover_parts = [(m.segments(ref_ns), m.fwhm_px, m.flux_adu_per_s) for m in movers]

        def signal(r0: int, r1: int) -> NDArray[np.float64]:
            out = np.full((r1 - r0, w), sky)
            for v in led_rows:
                out += v[r0:r1, None]
            for gy, gx, norm, flux_rows in star_rows:
                out += np.outer(gy[r0:r1], gx) / norm * flux_rows[r0:r1, None]
            for segments, fwhm, flux in mover_parts:
                out += _mover_signal(
                    h, w, start_rel * 1e-9, end_rel * 1e-9, segments, fwhm, rows=(r0, r1)
                ) * flux
            return out

        band = h if h * w <= SINGLE_PASS_PIXELS else max(1, BAND_PIXELS // w)
        bands = [(r0, min(h, r0 + band)) for r0 in range(0, h, band)]
        photons = reads = np.random.default_rng([self.seed, index])
        if noise and len(bands) > 1:
            reads = np.random.default_rng([self.seed, index])
            if led_rows or star_rows or mover_parts or sky > 0 or sky != sky:
                for r0, r1 in bands:  # advance past the photon noise (a zero rate draws nothing)
                    reads.poisson(np.clip(signal(r0, r1), 0.0, None))
        top = 255 if self.bit_depth == 8 else 65535
        dtype = np.uint8 if self.bit_depth == 8 else np.uint16
        for r0, r1 in bands:
            sig_rows = signal(r0, r1)
            if noise:
                counts = photons.poisson(np.clip(sig_rows, 0.0, None)).astype(np.float64)
                del sig_rows
                counts += reads.normal(0.0, self.read_noise_adu, size=(r1 - r0, w))
            else:
                counts = sig_rows
            counts += self.bias_adu
            image = np.clip(np.rint(counts), 0, top).astype(dtype)
            del counts
            if r0 == 0:
                embed_block(image, block)
            yield r0, image

    # -- LED scans -----------------------------------------------------------------------
    def led_scan_pulses(
        self, n_frames: int, width_us: float, *, margin_rows: int = 3, seed: int = 0,
        amplitude_adu: float = 40_000.0, straddle: bool = True,
    ) -> list[list[LedPulse]]:  # fmt: skip
        """One pulse per frame, delays spread so the lit band scans the strip.

        The band of a pulse at P lights the rows whose end lies in [P, P + W + E]. With
        ``straddle`` (the default) each pulse is placed across the end of a row, as a fine
        delay sweep does, so every frame has partly lit rows; otherwise the starts are
        uniform and only frames where a row end happens to fall inside the pulse carry edge
        information (about W / (2 LP) of them in pairs mode).
        """
        rng = np.random.default_rng([self.seed, seed, 7])
        ends = self.row_end_rel_ns().max(axis=1)
        w, e = width_us * 1e3, self.exposure_us * 1e3
        top = ends[self.height - 1 - margin_rows]
        if straddle:
            rows = np.flatnonzero((ends + e <= top) & (np.arange(self.height) >= margin_rows))
            if rows.size == 0:
                raise ValueError("the strip is too short for this exposure: the band would not fit")
            k = rng.choice(rows, size=n_frames)
            starts = ends[k] - rng.uniform(0.05, 0.95, size=n_frames) * w
        else:
            lo, hi = ends[margin_rows] - w, top - w - e
            if hi <= lo:
                raise ValueError("the strip is too short for this exposure: the band would not fit")
            starts = rng.uniform(lo, hi, size=n_frames)
        return [[LedPulse(float(p), w, amplitude_adu)] for p in starts]

    def led_stack(
        self, pulses: Sequence[Sequence[LedPulse]], *, noise: bool = True
    ) -> NDArray[Any]:
        """Frames ``(N, H, W)`` of an LED scan, one per pulse list."""
        return np.stack([self.frame(i, led=p, noise=noise).image for i, p in enumerate(pulses)])

    def pps_led_pulses(
        self,
        n_frames: int,
        width_us: float,
        *,
        delay_us: float = 0.0,
        amplitude_adu: float = 40_000.0,
    ) -> list[list[LedPulse]]:
        """Pulses of an LED driven by the GPS PPS: one at every whole UTC second + delay,
        kept for each frame when it falls inside that frame's exposures.

        With a frame interval slightly off a whole second, the second boundary drifts
        through the rows from frame to frame: a scan without a programmable delay.
        """
        out: list[list[LedPulse]] = []
        ends = self.row_end_rel_ns().max(axis=1)
        lo_rel, hi_rel = float(ends.min() - self.exposure_us * 1e3), float(ends.max())
        w = width_us * 1e3
        for i in range(n_frames):
            _, _, ref = self.block_for(i)
            first = -(-(ref + int(lo_rel - delay_us * 1e3 - w)) // NS_PER_S)
            last = (ref + int(hi_rel - delay_us * 1e3)) // NS_PER_S
            out.append([
                LedPulse(float(sec * NS_PER_S - ref) + delay_us * 1e3, w, amplitude_adu)
                for sec in range(first, last + 1)
            ])  # fmt: skip
        return out

    def led_row_means(
        self, pulses: Sequence[Sequence[LedPulse]], *, seed: int = 0
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Bias-subtracted row means of an LED scan and their standard errors, ``(N, H)``,
        drawn from their exact sampling distribution without making the pixels.

        A row mean of W pixels with Poisson signal lambda and Gaussian read noise is
        ``(Poisson(W lambda) + Normal(0, W rn^2)) / W``: the same statistics as averaging a
        simulated image's rows, at a fraction of the cost (for Monte Carlo studies).
        """
        rng = np.random.default_rng([self.seed, seed, 11])
        end_rel = self.row_end_rel_ns()
        start_rel = end_rel - self.exposure_us * 1e3
        n_px = float(self.width)
        means = np.zeros((len(pulses), self.height))
        sigmas = np.zeros_like(means)
        for i, plist in enumerate(pulses):
            lam = np.zeros(self.height)
            for p in plist:
                lo = np.maximum(start_rel, p.start_ns)
                hi = np.minimum(end_rel, p.start_ns + p.width_ns)
                lam += (
                    p.amplitude_adu
                    * (np.clip(hi - lo, 0.0, None) / p.width_ns).sum(axis=1)
                    * self.binning
                )
            total = rng.poisson(lam * n_px) + rng.normal(
                0.0, self.read_noise_adu * np.sqrt(n_px), self.height
            )
            means[i] = total / n_px
            sigmas[i] = np.sqrt((lam + self.read_noise_adu**2) / n_px)
        return means, sigmas

    def _led_fault_plan(self, n_frames: int, faults: LedFaults) -> LedFaultTruth:
        """Draw the scan-wide faults: LED levels, bias drift, banding, light, faulty frames."""
        rng = np.random.default_rng([self.seed, faults.seed, 13])
        t = np.linspace(-1.0, 1.0, max(n_frames, 1))[:n_frames]

        def smooth() -> NDArray[np.float64]:  # a random slow curve over the scan, max |.| = 1
            c = rng.normal(size=3)
            ph = rng.uniform(0, 2 * np.pi)
            curve = c[0] * t + c[1] * (2 * t**2 - 1) + c[2] * np.sin(2.5 * t + ph)
            return curve / max(float(np.abs(curve).max()), 1e-12)

        scale = 1.0 + faults.led_drift * smooth() + faults.led_jitter * rng.normal(size=n_frames)
        picks = rng.permutation(n_frames)
        bandless = sorted(int(i) for i in picks[: faults.bandless_frames])
        saturated = sorted(
            int(i)
            for i in picks[faults.bandless_frames : faults.bandless_frames + faults.saturated_frames]
        )
        scale[bandless] = 0.0
        scale[saturated] *= faults.saturate_factor
        bias = self.bias_adu + faults.bias_drift_adu * smooth()
        # the banding pattern and the light are the camera's and the LED's: their own streams,
        # the same whatever the number of frames (bias frames see the scan's banding)
        fixed = np.random.default_rng([self.seed, faults.seed, 14])
        rows = np.arange(self.height, dtype=np.float64)
        band = 0.3 * fixed.normal(size=self.height)
        for _ in range(3):
            band += np.sin(2 * np.pi * rows / fixed.uniform(6.0, 40.0) + fixed.uniform(0, 2 * np.pi))
        band -= band.mean()
        band *= faults.banding_adu / max(float(band.std()), 1e-12)
        # light from an LED off to one side: a broad spot centred outside the frame
        u = np.linspace(-1.0, 1.0, self.width)[None, :]
        v = np.linspace(-1.0, 1.0, self.height)[:, None]
        ang = fixed.uniform(0, 2 * np.pi)
        spot = np.exp(-((u - 2.2 * np.cos(ang)) ** 2 + (v - 2.2 * np.sin(ang)) ** 2) / (2 * 1.5**2))
        span = float(spot.max() - spot.min())
        light = 1.0 + faults.illumination * (
            2 * (spot - spot.min()) / span - 1 if span > 0 else 0 * spot
        )
        return LedFaultTruth(
            led_scale=scale, bias_adu=bias, banding_adu=band, illumination=light,
            saturated=saturated, bandless=bandless,
            cosmic_pixels=np.zeros(n_frames, dtype=np.int64),
        )  # fmt: skip

    def _led_rate(self, plist: Sequence[LedPulse], scale: float) -> NDArray[np.float64]:
        """LED signal of each image row of a frame (ADU), uniform light."""
        end_rel = self.row_end_rel_ns()
        start_rel = end_rel - self.exposure_us * 1e3
        lam = np.zeros(self.height)
        for p in plist:
            lo = np.maximum(start_rel, p.start_ns)
            hi = np.minimum(end_rel, p.start_ns + p.width_ns)
            lam += p.amplitude_adu * (np.clip(hi - lo, 0.0, None) / p.width_ns).sum(axis=1)
        return lam * self.binning * scale

    def led_fault_stack(
        self, pulses: Sequence[Sequence[LedPulse]], faults: LedFaults, *, noise: bool = True
    ) -> tuple[NDArray[Any], LedFaultTruth]:
        """Frames ``(N, H, W)`` of an LED scan with the faults of real scans, and their truth.

        Each frame ``i`` gets the LED level ``led_scale[i]`` x the pulses' amplitude, spread
        over the pixels by the light profile; Poisson and read noise; the frame's bias, the
        fixed banding and a random offset per row; cosmic-ray hits; then clipping to the ADC
        and the GPS block, as :meth:`frame` does.

        Examples
        --------
        >>> sim = CameraSim(width=200, height=24, exposure_us=345.552, seed=3)
        >>> pulses = sim.led_scan_pulses(6, 10.0, margin_rows=2)
        >>> stack, truth = sim.led_fault_stack(pulses, LedFaults.typical(seed=0))
        >>> stack.shape, truth.saturated, truth.bandless
        ((6, 24, 200), [3, 5], [1])
        """
        plan = self._led_fault_plan(len(pulses), faults)
        top = 255 if self.bit_depth == 8 else 65535
        dtype = np.uint8 if self.bit_depth == 8 else np.uint16
        h, w = self.height, self.width
        out = np.empty((len(pulses), h, w), dtype=dtype)
        for i, plist in enumerate(pulses):
            rng = np.random.default_rng([self.seed, faults.seed, 17, i])
            block, _, _ = self.block_for(i)
            lam = self._led_rate(plist, float(plan.led_scale[i]))
            signal = lam[:, None] * plan.illumination
            if noise:
                counts = rng.poisson(signal).astype(np.float64)
                counts += rng.normal(0.0, self.read_noise_adu, size=(h, w))
                rows = rng.normal(0.0, faults.row_noise_adu, size=h)
            else:
                counts, rows = signal, np.zeros(h)
            counts += (plan.bias_adu[i] + plan.banding_adu + rows)[:, None]
            lit = np.flatnonzero(lam > 0)
            part = np.flatnonzero((lam > 0) & (lam < 0.98 * lam.max())) if lit.size else lit
            hit = np.zeros((h, w), dtype=bool)
            for _ in range(int(rng.poisson(faults.cosmic_rays))):
                if lit.size and rng.uniform() < faults.cosmic_on_band:
                    y = int(rng.choice(part if part.size and rng.uniform() < 0.5 else lit))
                else:
                    y = int(rng.integers(0, h))
                x = int(rng.integers(0, w))
                n_px = int(rng.integers(1, 5))
                dy, dx = (0, 1) if rng.uniform() < 0.6 else (1, int(rng.choice([-1, 0, 1])))
                share = rng.dirichlet(np.ones(n_px)) * np.exp(rng.uniform(np.log(300), np.log(30000)))
                for k in range(n_px):
                    yy, xx = y + k * dy, x + k * dx
                    if 0 <= yy < h and 0 <= xx < w:
                        counts[yy, xx] += share[k]
                        hit[yy, xx] = True
            plan.cosmic_pixels[i] = int(hit.sum())
            image = np.clip(np.rint(counts), 0, top).astype(dtype)
            embed_block(image, block)
            out[i] = image
        return out, plan

    def led_fault_row_means(
        self, pulses: Sequence[Sequence[LedPulse]], faults: LedFaults, *, seed: int = 0
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], LedFaultTruth]:
        """Row means ``(N, H)`` of a faulty LED scan (bias and banding included) and their
        standard errors from pixel noise, drawn from their sampling distribution like
        :meth:`led_row_means`.

        Only the faults that act on whole rows are drawn: LED drift and jitter, the light
        profile (its mean over each row), bias drift, banding, row noise, band-less frames.
        Cosmic rays and saturation act on pixels: use :meth:`led_fault_stack` for them (the
        truth lists no saturated frame and no cosmic-ray pixel here).

        Examples
        --------
        >>> sim = CameraSim(width=9600, height=24, exposure_us=345.552, seed=3)
        >>> pulses = sim.led_scan_pulses(8, 10.0, margin_rows=2)
        >>> means, sigmas, truth = sim.led_fault_row_means(pulses, LedFaults(bias_drift_adu=15.0, bandless_frames=1))
        >>> means.shape, truth.bandless, truth.saturated
        ((8, 24), [7], [])
        """
        plan = self._led_fault_plan(len(pulses), LedFaults(**{**vars(faults), "saturated_frames": 0}))
        rng = np.random.default_rng([self.seed, faults.seed, seed, 19])
        g = plan.illumination.mean(axis=1)
        n_px = float(self.width)
        means = np.zeros((len(pulses), self.height))
        sigmas = np.zeros_like(means)
        for i, plist in enumerate(pulses):
            lam = self._led_rate(plist, float(plan.led_scale[i])) * g
            total = rng.poisson(lam * n_px) + rng.normal(
                0.0, self.read_noise_adu * np.sqrt(n_px), self.height
            )
            rows = rng.normal(0.0, faults.row_noise_adu, size=self.height)
            means[i] = total / n_px + plan.bias_adu[i] + plan.banding_adu + rows
            sigmas[i] = np.sqrt((lam + self.read_noise_adu**2) / n_px)
        return means, sigmas, plan

    def led_fault_fits(
        self,
        directory: str | os.PathLike[str],
        pulses: Sequence[Sequence[LedPulse]],
        faults: LedFaults,
        *,
        prefix: str = "led",
    ) -> tuple[list[Path], LedFaultTruth]:
        """Write a faulty LED scan as FITS files ``prefix_0000.fits``... (as :meth:`write_fits`).

        Examples
        --------
        >>> import tempfile
        >>> sim = CameraSim(width=200, height=24, exposure_us=345.552, seed=3)
        >>> paths, truth = sim.led_fault_fits(tempfile.mkdtemp(), sim.led_scan_pulses(2, 10.0, margin_rows=2),
        ...                                   LedFaults(cosmic_rays=3.0))
        >>> [p.name for p in paths], truth.saturated
        (['led_0000.fits', 'led_0001.fits'], [])
        """
        from astropy.io import fits

        stack, truth = self.led_fault_stack(pulses, faults)
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, image in enumerate(stack):
            hdu = fits.PrimaryHDU(image)
            for k, v in self.fits_header().items():
                hdu.header[k] = v
            path = out / f"{prefix}_{i:04d}.fits"
            hdu.writeto(path, overwrite=True)
            paths.append(path)
        return paths, truth

    # -- files -------------------------------------------------------------------------
    def fits_header(self) -> dict[str, Any]:
        """The keywords a capture program writes for this setting."""
        return {
            "INSTRUME": self.camera_model,
            "READOUTM": self.readout_mode
            + (
                " 2CMS"
                if self.readout == "2cms" and "2CMS" not in self.readout_mode.upper()
                else ""
            ),
            "EXPTIME": self.exposure_us * 1e-6,
            "QHY_EXP": self.exposure_us * 1e-6,
            "CROPOFFX": self.crop_x,
            "CROPOFFY": self.crop_y,
            "XBINNING": self.binning,
            "YBINNING": self.binning,
            "USBTRAFF": 0,
            "QHYSTRM": "single",
        }

    def write_fits(
        self,
        directory: str | os.PathLike[str],
        n_frames: int,
        *,
        prefix: str = "frame",
        led: Sequence[Sequence[LedPulse]] | None = None,
        stars: Sequence[Star] = (),
        movers: Sequence[Mover | TrackMover] = (),
        wcs: Any = None,
    ) -> list[Path]:
        """Write ``n_frames`` FITS files (16-bit as BITPIX=16/BZERO=32768); returns the paths.

        ``wcs`` (an ``astropy.wcs.WCS`` or a mapping of WCS keywords, e.g. a TAN solution as
        plate solvers write it) goes into every header.

        Each file is the one astropy writes for ``PrimaryHDU(frame(i).image)`` with these
        keywords, byte for byte; the header is astropy's, the pixels are streamed band by
        band (:meth:`frame_rows`), so a full frame is never held in memory.
        """
        from astropy.io import fits

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        wcs_cards = dict(wcs.to_header(relax=True)) if hasattr(wcs, "to_header") else dict(wcs or {})
        dtype = np.uint8 if self.bit_depth == 8 else np.uint16
        # astropy's header for an image of this shape and type (a zero-stride stand-in)
        hdu = fits.PrimaryHDU(np.broadcast_to(np.zeros((), dtype=dtype), (self.height, self.width)))
        for k, v in self.fits_header().items():
            hdu.header[k] = v
        for k, v in wcs_cards.items():
            hdu.header[k] = v
        fits.HDUList([hdu]).verify("exception")  # as writeto checks it
        head = hdu.header.tostring(padding=True).encode("ascii")
        paths = []
        for i in range(n_frames):
            path = out / f"{prefix}_{i:04d}.fits"
            with atomic_open(path, "wb", fsync=False) as fh:  # whole or not at all
                fh.write(head)
                written = 0
                for _, rows in self.frame_rows(
                    i, led=led[i] if led is not None else (), stars=stars, movers=movers
                ):
                    if rows.dtype == np.uint16:  # stored as int16 with BZERO = 32768, big-endian
                        rows ^= np.uint16(0x8000)
                        rows.byteswap(inplace=True)
                    fh.write(rows.data)
                    written += rows.nbytes
                fh.write(b"\0" * (-written % 2880))
            paths.append(path)
        return paths

    def write_ser(self, path: str | os.PathLike[str], n_frames: int, **kw: Any) -> Path:
        """Write ``n_frames`` into a SER file with a trailer of PC-clock start times."""
        from qhytime.readers.serfile import write_ser

        shots = [self.frame(i, **kw) for i in range(n_frames)]
        stack = np.stack([s.image for s in shots])
        starts = np.array(
            [s.vsync_unix_ns - round(self.exposure_us * 1e3) for s in shots], dtype=np.int64
        )
        write_ser(path, stack, timestamps_unix_ns=starts, instrument=self.camera_model,
                  fsync=False)  # whole or not at all; a simulated capture can be made again
        return Path(path)


def pulse_table(
    pulses: Sequence[Sequence[LedPulse]], name: str = "<array>"
) -> dict[str, list[tuple[float, float]]]:
    """Simulated pulses as :func:`qhytime.ledcal.load_scan` takes them: ``name#i`` ->
    ``[(start_ns, width_ns), ...]`` for frame ``i`` of a multi-frame source.

    Examples
    --------
    >>> pulse_table([[LedPulse(1000.0, 10.0)], []])
    {'<array>#0': [(1000.0, 10.0)], '<array>#1': []}
    """
    return {f"{name}#{i}": [(p.start_ns, p.width_ns) for p in pl] for i, pl in enumerate(pulses)}


def _mover_signal(
    height: int,
    width: int,
    start_s: NDArray[np.float64],
    end_s: NDArray[np.float64],
    segments: Sequence[tuple[float, float, float, float, float, float]],
    fwhm: float,
    rows: tuple[int, int] | None = None,
) -> NDArray[np.float64]:
    """Image of a unit-flux (1 ADU/s) moving Gaussian integrated over every row's window.

    ``start_s``, ``end_s`` are the windows ``(height, binning)`` of each sensor row of each image
    row (seconds from the reference); ``segments`` the pieces of linear motion. Sensor row ``j``
    of a binned row is sampled at its own centre and window, and the binned row averages
    them. Over a window piece ``[t1, t1 + D]`` the time integral of a Gaussian moving at
    speed ``s`` is closed-form: ``exp(-d^2 / 2 sig^2) sig sqrt(pi / 2) / s [erf((D - u) s /
    (sqrt(2) sig)) + erf(u s / (sqrt(2) sig))]`` with ``d`` the distance from the track and
    ``u`` the time of closest approach after ``t1``. ``rows = (r0, r1)`` gives only those
    image rows, ``(r1 - r0, width)``, with the same values as those rows of the whole.
    """
    from scipy.special import erf

    sig = fwhm / 2.3548
    b = start_s.shape[1]
    row_lo, row_hi = (0, height) if rows is None else rows
    out = np.zeros((row_hi - row_lo, width))
    xs = np.arange(width, dtype=np.float64)
    lo_t, hi_t = float(start_s.min()), float(end_s.max())
    for t0, t1, x0, y0, vx, vy in segments:
        a, e = max(lo_t, t0), min(hi_t, t1)
        if e <= a:
            continue
        # bounding box of the piece over the frame's windows
        px = x0 + vx * (np.array([a, e]) - (t0 if np.isfinite(t0) else 0.0))
        py = y0 + vy * (np.array([a, e]) - (t0 if np.isfinite(t0) else 0.0))
        pad = 6.0 * sig + 1.0
        c0, c1 = max(0, int(np.floor(px.min() - pad))), min(width, int(np.ceil(px.max() + pad)) + 1)
        r0, r1 = max(0, int(np.floor(py.min() - pad))), min(height, int(np.ceil(py.max() + pad)) + 1)
        if c1 <= c0 or r1 <= r0:
            continue
        speed = float(np.hypot(vx, vy))
        cols = xs[c0:c1][None, :]
        base = t0 if np.isfinite(t0) else 0.0
        a0, a1 = max(r0, row_lo), min(r1, row_hi)  # the asked rows of the piece's box
        if a1 <= a0:
            continue
        for j in range(b):
            tau1 = np.maximum(start_s[r0:r1, j], t0)
            tau2 = np.minimum(end_s[r0:r1, j], t1)
            dur = np.clip(tau2 - tau1, 0.0, None)[:, None]
            static = speed * float(dur.max()) < 1e-6 * sig  # over the whole box
            tau1, dur = tau1[a0 - r0 : a1 - r0], dur[a0 - r0 : a1 - r0]
            yrow = (np.arange(a0, a1) - 0.5 + (j + 0.5) / b)[:, None]
            qx = cols - (x0 + vx * (tau1 - base))[:, None]
            qy = yrow - (y0 + vy * (tau1 - base))[:, None]
            if static:  # static over the window
                val = np.exp(-(qx**2 + qy**2) / (2 * sig**2)) * dur
            else:
                u = (qx * vx + qy * vy) / speed**2
                d = (qx * vy - qy * vx) / speed
                k = speed / (np.sqrt(2.0) * sig)
                val = (np.exp(-(d**2) / (2 * sig**2)) * sig * np.sqrt(np.pi / 2) / speed
                       * (erf((dur - u) * k) + erf(u * k)))  # fmt: skip
                val[np.broadcast_to(dur, val.shape) <= 0] = 0.0
            out[a0 - row_lo : a1 - row_lo, c0:c1] += val / (2 * np.pi * sig**2) / b
    return out


def _psf(
    xs: NDArray[np.float64], ys: NDArray[np.float64], x: float, y: float, fwhm: float
) -> NDArray[np.float64]:
    sig = fwhm / 2.3548
    gx = np.exp(-0.5 * ((xs - x) / sig) ** 2)
    gy = np.exp(-0.5 * ((ys - y) / sig) ** 2)
    return np.outer(gy, gx) / (2 * np.pi * sig**2)

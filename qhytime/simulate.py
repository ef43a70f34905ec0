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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

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


@dataclass(frozen=True)
class LedPulse:
    """An LED pulse: start relative to the frame's reference stamp (ns), width (ns)."""

    start_ns: float
    width_ns: float
    amplitude_adu: float = 40_000.0


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
    """A moving point source (a satellite or asteroid): position at ``t0`` and velocity."""

    x: float
    y: float
    vx_px_per_s: float
    vy_px_per_s: float
    t0_unix_ns: int
    flux_adu_per_s: float
    fwhm_px: float = 2.5


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
        movers: Sequence[Mover] = (),
        noise: bool = True,
    ) -> Shot:
        """Simulate frame ``index``."""
        rng = np.random.default_rng([self.seed, index])
        block, vsync, ref_ns = self.block_for(index)
        end_rel = self.row_end_rel_ns()  # (H, b)
        exp_ns = self.exposure_us * 1e3
        start_rel = end_rel - exp_ns
        h, w = self.height, self.width
        signal = np.full((h, w), self.sky_adu_per_s * exp_ns * 1e-9 * self.binning**2)
        # LED: each sensor row gets amplitude x overlap / width; a binned row sums its rows.
        for p in led:
            lo = np.maximum(start_rel, p.start_ns)
            hi = np.minimum(end_rel, p.start_ns + p.width_ns)
            frac = np.clip(hi - lo, 0.0, None) / p.width_ns
            signal += (p.amplitude_adu * frac.sum(axis=1) * self.binning)[:, None]
        # Stars and movers: flux x time visible in each row's window, Gaussian across.
        if stars or movers:
            xs = np.arange(w, dtype=np.float64)
            ys = np.arange(h, dtype=np.float64)
            win_start = ref_ns + start_rel.min(axis=1)
            win_end = ref_ns + end_rel.max(axis=1)
            for s in stars:
                visible = np.full(h, exp_ns)
                if s.occulted is not None:
                    lo = np.maximum(win_start, s.occulted[0])
                    hi = np.minimum(win_end, s.occulted[1])
                    visible = visible - np.clip(hi - lo, 0.0, None)
                signal += (
                    _psf(xs, ys, s.x, s.y, s.fwhm_px) * (s.flux_adu_per_s * visible * 1e-9)[:, None]
                )
            for m in movers:
                mid = (win_start + win_end) / 2.0
                dt_s = (mid - m.t0_unix_ns) * 1e-9
                cx = m.x + m.vx_px_per_s * dt_s
                cy = m.y + m.vy_px_per_s * dt_s
                sig = m.fwhm_px / 2.3548
                prof_y = np.exp(-0.5 * ((ys - cy) / sig) ** 2) / (np.sqrt(2 * np.pi) * sig)
                prof_x = np.exp(-0.5 * ((xs[None, :] - cx[:, None]) / sig) ** 2) / (
                    np.sqrt(2 * np.pi) * sig
                )
                signal += prof_x * prof_y[:, None] * m.flux_adu_per_s * exp_ns * 1e-9
        if noise:
            counts = rng.poisson(np.clip(signal, 0.0, None)).astype(np.float64)
            counts += rng.normal(0.0, self.read_noise_adu, size=(h, w))
        else:
            counts = signal
        counts += self.bias_adu
        top = 255 if self.bit_depth == 8 else 65535
        dtype = np.uint8 if self.bit_depth == 8 else np.uint16
        image = np.clip(np.rint(counts), 0, top).astype(dtype)
        embed_block(image, block)
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
        movers: Sequence[Mover] = (),
    ) -> list[Path]:
        """Write ``n_frames`` FITS files (16-bit as BITPIX=16/BZERO=32768); returns the paths."""
        from astropy.io import fits

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(n_frames):
            shot = self.frame(i, led=led[i] if led is not None else (), stars=stars, movers=movers)
            hdu = fits.PrimaryHDU(shot.image)
            for k, v in self.fits_header().items():
                hdu.header[k] = v
            path = out / f"{prefix}_{i:04d}.fits"
            hdu.writeto(path, overwrite=True)
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
        write_ser(path, stack, timestamps_unix_ns=starts, instrument=self.camera_model)
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


def _psf(
    xs: NDArray[np.float64], ys: NDArray[np.float64], x: float, y: float, fwhm: float
) -> NDArray[np.float64]:
    sig = fwhm / 2.3548
    gx = np.exp(-0.5 * ((xs - x) / sig) ** 2)
    gy = np.exp(-0.5 * ((ys - y) / sig) ** 2)
    return np.outer(gy, gx) / (2 * np.pi * sig**2)

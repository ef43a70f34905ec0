"""The frame cut-out with the trail, its ends and their times (matplotlib, imported lazily)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from qhytime.errors import QhytimeError

if TYPE_CHECKING:
    from qhytime.satellite.streak import StreakResult


def plot_streak(
    result: StreakResult,
    image: NDArray[Any],
    path: str | os.PathLike[str] | None = None,
    *,
    predicted: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None,
    margin_px: int = 25,
) -> Any:
    """Plot the cut-out of ``image`` around the points of ``result``.

    Ends are marked and labelled with their times (UTC, to the microsecond) and 1-sigma;
    interior points are dots; flagged points are crosses. ``predicted`` (pixel x, y arrays)
    draws a predicted track (e.g. from a TLE over the exposure).

    Returns the figure; writes it to ``path`` when given (PNG, PDF, SVG by extension).

    Raises
    ------
    QhytimeError
        Without matplotlib (the ``plot`` extra), or when writing fails.
    """
    try:
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - extra not installed
        raise QhytimeError("plots need matplotlib: pip install 'qhytime[plot]'") from exc
    img = np.asarray(image, dtype=np.float64)
    h, w = img.shape
    pts = result.points
    if pts:
        xs = np.array([p.x for p in pts])
        ys = np.array([p.y for p in pts])
        x0, x1 = max(0, int(xs.min()) - margin_px), min(w, int(xs.max()) + margin_px + 1)
        y0, y1 = max(0, int(ys.min()) - margin_px), min(h, int(ys.max()) + margin_px + 1)
    else:
        x0, x1, y0, y1 = 0, w, 0, h
    cut = img[y0:y1, x0:x1]
    lo, hi = np.percentile(cut, [5, 99.5]) if cut.size else (0.0, 1.0)
    fig, ax = plt.subplots(figsize=(8, 8 * max(y1 - y0, 1) / max(x1 - x0, 1) + 0.8))
    ax.imshow(cut, origin="lower", cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1,
              extent=(x0 - 0.5, x1 - 0.5, y0 - 0.5, y1 - 0.5), interpolation="nearest")  # fmt: skip
    if predicted is not None:
        px, py = predicted
        ax.plot(px, py, "-", color="tab:cyan", lw=1, alpha=0.8, label="predicted (TLE)")
    for p in pts:
        if not p.timing:
            ax.plot(p.x, p.y, "x", color="tab:red", ms=9, mew=2)
            ax.annotate(",".join(p.flags), (p.x, p.y), xytext=(6, -12),
                        textcoords="offset points", color="tab:red", fontsize=8)  # fmt: skip
        elif p.kind == "interior":
            ax.plot(p.x, p.y, ".", color="tab:orange", ms=5)
        else:
            ax.plot(p.x, p.y, "o", mfc="none", color="tab:green" if p.kind == "first" else
                    "tab:orange" if p.kind == "last" else "tab:blue", ms=10, mew=1.5)  # fmt: skip
            utc = (p.utc or "")[11:26]
            ax.annotate(f"{p.kind} {utc} ± {(p.sigma_ns or 0) / 1e6:.3f} ms", (p.x, p.y),
                        xytext=(8, 6), textcoords="offset points", color="yellow", fontsize=8)  # fmt: skip
    ax.set_xlim(x0 - 0.5, x1 - 0.5)
    ax.set_ylim(y0 - 0.5, y1 - 0.5)
    ax.set_xlabel("x (column)")
    ax.set_ylabel("y (row)")
    ax.set_title(f"{os.path.basename(result.path)} frame {result.frame}", fontsize=10)
    if predicted is not None:
        ax.legend(loc="upper right", fontsize=8)
    if path is not None:
        from qhytime.atomic import atomic_path

        fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
        try:
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=110, bbox_inches="tight")
        except (OSError, ValueError) as exc:
            plt.close(fig)
            raise QhytimeError(f"cannot write the plot {os.fspath(path)}: {exc}") from exc
    return fig

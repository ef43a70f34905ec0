"""Occultation timing: light curves timed at each star's own row, PyMovie CSV, event times.

- :func:`light_curve` measures a target and comparison stars over FITS sequences and SER
  files (photutils apertures, annuli and centroids) and times every sample at the exposure
  window of the row under its aperture (:mod:`qhytime.occultation.lightcurve`);
- :func:`write_pymovie_csv` writes it as the PyMovie CSV PyOTE reads, ``timeInfo`` being the
  target row's time (:mod:`qhytime.occultation.pymovie`);
- :func:`fit_events` / :func:`fit_square_well` place D and R with a square-well fit over each
  sample's exact window (:mod:`qhytime.occultation.events`);
- :func:`plot_light_curve` draws it (matplotlib, imported when called).

Importing this package imports neither photutils nor matplotlib.
"""

from qhytime.occultation.events import (
    EdgeTime,
    EventTimes,
    SquareWell,
    fit_events,
    fit_square_well,
)
from qhytime.occultation.lightcurve import ApertureSeries, Dropped, LightCurve, light_curve
from qhytime.occultation.photometry import Aperture, PhotometryOptions
from qhytime.occultation.plot import plot_light_curve
from qhytime.occultation.pymovie import time_info, write_pymovie_csv

__all__ = [
    "Aperture",
    "ApertureSeries",
    "Dropped",
    "EdgeTime",
    "EventTimes",
    "LightCurve",
    "PhotometryOptions",
    "SquareWell",
    "fit_events",
    "fit_square_well",
    "light_curve",
    "plot_light_curve",
    "time_info",
    "write_pymovie_csv",
]

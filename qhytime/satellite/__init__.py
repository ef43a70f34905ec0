"""Satellite and minor-planet astrometry with rolling-shutter times.

- :mod:`~qhytime.satellite.timing`: times of trail ends, interior points and point sources
  (``../shared/spec/streak-timing.md``), exact in integer ns, with their 1-sigma;
- :mod:`~qhytime.satellite.detect`: trails found and their ends placed to sub-pixel precision;
- :mod:`~qhytime.satellite.sky`: RA/Dec from the frame's celestial WCS (astropy.wcs);
- :mod:`~qhytime.satellite.iod` and :mod:`~qhytime.satellite.ades`: IOD lines, ADES PSV;
- :mod:`~qhytime.satellite.orbit`: the check against a TLE (sgp4/skyfield, the ``sat`` extra);
- :mod:`~qhytime.satellite.streak`: one frame to timed points (what ``qhytime streak`` runs);
- :mod:`~qhytime.satellite.sim`: simulated trails and TLE-driven passes with their truth;
- :mod:`~qhytime.satellite.plot`: the frame cut-out with the trail (matplotlib, lazily).

Importing this package imports none of them; scikit-image, sgp4, skyfield and matplotlib are
imported only by the functions that use them.
"""

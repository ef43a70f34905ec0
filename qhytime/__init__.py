"""qhytime: exact time for every row of every frame from QHYCCD GPS cameras.

Importing this package is light: it opens no database, touches no network and
imports neither astropy nor matplotlib. The public names live in
:mod:`qhytime.api`::

    from qhytime.api import decode_paths, GpsBlock
"""

__version__ = "0.1.0"

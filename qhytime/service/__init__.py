"""Service mode: the frame timing index, the watched capture folder, the GPS receiver on a
serial line, alerts, and the read-only HTTP API.

Importing this package imports nothing heavy: FastAPI and uvicorn (:mod:`qhytime.service.http`)
and watchdog (:mod:`qhytime.service.watch`, inside its functions) come with the ``service``
extra and are imported only where they are used; the index's tables are registered on the
store's metadata only when :mod:`qhytime.service.index` is imported.
"""

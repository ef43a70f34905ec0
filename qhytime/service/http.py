"""The read-only HTTP API over the frame timing index and the calibration store (FastAPI on
uvicorn; the ``service`` extra).

Endpoints (all ``GET``, JSON; OpenAPI docs at ``/docs``):

=================================  =============================================================
``/health``                        version, database, schema, files and frames indexed, the last
                                   frame, active alerts
``/frames``                        ``{"items": [...], "total": N, "next": offset-or-null}``;
                                   filters ``file_id``, ``frame``, ``sequence``, ``status``,
                                   ``from``/``to`` (ISO; frames whose exposure overlaps), paging
                                   ``limit`` (<= 1000) and ``offset``
``/frames/{id}``                   one frame (as ``qhytime query --json``)
``/frames/{id}/rows``              ``{"frame": {...}, "rows": [...]}``; ``rows=0,1,2`` or
                                   ``0:100`` (all by default), ``moment=start|mid|end|all``
``/frames/{id}/pixels``            the same for pixels ``xy=x,y;x,y`` (0-based pixel centres)
``/at``                            ``{"items": [...]}``: frames and rows exposed at ``time=ISO``
``/calibrations``                  current calibrations (``all=true``: every one ever stored)
``/alerts``                        active alerts (``active=false``: all), newest first, paged
``/gnss``                          the receiver's latest state, its log and its active alerts
=================================  =============================================================

Times are ISO strings with 9 decimals (UTC) and int ns since 1970. Security: the server
binds the loopback interface by default; binding any other address requires a token
(``--token`` / ``QHYTIME_TOKEN``, at least :data:`MIN_TOKEN_LENGTH` characters), which,
once given, every request must carry as ``Authorization: Bearer <token>`` (compared in
constant time; the docs ``/docs`` and ``/openapi.json``, which hold no data, stay open).
No request names a filesystem path (frames are asked for by id); every query is bounded
(page size, rows and pixels per request, time range, query length); errors are JSON
``{"status", "error", "message"}`` with the right status code, never a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import ipaddress
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from qhytime.errors import (
    CalibrationError,
    NotIndexedError,
    QhytimeError,
    RowModelError,
    StoreError,
)
from qhytime.service.index import FrameIndex, IndexedFrame, parse_iso_ns, row_records

log = logging.getLogger("qhytime.http")

MAX_LIMIT = 1000
"""Largest page (``limit``)."""
DEFAULT_LIMIT = 100
MAX_OFFSET = 1_000_000_000
MAX_ROWS = 10_000
"""Most rows per request (a QHY600PRO frame has 6388)."""
MAX_PIXELS = 1_000
MAX_RANGE_S = 31 * 86_400
"""Longest ``from``..``to`` range of ``/frames``."""
MAX_QUERY_BYTES = 4_096
MAX_PATH_BYTES = 1_024
MIN_TOKEN_LENGTH = 16
MAX_ID = 2**63 - 1
DOC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/openapi.json"})
Moment = Literal["start", "mid", "end", "all"]
Status = Literal["ok", "invalid"]


# -- binding rules ----------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``.

    Examples
    --------
    >>> [is_loopback(h) for h in ("127.0.0.1", "127.8.9.10", "::1", "localhost", "0.0.0.0", "::", "192.168.1.5", "example.org")]
    [True, True, True, True, False, False, False, False]
    """
    h = host.strip().strip("[]")
    if h.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def bind_problem(host: str, token: str | None) -> str | None:
    """Why the server must not start with this host and token (None when it may).

    Examples
    --------
    >>> bind_problem("127.0.0.1", None) is None
    True
    >>> bind_problem("0.0.0.0", None)[:44]
    'binding 0.0.0.0 (not the loopback interface)'
    >>> bind_problem("0.0.0.0", "x" * 32) is None
    True
    """
    if token is not None and (len(token) < MIN_TOKEN_LENGTH or token != token.strip()):
        return (
            f"the token must have at least {MIN_TOKEN_LENGTH} characters and no surrounding "
            "spaces (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    if not is_loopback(host) and not token:
        return (
            f"binding {host} (not the loopback interface) exposes the index to the network: "
            "give a token (--token or QHYTIME_TOKEN) that clients send as "
            "'Authorization: Bearer <token>', or bind 127.0.0.1"
        )
    return None


# -- errors -----------------------------------------------------------------------------------

_PHRASES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
            409: "conflict", 414: "uri_too_long", 422: "unprocessable", 500: "internal_error",
            503: "unavailable"}  # fmt: skip


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"status": status, "error": _PHRASES.get(status, "error"), "message": message},
        status_code=status,
        headers=headers,
    )


class ApiError(Exception):
    """An error answered as JSON with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Guard:
    """ASGI middleware: read-only methods, bounded request lines, the bearer token."""

    def __init__(self, app: Any, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        response = None
        if len(scope.get("query_string", b"")) > MAX_QUERY_BYTES or len(path) > MAX_PATH_BYTES:
            response = _error(414, f"request line too long (query at most {MAX_QUERY_BYTES} "
                                   f"bytes, path at most {MAX_PATH_BYTES})")  # fmt: skip
        elif scope.get("method") != "GET":
            response = _error(405, "this API is read-only: only GET", {"Allow": "GET"})
        elif self.token is not None and path not in DOC_PATHS and not self._authorized(scope):
            response = _error(401, "missing or wrong credentials: send 'Authorization: Bearer "
                                   "<token>'", {"WWW-Authenticate": 'Bearer realm="qhytime"'})  # fmt: skip
        if response is not None:
            log.info("%d %s %s: %s", response.status_code, scope.get("method"), path,
                     response.body.decode()[:200])  # fmt: skip
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: dict[str, Any]) -> bool:
        assert self.token is not None
        values = [v for k, v in scope.get("headers", []) if k == b"authorization"]
        if len(values) != 1:
            return False
        scheme, _, given = values[0].partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(given.strip(), self.token)


# -- parsing ----------------------------------------------------------------------------------


def parse_rows(spec: str | None, height: int) -> list[int]:
    """Rows ``0,1,2`` and ranges ``A:B`` (B excluded); all rows when None; bounded.

    Examples
    --------
    >>> parse_rows("0,5:8,3", 10)
    [0, 5, 6, 7, 3]
    """
    if spec is None or not spec.strip():
        if height > MAX_ROWS:
            raise ApiError(422, f"the frame has {height} rows: ask for at most {MAX_ROWS} at a time")
        return list(range(height))
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if ":" in part:
                a_txt, b_txt = part.split(":", 1)
                a, b = int(a_txt), int(b_txt)
                if b < a:
                    raise ValueError
                if len(out) + (b - a) > MAX_ROWS:
                    raise ApiError(422, f"too many rows: at most {MAX_ROWS} per request")
                if a < 0 or b > height:
                    raise ApiError(422, f"rows {a}:{b} outside the frame's rows 0..{height - 1}")
                out.extend(range(a, b))
            else:
                r = int(part)
                if not 0 <= r < height:
                    raise ApiError(422, f"row {r} outside the frame's rows 0..{height - 1}")
                out.append(r)
        except ValueError:
            raise ApiError(422, f"rows: {part!r} is not a row number or a range A:B "
                                "(e.g. rows=0,1,2 or rows=0:100)") from None  # fmt: skip
        if len(out) > MAX_ROWS:
            raise ApiError(422, f"too many rows: at most {MAX_ROWS} per request")
    return out


def parse_pixels(spec: str, width: int, height: int) -> list[tuple[float, float]]:
    """Pixels ``x,y;x,y`` (0-based pixel centres), each inside the frame; bounded.

    Examples
    --------
    >>> parse_pixels("10,2.4; 0,0", 64, 16)
    [(10.0, 2.4), (0.0, 0.0)]
    """
    out = []
    for part in spec.split(";"):
        if not part.strip():
            continue
        try:
            x_txt, y_txt = part.split(",")
            x, y = float(x_txt), float(y_txt)
        except ValueError:
            raise ApiError(422, f"xy: {part!r} is not a pixel x,y (e.g. xy=10,20;30.5,41)") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ApiError(422, f"xy: pixel {part!r} is not finite")
        if not (-0.5 <= x < width - 0.5 and -0.5 <= y < height - 0.5):
            raise ApiError(422, f"pixel ({x:g}, {y:g}) is outside the {width}x{height} frame")
        out.append((x, y))
        if len(out) > MAX_PIXELS:
            raise ApiError(422, f"too many pixels: at most {MAX_PIXELS} per request")
    if not out:
        raise ApiError(422, "xy: give at least one pixel x,y")
    return out


def _time(name: str, text: str) -> int:
    try:
        t = parse_iso_ns(text)
    except ValueError as err:
        raise ApiError(422, f"{name}: {err}") from None
    if not 0 <= t < 4_102_444_800 * 1_000_000_000:  # 1970..2100
        raise ApiError(422, f"{name}: {text} is outside 1970..2100")
    return t


# -- the app ----------------------------------------------------------------------------------


def create_app(
    db: str | FrameIndex | None = None, *, token: str | None = None, title: str = "qhytime"
) -> _GuardedApp:
    """The API as an ASGI application over an index (opened here from ``db`` unless given).

    Parameters
    ----------
    db : str or FrameIndex, optional
        The database (path or URL) or an open index (not closed by the app).
    token : str, optional
        Every request (but the docs) must carry ``Authorization: Bearer <token>``.

    Returns
    -------
    ASGI application
        The FastAPI application behind the guard (methods, request size, token); the
        FastAPI object itself is its ``fastapi`` attribute.

    Examples
    --------
    >>> import tempfile, os
    >>> app = create_app(os.path.join(tempfile.mkdtemp(), "i.sqlite"))
    >>> sorted(p for p in app.fastapi.openapi()["paths"] if p.startswith("/frames"))
    ['/frames', '/frames/{frame_id}', '/frames/{frame_id}/pixels', '/frames/{frame_id}/rows']
    >>> app.fastapi.state.index.close()
    """
    from qhytime import __version__
    from qhytime.service.alerts import count_alerts, list_alerts
    from qhytime.service.gnss import latest_gnss

    own = not isinstance(db, FrameIndex)
    index: FrameIndex = FrameIndex(db) if own else db  # type: ignore[arg-type]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        try:
            yield
        finally:
            if own:
                index.close()

    app = FastAPI(
        title=f"{title} frame timing API",
        version=__version__,
        description=(__doc__ or "").split("\n\n", 1)[0],
        lifespan=lifespan,
    )
    app.state.index = index

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        log.info("%d GET %s: %s", err.status, request.url.path, err.message)
        return _error(err.status, err.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        parts = []
        for e in err.errors()[:5]:
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "path"))
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        msg = "; ".join(parts) or "invalid request"
        log.info("422 GET %s: %s", request.url.path, msg)
        return _error(422, msg)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        msg = str(err.detail) if err.status_code != 404 else f"no such endpoint: {request.url.path}"
        log.info("%d %s %s: %s", err.status_code, request.method, request.url.path, msg)
        return _error(err.status_code, msg, dict(err.headers or {}))

    @app.exception_handler(QhytimeError)
    async def _qt(request: Request, err: QhytimeError) -> JSONResponse:
        if isinstance(err, NotIndexedError):
            status = 404
        elif isinstance(err, RowModelError | CalibrationError):
            status = 422
        elif isinstance(err, StoreError):
            status = 503
        else:
            status = 422
        log.info("%d GET %s: %s", status, request.url.path, err)
        return _error(status, str(err))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        log.error("500 GET %s: %s: %s", request.url.path, type(err).__name__, err)
        return _error(500, "internal error (logged by the server)")

    def get_frame(frame_id: int) -> IndexedFrame:
        if not 1 <= frame_id <= MAX_ID:  # cannot exist: not found (ids start at 1)
            raise NotIndexedError(f"no frame with id {frame_id} in the index")
        return index.frame(frame_id)

    def check_times(f: IndexedFrame, allow_invalid: bool) -> None:
        if not f.timed:
            why = [r for r in f.reasons if r.split(":", 1)[0] in
                   ("no_calibration", "no_exposure", "no_gps_block")]  # fmt: skip
            raise ApiError(409, "this frame has no row times: " + ("; ".join(why) or "unknown"))
        if f.decode_reasons and not allow_invalid:
            raise ApiError(409, "the frame's time cannot be trusted: " + "; ".join(f.decode_reasons)
                           + " (allow_invalid=true to compute it anyway)")  # fmt: skip

    Id = Path(description="Frame id (from /frames or /at); one that does not exist is a 404.")

    revision = index.store.schema_revision()

    @app.get("/health", summary="Service health and index summary")
    def health() -> JSONResponse:
        summary = index.summary()
        return JSONResponse({
            "status": "ok", "version": __version__, "database": index.store.where,
            "schema_revision": revision, "time_ns": time.time_ns(), **summary,
        })  # fmt: skip

    @app.get("/frames", summary="Indexed frames (filters, paging)")
    def frames(
        file_id: int | None = Query(None, ge=1, le=MAX_ID),
        frame: int | None = Query(None, ge=0, le=2**31 - 1),
        sequence: int | None = Query(None, ge=0, le=MAX_ID),
        status: Status | None = None,
        time_from: str | None = Query(None, alias="from", max_length=64,
                                      description="ISO UTC: frames whose exposure ends at or after"),
        time_to: str | None = Query(None, alias="to", max_length=64,
                                    description="ISO UTC: frames whose exposure starts before"),
        limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
    ) -> JSONResponse:  # fmt: skip
        t0 = _time("from", time_from) if time_from is not None else None
        t1 = _time("to", time_to) if time_to is not None else None
        if t0 is not None and t1 is not None:
            if t1 <= t0:
                raise ApiError(422, "to must be after from")
            if t1 - t0 > MAX_RANGE_S * 1_000_000_000:
                raise ApiError(422, f"time range longer than {MAX_RANGE_S // 86_400} days")
        elif t0 is not None:
            t1 = t0 + MAX_RANGE_S * 1_000_000_000
        elif t1 is not None:
            t0 = t1 - MAX_RANGE_S * 1_000_000_000
        filters = dict(file_id=file_id, frame=frame, sequence=sequence, status=status,
                       time_from_ns=t0, time_to_ns=t1)  # fmt: skip
        items = [f.to_dict() for f in index.frames(limit=limit, offset=offset, **filters)]
        total = index.count(**filters)
        nxt = offset + limit if offset + limit < total else None
        return JSONResponse({"items": items, "total": total, "next": nxt})

    @app.get("/frames/{frame_id}", summary="One frame")
    async def frame(frame_id: int = Id) -> JSONResponse:
        # one indexed row by primary key: cheaper inline than through the thread pool
        return JSONResponse(get_frame(frame_id).to_dict())

    @app.get("/frames/{frame_id}/rows", summary="Row times of one frame")
    def rows(
        frame_id: int = Id,
        rows: str | None = Query(None, max_length=MAX_QUERY_BYTES,
                                 description="Rows 0,1,2 or ranges A:B (B excluded); all by default"),
        moment: Moment = "all",
        allow_invalid: bool = False,
    ) -> JSONResponse:  # fmt: skip
        f = get_frame(frame_id)
        check_times(f, allow_invalid)
        wanted = parse_rows(rows, int(f.height or 0))
        rt = index.row_times(f, wanted, allow_invalid=True)
        return JSONResponse({"frame": f.to_dict(), "rows": row_records(rt, 0, moment)})

    @app.get("/frames/{frame_id}/pixels", summary="Times of pixels of one frame")
    def pixels(
        frame_id: int = Id,
        xy: str = Query(..., max_length=MAX_QUERY_BYTES, description="Pixels x,y;x,y (0-based)"),
        moment: Moment = "all",
        allow_invalid: bool = False,
    ) -> JSONResponse:  # fmt: skip
        f = get_frame(frame_id)
        check_times(f, allow_invalid)
        pts = parse_pixels(xy, int(f.width or 0), int(f.height or 0))
        rt = index.row_times(f, [math.floor(y + 0.5) for _, y in pts], allow_invalid=True)
        recs = row_records(rt, 0, moment)
        for rec, (x, y) in zip(recs, pts, strict=True):
            rec["x"], rec["y"] = x, y
        return JSONResponse({"frame": f.to_dict(), "pixels": recs})

    @app.get("/at", summary="Frames and rows exposed at an instant")
    def at(
        time_iso: str = Query(..., alias="time", max_length=64,
                              description="ISO UTC instant; a row is exposed when start <= t < end"),
        allow_invalid: bool = False,
        limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    ) -> JSONResponse:  # fmt: skip
        t = _time("time", time_iso)
        items = []
        for f, rt in index.at(t, allow_invalid=allow_invalid, limit=limit):
            items.append({**f.to_dict(), "rows": row_records(rt)})
        return JSONResponse({"items": items})

    @app.get("/calibrations", summary="Calibrations in the store")
    def calibrations(all: bool = False) -> JSONResponse:
        cals = index.store.list(include_superseded=all)
        return JSONResponse({"items": [{"id": c.id, **c.to_dict()} for c in cals]})

    @app.get("/alerts", summary="Alerts, newest first")
    def alerts(
        active: bool = True,
        kind: str | None = Query(None, max_length=32),
        limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
    ) -> JSONResponse:  # fmt: skip
        items = [a.to_dict() for a in list_alerts(index, active_only=active, limit=limit + 1,
                                                  offset=offset, kind=kind)]  # fmt: skip
        more = len(items) > limit
        return JSONResponse({"items": items[:limit], "next": offset + limit if more else None,
                "active": count_alerts(index)})  # fmt: skip

    @app.get("/gnss", summary="The GPS receiver's state and log")
    def gnss(limit: int = Query(1, ge=1, le=MAX_LIMIT)) -> JSONResponse:
        rows = latest_gnss(index, limit=limit)
        active = [a.to_dict() for a in list_alerts(index, active_only=True, limit=MAX_LIMIT)
                  if a.source == "gnss"]  # fmt: skip
        return JSONResponse({"latest": rows[0] if rows else None, "items": rows, "alerts": active})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)  # fmt: skip
            if token:
                schema.setdefault("components", {})["securitySchemes"] = {
                    "bearer": {"type": "http", "scheme": "bearer"}
                }
                schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return _GuardedApp(_Guard(app, token), app)


class _GuardedApp:
    """The guarded ASGI app, still giving access to the FastAPI app's attributes."""

    def __init__(self, guard: _Guard, app: FastAPI) -> None:
        self._guard = guard
        self.fastapi = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self._guard(scope, receive, send)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fastapi, name)


def serve(
    db: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    access_log: bool = False,
    log_level: str = "info",
    on_started: Callable[[], None] | None = None,
) -> None:
    """Run the API on uvicorn until SIGINT/SIGTERM.

    Raises
    ------
    QhytimeError
        When the address needs a token (see :func:`bind_problem`), or the database cannot be
        opened.
    """
    import uvicorn

    problem = bind_problem(host, token)
    if problem is not None:
        raise QhytimeError(problem)
    app = create_app(db, token=token)
    if not log.handlers:  # client errors, one line each (uvicorn configures only its own loggers)
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    config = uvicorn.Config(
        app, host=host.strip("[]"), port=port, log_level=log_level, access_log=access_log,
        server_header=False, limit_concurrency=512, timeout_keep_alive=5, http="h11",
        h11_max_incomplete_event_size=64 * 1024, lifespan="on",
    )  # fmt: skip
    problem = listen_problem(host, port)
    if problem is not None:
        raise QhytimeError(problem)
    server = _server_class()(config)
    if on_started is not None:
        on_started()
    try:
        server.run()
    except SystemExit as stop:  # uvicorn's startup failure (3): a race for the port, say
        if stop.code in (None, 0):
            raise
        raise QhytimeError(
            f"the HTTP server could not start on {host}:{port} (its log line above says why)"
        ) from None


def listen_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host:port`` now (a port in use, an address this
    machine does not have), or None.

    Examples
    --------
    >>> import socket
    >>> with socket.socket() as s:
    ...     s.bind(("127.0.0.1", 0)); s.listen()
    ...     busy = s.getsockname()[1]
    ...     listen_problem("127.0.0.1", busy).startswith(f"cannot listen on 127.0.0.1:{busy}")
    True
    """
    import socket

    addr = host.strip("[]")
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            sock.bind((addr, port))
    except OSError as err:
        why = err.strerror or str(err)
        hint = (
            "another program (or another qhytime serve) listens there: stop it or choose "
            "another port" if err.errno == errno.EADDRINUSE else "check the address and port"
        )
        return f"cannot listen on {host}:{port}: {why}: {hint}"
    return None


def _server_class() -> type:
    import uvicorn

    class QuietExitServer(uvicorn.Server):
        """uvicorn's server, but a stop by SIGINT/SIGTERM is a clean exit (status 0): uvicorn
        re-raises the signal after its graceful shutdown, which would end the process by it."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            old = {sig: signal.signal(sig, self.handle_exit)
                   for sig in (signal.SIGINT, signal.SIGTERM)}  # fmt: skip
            try:
                yield
            finally:
                for sig, handler in old.items():
                    signal.signal(sig, handler)

    return QuietExitServer

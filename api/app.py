"""The FastAPI app: on-demand forecasts, the latest streaming predictions, health, models, the web page.

:func:`create_app` builds the app for one :class:`~forecaster.settings.Settings`. Its lifespan loads
the champion and starts the reader of the predictions topic (:class:`api.latest.LatestPredictions`),
and stops the reader on shutdown. Nothing needs the broker to answer a forecast: without one the app
serves ``POST /forecast`` and says in ``GET /health`` what is missing.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from api import forecast
from api.answers import HeldAnswer
from api.champion import ChampionSlot, UnknownModel, Versions, describe, resolve
from api.guard import Guard, refused
from api.inputs import InputError, read_json_body, read_upload, too_large
from api.latest import LatestPredictions
from api.schemas import ForecastBars, ForecastOut, HealthOut, LatestListOut, LatestOut, ModelsOut
from forecaster.redaction import printable, redact
from forecaster.settings import Settings
from models.core.step import ModelError
from producers.layouts import parse_columns
from producers.readers import ReadResult

STATIC = resources.files("api") / "static"
log = logging.getLogger(__name__)

#: What /health says instead of its texts to a request that could not ask for anything else.
HIDDEN = "hidden: ask with the API token from a trusted host"

FORECAST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary",
                         "description": "CSV or .csv.gz in any layout `forecaster replay` reads"}}},
        },
        "application/json": {"schema": ForecastBars.model_json_schema()},
    },
}


def create_app(settings: Settings) -> FastAPI:
    """The app for ``settings``; its lifespan starts and stops the reader of the predictions topic."""
    champion = ChampionSlot(settings)
    versions = Versions(settings)
    latest = LatestPredictions(settings)
    # Each forecast holds its body and bars: a cap on how many run at once is what bounds the memory.
    forecasts = asyncio.Semaphore(max(1, settings.api_forecasts))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        latest.start()
        try:
            await run_in_threadpool(champion.current)
            yield
        finally:
            await run_in_threadpool(latest.stop)

    app = FastAPI(
        title="stream-forecaster",
        summary="Close forecasts of daily stock bars (the next day, or several horizons), on demand and from "
        "the stream.",
        description="`POST /forecast` runs the forecasting core over an uploaded history, exactly as "
        "`forecaster backtest` does; `GET /predictions` shows the latest records the stream worker "
        "wrote to the predictions topic. The web page is at `/`.",
        version="1",
        lifespan=lifespan,
    )
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.add_middleware(Guard, hosts=(*settings.api_trusted_hosts, settings.api_host),
                       token=settings.api_token, rate_per_s=settings.api_rate_per_s,
                       burst=settings.api_rate_burst)

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.post(
        "/forecast", response_model=ForecastOut, openapi_extra={"requestBody": FORECAST_BODY},
        responses={408: {"description": "a body that paused longer than FORECASTER_API_BODY_TIMEOUT_S, or "
                                        "came slower than FORECASTER_API_BODY_MIN_RATE after it"},
                   413: {"description": "more bars than FORECASTER_API_MAX_BARS, more rows than "
                                        "FORECASTER_API_MAX_ROWS, or a body (or a gzipped upload inflated) "
                                        "larger than FORECASTER_API_MAX_BYTES"},
                   415: {"description": "neither a multipart upload nor JSON"},
                   422: {"description": "input that cannot be read: the reason, and the rows when "
                                        "every one was rejected"},
                   503: {"description": "FORECASTER_API_FORECASTS forecasts are running; retry after the "
                                        "Retry-After seconds"}},
    )
    async def post_forecast(
        request: Request,
        model: Annotated[str, Query(description="champion (default; the core's model when none is "
                                    "registered), naive, arima, a registry version number or "
                                    "models:/NAME/VERSION")] = "champion",
        ticker: Annotated[str | None, Query(description="ticker of a file without a ticker column "
                                            "(default: the file name)")] = None,
        columns: Annotated[str | None, Query(description="column names for fields when detection "
                                             "fails, e.g. date=Datum,close=Schluss")] = None,
        tickers: Annotated[str | None, Query(description="only these tickers, e.g. AAPL,MSFT; rows of "
                                             "others are counted in `filtered`")] = None,
        horizons: Annotated[str | None, Query(description="forecast horizons in trading days, e.g. 1,5,20 "
                                              "(default: the server's FORECASTER_HORIZONS); records of "
                                              "every horizon, metrics per horizon")] = None,
    ) -> Any:
        """Forecast every bar of an uploaded history and score the forecasts against naive.

        Send a CSV file as the multipart field `file`, or JSON `{"bars": [...]}`. Rows that
        validation rejects come back in `dead_letters` (the first ones) with reason and source, and
        are counted in `dead_letters_by_reason`; input that cannot be read at all gets a 4xx that
        says why.
        """
        if forecasts.locked():
            refused(503, "every forecast slot is taken", request.scope)
            raise HTTPException(503, detail={"message": f"{settings.api_forecasts} forecasts are running "
                                             "(FORECASTER_API_FORECASTS): retry shortly"},
                                headers={"Retry-After": "1"})
        # The slot is held until the answer is sent (api.answers): its bytes are what it holds longest.
        await forecasts.acquire()
        try:
            answer = await _forecast(request, model, ticker, columns, tickers, horizons)
            body = await run_in_threadpool(orjson.dumps, answer)
            del answer  # its records, freed before the answer's bytes are sent
        except BaseException:
            forecasts.release()
            raise
        return HeldAnswer(body, release=forecasts.release, pause_s=settings.api_body_timeout_s)

    async def _forecast(request: Request, model: str, ticker: str | None, columns: str | None,
                        tickers: str | None, horizons: str | None) -> dict[str, Any]:
        try:
            wanted = None if horizons is None else forecast.parse_horizons(horizons)
            limited = _limited(request, settings.api_max_bytes, settings.api_body_timeout_s,
                               settings.api_body_min_rate)
            result = await _read_request(limited, ticker, columns, tickers, settings)
            forecast.check_size(result, settings.api_max_bars, len(wanted or settings.horizons))
            choice = await run_in_threadpool(resolve, model, settings, champion, versions)
            return await run_in_threadpool(forecast.run, result, forecast.with_horizons(choice, wanted))
        except InputError as error:
            refused(error.status, error.detail["message"][:200], request.scope)
            # Its traceback holds the frames that read the body, in a reference cycle: cleared, the
            # body is freed now rather than at the next garbage collection.
            traceback.clear_frames(error.__traceback__)
            raise HTTPException(error.status, detail=error.detail) from None
        except UnknownModel as error:
            message = printable(str(error), 1000)  # what it echoes of the request is cut already
            refused(404, message[:200], request.scope)
            raise HTTPException(404, detail={"message": message}) from None
        except ModelError as error:  # the registered model's own bug: the server's fault, in one line
            message = printable(redact(f"the model failed on these bars: {error}"), 1000)
            log.error("%s", message, exc_info=error.__cause__ or error)  # the model's own traceback
            raise HTTPException(500, detail={"message": message}) from None
        except ClientDisconnect:  # nobody is left to answer: one line, not a traceback
            refused(400, "the client disconnected before its body was sent", request.scope)
            raise HTTPException(400, detail={"message": "the client disconnected"}) from None

    @app.get("/predictions", response_model=LatestListOut)
    def get_predictions() -> Any:
        """The latest prediction and score of every ticker on the predictions topic."""
        return {"predictions": latest.all(), "reader": latest.status()}

    @app.get("/predictions/{ticker}", response_model=LatestOut, responses={404: {"description": "no record"}})
    def get_prediction(ticker: str) -> Any:
        """The latest prediction and score of one ticker."""
        entry = latest.get(ticker)
        if entry is None:
            raise HTTPException(404, detail={"message": f"no prediction of '{printable(ticker, 100)}' has "
                                             f"been read from {settings.topic_predictions}",
                                             "reader": latest.status()})
        return entry

    @app.get("/health", response_model=HealthOut)
    def get_health(request: Request) -> Any:
        """Whether the broker answers and the champion (if one is registered) loaded.

        The app serves forecasts either way: without a champion it uses the core's model. The texts
        (the broker's state, the champion's error) go only to a request with the token, when one is
        set, and a trusted Host.
        """
        broker = latest.status()
        model = champion.status()
        status = "ok" if broker["reachable"] and model["error"] is None else "degraded"
        if not getattr(request.state, "health_details", True):
            broker = {**broker, "detail": HIDDEN}
            model = {**model, "error": model["error"] and HIDDEN}
        return {"status": status, "broker": broker, "model": model}

    # Uptime monitors and load balancers often probe with HEAD: the same answer, its body dropped.
    app.add_api_route("/health", get_health, methods=["HEAD"], response_model=HealthOut,
                      include_in_schema=False)

    @app.get("/models", response_model=ModelsOut, responses={503: {"description": "registry unreachable"}})
    def get_models() -> Any:
        """The champion of the registered model: name, version, family and its test metrics vs naive."""
        try:
            return describe(settings)
        except Exception as error:  # any failure of the registry (MLflow) is reported, not a 500
            raise HTTPException(503, detail={
                "message": redact(f"the model registry at {settings.mlflow_registry_uri} cannot be read: "
                                  f"{type(error).__name__}: {error}")}) from None

    return app


async def _body(request: Request) -> bytearray:
    """The body in one buffer, not pieces joined at the end (twice the body at once). It grows with
    what arrives: sized from Content-Length, a slow client would hold the whole limit at once."""
    body = bytearray()
    async for piece in request.stream():
        body += piece
    return body


def _limited(request: Request, limit: int, timeout_s: float, min_rate: int) -> Request:
    """``request`` whose body raises a 413 :class:`InputError` as soon as more than ``limit`` bytes
    arrived (or its Content-Length says they will), before the rest is received, and a 408 when the
    next piece of it takes over ``timeout_s`` seconds, or when it arrives slower than ``min_rate``
    bytes a second after its first ``timeout_s`` seconds (each ``min_rate`` bytes received give it one
    second more, as Apache's mod_reqtimeout counts): a client sending a byte within every pause would
    otherwise hold its forecast slot for as long as it went on."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise too_large("the body holds", limit)
    received = 0
    clock = asyncio.get_running_loop().time
    started = clock()

    async def receive() -> Any:
        nonlocal received
        # Until the pause's limit, or the rate's when that comes first.
        left = started + timeout_s + received / min_rate - clock() if min_rate > 0 else timeout_s
        slow = left < timeout_s
        try:
            async with asyncio.timeout(max(min(left, timeout_s), 0.0)):
                message = await request.receive()
        except TimeoutError:
            raise InputError(
                f"the body arrived slower than FORECASTER_API_BODY_MIN_RATE ({min_rate:,} bytes a second) "
                f"after its first {timeout_s:g} s" if slow
                else f"the body paused more than FORECASTER_API_BODY_TIMEOUT_S ({timeout_s:g} s)",
                status=408) from None
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise too_large("the body holds", limit)
            # A body the server holds already comes back without a pause, and Starlette parses a
            # multipart form on the event loop: each piece lets other requests (/health) in first.
            await asyncio.sleep(0)
        return message

    return Request(request.scope, receive)


async def _read_request(request: Request, ticker: str | None, columns: str | None,
                        tickers: str | None, settings: Settings) -> ReadResult:
    """The bars and dead letters of the request body, whichever form it takes."""
    try:
        mapping = parse_columns(columns) if columns else None
    except ValueError as error:
        raise InputError(str(error)) from None
    selected = [t.strip() for t in tickers.split(",") if t.strip()] if tickers else None
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":  # read as it is, a compressed body is garbage to either reader
        raise InputError(f"a body of Content-Encoding '{printable(encoding, 40)}' is not read: send it as "
                         "it is, or upload a .csv.gz file", status=415)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        # The file part is spooled to disk past 1 MB by Starlette; the parser reads the body as it comes.
        try:
            form = await request.form()
        except StarletteHTTPException as error:  # Starlette's 400: a malformed body, a field over 1 MiB
            raise InputError(f"the multipart body cannot be read: {error.detail}", status=400) from None
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise InputError("the multipart body has no file field named 'file'")
            await upload.seek(0)
            return await run_in_threadpool(read_upload, upload.filename, upload.file,
                                           limit=settings.api_max_bytes, ticker=ticker, columns=mapping,
                                           tickers=selected, max_rows=settings.api_max_rows,
                                           keep=settings.api_max_dead_letters)
        finally:
            await form.close()
    if kind == "application/json":
        body = await _body(request)
        # Parsed off the event loop: /health answers while a big body is read.
        return await run_in_threadpool(read_json_body, body, tickers=selected, max_rows=settings.api_max_rows,
                                       keep=settings.api_max_dead_letters)
    raise InputError(f"Content-Type {kind or 'none'!r}: send multipart/form-data with a CSV file in 'file' "
                     "or application/json with {\"bars\": [...]}", status=415)

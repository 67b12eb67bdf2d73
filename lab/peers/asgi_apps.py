"""The ASGI peers: a Starlette app (``StreamingResponse``) and a FastAPI app (its own
``StreamingResponse`` for text, sse-starlette's ``EventSourceResponse`` for SSE), served
by uvicorn (asyncio) or hypercorn (trio worker, which also speaks h2c with prior
knowledge).

``python -m lab.peers.asgi_apps KIND PORT`` with KIND one of ``starlette-uvicorn``,
``fastapi-uvicorn``, ``starlette-hypercorn``. The bodies sleep with anyio, so the same
app runs on asyncio and on trio.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from lab.peers.common import STATS, knobs, sse_end, sse_event, stats_json, text_end

__all__ = ["KINDS", "fastapi_app", "main", "starlette_app"]

KINDS: Final = ("starlette-uvicorn", "fastapi-uvicorn", "starlette-hypercorn")
# uvicorn waits this long for open streams at shutdown before it closes them.
GRACEFUL_SHUTDOWN_S: Final = 2


async def _body(
    request: Request, each: Callable[[str], bytes], last: bytes
) -> AsyncIterator[bytes]:
    k = knobs(request.query_params)
    STATS.begin()
    complete = False
    try:
        for i, token in enumerate(k.tokens):
            if i and k.interval:
                await anyio.sleep(k.interval)
            STATS.produced += 1
            yield each(token)
        yield last
        complete = True
    finally:
        STATS.end(complete)


async def _stats(request: Request) -> Response:
    return Response(stats_json(), media_type="application/json")


async def _tokens(request: Request) -> Response:
    return StreamingResponse(_body(request, str.encode, text_end()), media_type="text/plain")


async def _sse(request: Request) -> Response:
    return StreamingResponse(
        _body(request, sse_event, sse_end()),
        media_type="text/event-stream",
        headers={"cache-control": "no-store"},
    )


def starlette_app() -> Starlette:
    return Starlette(
        routes=[Route("/tokens", _tokens), Route("/sse", _sse), Route("/stats", _stats)]
    )


def fastapi_app() -> Any:
    from fastapi import FastAPI  # noqa: PLC0415 - only this peer needs it
    from fastapi.responses import StreamingResponse as FastStreaming  # noqa: PLC0415
    from sse_starlette import EventSourceResponse  # noqa: PLC0415

    app = FastAPI()

    @app.get("/tokens")
    async def tokens(request: Request) -> Response:
        return FastStreaming(_body(request, str.encode, text_end()), media_type="text/plain")

    @app.get("/sse")
    async def sse(request: Request) -> Response:
        async def events() -> AsyncIterator[dict[str, str]]:
            k = knobs(request.query_params)
            STATS.begin()
            complete = False
            try:
                for i, token in enumerate(k.tokens):
                    if i and k.interval:
                        await anyio.sleep(k.interval)
                    STATS.produced += 1
                    yield {"data": token}
                yield {"data": "[DONE]"}
                complete = True
            finally:
                STATS.end(complete)

        return EventSourceResponse(events())

    app.add_api_route("/stats", _stats)
    return app


def main(argv: list[str]) -> None:
    kind, port = argv[0], int(argv[1])
    if kind == "starlette-hypercorn":
        import trio  # noqa: PLC0415
        from hypercorn.config import Config  # noqa: PLC0415
        from hypercorn.trio import serve  # noqa: PLC0415

        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.accesslog = None
        trio.run(serve, starlette_app(), config)  # type: ignore[arg-type]
        return
    import uvicorn  # noqa: PLC0415

    app = fastapi_app() if kind == "fastapi-uvicorn" else starlette_app()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


if __name__ == "__main__":
    main(sys.argv[1:])

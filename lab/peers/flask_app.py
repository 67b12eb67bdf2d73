"""The Flask peer: ``stream_with_context`` over a generator that sleeps between tokens,
on Werkzeug's development server (one thread per request).

``python -m lab.peers.flask_app PORT``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator

from flask import Flask, Response, request, stream_with_context

from lab.peers.common import STATS, knobs, sse_end, sse_event, stats_json, text_end

__all__ = ["app", "main"]

app = Flask("lab-peer")


def _body(each: Callable[[str], bytes], last: bytes) -> Iterator[bytes]:
    k = knobs(request.args)
    STATS.begin()
    complete = False
    try:
        for i, token in enumerate(k.tokens):
            if i and k.interval:
                time.sleep(k.interval)
            STATS.produced += 1
            yield each(token)
        yield last
        complete = True
    finally:
        STATS.end(complete)


@app.get("/tokens")
def tokens() -> Response:
    return Response(stream_with_context(_body(str.encode, text_end())), mimetype="text/plain")


@app.get("/sse")
def sse() -> Response:
    return Response(
        stream_with_context(_body(sse_event, sse_end())),
        mimetype="text/event-stream",
        headers={"cache-control": "no-store"},
    )


@app.get("/stats")
def stats() -> Response:
    return Response(stats_json(), mimetype="application/json")


def main(argv: list[str]) -> None:
    app.run(host="127.0.0.1", port=int(argv[0]), threaded=True)


if __name__ == "__main__":
    main(sys.argv[1:])

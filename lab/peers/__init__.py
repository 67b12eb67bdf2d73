"""Servers the lab did not write, serving the lab's token stream: FastAPI with sse-starlette
and Starlette on uvicorn, Starlette on hypercorn (trio worker), Flask on Werkzeug's
development server, Node's ``http`` module, and a plain trio + h11 baseline.

Every peer answers the same three requests (:mod:`lab.peers.common`): ``/tokens`` (text,
one write per token, then ``\\n[DONE]\\n``), ``/sse`` (``data: <token>`` per event, then
``data: [DONE]``) and ``/stats`` (how many token generators started, finished, or were
closed early because the client left). :mod:`lab.peers.launcher` runs each in its own
process on 127.0.0.1.
"""

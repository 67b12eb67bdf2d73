"""Fuzzing: every codec of :mod:`lab.wire` against its reference library, and a lab server.

``lab fuzz CODEC`` (chunked, http1, sse, h2frames, hpack, websocket) feeds generated
inputs to the codec and checks each one twice over: the codec's own invariants (any split
of the input gives the same segments, every byte is in exactly one top-level segment, only
the documented errors, at an offset within the input: :mod:`lab.fuzz.checks`), and the
comparison with the reference library the codec documents its differences from (h11,
httpx-sse and WHATWG's algorithm, hyperframe, hpack, wsproto: the ``ref_*`` modules). A
failing input is shrunk and saved with a description; ``--replay`` runs it again.
``lab fuzz server`` sends generated and mutated requests to ``lab serve`` in its own
process and checks its health after each (:mod:`lab.fuzz.server`).

The engine is coverage-guided where it can be: **atheris** (libFuzzer for Python; the
``fuzz`` extra installs atheris 3.0.0, whose wheel for CPython 3.11 on Linux x86_64 needs no
compiler) runs in a forked child with the codec's and the reference's modules instrumented
(:mod:`lab.fuzz.libfuzzer`). Where atheris is not installed, or with ``--engine builtin``,
a mutation engine of this package runs instead (:mod:`lab.fuzz.mutate`,
:mod:`lab.fuzz.engine`), guided by what the codec reported rather than by branch coverage.
Both start from the same seeds: the golden captures' streams and bodies and inputs written
for what the captures lack (:mod:`lab.fuzz.seeds`).

=============================  =============================================================
:mod:`lab.fuzz.checks`         the invariants, :class:`~lab.fuzz.checks.Target`, failures
:mod:`lab.fuzz.targets`        the codecs under fuzzing: one entry each
:mod:`lab.fuzz.ref_http1`      chunked and HTTP/1.1 messages against h11
:mod:`lab.fuzz.ref_sse`        SSE against WHATWG HTML §9.2.6 and httpx-sse
:mod:`lab.fuzz.ref_h2`         HTTP/2 frames against hyperframe, HPACK against hpack
:mod:`lab.fuzz.ref_websocket`  WebSocket frames against wsproto
:mod:`lab.fuzz.seeds`          where the inputs start
:mod:`lab.fuzz.mutate`         byte mutations and the shrinking of failing inputs
:mod:`lab.fuzz.engine`         a run: the built-in engine, corpus, findings written out
:mod:`lab.fuzz.libfuzzer`      the atheris engine, in a child process
:mod:`lab.fuzz.server`         ``lab fuzz server``
:mod:`lab.fuzz.command`        ``lab fuzz`` on the command line: progress, summary, replay
=============================  =============================================================
"""

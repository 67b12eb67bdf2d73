"""``lab probe URL``: the lab's ``curl -v``, showing the annotated bytes as they arrive.

One request to any server, over HTTP/1.1, HTTP/2 with prior knowledge (h2c) or HTTPS
with ALPN choosing h2 or http/1.1, or an EventSource that reconnects (``--sse``); every
byte recorded and shown live, unit by unit, then saved as ``.trace`` and ``.pcapng``.

- :mod:`lab.probe.command`: the command line, the summary and the files;
- :mod:`lab.probe.exchange`: the request (and the EventSource's reconnects);
- :mod:`lab.probe.connect`: URLs, TCP, TLS and ALPN, the tap, errors in one line;
- :mod:`lab.probe.live`: the annotated view printed a record at a time.
"""

"""Between the server and the user: real reverse proxies, measured on both legs.

``lab proxy`` puts Debian's nginx (and HAProxy) in front of a lab server, each with a
configuration written for the experiment into a temporary directory, and records both
legs of every request on one clock: client ↔ proxy in the lab's client, proxy ↔ upstream
in a recording relay (:mod:`lab.capture.relay`) between the proxy and the lab server.

- :mod:`lab.proxy.configs`: the nginx.conf and haproxy.cfg written for a
  :class:`~lab.proxy.configs.ProxySpec`;
- :mod:`lab.proxy.harness`: start a proxy, wait until it listens, stop it, clean up;
- :mod:`lab.proxy.experiments`: the experiments, their configurations and probes, and
  the named limits that bound them;
- :mod:`lab.proxy.probes`: the client side of each probe;
- :mod:`lab.proxy.runner`: run configurations, one trace per probe;
- :mod:`lab.proxy.legs`: read the two legs back out of a trace, message by message;
- :mod:`lab.proxy.verdicts`: one measured row per probe, the table, the JSON;
- :mod:`lab.proxy.claims`: what the rows say about common claims;
- :mod:`lab.proxy.view`: the two-leg view, token by token.
"""

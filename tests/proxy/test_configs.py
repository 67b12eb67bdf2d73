"""The configuration files written for nginx and HAProxy: loopback only, everything the
proxy writes inside its temporary directory, the settings exactly as given."""

from __future__ import annotations

import re
from pathlib import Path

from lab.proxy.configs import (
    HAPROXY_DEFAULT_TIMEOUTS,
    NGINX_TEMP_PATHS,
    ProxySpec,
    haproxy_config,
    nginx_config,
    unprivileged_user,
)
from lab.proxy.experiments import COURSE_NOTES_BLOCK, EXPERIMENTS

PREFIX = Path("/tmp/lab-nginx-test")


def test_nginx_config_listens_on_loopback_and_proxies_to_the_upstream() -> None:
    text = nginx_config(ProxySpec("nginx"), PREFIX, 8001, ("127.0.0.1", 9001), as_root=False)
    assert re.search(r"^\s*listen 127\.0\.0\.1:8001;$", text, re.MULTILINE)
    assert "proxy_pass http://127.0.0.1:9001;" in text
    h2 = nginx_config(
        ProxySpec("nginx", http2=True), PREFIX, 8001, ("127.0.0.1", 9001), as_root=False
    )
    assert re.search(r"^\s*listen 127\.0\.0\.1:8001 http2;$", h2, re.MULTILINE)


def test_nginx_writes_only_inside_its_prefix() -> None:
    text = nginx_config(ProxySpec("nginx"), PREFIX, 8001, ("127.0.0.1", 9001), as_root=False)
    paths = re.findall(r"^\s*(?:pid|error_log|access_log|\w+_temp_path) (\S+?)[;\s]", text, re.M)
    assert len(paths) == 3 + len(NGINX_TEMP_PATHS)
    assert all(Path(p).parent == PREFIX for p in paths), paths


def test_nginx_user_directive_only_as_root() -> None:
    spec = ProxySpec("nginx")
    assert "user " not in nginx_config(spec, PREFIX, 1, ("127.0.0.1", 2), as_root=False)
    user, group = unprivileged_user()
    assert f"user {user} {group};" in nginx_config(spec, PREFIX, 1, ("127.0.0.1", 2), as_root=True)


def test_nginx_settings_go_into_the_location_as_written() -> None:
    spec = ProxySpec("nginx", COURSE_NOTES_BLOCK)
    text = nginx_config(spec, PREFIX, 1, ("127.0.0.1", 2), as_root=False)
    location = text[text.index("location / {") : text.index("}", text.index("location / {"))]
    for line in COURSE_NOTES_BLOCK:
        assert f"            {line};\n" in location
    assert "proxy_set_header Connection '';" in location


def test_haproxy_config_binds_loopback_and_keeps_default_timeouts_unless_set() -> None:
    text = haproxy_config(ProxySpec("haproxy"), 8002, ("127.0.0.1", 9002))
    assert "    bind 127.0.0.1:8002\n" in text
    assert "    server lab 127.0.0.1:9002\n" in text
    for name, value in HAPROXY_DEFAULT_TIMEOUTS:
        assert f"    timeout {name} {value}\n" in text
    spec = ProxySpec("haproxy", ("timeout server 1s", "timeout tunnel 1h"), http2=True)
    text = haproxy_config(spec, 8002, ("127.0.0.1", 9002))
    assert "    bind 127.0.0.1:8002 proto h2\n" in text
    assert text.count("\n    timeout server ") == 1
    assert "    timeout server 1s\n" in text
    assert "    timeout tunnel 1h\n" in text


def test_configuration_names_are_unique_and_every_probe_label_within_one() -> None:
    names = [c.name for e in EXPERIMENTS for c in e.configurations]
    assert len(names) == len(set(names))
    assert not {e.name for e in EXPERIMENTS} & set(names)
    for experiment in EXPERIMENTS:
        for config in experiment.configurations:
            labels = [p.label for p in config.probes]
            assert len(labels) == len(set(labels)), config.name
            assert config.name.startswith(config.kind)

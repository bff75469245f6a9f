"""`opensearch://` URL parsing: every form docs/opensearch.md allows, and errors that name OBSHUB_STORE."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from obshub.errors import ConfigError
from obshub.store import open_store
from obshub.store.opensearch import OpenSearchStore, parse_url


def test_minimal_url() -> None:
    cfg = parse_url("opensearch://localhost:9200", env={})
    assert cfg.hosts == (("localhost", 9200),)
    assert cfg.prefix == "obshub"
    assert not cfg.tls and cfg.user is None and cfg.password is None
    assert cfg.refresh == "read"


def test_full_url() -> None:
    cfg = parse_url(
        "opensearch://ops:s%40cret@os1:9200,os2:9201,[::1]:9202?prefix=prod_1&tls=1&verify=0"
        "&timeout=5&refresh=wait_for&shards=3&replicas=1&compress=1",
        env={},
    )
    assert cfg.hosts == (("os1", 9200), ("os2", 9201), ("::1", 9202))
    assert (cfg.user, cfg.password) == ("ops", "s@cret")
    assert cfg.prefix == "prod_1"
    assert cfg.tls and not cfg.verify
    assert (cfg.timeout_s, cfg.refresh, cfg.shards, cfg.replicas, cfg.compress) == (5.0, "wait_for", 3, 1, True)
    assert "s@cret" not in cfg.redacted() and "ops:***@" in cfg.redacted()


def test_opensearchs_scheme_means_tls() -> None:
    assert parse_url("opensearchs://h:443", env={}).tls


def test_credentials_and_ca_from_env(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    cfg = parse_url(
        "opensearch://h:9200",
        env={"OBSHUB_OPENSEARCH_USER": "u", "OBSHUB_OPENSEARCH_PASSWORD": "p", "OBSHUB_OPENSEARCH_CA_CERTS": str(ca)},
    )
    assert (cfg.user, cfg.password, cfg.ca_certs, cfg.tls) == ("u", "p", str(ca), True)
    # the URL's own credentials win over the environment
    assert parse_url("opensearch://a:b@h:9200", env={"OBSHUB_OPENSEARCH_USER": "u"}).user == "a"


def test_client_certificate_for_mutual_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "hub.pem", tmp_path / "hub.key"
    cert.write_text("cert")
    key.write_text("key")
    cfg = parse_url(f"opensearch://h:9200?cert={cert}&key={key}", env={})
    assert (cfg.client_cert, cfg.client_key, cfg.tls) == (str(cert), str(key), True)
    env = {"OBSHUB_OPENSEARCH_CLIENT_CERT": str(cert)}  # one PEM holding both is fine too
    assert (
        parse_url("opensearch://h:9200", env=env).client_cert,
        parse_url("opensearch://h:9200", env=env).client_key,
    ) == (str(cert), None)
    with pytest.raises(ConfigError, match="client key needs its certificate"):
        parse_url(f"opensearch://h:9200?key={key}", env={})
    with pytest.raises(ConfigError, match=re.escape("client certificate '/nope.pem' does not exist")):
        parse_url("opensearch://h:9200?cert=/nope.pem", env={})


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("opensearch://", "no host"),
        ("opensearch://localhost", "needs a port"),
        ("opensearch://localhost:99999", "1..65535"),
        ("opensearch://localhost:abc", "not a number"),
        ("opensearch://h:9200/index", "no path"),
        ("opensearch://h:9200?prefix=Bad!", "prefix"),
        ("opensearch://h:9200?tls=maybe", "not a boolean"),
        ("opensearch://h:9200?refresh=always", "refresh"),
        ("opensearch://h:9200?shards=0", "outside"),
        ("opensearch://h:9200?colour=blue", "unknown option 'colour'"),
        ("opensearch://h:9200?ca=/nonexistent/ca.pem", "does not exist"),
        ("opensearch://:pw@h:9200", "empty user"),
        ("http://h:9200", "scheme"),
    ],
)
def test_bad_urls_name_the_setting(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_url(url, env={})
    assert "OBSHUB_STORE" in str(e.value)
    assert fragment in str(e.value)


def test_password_is_not_echoed_in_errors() -> None:
    with pytest.raises(ConfigError) as e:
        parse_url("opensearch://admin:hunter2@h:9200?bogus=1", env={})
    assert "hunter2" not in str(e.value)


def test_open_store_dispatches_without_connecting() -> None:
    store = open_store("opensearch://127.0.0.1:1?prefix=x")  # nothing listens on port 1
    assert isinstance(store, OpenSearchStore)
    assert store.url == "opensearch://127.0.0.1:1?prefix=x&tls=0"

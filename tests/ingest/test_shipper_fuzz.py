"""Never a 500 on the shippers' routes: generated bulk bodies, Loki JSON and protobuf bodies
(well-framed with wrong types, and plain garbage) against one live hub. Every answer is one the
docs list: 200/204, or a 400/413 with a JSON `error`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cramjam
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hubproc import LiveHub
from tests.ingest.test_loki import _field

_FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
_keys = st.sampled_from(
    ["@timestamp", "message", "log", "level", "log.level", "host", "service", "error", "trace", "user", "id", "kind"]
)
_doc = st.dictionaries(st.one_of(_keys, st.text(max_size=8)), _json, max_size=6)
_action = st.dictionaries(
    st.sampled_from(["create", "index", "update", "delete", "upsert"]),
    st.one_of(st.dictionaries(st.sampled_from(["_index", "_id", "_type", "x"]), _json, max_size=3), _json),
    min_size=1,
    max_size=2,
)


@pytest.fixture(scope="module")
def fuzz_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    path: Path = tmp_path_factory.mktemp("fuzz")
    h = LiveHub(f"sqlite:///{path}/o.db", max_lines=200).start()
    yield h
    h.stop()


def _dumps(value: Any) -> bytes:
    """JSON with integers beyond 64 bits too (orjson refuses to write them; a client may not)."""
    return json.dumps(value, separators=(",", ":")).encode()


def _ok(r: httpx.Response) -> None:
    assert r.status_code in (200, 204, 400, 413), (r.status_code, r.text[:300])
    if r.status_code in (400, 413):
        assert isinstance(r.json()["error"], (str, dict)), r.text[:300]


@_FUZZ
@given(pairs=st.lists(st.tuples(_action, st.one_of(_doc, _json)), max_size=6), index=st.sampled_from(["", "web"]))
def test_bulk_bodies(fuzz_hub: LiveHub, pairs: list[tuple[dict[str, Any], Any]], index: str) -> None:
    body = b"".join(_dumps(a) + b"\n" + _dumps(d) + b"\n" for a, d in pairs)
    path = f"/es/{index}/_bulk" if index else "/es/_bulk"
    r = httpx.post(f"{fuzz_hub.url}{path}", content=body, headers={"Authorization": f"Bearer {fuzz_hub.ingest_token}"})
    _ok(r)
    if r.status_code == 200:
        assert len(r.json()["items"]) == len(pairs)


@_FUZZ
@given(body=st.binary(max_size=300), ctype=st.sampled_from(["application/x-protobuf", "application/json", ""]))
def test_garbage_bodies(fuzz_hub: LiveHub, body: bytes, ctype: str) -> None:
    headers = {"Authorization": f"Bearer {fuzz_hub.ingest_token}", "Content-Type": ctype}
    _ok(httpx.post(f"{fuzz_hub.url}/es/_bulk", content=body, headers=headers))
    _ok(httpx.post(f"{fuzz_hub.url}/loki/api/v1/push", content=body, headers=headers))
    snappy = bytes(cramjam.snappy.compress_raw(body))
    _ok(httpx.post(f"{fuzz_hub.url}/loki/api/v1/push", content=snappy, headers=headers))


_streams = st.lists(
    st.fixed_dictionaries(
        {"stream": st.one_of(st.dictionaries(st.text(max_size=10), _scalars, max_size=4), _json)},
        optional={"values": st.lists(st.one_of(st.lists(_json, max_size=4), _json), max_size=4)},
    ),
    max_size=4,
)


@_FUZZ
@given(streams=st.one_of(_streams, _json))
def test_loki_json_bodies(fuzz_hub: LiveHub, streams: Any) -> None:
    body = _dumps({"streams": streams})
    headers = {"Authorization": f"Bearer {fuzz_hub.ingest_token}", "Content-Type": "application/json"}
    _ok(httpx.post(f"{fuzz_hub.url}/loki/api/v1/push", content=body, headers=headers))


# A message tree: each field a varint, a nested message or raw bytes, at any field number.
_proto: st.SearchStrategy[bytes] = st.recursive(
    st.binary(max_size=12),
    lambda inner: st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=5),
            st.one_of(st.integers(min_value=0, max_value=2**64 - 1), inner),
        ),
        max_size=4,
    ).map(lambda fields: b"".join(_field(n, v) for n, v in fields)),
    max_leaves=10,
)


@_FUZZ
@given(message=_proto)
def test_loki_protobuf_bodies(fuzz_hub: LiveHub, message: bytes) -> None:
    body = bytes(cramjam.snappy.compress_raw(message))
    headers = {"Authorization": f"Bearer {fuzz_hub.ingest_token}", "Content-Type": "application/x-protobuf"}
    _ok(httpx.post(f"{fuzz_hub.url}/loki/api/v1/push", content=body, headers=headers))


def test_values_nested_as_deep_as_json_allows(fuzz_hub: LiveHub) -> None:
    deep = "[" * 1000 + "]" * 1000
    auth = {"Authorization": f"Bearer {fuzz_hub.ingest_token}"}
    body = b'{"create":{"_index":"x"}}\n{"message":"m","a":DEEP,"error":{"x":DEEP}}\n'.replace(b"DEEP", deep.encode())
    r = httpx.post(f"{fuzz_hub.url}/es/_bulk", content=body, headers=auth)
    assert r.status_code == 200 and r.json()["items"][0]["create"]["status"] == 400
    for labels, meta in ((deep, "{}"), ('{"a":"b"}', f'{{"m":{deep}}}')):
        text = f'{{"streams":[{{"stream":{{"a":{labels}}},"values":[["1796551872345678000","x",{meta}]]}}]}}'
        r = httpx.post(
            f"{fuzz_hub.url}/loki/api/v1/push",
            content=text.encode(),
            headers={**auth, "Content-Type": "application/json"},
        )
        assert r.status_code == 400 and "strings" in r.json()["error"], r.text

"""The client's response parser: orjson for speed, the stdlib's reading for what orjson refuses."""

from __future__ import annotations

import math

from obshub.store.opensearch.client import _Serializer


def test_responses_parse_like_the_stdlib() -> None:
    s = _Serializer()
    assert s.loads('{"errors":false,"items":[{"create":{"status":201}}]}') == {
        "errors": False, "items": [{"create": {"status": 201}}]}
    # Jackson may write non-finite aggregation values; orjson refuses them, json accepts them.
    assert math.isnan(s.loads('{"value": NaN}')["value"])

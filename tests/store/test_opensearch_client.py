"""The client's response parser: orjson for speed, the stdlib's reading for what orjson refuses."""

from __future__ import annotations

import math

from obshub.store.opensearch.client import _Serializer, reason


def test_responses_parse_like_the_stdlib() -> None:
    s = _Serializer()
    assert s.loads('{"errors":false,"items":[{"create":{"status":201}}]}') == {
        "errors": False,
        "items": [{"create": {"status": 201}}],
    }
    # Jackson may write non-finite aggregation values; orjson refuses them, json accepts them.
    assert math.isnan(s.loads('{"value": NaN}')["value"])


def test_an_error_reason_carries_its_cause() -> None:
    """A refused index template says only "template after composition is invalid" at the top;
    what to fix is in `caused_by` (here: a cluster without the analysis-common module)."""
    body = {
        "error": {
            "type": "illegal_argument_exception",
            "reason": "composable template [p-events] template after composition is invalid",
            "caused_by": {
                "type": "illegal_argument_exception",
                "reason": "Unknown tokenizer type [pattern] for [obshub_words]",
            },
        },
        "status": 400,
    }
    assert reason(body) == (
        "illegal_argument_exception: composable template [p-events] template after composition "
        "is invalid (caused by illegal_argument_exception: Unknown tokenizer type [pattern] for "
        "[obshub_words])"
    )
    search = {
        "error": {
            "type": "search_phase_execution_exception",
            "reason": "all shards failed",
            "caused_by": {"type": "query_shard_exception", "reason": "failed to create query"},
        }
    }
    assert reason(search) == "query_shard_exception: failed to create query"  # the cause is the reason

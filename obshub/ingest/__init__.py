"""HTTP edges that take data in: native NDJSON (`native.py`) and the Sentry protocol
(`sentry.py`), sharing body decoding (`body.py`) and admission control (`admission.py`). Every
stored event, from these edges or from the hub itself, goes through `pipeline.py`."""

"""HTTP edges that take data in: native NDJSON (`native.py`) and the Sentry protocol
(`sentry.py`), sharing body decoding (`body.py`) and admission control (`admission.py`)."""

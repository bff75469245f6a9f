"""Data in. `pipeline.py` owns the whole HTTP ingest path (auth, admission, body, decode, parse,
digest, the store write, telemetry) and the way the hub's own producers store events; the
edges only parse their wire formats and shape their answers: native NDJSON (`native.py`) and
the Sentry protocol (`sentry.py`). `admission.py` holds the concurrency slots, `body.py` the
size-capped reading and decoding."""

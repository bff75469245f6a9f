"""HTTP reads: the JSON API (`api.py`, read tokens) and the web pages (`pages*.py`, a session
cookie from a read token, `session.py`). Thin: parse arguments, call `obshub.query`, render or
return JSON. Ingest routes live in `obshub/ingest/`, the health and metrics routes in `app.py`."""

"""The read side: what the JSON API (`web/api.py`) and the web pages ask of the store, as plain
functions over any `Store` (search, trace, user timeline, analytics, error groups, export).
They validate arguments (QueryError naming the parameter) and shape the answers' JSON; the
store does the reading. Blocking: callers on the event loop run them in a worker thread."""

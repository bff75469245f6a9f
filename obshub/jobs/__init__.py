"""Scheduled work of the hub, beside the data path: one APScheduler in a background thread
(`scheduler.py`) runs retention (through `Store.maintain`) and the uptime probes
(`obshub/uptime/`). A job never raises into the scheduler; a failing run is retried later."""

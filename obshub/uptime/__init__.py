"""Uptime checks: the hub probes HTTP(S) URLs and TCP ports and stores every result as an event
(docs/uptime.md). One domain, beside the data folders like jobs/:

    model       `Check` (a definition), `ProbeResult` (one probe), limits
    config      `[[checks]]` tables and POST bodies -> `Check` (`parse_check`, `config_checks`)
    network     where API checks may connect (`NetworkPolicy`, settings checks_*_networks),
                judged on the address the probe connects to (`resolve`)
    probes      one HTTP(S) GET or TCP connect, timed, never raising (`probe`), never quoting
                what the target answered
    scheduling  the APScheduler job: which checks exist (cached `DEFS_TTL_S`, dropped by the hub
                that takes an API change), which slot is due, probe, record, metrics (`Uptime`)
    pool        the probe threads: probes due now before catch-up probes, sized to the load
    queries     read side: stored definitions, last state, the status `GET /api/v1/checks` shows
    overview    what the Checks page and the public status pages show (90-day bars, 24 h chart)
    writes      write side: definitions and results, through obshub/ingest/pipeline.py

Who defines checks: the operator in the config file (`[[checks]]`, not restricted), and holders
of a project's admin token over the API (at most `checks_max_per_project` per project, reaching
only what the network policy allows). Read tokens list them, ingest tokens cannot touch them.

Data path: settings (`[[checks]]`) and `POST /api/v1/checks` -> config -> writes (a definition
event) -> store; scheduling -> probes -> writes (a result event) -> store; store -> queries ->
web/api.py; store -> overview -> web/pages_checks.py. Writes go through the ingest pipeline
with the hub's scrubber, like every event.

Everything is an event, so no Store protocol change was needed:

- a probe result is `kind=check`, `name=<check>`, `attrs.up` true/false, `attrs.latency_ms`,
  `attrs.status`, with the id `check:<project_id>:<name>:<slot>` (one per check and slot);
- a check defined with `POST /api/v1/checks` is `kind=check`, `attrs.definition=true`, id
  `checkdef:<project_id>:<name>:<µs>`; the newest one per name wins, `attrs.deleted=true` is a
  tombstone. The hub writes definitions with `received_at = 0`, which HTTP ingest can never
  produce (it always stamps the receive time), so an ingest token cannot make the hub probe a
  URL or hide a check by sending look-alike events;
- checks from the hub config file (`[[checks]]`) are not stored and win over a stored one of the
  same name.

Uptime = results with `attrs.up:true` / all results in the window, as a percentage: the share of
probes that passed, not of wall time (a window where no hub ran counts for nothing).
"""

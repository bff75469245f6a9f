"""Delivery of alerts: to Alertmanager (the production path: its routing, grouping, silences and
inhibition then apply) or straight to a webhook, Slack or email with a per-rule policy (group
wait, repeat interval, resolved, mute). config.py reads [[notifiers]]; one module per type
builds and sends its message; dispatcher.py applies the policy on its own threads, retries, keeps
the notification log in the store and reports each notifier's status. docs/alerting.md."""

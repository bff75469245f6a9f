"""Alerting: rules over the project's own events and checks (rules.py, evaluate.py), their state
kept in the store so a restart neither forgets nor repeats (state.py), and delivery to
Alertmanager or the built-in webhook, Slack and email notifiers (notify/). docs/alerting.md."""

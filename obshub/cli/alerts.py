"""`obshub alerts test RULE`: a test notification through the notifiers of a rule of the config
file ([[alerts]] -> its `notify` list -> [[notifiers]]), one attempt each, printed."""

from __future__ import annotations

import argparse

from obshub.cli.args import _die


def _alerts_test(args: argparse.Namespace) -> int:
    from obshub.alerts.notify.dispatcher import test_notification
    from obshub.settings import load_settings

    settings = load_settings()
    rules = [
        r
        for r in settings.alerts
        if r.get("name") == args.rule and (args.project is None or r.get("project", "default") == args.project)
    ]
    if not rules:
        where = f" in project {args.project!r}" if args.project else ""
        return _die(f"no [[alerts]] rule named {args.rule!r}{where} in the config file (OBSHUB_CONFIG)")
    if len(rules) > 1:
        projects = ", ".join(sorted(str(r.get("project", "default")) for r in rules))
        return _die(f"rules named {args.rule!r} in several projects ({projects}): say which with --project")
    rule = rules[0]
    notify = rule.get("notify") or []
    labels = rule.get("labels") or {}
    if not isinstance(notify, list) or not all(isinstance(n, str) for n in notify):
        return _die(f"[[alerts]] {args.rule!r}: notify: expected a list of notifier names")
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        return _die(f"[[alerts]] {args.rule!r}: labels: expected a table of strings")
    if not settings.notifiers:
        return _die("no [[notifiers]] in the config file (OBSHUB_CONFIG): nothing to send to")
    outcomes = test_notification(
        settings, notify, rule=args.rule, project=str(rule.get("project", "default")), labels=labels
    )
    for outcome in outcomes:
        print(outcome)
    return 0 if all(o.ok for o in outcomes) else 1

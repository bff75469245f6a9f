"""`obshub alerts test RULE`: a test notification through the notifiers of a rule (of the config
file's [[alerts]], else an API rule in the hub's store -> its `notify` list -> [[notifiers]]),
one attempt each, printed."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from obshub.cli.args import _die
from obshub.errors import ConfigError, NotFound, StoreError

if TYPE_CHECKING:
    from obshub.alerts.rules import Rule
    from obshub.settings import Settings


def _find_rule(args: argparse.Namespace, settings: Settings) -> list[Rule]:
    """Rules named `args.rule`: the config file's, then (when none there) the API rules in the
    hub's store (`--store`, OBSHUB_STORE or the config's `store`), of `--project` if given."""
    from obshub.alerts.catalog import project_rules
    from obshub.alerts.notify.config import parse_notifiers
    from obshub.alerts.rules import config_rules, notifier_names
    from obshub.cli.admin import _open_store

    parse_notifiers(settings.notifiers)  # a bad [[notifiers]] table: ConfigError naming it
    config = config_rules(settings.alerts, notifier_names(settings.notifiers))
    found = [r for r in config if r.name == args.rule and args.project in (None, r.project)]
    if found:
        return found
    try:
        store, _ = _open_store(args.store)
    except NotFound as e:  # no store: no API rules either
        raise NotFound(f"no [[alerts]] rule named {args.rule!r} in the config file, and {e}") from None
    try:
        projects = [p for p in store.list_projects() if args.project in (None, p.name)]
        return [r for p in projects for r in project_rules(store, p, config) if r.name == args.rule]
    finally:
        store.close()


def _alerts_test(args: argparse.Namespace) -> int:
    from obshub.alerts.notify.trial import test_notification
    from obshub.settings import load_settings

    settings = load_settings(store=args.store)
    try:
        rules = _find_rule(args, settings)
    except (ConfigError, NotFound, StoreError) as e:
        return _die(str(e))
    if not rules:
        where = f" in project {args.project!r}" if args.project else ""
        return _die(f"no alert rule named {args.rule!r}{where}: neither an [[alerts]] rule nor an API rule")
    if len(rules) > 1:
        projects = ", ".join(sorted(r.project for r in rules))
        return _die(f"rules named {args.rule!r} in several projects ({projects}): say which with --project")
    rule = rules[0]
    if not settings.notifiers:
        return _die("no [[notifiers]] in the config file (OBSHUB_CONFIG): nothing to send to")
    outcomes = test_notification(settings, rule.notify, rule=rule.name, project=rule.project, labels=rule.labels)
    for outcome in outcomes:
        print(outcome)
    return 0 if all(o.ok for o in outcomes) else 1

"""The evaluation pass: load every project's rules, evaluate them in batches (evaluate.py), move
each instance's state (state.py), store what changed, and hand each rule's alerts to delivery
(`model.Notify`: notify/'s Dispatcher). `AlertEngine.run_once` is one pass; obshub/jobs/scheduler.py
runs it every `alert_interval_s`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from obshub.alerts.catalog import instance_states, last_pass, mutes, project_rules
from obshub.alerts.evaluate import Observation, Outcome, evaluate_project
from obshub.alerts.model import Alert, Notify, Route
from obshub.alerts.rules import Rule, config_rules, notifier_names
from obshub.alerts.state import PASS_KIND, STATE_KIND, InstanceState, state_key, step
from obshub.errors import Conflict, ObshubError
from obshub.settings import Settings
from obshub.store.base import Project, Store
from obshub.telemetry import Telemetry
from obshub.uptime.config import config_checks

__all__ = ["AlertEngine", "LogNotify", "PassSummary"]

log = structlog.get_logger("obshub.alerts")
_FORGET_US = 7 * 86_400_000_000  # an instance resolved (or back to ok) a week ago is forgotten


class LogNotify:
    """A `Notify` that only logs what it is given: what the engine runs with when no dispatcher
    is wired (notify/ delivers for real)."""

    def update(self, rule_key: str, route: Route, alerts: Sequence[Alert], now_us: int) -> None:
        for a in alerts:
            log.info("alert", rule=rule_key, status=a.status, labels=a.labels, summary=a.annotations.get("summary"))


@dataclass(frozen=True)
class PassSummary:
    at: int
    rules: int = 0
    errors: int = 0  # rules whose evaluation failed (store trouble)
    firing: int = 0  # instances firing after the pass
    pending: int = 0
    changed: int = 0  # state records written
    notified: int = 0  # rules handed to `notify.update`
    seconds: float = 0.0


class AlertEngine:
    """One per hub. `settings.alerts` is validated here (ConfigError at start, naming the table)."""

    def __init__(self, settings: Settings, store: Store, telemetry: Telemetry, notify: Notify | None = None) -> None:
        self.settings = settings
        self.store = store
        self.telemetry = telemetry
        self.notify: Notify = notify if notify is not None else LogNotify()
        self.config = config_rules(settings.alerts, notifier_names(settings.notifiers))
        self.checks = config_checks(settings.checks)

    def tick(self) -> PassSummary | None:
        """The scheduled job: one pass now; a failure is logged and the next tick retries."""
        try:
            return self.run_once(time.time_ns() // 1000)
        except ObshubError as e:
            log.warning("alert evaluation failed; will retry", error=str(e))
            return None

    def run_once(self, now_us: int) -> PassSummary:
        started = time.perf_counter()
        total = PassSummary(now_us)
        for project in self.store.list_projects():
            rules = project_rules(self.store, project, self.config)
            s = self._project(project, rules, now_us) if rules else PassSummary(now_us)
            self.telemetry.alerts_firing.labels(project.name).set(s.firing)
            total = PassSummary(
                now_us,
                total.rules + s.rules,
                total.errors + s.errors,
                total.firing + s.firing,
                total.pending + s.pending,
                total.changed + s.changed,
                total.notified + s.notified,
            )
        seconds = time.perf_counter() - started
        self.telemetry.alert_evaluation_seconds.observe(seconds)
        if total.errors:
            self.telemetry.alert_evaluation_failures.inc(total.errors)
        return PassSummary(**{**total.__dict__, "seconds": seconds})

    def _project(self, project: Project, rules: list[Rule], now: int) -> PassSummary:
        prev = last_pass(self.store, project.id)
        prev_at = int(prev["at"]) if prev and isinstance(prev.get("at"), int) else 0
        outcomes = evaluate_project(self.store, project, rules, self.checks, now, self.settings.base_url)
        known: dict[str, dict[str, InstanceState]] = {}
        for st in instance_states(self.store, project.id):
            known.setdefault(st.rule, {})[st.instance] = st
        versions = {r.key: r.version for r in self.store.list_records(STATE_KIND, f"{project.id}:")}
        errors = 0
        moves: list[tuple[Rule, InstanceState, InstanceState, Observation]] = []  # rule, old, new, observation
        for rule in rules:
            out = outcomes.get(rule.name, Outcome({}, error="not evaluated"))
            if out.error:
                errors += 1
                log.warning("alert rule not evaluated", project=project.name, rule=rule.name, error=out.error)
            states = known.pop(rule.name, {})
            for inst in sorted({*states, *out.instances}):
                old = states.get(inst) or InstanceState(project.id, rule.name, inst)
                obs = out.instances.get(inst, Observation(None if out.error else False))
                moves.append((rule, old, step(old, obs.active, obs.value, obs.summary, now, rule.for_s), obs))
        changed = [(state_key(project.id, new.rule, new.instance), new) for _, old, new, _ in moves if new != old]
        written = self._write_all([(key, new, versions.get(key, 0)) for key, new in changed])
        forget = [
            state_key(project.id, new.rule, new.instance)
            for _, old, new, _ in moves
            if new == old and new.instance and new.state in ("ok", "resolved") and now - new.changed_at > _FORGET_US
        ]
        for gone in known.values():  # the rule was deleted or renamed: its state goes with it
            forget.extend(state_key(project.id, st.rule, st.instance) for st in gone.values())
        for key in forget:
            self.store.delete_record(STATE_KIND, key)
        firing = pending = notified = 0
        muted = mutes(self.store, project.id)
        by_rule: dict[str, list[Alert]] = {}
        for rule, old, new, obs in moves:
            if new != old and state_key(project.id, new.rule, new.instance) not in written:
                new = old  # another hub wrote it first: its state stands
            firing += new.state == "firing"
            pending += new.state == "pending"
            alert = self._alert(rule, project, new, obs, prev_at)
            if alert is not None:
                by_rule.setdefault(rule.name, []).append(alert)
        for rule in rules:
            if rule.name in by_rule:
                until = muted.get(rule.name)
                route = rule.route(until if until and until > now else None)
                self.notify.update(rule.key(project.id), route, by_rule[rule.name], now)
                notified += 1
        values = {
            r.name: {"value": outcomes[r.name].value, "error": outcomes[r.name].error}
            for r in rules
            if r.name in outcomes
        }
        self.store.put_record(PASS_KIND, str(project.id), {"at": now, "rules": values})
        return PassSummary(now, len(rules), errors, firing, pending, len(written), notified)

    def _write_all(self, writes: list[tuple[str, InstanceState, int]]) -> set[str]:
        """Store the changed states; returns the keys written. One by one: on OpenSearch each
        waits for a refresh (~45 ms), and 8 at a time measured no faster (280 alerts firing at
        once: 15.5 s one by one, 12.9 s eight at a time; bench/alerts.py): the node serializes
        them."""
        return {key for key, st, version in writes if self._write(key, st, version)}

    def _write(self, key: str, st: InstanceState, version: int) -> bool:
        """Store a changed state, only over the version read (another hub's write wins)."""
        try:
            self.store.put_record(STATE_KIND, key, st.to_value(), version=version)
        except Conflict:
            log.warning("alert state changed by another hub; skipped", key=key)
            return False
        return True

    def _alert(self, rule: Rule, project: Project, st: InstanceState, obs: Observation, prev_at: int) -> Alert | None:
        """The instance as an Alert: firing, or resolved since the previous pass (so a hub that
        stopped between passes still reports it)."""
        if st.fired_at is None:
            return None
        if st.state == "firing":
            ends = None
        elif st.state == "resolved" and st.resolved_at is not None and st.resolved_at > prev_at:
            ends = st.resolved_at
        else:
            return None
        annotations = {"summary": st.summary or f"{rule.name} is firing"}
        if rule.annotation:
            annotations["annotation"] = rule.annotation
        if st.last_value is not None:
            annotations["value"] = f"{st.last_value:g}"
        return Alert(rule.labels_for(project.name, st.instance), annotations, st.fired_at, ends, obs.url)

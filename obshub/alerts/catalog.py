"""The rules of a project and what is known of them, as the engine, the API and the Alerts page
read them: config-file rules (`[[alerts]]`, read-only over the API, like checks) and API rules
(Records of kind "alert-rule", key "<project id>:<name>"), mutes, state and the last pass."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from obshub.alerts.rules import MAX_API_RULES, Rule, parse_rule
from obshub.alerts.state import MUTE_KIND, PASS_KIND, STATE_KIND, InstanceState, from_value, state_key
from obshub.errors import Conflict, FieldError, NotFound, QueryError
from obshub.events import format_ts
from obshub.store.base import Project, Record, Store

__all__ = [
    "RULE_KIND",
    "define_rule",
    "delete_rule",
    "describe",
    "find_rule",
    "history",
    "instance_states",
    "last_pass",
    "mutes",
    "project_rules",
    "set_mute",
    "status",
]

RULE_KIND = "alert-rule"


def _stored(store: Store, project: Project) -> dict[str, tuple[Rule, Record]]:
    out: dict[str, tuple[Rule, Record]] = {}
    for rec in store.list_records(RULE_KIND, f"{project.id}:"):
        try:
            rule = parse_rule(rec.value.get("definition"), "api", project.name)
        except FieldError:
            continue  # written under other rules (a later version): never evaluate it half-read
        out[rule.name] = (rule, rec)
    return out


def project_rules(store: Store, project: Project, config: Sequence[Rule]) -> list[Rule]:
    """Config-file rules of the project, then its API rules not shadowed by a config name."""
    mine = [r for r in config if r.project == project.name]
    names = {r.name for r in mine}
    stored = _stored(store, project)
    return mine + sorted((r for n, (r, _) in stored.items() if n not in names), key=lambda r: r.name)


def find_rule(store: Store, project: Project, config: Sequence[Rule], name: str) -> Rule:
    for rule in project_rules(store, project, config):
        if rule.name == name:
            return rule
    raise NotFound(f"no alert rule named {name!r}")


def define_rule(
    store: Store, project: Project, config: Sequence[Rule], body: Any, notifiers: Collection[str] | None = None
) -> tuple[Rule, bool]:
    """POST: create or replace an API rule (`notify` may name only `notifiers`). Returns (the
    rule, created?)."""
    try:
        rule = parse_rule(body, "api", project.name, notifiers)
    except FieldError as e:
        raise QueryError(str(e)) from None
    if any(r.project == project.name and r.name == rule.name for r in config):
        raise Conflict(f"name: alert rule {rule.name!r} is declared in the hub config file; change it there")
    stored = _stored(store, project)
    old = stored.get(rule.name)
    if old is None and len(stored) >= MAX_API_RULES:
        raise Conflict(
            f"project {project.name!r} has {len(stored)} alert rules, the most the API allows: delete one first"
        )
    store.put_record(
        RULE_KIND, rule.key(project.id), {"definition": rule.definition}, version=old[1].version if old else 0
    )
    return rule, old is None


def delete_rule(store: Store, project: Project, config: Sequence[Rule], name: str) -> None:
    if any(r.project == project.name and r.name == name for r in config):
        raise Conflict(f"alert rule {name!r} is declared in the hub config file; remove it there")
    found = _stored(store, project).get(name)  # (a name that cannot exist never reaches a key)
    if found is None or not store.delete_record(RULE_KIND, found[1].key):
        raise NotFound(f"no alert rule named {name!r}")
    store.delete_record(MUTE_KIND, f"{project.id}:{name}")
    for st in instance_states(store, project.id, name):
        store.delete_record(STATE_KIND, state_key(project.id, name, st.instance))


def set_mute(store: Store, project: Project, rule: Rule, until: int | None) -> None:
    """Mute the rule's notifications until `until` (µs), or unmute (None). State still changes."""
    if until is None:
        store.delete_record(MUTE_KIND, rule.key(project.id))
    else:
        store.put_record(MUTE_KIND, rule.key(project.id), {"until": until})


def mutes(store: Store, project_id: int) -> dict[str, int]:
    """Rule name -> muted until (µs), every mute of the project (expired ones too)."""
    out: dict[str, int] = {}
    for rec in store.list_records(MUTE_KIND, f"{project_id}:"):
        until = rec.value.get("until")
        if isinstance(until, int):
            out[rec.key.split(":", 1)[1]] = until
    return out


def instance_states(store: Store, project_id: int, rule: str | None = None) -> list[InstanceState]:
    """Stored states of the project's rules (of one rule when named)."""
    prefix = f"{project_id}:" if rule is None else f"{project_id}:{rule}"
    out = []
    for rec in store.list_records(STATE_KIND, prefix):
        st = from_value(rec.value)
        if st is not None and st.project_id == project_id and (rule is None or st.rule == rule):
            out.append(st)
    return out


def _ts(us: int | None) -> str | None:
    return format_ts(us) if us is not None else None


def describe(
    rule: Rule, states: Sequence[InstanceState], muted_until: int | None, last_pass: dict[str, Any] | None, now: int
) -> dict[str, Any]:
    """A rule as GET /api/v1/alerts shows it: its definition, its state (ok | pending | firing,
    muted when a mute is in force), its instances, the last evaluation."""
    order = {"firing": 3, "pending": 2, "resolved": 1, "ok": 0}
    worst = max((st.state for st in states), key=lambda s: order[s], default="ok")
    state = {"firing": "firing", "pending": "pending"}.get(worst, "ok")
    muted = muted_until is not None and muted_until > now
    evaluated = (last_pass or {}).get("rules", {}).get(rule.name)
    definition = {**rule.definition, "project": rule.project}
    return {
        "name": rule.name,
        "kind": rule.kind,
        "source": rule.source,
        "state": "muted" if muted else state,
        "alert_state": state,
        "muted_until": _ts(muted_until) if muted else None,
        "labels": rule.labels,
        "annotation": rule.annotation,
        "query": rule.query or None,
        "definition": definition,
        "last_evaluation": _ts((last_pass or {}).get("at")) if evaluated is not None else None,
        "last_value": evaluated.get("value") if evaluated else None,
        "last_error": (evaluated.get("error") or None) if evaluated else None,
        "fired": sum(st.fired for st in states),
        "instances": [
            {
                "instance": st.instance or None,
                "state": st.state,
                "active_since": _ts(st.active_since) if st.state in ("pending", "firing") else None,
                "fired_at": _ts(st.fired_at),
                "resolved_at": _ts(st.resolved_at),
                "value": st.last_value,
                "summary": st.summary or None,
                "fired": st.fired,
            }
            for st in sorted(states, key=lambda s: (-order[s.state], s.instance))
        ],
    }


def last_pass(store: Store, project_id: int) -> dict[str, Any] | None:
    rec = store.get_record(PASS_KIND, str(project_id))
    return rec.value if rec is not None else None


def history(states: Sequence[InstanceState], limit: int = 200) -> list[dict[str, Any]]:
    """The rule's state changes, newest first, every instance's together."""
    changes = sorted(
        ((h, st.instance) for st in states for h in st.history if isinstance(h.get("at"), int)),
        key=lambda hi: int(hi[0]["at"]),
        reverse=True,
    )
    return [
        {
            "at": format_ts(h["at"]),
            "instance": inst or None,
            "from": h.get("from"),
            "to": h.get("to"),
            "value": h.get("value"),
        }
        for h, inst in changes[:limit]
    ]


def status(
    store: Store, project: Project, config: Sequence[Rule], now: int, name: str | None = None
) -> list[dict[str, Any]]:
    """GET /api/v1/alerts (every rule) or /api/v1/alerts/{name} (one: NotFound if unknown)."""
    rules = project_rules(store, project, config)
    if name is not None:
        rules = [r for r in rules if r.name == name]
        if not rules:
            raise NotFound(f"no alert rule named {name!r}")
    states: dict[str, list[InstanceState]] = {}
    for st in instance_states(store, project.id):
        states.setdefault(st.rule, []).append(st)
    muted = mutes(store, project.id)
    passed = last_pass(store, project.id)
    return [describe(r, states.get(r.name, []), muted.get(r.name), passed, now) for r in rules]

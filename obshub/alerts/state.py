"""Alert state kept in the store (Records, obshub/store/base.py), so a restarted hub — or another
replica taking over the lease — continues where the last pass stopped: a firing alert stays
firing with its `fired_at` (the Alert's `starts_at`, which the dispatcher's notification log
keys on: it is not notified again).

Kinds and keys (docs/alerting.md, "Evaluation and state"):
- "alert-state" "<project id>:<rule>[:<instance>]": one per rule instance (a threshold rule has
  one, "", an error rule one per group, a check rule one per check), written only when its
  state changes: 1,000 quiet rules cost no write per pass;
- "alert-pass" "<project id>": one per project per pass: when it ran, and each rule's last value
  or error (the cheap last-evaluation marker: one write per project, not one per rule);
- "alert-mute" "<project id>:<rule>": {"until": µs}, set from the API or the Alerts page.

Transitions (Prometheus' for rules with `for`): ok -> pending -> firing -> resolved -> pending|firing
...; a pending alert whose condition stops goes back to ok without ever firing."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = [
    "HISTORY",
    "MUTE_KIND",
    "PASS_KIND",
    "STATE_KIND",
    "InstanceState",
    "from_value",
    "state_key",
    "step",
]

STATE_KIND = "alert-state"
PASS_KIND = "alert-pass"
MUTE_KIND = "alert-mute"
HISTORY = 50  # state changes kept per instance (~100 bytes each)
STATES = ("ok", "pending", "firing", "resolved")


def state_key(project_id: int, rule: str, instance: str = "") -> str:
    return f"{project_id}:{rule}:{instance}" if instance else f"{project_id}:{rule}"


@dataclass(frozen=True)
class InstanceState:
    """One rule instance's state. Times are µs since the epoch."""

    project_id: int
    rule: str
    instance: str = ""
    state: str = "ok"  # one of STATES
    active_since: int | None = None  # the condition has held since (pending or firing)
    fired_at: int | None = None  # the current (or last) firing began: Alert.starts_at
    resolved_at: int | None = None  # the last firing ended: Alert.ends_at
    last_value: float | None = None  # the value at the last change
    summary: str = ""  # what the last evaluation said, e.g. "count = 120 > 100 in 5m"
    changed_at: int = 0
    fired: int = 0  # times it fired
    history: tuple[dict[str, Any], ...] = field(default_factory=tuple)  # {at, from, to, value}, oldest first

    def to_value(self) -> dict[str, Any]:
        out = asdict(self)
        out["history"] = list(self.history)
        return out


def from_value(value: dict[str, Any]) -> InstanceState | None:
    """A stored state back, None when it is not one this version wrote (never half-read)."""
    try:
        st = InstanceState(**{**value, "history": tuple(value.get("history") or ())})
    except TypeError:
        return None
    return st if st.state in STATES and isinstance(st.rule, str) else None


def step(
    st: InstanceState, active: bool | None, value: float | None, summary: str, now: int, for_s: float
) -> InstanceState:
    """The state after one evaluation. `active`: the rule's condition holds for this instance;
    None leaves the state as it is (a check between its failure and success thresholds)."""
    if active is None:
        return st
    to = st.state
    if active:
        if st.state in ("ok", "resolved"):
            to = "pending" if for_s > 0 else "firing"
        elif st.state == "pending" and st.active_since is not None and now - st.active_since >= for_s * 1e6:
            to = "firing"
    elif st.state == "pending":
        to = "ok"
    elif st.state == "firing":
        to = "resolved"
    if to == st.state:
        return st
    new = replace(st, state=to, changed_at=now, last_value=value, summary=summary or st.summary)
    if to == "pending" or (to == "firing" and st.state != "pending"):
        new = replace(new, active_since=now)
    if to == "firing":
        new = replace(new, fired_at=now, resolved_at=None, fired=st.fired + 1)
    elif to == "resolved":
        new = replace(new, resolved_at=now)
    elif to == "ok":
        new = replace(new, active_since=None)
    change = {"at": now, "from": st.state, "to": to, "value": value}
    return replace(new, history=(*st.history, change)[-HISTORY:])

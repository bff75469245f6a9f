"""`obshub project` and `obshub token`: they open the hub's store directly, with the settings
`serve` would use."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from obshub.cli.args import _die
from obshub.errors import Conflict, NotFound

if TYPE_CHECKING:
    from obshub.settings import Settings
    from obshub.store.base import Store, TokenRecord


def _open_store(url: str | None, create: bool = False) -> tuple[Store, Settings]:
    """The store `serve` would use (settings from OBSHUB_*, the config file, then `url`), open.
    A store that does not exist yet is made only when `create`, and then said so on stderr: a
    client command run in the wrong directory must not quietly make an empty store there."""
    from obshub.settings import Settings, load_settings
    from obshub.store import open_store

    settings = load_settings(store=url)
    store = open_store(settings.store)
    if not store.exists():
        notes = [
            note
            for note, yes in (
                ("the default", settings.store == Settings.store),
                (f"in {os.getcwd()}", store.url.startswith("sqlite:///./")),
            )
            if yes
        ]
        where = store.url + (f" ({', '.join(notes)})" if notes else "")
        if not create:
            raise NotFound(
                f"no store at {where}: point OBSHUB_STORE, `store` in the OBSHUB_CONFIG file, "
                "or --store at the hub's store"
            )
        print(f"obshub: no store at {where}: creating a new one", file=sys.stderr)
    store.open()
    return store, settings


def _project(args: argparse.Namespace) -> int:
    from obshub.auth import create_project, dsn

    store, settings = _open_store(args.store, create=args.action == "create")
    try:
        if args.action == "create":
            try:
                creds = create_project(store, args.name, settings.base_url)
            except Conflict as e:
                return _die(str(e), 1)
            print(json.dumps(creds))
        else:
            for p in store.list_projects():
                print(json.dumps({"project": p.name, "project_id": p.id, "dsn": dsn(p, settings.base_url)}))
    finally:
        store.close()
    return 0


def _token_json(t: TokenRecord, project: str) -> str:
    from obshub.events import format_ts

    return json.dumps(
        {
            "id": t.id,
            "project": project,
            "scope": t.scope,
            "label": t.label,
            "created_at": format_ts(t.created_at),
            "revoked_at": format_ts(t.revoked_at) if t.revoked_at is not None else None,
        }
    )


def _token(args: argparse.Namespace) -> int:
    from obshub import auth

    store, settings = _open_store(args.store)
    try:
        names = {p.id: p.name for p in store.list_projects()}
        project = None
        if getattr(args, "project", None) is not None:
            project = store.get_project(args.project)
            if project is None:
                return _die(f"no project {args.project!r} in {store.url} (see `obshub project list`)", 1)
        if args.action == "list":
            for t in store.list_tokens(project.id if project else None):
                print(_token_json(t, names.get(t.project_id, "")))
        elif args.action == "create":
            assert project is not None  # --project is required
            secret, t = auth.create_token(store, project, args.scope, args.label)
            out = {
                "id": t.id,
                "project": project.name,
                "project_id": project.id,
                "scope": t.scope,
                "label": t.label,
                "token": secret,
            }
            if t.scope == "sentry":
                out["dsn"] = auth.dsn(project, settings.base_url, key=secret)
            print(json.dumps(out))
            print("obshub: the token is shown only this once; store it now", file=sys.stderr)
        else:
            return _revoke(store, settings, args.token, names)
    finally:
        store.close()
    return 0


# What a project can no longer do once its last token of a scope is revoked.
_LEFT_NONE = {
    "ingest": " (its agents and SDKs can no longer send, except Sentry SDKs with a sentry key)",
    "sentry": " (Sentry SDKs can no longer send to it with a DSN key)",
    "read": " (nothing can query it or log in to it)",
    "admin": " (nothing can define or delete its uptime checks)",
}


def _revoke(store: Store, settings: Settings, ref: str, names: dict[int, str]) -> int:
    from obshub import auth
    from obshub.events import format_ts

    try:
        r = auth.revoke_token(store, ref)
    except (NotFound, Conflict) as e:
        return _die(f"{e} (see `obshub token list`)", 1)
    t, name = r.token, names.get(r.token.project_id, "")
    print(_token_json(t, name))
    what = f"{t.scope} token {t.id}" + (f" ({t.label})" if t.label else "") + f" of project {name!r}"
    if r.already:
        print(f"obshub: {what} was already revoked, at {format_ts(t.revoked_at or 0)}", file=sys.stderr)
        return 0
    print(
        f"obshub: revoked {what}; every hub refuses it within token_cache_s ({settings.token_cache_s:g} s)",
        file=sys.stderr,
    )
    if r.dsn_key:
        print(
            f"obshub: warning: this was the key of project {name!r}'s DSN: Sentry SDKs using that DSN can no "
            f"longer send; a new DSN comes with: obshub token create --project {name} --scope sentry",
            file=sys.stderr,
        )
    if r.left == 0:
        print(
            f"obshub: warning: project {name!r} has no {t.scope} token left"
            + _LEFT_NONE[t.scope]
            + f"; make one with: obshub token create --project {name} --scope {t.scope}",
            file=sys.stderr,
        )
    return 0

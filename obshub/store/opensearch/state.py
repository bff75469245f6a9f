"""Projects and tokens: one small ordinary index (`<prefix>-state`), written rarely, read on
every request. Docs are told apart by `_id` prefix and a `kind` field:

    project:<name>   {kind, id, name, public_key, created_at}   create = unique name
    seq:project      {kind, value}    the last project id, bumped with if_seq_no/if_primary_term
                                      (optimistic concurrency: a lost race re-reads and retries)
    pk:<key>         {kind, project_id}                          create = unique public key
    token:<sha256>   {kind, project_id, scope, label, created_at, revoked_at}
                                      a realtime GET per lookup; revoking sets revoked_at
    group:<pid>:<id> error group state (groups.py)

One index rather than one per kind: each index costs a cluster-state update to create (~200 ms
on one node) and heap for its shard, and these hold a few hundred docs at most.
Project rows never change after creation, so lookups by id are cached in-process.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from opensearchpy import OpenSearch

from obshub.errors import Conflict, StoreUnavailable
from obshub.events import now_us
from obshub.store.base import NewToken, Project, TokenRecord, TokenScope, hash_token
from obshub.store.opensearch.client import guard
from obshub.store.opensearch.mappings import Names

__all__ = ["STATE_FIELDS", "State"]

STATE_FIELDS: dict[str, Any] = {
    k: {"type": t}
    for k, t in (
        ("kind", "keyword"),
        ("id", "integer"),
        ("name", "keyword"),
        ("public_key", "keyword"),
        ("created_at", "long"),
        ("project_id", "integer"),
        ("scope", "keyword"),
        ("value", "long"),
        ("label", "keyword"),
        ("revoked_at", "long"),
    )
}
_SEQ_DOC = "seq:project"
_PROJECTS = {"term": {"kind": "project"}}
_SEQ_RETRIES = 50  # concurrent creates from many hubs: each retry is one GET + one PUT (~2 ms)
_TOKEN_PREFIX = "token:"


def _project(src: dict[str, Any]) -> Project:
    return Project(int(src["id"]), src["name"], src["public_key"], int(src.get("created_at", 0)))


def _token(doc_id: str, src: dict[str, Any]) -> TokenRecord:
    revoked = src.get("revoked_at")
    return TokenRecord(
        doc_id.removeprefix(_TOKEN_PREFIX),
        int(src["project_id"]),
        src["scope"],
        src.get("label", ""),
        int(src.get("created_at", 0)),
        int(revoked) if revoked is not None else None,
    )


class State:
    def __init__(self, client: OpenSearch, names: Names) -> None:
        self.client = client
        self.names = names
        self._by_id: dict[int, Project] = {}
        self._lock = threading.Lock()

    def _get(self, index: str, doc_id: str) -> dict[str, Any] | None:
        with guard(f"get {index}"):
            doc = self.client.get(index=index, id=doc_id, params={"ignore": 404})
        return doc if isinstance(doc, dict) and doc.get("found") else None

    def _next_id(self) -> int:
        for _ in range(_SEQ_RETRIES):
            doc = self._get(self.names.state, _SEQ_DOC)
            try:
                with guard("allocate project id"):
                    if doc is None:
                        self.client.create(index=self.names.state, id=_SEQ_DOC, body={"kind": "seq", "value": 1})
                        return 1
                    n = int(doc["_source"]["value"]) + 1
                    self.client.index(
                        index=self.names.state,
                        id=_SEQ_DOC,
                        body={"kind": "seq", "value": n},
                        params={"if_seq_no": doc["_seq_no"], "if_primary_term": doc["_primary_term"]},
                    )
                    return n
            except Conflict:
                continue  # another hub took this number; re-read
        raise StoreUnavailable("could not allocate a project id: too much contention on the counter")

    def narrow_dsn_keys(self) -> int:
        """At open (the SQLite twin: `sqlite/schema.narrow_dsn_keys`): the DSN key `project
        create` made before the `sentry` scope existed is an ingest token; narrow it to `sentry`
        (the Sentry routes only). Found by its hash, whatever its label; a no-op once done, and
        harmless when several hubs open at once (they all write the same scope)."""
        ids = [f"{_TOKEN_PREFIX}{hash_token(p.public_key)}" for p in self.list_projects()]
        narrowed = 0
        for i in range(0, len(ids), 1000):
            query = {"bool": {"filter": [{"ids": {"values": ids[i : i + 1000]}}, {"term": {"scope": "ingest"}}]}}
            with guard("find DSN keys"):
                hits = self.client.search(index=self.names.state, body={"query": query, "size": 1000})["hits"]["hits"]
            for h in hits:
                with guard("narrow a DSN key"):
                    self.client.update(
                        index=self.names.state,
                        id=h["_id"],
                        body={"doc": {"scope": "sentry"}},
                        params={"refresh": "true"},
                    )
                narrowed += 1
        return narrowed

    def is_empty(self) -> bool:
        with guard("count projects"):
            return int(self.client.count(index=self.names.state, body={"query": _PROJECTS})["count"]) == 0

    def create_project(self, name: str, public_key: str, token_hashes: Sequence[NewToken]) -> Project:
        if self._get(self.names.state, f"project:{name}") is not None:
            raise Conflict(f"project {name!r} already exists")
        pid = self._next_id()
        now = now_us()
        try:
            with guard("create project"):
                self.client.create(
                    index=self.names.state,
                    id=f"project:{name}",
                    body={"kind": "project", "id": pid, "name": name, "public_key": public_key, "created_at": now},
                    params={"refresh": "true"},
                )
        except Conflict:
            raise Conflict(f"project {name!r} already exists") from None
        try:
            with guard("claim public key"):
                self.client.create(
                    index=self.names.state, id=f"pk:{public_key}", body={"kind": "pk", "project_id": pid}
                )
        except Conflict:
            with guard("undo project"):
                self.client.delete(index=self.names.state, id=f"project:{name}", params={"refresh": "true"})
            raise Conflict(f"public key of project {name!r} is already in use") from None
        for t in token_hashes:
            try:
                self._add_token(pid, t[0], t[1], t[2] if len(t) > 2 else "")
            except Conflict:
                raise Conflict(f"a token of project {name!r} collides with an existing token") from None
        project = Project(pid, name, public_key, now)
        with self._lock:
            self._by_id[pid] = project
        return project

    def _add_token(self, project_id: int, scope: TokenScope, token_hash: str, label: str) -> None:
        # refresh: `obshub token list` right after `token create` (another process) shows it
        with guard("add token"):
            self.client.create(
                index=self.names.state,
                id=f"{_TOKEN_PREFIX}{token_hash}",
                body={
                    "kind": "token",
                    "project_id": project_id,
                    "scope": scope,
                    "label": label,
                    "created_at": now_us(),
                },
                params={"refresh": "true"},
            )

    def add_token(self, project_id: int, scope: TokenScope, token_hash: str, label: str = "") -> None:
        with contextlib.suppress(Conflict):  # same hash twice: already there (SQLite: INSERT OR IGNORE)
            self._add_token(project_id, scope, token_hash, label)

    def get_project(self, name: str) -> Project | None:
        doc = self._get(self.names.state, f"project:{name}")
        return _project(doc["_source"]) if doc is not None else None

    def get_project_by_id(self, project_id: int) -> Project | None:
        with self._lock:
            hit = self._by_id.get(project_id)
        if hit is not None:
            return hit
        with guard("get project"):
            resp = self.client.search(
                index=self.names.state,
                body={"query": {"bool": {"filter": [_PROJECTS, {"term": {"id": project_id}}]}}, "size": 1},
            )
        hits = resp["hits"]["hits"]
        if not hits:
            return None
        project = _project(hits[0]["_source"])
        with self._lock:
            self._by_id[project_id] = project
        return project

    def list_projects(self) -> list[Project]:
        with guard("list projects"):
            resp = self.client.search(
                index=self.names.state, body={"query": _PROJECTS, "sort": [{"id": "asc"}], "size": 10_000}
            )
        return [_project(h["_source"]) for h in resp["hits"]["hits"]]

    def find_token(self, token_hash: str) -> tuple[Project, TokenScope] | None:
        doc = self._get(self.names.state, f"{_TOKEN_PREFIX}{token_hash}")
        if doc is None or doc["_source"].get("revoked_at") is not None:
            return None
        project = self.get_project_by_id(int(doc["_source"]["project_id"]))
        if project is None:
            return None
        return project, doc["_source"]["scope"]

    def list_tokens(self, project_id: int | None = None) -> list[TokenRecord]:
        query: list[dict[str, Any]] = [{"term": {"kind": "token"}}]
        if project_id is not None:
            query.append({"term": {"project_id": project_id}})
        with guard("list tokens"):
            resp = self.client.search(
                index=self.names.state, body={"query": {"bool": {"filter": query}}, "size": 10_000}
            )
        # Sorted here: sorting on _id needs fielddata a cluster may refuse (same order as SQLite).
        tokens = [_token(h["_id"], h["_source"]) for h in resp["hits"]["hits"]]
        return sorted(tokens, key=lambda t: (t.created_at, t.hash))

    def revoke_token(self, token_hash: str) -> TokenRecord | None:
        doc_id = f"{_TOKEN_PREFIX}{token_hash}"
        for _ in range(_SEQ_RETRIES):
            doc = self._get(self.names.state, doc_id)
            if doc is None:
                return None
            src = doc["_source"]
            if src.get("revoked_at") is not None:
                return _token(doc_id, src)
            src = {**src, "revoked_at": now_us()}
            try:
                # Conditional on what was read: two revokers at once keep the first revoked_at.
                with guard("revoke token"):
                    self.client.index(
                        index=self.names.state,
                        id=doc_id,
                        body=src,
                        params={
                            "if_seq_no": doc["_seq_no"],
                            "if_primary_term": doc["_primary_term"],
                            "refresh": "true",
                        },
                    )
            except Conflict:
                continue
            return _token(doc_id, src)
        raise StoreUnavailable("could not revoke the token: too much contention on its document")

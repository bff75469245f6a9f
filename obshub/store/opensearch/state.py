"""Projects and tokens: small ordinary indices, written rarely, read on every request.

- A project doc's `_id` is its name, written with `create`: a second create is a 409, so two
  hubs creating the same name at once cannot both win.
- Project ids are integers from a counter doc in `<prefix>-meta`, bumped with
  `if_seq_no`/`if_primary_term` (optimistic concurrency; a lost race re-reads and retries).
- Public keys are unique through claim docs (`pk:<key>`) in the same meta index.
- Token docs are keyed by the token's hash: a lookup is a realtime GET, no refresh needed.
Project rows never change after creation, so lookups by id are cached in-process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from opensearchpy import OpenSearch

from obshub.errors import Conflict, NotFound, StoreUnavailable
from obshub.store.base import Project, TokenScope
from obshub.store.opensearch.client import guard
from obshub.store.opensearch.mappings import Names

__all__ = ["PROJECT_FIELDS", "META_FIELDS", "TOKEN_FIELDS", "State"]

PROJECT_FIELDS = {"id": "integer", "name": "keyword", "public_key": "keyword", "created_at": "long"}
TOKEN_FIELDS = {"project_id": "integer", "scope": "keyword", "created_at": "long"}
META_FIELDS = {"value": "long", "project_id": "integer"}
_SEQ_DOC = "project_seq"
_SEQ_RETRIES = 50  # concurrent creates from many hubs: each retry is one GET + one PUT (~2 ms)


def _now_us() -> int:
    return time.time_ns() // 1_000


def _project(src: dict[str, Any]) -> Project:
    return Project(int(src["id"]), src["name"], src["public_key"], int(src.get("created_at", 0)))


class State:
    def __init__(self, client: OpenSearch, names: Names) -> None:
        self.client = client
        self.names = names
        self._by_id: dict[int, Project] = {}
        self._lock = threading.Lock()

    def _get(self, index: str, doc_id: str) -> dict[str, Any] | None:
        try:
            with guard(f"get {index}"):
                return self.client.get(index=index, id=doc_id)  # type: ignore[no-any-return]
        except NotFound:
            return None

    def _next_id(self) -> int:
        for _ in range(_SEQ_RETRIES):
            doc = self._get(self.names.meta, _SEQ_DOC)
            try:
                with guard("allocate project id"):
                    if doc is None:
                        self.client.create(index=self.names.meta, id=_SEQ_DOC, body={"value": 1},
                                           params={"refresh": "true"})
                        return 1
                    n = int(doc["_source"]["value"]) + 1
                    self.client.index(index=self.names.meta, id=_SEQ_DOC, body={"value": n},
                                      params={"if_seq_no": doc["_seq_no"], "if_primary_term": doc["_primary_term"],
                                              "refresh": "true"})
                    return n
            except Conflict:
                continue  # another hub took this number; re-read
        raise StoreUnavailable("could not allocate a project id: too much contention on the counter")

    def is_empty(self) -> bool:
        with guard("count projects"):
            return int(self.client.count(index=self.names.projects)["count"]) == 0

    def create_project(self, name: str, public_key: str, token_hashes: Sequence[tuple[TokenScope, str]]) -> Project:
        if self._get(self.names.projects, name) is not None:
            raise Conflict(f"project {name!r} already exists")
        pid = self._next_id()
        now = _now_us()
        try:
            with guard("create project"):
                self.client.create(index=self.names.projects, id=name,
                                   body={"id": pid, "name": name, "public_key": public_key, "created_at": now},
                                   params={"refresh": "true"})
        except Conflict:
            raise Conflict(f"project {name!r} already exists") from None
        try:
            with guard("claim public key"):
                self.client.create(index=self.names.meta, id=f"pk:{public_key}", body={"project_id": pid},
                                   params={"refresh": "true"})
        except Conflict:
            with guard("undo project"):
                self.client.delete(index=self.names.projects, id=name, params={"refresh": "true"})
            raise Conflict(f"public key of project {name!r} is already in use") from None
        for scope, h in token_hashes:
            try:
                self._add_token(pid, scope, h)
            except Conflict:
                raise Conflict(f"a token of project {name!r} collides with an existing token") from None
        project = Project(pid, name, public_key, now)
        with self._lock:
            self._by_id[pid] = project
        return project

    def _add_token(self, project_id: int, scope: TokenScope, token_hash: str) -> None:
        with guard("add token"):
            self.client.create(index=self.names.tokens, id=token_hash,
                               body={"project_id": project_id, "scope": scope, "created_at": _now_us()},
                               params={"refresh": "true"})

    def add_token(self, project_id: int, scope: TokenScope, token_hash: str) -> None:
        try:
            self._add_token(project_id, scope, token_hash)
        except Conflict:
            pass  # same hash twice: already there (SQLite: INSERT OR IGNORE)

    def get_project(self, name: str) -> Project | None:
        doc = self._get(self.names.projects, name)
        return _project(doc["_source"]) if doc is not None else None

    def get_project_by_id(self, project_id: int) -> Project | None:
        with self._lock:
            hit = self._by_id.get(project_id)
        if hit is not None:
            return hit
        with guard("get project"):
            resp = self.client.search(index=self.names.projects,
                                      body={"query": {"term": {"id": project_id}}, "size": 1})
        hits = resp["hits"]["hits"]
        if not hits:
            return None
        project = _project(hits[0]["_source"])
        with self._lock:
            self._by_id[project_id] = project
        return project

    def list_projects(self) -> list[Project]:
        with guard("list projects"):
            resp = self.client.search(index=self.names.projects,
                                      body={"query": {"match_all": {}}, "sort": [{"id": "asc"}], "size": 10_000})
        return [_project(h["_source"]) for h in resp["hits"]["hits"]]

    def find_token(self, token_hash: str) -> tuple[Project, TokenScope] | None:
        doc = self._get(self.names.tokens, token_hash)
        if doc is None:
            return None
        project = self.get_project_by_id(int(doc["_source"]["project_id"]))
        if project is None:
            return None
        return project, doc["_source"]["scope"]

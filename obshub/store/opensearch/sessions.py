"""Web session state every hub on this cluster shares (the SQLite twin is `sqlite/sessions.py`),
as docs of the state index (state.py):

    secret:<name>    {kind, secret}        the key that signs session cookies when `secret_key`
                                           is unset; `create`, so replicas starting at once
                                           agree on the first one (the others read it back)
    session:<id>     {kind, expires_at}    a session ended by /logout, kept until its cookie
                                           would have expired anyway (12 h); a realtime GET
                                           per check, and each logout deletes up to 500 docs
                                           past their `expires_at` (logouts are rare: a few a day)
"""

from __future__ import annotations

import contextlib
from typing import Any

from opensearchpy import OpenSearch

from obshub.errors import Conflict, StoreError
from obshub.events import now_us
from obshub.store.opensearch.client import guard
from obshub.store.opensearch.mappings import Names

__all__ = ["SESSION_FIELDS", "Sessions"]

# `secret` is read back by id only: neither indexed nor kept in doc values.
SESSION_FIELDS: dict[str, Any] = {
    "secret": {"type": "keyword", "index": False, "doc_values": False},
    "expires_at": {"type": "long"},
}
_PURGE_PAGE = 500


class Sessions:
    def __init__(self, client: OpenSearch, names: Names) -> None:
        self.client = client
        self.index = names.state

    def shared_secret(self, name: str, candidate: str) -> str:
        doc_id = f"secret:{name}"
        with contextlib.suppress(Conflict), guard("store a shared secret"):
            self.client.create(index=self.index, id=doc_id, body={"kind": "secret", "secret": candidate})
            return candidate
        with guard("read a shared secret"):
            doc = self.client.get(index=self.index, id=doc_id)
        return str(doc["_source"]["secret"])

    def end_session(self, session_id: str, expires_at: int) -> None:
        with guard("end a web session"):
            self.client.index(
                index=self.index, id=f"session:{session_id}", body={"kind": "ended_session", "expires_at": expires_at}
            )
        self._purge()

    def _purge(self) -> None:
        query = {"bool": {"filter": [{"term": {"kind": "ended_session"}}, {"range": {"expires_at": {"lt": now_us()}}}]}}
        with guard("find expired ended sessions"):
            resp = self.client.search(index=self.index, body={"query": query, "size": _PURGE_PAGE, "_source": False})
        actions = [{"delete": {"_index": self.index, "_id": h["_id"]}} for h in resp["hits"]["hits"]]
        if actions:
            with contextlib.suppress(StoreError), guard("purge expired ended sessions"):
                self.client.bulk(body=actions)  # best effort: the next logout tries again

    def session_ended(self, session_id: str) -> bool:
        with guard("check a web session"):
            doc = self.client.get(index=self.index, id=f"session:{session_id}", params={"ignore": 404})
        return isinstance(doc, dict) and bool(doc.get("found"))

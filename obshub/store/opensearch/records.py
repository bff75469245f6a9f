"""Records (`obshub.store.base.Record`) as docs of the state index (state.py), the SQLite twin
being `sqlite/records.py`:

    record:<kind>:<key>   {kind: "record", rkind, rkey, rversion, updated_at, data}

`data` is stored, not indexed (an `enabled: false` object: any JSON, no mapping growth). A
compare-and-set reads the doc with a realtime GET and writes it back with `if_seq_no` and
`if_primary_term`, so of two replicas that read the same version one write wins and the other
gets 409 (Conflict). Writes do not refresh: `list_records` refreshes the state index before it
searches, so it sees every acknowledged write. A refresh per write serialized on the node at
~45 ms each (200 alert states changing in one pass took ~8 s); one refresh per listing of a
small index costs a few ms.
"""

from __future__ import annotations

from typing import Any

from opensearchpy import OpenSearch

from obshub.errors import Conflict
from obshub.events import now_us
from obshub.store.base import MAX_RECORDS, Record
from obshub.store.opensearch.client import guard
from obshub.store.opensearch.mappings import Names

__all__ = ["RECORD_FIELDS", "Records"]

RECORD_FIELDS: dict[str, Any] = {
    "rkind": {"type": "keyword"},
    "rkey": {"type": "keyword"},
    "rversion": {"type": "long"},
    "updated_at": {"type": "long"},
    "data": {"type": "object", "enabled": False},
}
_MAX_ID_BYTES = 512  # OpenSearch's limit on a document _id
_CAS_RETRIES = 20  # `version=None` writes retry a lost race (each a GET and a PUT: ~2 ms)


def _id(kind: str, key: str) -> str:
    doc_id = f"record:{kind}:{key}"
    if len(doc_id.encode()) > _MAX_ID_BYTES:
        raise ValueError(f"record key too long: {len(doc_id.encode())} bytes with its kind (at most {_MAX_ID_BYTES})")
    return doc_id


def _record(src: dict[str, Any]) -> Record:
    return Record(src["rkind"], src["rkey"], dict(src.get("data") or {}), int(src["rversion"]), int(src["updated_at"]))


class Records:
    def __init__(self, client: OpenSearch, names: Names) -> None:
        self.client = client
        self.index = names.state

    def _get(self, kind: str, key: str) -> dict[str, Any] | None:
        with guard("read a record"):
            doc = self.client.get(index=self.index, id=_id(kind, key), params={"ignore": 404})
        return doc if isinstance(doc, dict) and doc.get("found") else None

    def get(self, kind: str, key: str) -> Record | None:
        doc = self._get(kind, key)
        return _record(doc["_source"]) if doc else None

    def list(self, kind: str, prefix: str = "") -> list[Record]:
        query: list[dict[str, Any]] = [{"term": {"kind": "record"}}, {"term": {"rkind": kind}}]
        if prefix:
            query.append({"prefix": {"rkey": prefix}})
        body = {"query": {"bool": {"filter": query}}, "sort": [{"rkey": "asc"}], "size": MAX_RECORDS}
        with guard("list records"):
            self.client.indices.refresh(index=self.index)
            hits = self.client.search(index=self.index, body=body)["hits"]["hits"]
        return [_record(h["_source"]) for h in hits]

    def put(self, kind: str, key: str, value: dict[str, Any], version: int | None) -> Record:
        for _ in range(_CAS_RETRIES):
            doc = self._get(kind, key)
            current = int(doc["_source"]["rversion"]) if doc else 0
            if version is not None and version != current:
                raise Conflict(f"{kind} {key!r} is at version {current}, not {version}")
            at = now_us()
            src = {
                "kind": "record",
                "rkind": kind,
                "rkey": key,
                "rversion": current + 1,
                "updated_at": at,
                "data": value,
            }
            try:
                with guard("write a record"):
                    if doc is None:
                        self.client.create(index=self.index, id=_id(kind, key), body=src)
                    else:
                        self.client.index(
                            index=self.index,
                            id=_id(kind, key),
                            body=src,
                            params={"if_seq_no": doc["_seq_no"], "if_primary_term": doc["_primary_term"]},
                        )
            except Conflict:
                if version is not None:
                    raise Conflict(f"{kind} {key!r} was written by somebody else since version {version}") from None
                continue  # last write wins: read again and write over the winner
            return Record(kind, key, value, current + 1, at)
        raise Conflict(f"{kind} {key!r}: {_CAS_RETRIES} writes in a row lost a race")

    def delete(self, kind: str, key: str, version: int | None) -> bool:
        doc = self._get(kind, key)
        if doc is None:
            if version:
                raise Conflict(f"{kind} {key!r} is gone")
            return False
        current = int(doc["_source"]["rversion"])
        if version is not None and version != current:
            raise Conflict(f"{kind} {key!r} is at version {current}, not {version}")
        params: dict[str, Any] = {"if_seq_no": doc["_seq_no"], "if_primary_term": doc["_primary_term"]}
        try:
            with guard("delete a record"):
                self.client.delete(index=self.index, id=_id(kind, key), params=params)
        except Conflict:
            raise Conflict(f"{kind} {key!r} was written by somebody else meanwhile") from None
        return True

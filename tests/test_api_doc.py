"""docs/api.md lists exactly the routes the hub registers, and its links resolve.

The route tables of api.md (rows `| METHOD | `path` | …`) are compared with the routes of
`create_app` in both directions: a new route without docs fails here, and so does a documented
route that no longer exists. HEAD is left out (Starlette adds it to every GET route, as the doc
says once).
"""

from __future__ import annotations

import re
from pathlib import Path

from starlette.routing import Mount, Route

from obshub.app import create_app
from obshub.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
API_MD = ROOT / "docs" / "api.md"
_ROW = re.compile(r"^\|\s*(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)\s*\|\s*`([^`]+)`\s*\|", re.M)
_CONVERTER = re.compile(r"\{(\w+):\w+\}")  # `{id:path}` -> `{id}`: the doc shows parameter names only


def registered(tmp_path: Path) -> set[tuple[str, str]]:
    """(method, path) of every route of the app; nothing is opened (create_app connects nothing)."""
    app = create_app(load_settings({}, store=f"sqlite:///{tmp_path}/obshub.db"))
    out: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, Mount):
            inner = [r for r in route.routes if isinstance(r, Route)]
            if not inner:  # static files: any path below the mount point
                out.add(("GET", route.path + "/{path}"))
            for r in inner:  # another product's API under a prefix (/es/, /loki/): each route
                path = _CONVERTER.sub(r"{\1}", route.path + r.path)
                out |= {(m, path) for m in r.methods or () if m != "HEAD"}
            continue
        assert isinstance(route, Route), route
        for method in route.methods or ():
            if method != "HEAD":
                out.add((method, _CONVERTER.sub(r"{\1}", route.path)))
    return out


def documented(text: str) -> set[tuple[str, str]]:
    return {(m.group(1), m.group(2)) for m in _ROW.finditer(text)}


def test_every_route_is_documented_and_every_documented_route_exists(tmp_path: Path) -> None:
    routes = registered(tmp_path)
    docs = documented(API_MD.read_text(encoding="utf-8"))
    assert ("POST", "/api/v1/ingest") in routes and ("GET", "/api/v1/trace/{id}") in routes  # the parse works
    missing = sorted(routes - docs)
    assert not missing, "routes missing from docs/api.md (add a `| METHOD | `path` | …` row):\n" + "\n".join(
        f"{m} {p}" for m, p in missing
    )
    stale = sorted(docs - routes)
    assert not stale, "docs/api.md lists routes the hub does not have:\n" + "\n".join(f"{m} {p}" for m, p in stale)


def test_a_route_missing_from_the_doc_is_caught(tmp_path: Path) -> None:
    text = API_MD.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| DELETE | `/api/v1/checks/{name}`"))
    assert ("DELETE", "/api/v1/checks/{name}") in registered(tmp_path) - documented(text.replace(row, ""))


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6} (.+)$", re.sub(r"```.*?```", "", text, flags=re.S), re.M):
        slug = _slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_links_into_api_md_resolve() -> None:
    """`api.md#…` links of the other docs and README, and api.md's own `(#…)` links."""
    anchors = _anchors(API_MD.read_text(encoding="utf-8"))
    broken = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        own = r"\]\(#([\w-]+)\)" if path == API_MD else r"api\.md#([\w-]+)"
        broken += [f"{path.relative_to(ROOT)}: #{a}" for a in re.findall(own, text) if a not in anchors]
    assert not broken, "links to missing headings of docs/api.md:\n" + "\n".join(broken)

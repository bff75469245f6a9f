"""dashboards/ and compose/ against the real things: a real Prometheus (Debian's, from
scripts/prometheus.sh) scrapes a real hub and a real agent, and every query of every Grafana
panel must be valid PromQL that finds data, with the values the situation implies; the
dashboards type-check against Grafana's own schema types (dashboards/check). The compose
stack goes through compose-go (the loader of `docker compose`, built from compose/check), its
wiring is checked (mounts, targets, ports), `promtool` checks its Prometheus config, its agent
config goes through the agent's own parser, and the image's wheel builds from what it copies.

Without Prometheus, Go or npm these skip locally and fail in CI (CI=true), like the OpenSearch tests.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from obshub_agent.config import parse_config
from tests.agent.agentproc import AgentProcess, write_config
from tests.ci import unavailable
from tests.hubproc import HubProcess, free_port, wait_until
from tests.promproc import PROMETHEUS, Prometheus

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
ALERTS = DASHBOARDS / "alerts.yml"
COMPOSE = ROOT / "compose"
PROMTOOL = "/usr/bin/promtool"
# Grafana's `$__rate_interval` is at least 4 scrape intervals; here a window longer than the whole
# test, so every sample since start counts and a rate never misses the one burst of traffic.
RATE_WINDOW = "10m"
_wait = functools.partial(wait_until, every=0.25)  # Prometheus scrapes every second
LINES = 200  # the agent's good lines
METRICS_CONFIG = """
[[metrics]]
name = "shop_lines"
project = "test"
query = "service:shop"
group_by = "level"
description = "Lines of the shop's log"
"""


def require(binary: str, how: str = "scripts/prometheus.sh installs Debian's prometheus") -> None:
    if not os.access(binary, os.X_OK):
        unavailable(f"{binary} not installed ({how})")


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panel_queries(dash: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(panel title, legend, expr) of every target, rows' nested panels included."""
    stack = list(dash["panels"])
    while stack:
        p = stack.pop(0)
        stack.extend(p.get("panels", []))
        for t in p.get("targets", []):
            yield p["title"], t.get("legendFormat", ""), t["expr"]


def to_promql(expr: str) -> str:
    """What Grafana sends for the dashboard's defaults: all instances (projects, metrics), a rate window."""
    expr = expr.replace("$__rate_interval", RATE_WINDOW)
    for var in ("instance", "project", "metric"):
        expr = expr.replace(f'"${var}"', '".*"')
    return expr


# -- the dashboards alone ---------------------------------------------------------------------


def test_dashboards_are_well_formed() -> None:
    dashes = load_dashboards()
    assert set(dashes) == {"obshub-hub.json", "obshub-agents.json", "obshub-business.json"}
    uids = [d["uid"] for d in dashes.values()]
    assert sorted(uids) == ["obshub-agents", "obshub-business", "obshub-hub"], "fixed uids: links and bookmarks"
    for name, d in dashes.items():
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        variables = {v["name"] for v in d["templating"]["list"]}
        pickers = {"project", "metric"} if name == "obshub-business.json" else set()
        assert variables == {"datasource", "instance", *pickers}, name
        for p in d["panels"]:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24, f"{name}: {p['title']} overflows the 24-column grid"
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert p["targets"], f"{name}: {p['title']} has no query"
            if p["type"] == "stat":  # Grafana needs a base step (value null) to colour a stat
                steps = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
                assert steps[0]["value"] is None and all(
                    a["value"] < b["value"] for a, b in itertools.pairwise(steps[1:])
                )
            for t in p["targets"]:
                assert t["datasource"]["uid"] == "${datasource}"
                for var in ("instance", *pickers):
                    assert f'{var}=~"${var}"' in t["expr"], f"{p['title']}: ignores the {var} picker"


def test_dashboards_type_check_against_grafanas_schema(tmp_path: Path) -> None:
    """dashboards/check: each dashboard as a TypeScript literal of Grafana's own dashboard type
    (@grafana/schema), under `tsc --strict`: unknown or misspelt keys, missing required ones and
    values outside Grafana's enums fail. npm fetches the pinned packages once into ~/.cache."""
    npm = shutil.which("npm")
    require(npm or "npm", "Node.js and npm, on the machine with Java and Maven")
    check = DASHBOARDS / "check"
    lock = (check / "package-lock.json").read_bytes()
    cache = Path.home() / ".cache" / "obshub" / f"dashboards-check-{hashlib.sha256(lock).hexdigest()[:12]}"
    if not (cache / "node_modules" / ".bin" / "tsc").exists():
        cache.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(check / name, cache / name)
        r = subprocess.run(
            [str(npm), "ci", "--no-audit", "--no-fund", "--silent"],
            cwd=cache,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]

    def tsc(dashboards: dict[str, str]) -> subprocess.CompletedProcess[str]:
        work = tmp_path / f"ts{len(list(tmp_path.iterdir()))}"
        work.mkdir()
        for name in ("tsconfig.json", "dashboard.ts"):
            shutil.copy(check / name, work / name)
        (work / "node_modules").symlink_to(cache / "node_modules")
        for name, text in dashboards.items():
            (work / f"{name}.ts").write_text(
                f'import type {{ DashboardJson }} from "./dashboard";\nexport const d: DashboardJson = {text};\n'
            )
        return subprocess.run(
            [str(cache / "node_modules" / ".bin" / "tsc"), "-p", str(work)], capture_output=True, text=True, timeout=300
        )

    texts = {p.stem.replace("-", "_"): p.read_text() for p in sorted(DASHBOARDS.glob("*.json"))}
    r = tsc(texts)
    assert r.returncode == 0, r.stdout[-4000:]
    r = tsc({"misspelt": texts["obshub_hub"].replace('"gridPos"', '"gridpos"', 1)})  # the check can fail
    assert r.returncode != 0 and "gridpos" in r.stdout


def test_provisioning_loads_what_compose_mounts() -> None:
    provider = yaml.safe_load((DASHBOARDS / "provisioning/dashboards/obshub.yaml").read_text())
    (prov,) = provider["providers"]
    ds = yaml.safe_load((DASHBOARDS / "provisioning/datasources/obshub.yaml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    grafana = compose()["services"]["grafana"]
    mounts = repo_mounts(grafana)
    assert mounts[prov["options"]["path"]] == DASHBOARDS
    assert mounts["/etc/grafana/provisioning/dashboards"] == DASHBOARDS / "provisioning/dashboards"
    assert mounts["/etc/grafana/provisioning/datasources"] == DASHBOARDS / "provisioning/datasources"
    home = Path(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home.parent == Path(prov["options"]["path"]) and (DASHBOARDS / home.name).is_file()


# -- the compose stack ------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())


def repo_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """{path in the container: path in this repo} of a service's relative bind mounts."""
    return {
        v.split(":")[1]: (COMPOSE / v.split(":")[0]).resolve() for v in service.get("volumes", []) if v.startswith(".")
    }


def test_compose_stack_is_wired() -> None:
    doc = compose()
    services = doc["services"]
    assert set(services) == {"opensearch", "hub", "hub-2", "proxy", "agent", "prometheus", "alertmanager", "grafana"}
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (COMPOSE / src).exists(), f"{name} mounts {src}, which is not in the repo"
            elif not src.startswith("$"):
                assert src in doc["volumes"], f"{name} uses undeclared volume {src}"
    hub = services["hub"]
    assert (COMPOSE / hub["build"]["context"] / hub["build"]["dockerfile"]).is_file()
    assert hub["environment"]["OBSHUB_STORE"].startswith("opensearch://opensearch:9200")
    assert services["agent"]["image"] == hub["image"], "the agent runs from the image the hub builds"
    # hub-2 is the same hub (image, store, config) on the same store; only the proxy is published
    replicas = ["hub", "hub-2"]
    for k in ("image", "environment", "volumes", "healthcheck"):
        assert services["hub-2"][k] == hub[k], k
    assert "ports" not in hub and "ports" not in services["hub-2"]
    port = hub["environment"]["OBSHUB_PORT"]
    assert services["proxy"]["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert repo_mounts(services["proxy"])["/etc/nginx/nginx.conf"] == COMPOSE / "nginx.conf"
    nginx = (COMPOSE / "nginx.conf").read_text()
    assert re.findall(r"(?m)^\s*server (\S+) ", nginx) == [f"{r}:{port}" for r in replicas]
    assert re.search(rf"(?m)^\s*listen {port};", nginx)

    # Prometheus scrapes the hub's port and the agent's metrics_address.
    prom = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    targets = {c["job_name"]: c["static_configs"][0]["targets"] for c in prom["scrape_configs"]}
    mounts = repo_mounts(services["prometheus"])
    assert [mounts[f] for f in prom["rule_files"]] == [ALERTS], "the alert rules are loaded"
    agent_cfg = parse_config(
        tomllib.loads((COMPOSE / "agent.toml").read_text()), env={"OBSHUB_AGENT_TOKEN": "ing_from_env"}
    )
    assert agent_cfg.token == "ing_from_env" and agent_cfg.urls == tuple(f"http://{r}:{port}" for r in replicas)
    assert targets == {
        "obshub-hub": [f"{r}:{port}" for r in replicas],
        "obshub-agent": [f"agent:{agent_cfg.metrics_address.rpartition(':')[2]}"],
    }


def test_compose_file_loads_like_docker_compose(tmp_path: Path) -> None:
    """compose/check (compose-go, the loader `docker compose` itself uses) on the stack: the
    spec's schema, `${VAR:-default}` interpolation, path resolution. Go builds it from the
    module proxy; without Go this skips locally and fails in CI."""
    go = shutil.which("go")
    require(go or "go", "the Go toolchain, on the machine with Java and Maven")
    exe = tmp_path / "compose-check"
    r = subprocess.run(
        [str(go), "build", "-o", str(exe), "."],
        cwd=COMPOSE / "check",
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "GOFLAGS": "-mod=readonly"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OBSHUB_", "OPENSEARCH_", "GRAFANA_"))}
    r = subprocess.run(
        [str(exe), "docker-compose.yml"],
        cwd=COMPOSE,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "OBSHUB_INGEST_TOKEN": "obi_test"},
    )
    assert r.returncode == 0, r.stderr
    project = json.loads(r.stdout)
    services = project["services"]
    assert services["agent"]["environment"]["OBSHUB_AGENT_TOKEN"] == "obi_test"
    assert Path(services["hub"]["build"]["context"]) == ROOT
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            if vol["type"] == "bind":  # defaults interpolated, relative paths resolved
                assert Path(vol["source"]).exists(), f"{name}: {vol['source']} does not exist"
    logs = [v for v in services["agent"]["volumes"] if v["target"] == "/var/log/app"]
    assert logs and Path(logs[0]["source"]) == COMPOSE / "logs" and logs[0]["read_only"]

    # And it does refuse what docker compose refuses (the check can fail).
    broken = tmp_path / "broken.yml"
    broken.write_text((COMPOSE / "docker-compose.yml").read_text().replace("service_healthy", "service_health"))
    r = subprocess.run([str(exe), str(broken)], cwd=COMPOSE, capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1 and "condition" in r.stderr


def test_compose_prometheus_config_passes_promtool() -> None:
    require(PROMTOOL)
    r = subprocess.run(
        [PROMTOOL, "check", "config", "--syntax-only", str(COMPOSE / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr


# -- every panel against a real Prometheus ----------------------------------------------------


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A hub (SQLite), an agent shipping a file to it with one bad line, an uptime check probing
    the hub itself, and Prometheus scraping hub and agent every second."""
    require(PROMETHEUS)
    tmp = tmp_path_factory.mktemp("dash")
    # The uptime check below probes the hub itself on 127.0.0.1: API checks may reach loopback here.
    # A defined metric (by level) of the agent's events, rolled up every 10 s: the business
    # dashboard's obshub_metric_value gauges.
    config = tmp / "obshub.toml"
    config.write_text(METRICS_CONFIG)
    env = {
        "OBSHUB_CHECKS_ALLOW_NETWORKS": "127.0.0.0/8",
        "OBSHUB_CONFIG": str(config),
        "OBSHUB_ROLLUP_INTERVAL_S": "10",
    }
    hub = HubProcess(f"sqlite:///{tmp}/hub.db", env=env, log_path=tmp / "hub.log").start()
    agent = prometheus = None
    try:
        logs = tmp / "logs"
        logs.mkdir()
        mport = free_port()
        cfg = write_config(
            tmp / "agent.toml",
            [{"paths": [str(logs / "*.jsonl")], "format": "json", "service": "shop"}],
            hub=hub.url,
            token=hub.ingest_token,
            state_dir=str(tmp / "state"),
            metrics_address=f"127.0.0.1:{mport}",
            poll_interval_ms=50,
        )
        agent = AgentProcess(cfg, tmp / "agent.log", mport).start()
        prometheus = Prometheus(
            tmp, {"obshub-hub": f"127.0.0.1:{hub.port}", "obshub-agent": f"127.0.0.1:{mport}"}, [ALERTS]
        ).start()
        # Traffic only once both are scraped: a rate needs the counter to move between samples.
        _wait(lambda: len(prometheus.query("up == 1")) == 3, 30, "first scrapes of hub, agent and itself")
        lines = [json.dumps({"message": f"line {i}", "level": "info", "request_id": f"r{i}"}) for i in range(LINES)]
        lines.insert(100, json.dumps({"message": "bad level", "level": "loud"}))  # refused by the hub
        (logs / "app.jsonl").write_text("\n".join(lines) + "\n")
        with hub.client(hub.admin_token) as c:
            r = c.post("/api/v1/checks", json={"name": "self", "target": f"{hub.url}/healthz", "interval_s": 60})
            assert r.status_code == 201, r.text
        _wait(
            lambda: agent.metrics().get('obshub_agent_events_shipped_total{outcome="accepted"}', 0) >= 200,
            30,
            "the agent to ship its file",
        )
        _wait(
            lambda: 'obshub_check_up{check="self",project="test"} 1.0' in hub.get("/metrics").text,
            30,
            "the uptime probe",
        )
        # The rollup job's run after the agent's lines (every 10 s), scraped.
        _wait(
            lambda: (
                len(prometheus.query(f'obshub_metric_value{{metric="shop_lines",window="1d",group="info"}} == {LINES}'))
                == 1
            ),
            40,
            "the rollup job to export the shop's lines",
        )
        # Three scrapes of each since all that: every counter has moved between two samples.
        _wait(
            lambda: (
                len(prometheus.query("count_over_time(obshub_check_up[1m]) >= 3")) == 1
                and len(prometheus.query("count_over_time(obshub_agent_last_success_timestamp_seconds[1m]) >= 3")) == 1
            ),
            30,
            "three scrapes of hub and agent",
        )
        yield prometheus
    finally:
        if prometheus is not None:
            prometheus.stop()
        if agent is not None:
            agent.stop()
        hub.stop()


@pytest.mark.parametrize("name", ["obshub-hub.json", "obshub-agents.json", "obshub-business.json"])
def test_every_panel_query_finds_data(prom: Prometheus, name: str) -> None:
    dash = load_dashboards()[name]
    empty = []
    for title, legend, expr in panel_queries(dash):
        if not prom.query(to_promql(expr)):
            empty.append(f"{title} [{legend}]: {expr}")
    assert not empty, "queries that found nothing (a metric or label the hub/agent does not export?):\n" + "\n".join(
        empty
    )


def values(prom: Prometheus, dash: str, title: str, legend: str | None = None) -> dict[str, float]:
    """A panel's query result as {legend rendered with the series' labels: value}."""
    for t, lf, expr in panel_queries(load_dashboards()[dash]):
        if t == title and (legend is None or lf == legend):
            out = {}
            for series in prom.query(to_promql(expr)):
                label = lf
                for k, v in series["metric"].items():
                    label = label.replace("{{" + k + "}}", v)
                out[label] = float(series["value"][1])
            return out
    raise KeyError(f"{dash}: no panel {title!r}")


def test_panels_show_what_happened(prom: Prometheus) -> None:
    h, a = "obshub-hub.json", "obshub-agents.json"
    assert values(prom, h, "Store reachable") == {"store up": 1.0}
    assert values(prom, h, "Events stored /s")["accepted"] > 0
    assert values(prom, h, "Events refused /s")["refused"] > 0, "the bad line was refused"
    by_outcome = values(prom, h, "Events /s by outcome")
    assert by_outcome["native accepted"] > 0 and by_outcome["native rejected"] > 0
    assert values(prom, h, "Refusals /s by reason")["native validation"] > 0
    assert values(prom, h, "Ingest requests /s by status")["native 200"] > 0
    p99 = values(prom, h, "Ingest request latency", "p99")["p99"]
    assert 0 < p99 <= 10, "a real latency quantile, not NaN"
    assert values(prom, h, "Uptime checks passing") == {"test / self": 1.0}
    assert values(prom, a, "Agents not delivering for 5 min") == {"agents": 0.0}
    assert values(prom, a, "Spools full") == {"full": 0.0}
    assert values(prom, a, "Auth failures /s") == {"401/403": 0.0}
    assert values(prom, a, "Files tailed") == {"files": 1.0}
    shipped = values(prom, a, "Events shipped /s by outcome")
    assert shipped["accepted"] > 0 and shipped["rejected"] > 0
    for dash, title in (
        (h, "Hub CPU"),
        (h, "Hub memory (RSS)"),
        (a, "Agent CPU by host"),
        (a, "Agent memory (RSS) by host"),
    ):
        got = values(prom, dash, title)  # only the hub's (or agent's) own process, not Prometheus's
        assert len(got) == 1 and next(iter(got.values())) > 0, (title, got)
    assert next(iter(values(prom, h, "Hub memory (RSS)").values())) > 20 << 20
    b = "obshub-business.json"  # the defined metric, every line the agent shipped (within the hour and day)
    assert values(prom, b, "Today (UTC)") == {"test / shop_lines": float(LINES)}
    assert values(prom, b, "Today by group") == {"shop_lines info": float(LINES)}
    assert set(values(prom, b, "This hour")) == {"test / shop_lines"}
    since = values(prom, a, "Seconds since last ack by host")
    assert len(since) == 1 and 0 <= next(iter(since.values())) < 60


def test_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    require(PROMTOOL)
    for cmd in (["check", "rules", str(ALERTS)], ["test", "rules", "alerts_test.yml"]):
        r = subprocess.run([PROMTOOL, *cmd], capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent)
        assert r.returncode == 0, r.stdout + r.stderr


def test_alerts_on_a_live_hub_and_agent(prom: Prometheus) -> None:
    """Loaded into the real Prometheus beside the real hub and agent: every rule evaluates
    without error, and the only one not inactive is the refused line's, pending (its 15 min
    have not passed): the labels the hub exports are the ones the rules match."""

    def states() -> dict[str, str]:
        groups = prom.api("rules")["groups"]
        return {r["name"]: (r["health"], r["state"]) for g in groups for r in g["rules"]}  # type: ignore[misc]

    _wait(lambda: all(h == "ok" for h, _ in states().values()), 30, "every rule evaluated")
    got = states()
    assert len(got) == sum(len(g["rules"]) for g in yaml.safe_load(ALERTS.read_text())["groups"])
    assert {name: state for name, (_, state) in got.items() if state != "inactive"} == {
        "ObshubEventsRefused": "pending"
    }
    (alert,) = prom.api("alerts")["alerts"]
    assert alert["labels"]["reason"] == "validation" and alert["labels"]["protocol"] == "native"


def test_instance_picker_lists_the_scraped_instances(prom: Prometheus) -> None:
    for name, dash in load_dashboards().items():
        (var,) = [v for v in dash["templating"]["list"] if v["name"] == "instance"]
        metric = var["query"]["query"].removeprefix("label_values(").split(",")[0]
        url = f"{prom.url}/api/v1/label/instance/values?" + urllib.parse.urlencode({"match[]": metric})
        with urllib.request.urlopen(url, timeout=10) as r:
            found = json.load(r)["data"]
        assert len(found) == 1 and found[0].startswith("127.0.0.1:"), (name, found)


def test_business_pickers_list_projects_and_metrics(prom: Prometheus) -> None:
    (dash,) = [d for d in load_dashboards().values() if d["uid"] == "obshub-business"]
    for var, want in (("project", ["test"]), ("metric", ["shop_lines"])):
        (v,) = [x for x in dash["templating"]["list"] if x["name"] == var]
        match = to_promql(v["query"]["query"].removeprefix("label_values(").rsplit(",", 1)[0])
        found = prom.api(f"label/{var}/values", **{"match[]": match})
        assert found == want, (var, match, found)


def test_compose_image_builds_from_what_the_dockerfile_copies(tmp_path: Path) -> None:
    """No Docker engine here: build the wheel from exactly the files the Dockerfile COPYs, so a
    missing one (a new top-level package, the web templates) fails here, not in a user's build."""
    src = tmp_path / "src"
    src.mkdir()
    for line in (COMPOSE / "Dockerfile").read_text().splitlines():
        if not line.startswith("COPY "):
            continue
        *sources, dest = line.split()[1:]
        to = src / dest
        for name in sources:
            if (ROOT / name).is_dir():  # COPY dir ./dir: its contents into ./dir
                shutil.copytree(ROOT / name, to, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:  # COPY a b ./: each file into the directory
                to.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / name, to / name if dest.endswith("/") else to)
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "out"), str(src)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (wheel,) = (tmp_path / "out").glob("obshub-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "obshub/cli/__init__.py",
        "obshub/web/templates/base.html",
        "obshub_agent/__main__.py",
        "obshub_sdk/__init__.py",
    ):
        assert needed in names, f"the image would lack {needed}"

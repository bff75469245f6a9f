"""The compose stack's reverse proxy (compose/nginx.conf) run by a real nginx in front of two
real hubs on one store: requests reach both replicas; SIGKILL one and the proxy sends the
following requests to the other (a refused connection is retried there by nginx); restart it and
it takes requests again. Clients resend a batch that got no 2xx (same event ids): every
acknowledged event is stored once. The only 5xx allowed are 502s for requests in flight at the
kill (nginx does not resend a POST it had sent), at most one per client."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections import Counter
from pathlib import Path

from tests.ci import unavailable
from tests.hubproc import HubProcess, free_port, metric, wait_healthy, wait_until
from tests.scale.test_three_hubs import Spreader

NGINX = "/usr/sbin/nginx"
CONF = Path(__file__).resolve().parents[2] / "compose" / "nginx.conf"


def nginx_conf(tmp: Path, port: int, hubs: list[HubProcess]) -> Path:
    """compose/nginx.conf with the replicas' and the listening addresses of this test, and
    nginx's temp files under `tmp` (unprivileged, no /var/lib/nginx)."""
    text = CONF.read_text()
    for name, h in zip(("hub", "hub-2"), hubs, strict=True):
        text, n = re.subn(rf"(?m)^(\s*server ){re.escape(name)}:8480 ", rf"\g<1>127.0.0.1:{h.port} ", text)
        assert n == 1, name
    text, n = re.subn(r"(?m)^(\s*listen )8480;", rf"\g<1>127.0.0.1:{port};", text)
    assert n == 1
    temps = "".join(f"    {k}_temp_path {tmp}/{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    text = text.replace("http {\n", "http {\n" + temps, 1)
    out = tmp / "nginx.conf"
    out.write_text(text)
    return out


def test_compose_proxy_in_front_of_two_hubs_one_killed(tmp_path: Path) -> None:
    if not os.access(NGINX, os.X_OK):
        unavailable(f"{NGINX} not installed (scripts/nginx.sh installs Debian's nginx-light)")
    store = f"sqlite:///{tmp_path}/hub.db"
    hubs = [HubProcess(store, project=f"p{i}", log_path=tmp_path / f"hub{i}.log") for i in range(2)]
    port = free_port()
    conf = nginx_conf(tmp_path, port, hubs)
    proxy_url = f"http://127.0.0.1:{port}"
    stop = threading.Event()
    # each client sends everything through the proxy: the list has its one URL
    clients = [Spreader(n, [proxy_url], hubs[0].ingest_token, stop) for n in range(2)]
    nginx: subprocess.Popen[bytes] | None = None
    errlog = tmp_path / "nginx.err"

    def served(h: HubProcess) -> float:
        return metric(h, "obshub_ingest_requests_total", status="200")

    try:
        for h in hubs:
            h.start()
        with open(errlog, "wb") as err:
            nginx = subprocess.Popen(
                [
                    NGINX,
                    "-e",
                    "stderr",
                    "-p",
                    str(tmp_path),
                    "-c",
                    str(conf),
                    "-g",
                    f"daemon off; pid {tmp_path}/nginx.pid;",
                ],
                stdout=err,
                stderr=err,
            )
        wait_healthy(proxy_url, nginx, 20, path="/readyz", name="nginx")
        for c in clients:
            c.start()
        wait_until(lambda: all(served(h) >= 5 for h in hubs), 20, "requests to both replicas")

        victim, survivor = hubs[1], hubs[0]
        victim.kill()
        before = served(survivor)
        wait_until(lambda: served(survivor) >= before + 20, 20, "requests to the other replica")
        victim.start()
        again = served(victim)
        wait_until(lambda: served(victim) >= again + 5, 20, "requests to the restarted replica")
        stop.set()
        for c in clients:
            c.join(30)
        assert not any(c.is_alive() for c in clients)
        acked = [i for c in clients for i in c.acked]
        seen = Counter(e["id"] for e in survivor.search_all("service:scale"))
    finally:
        stop.set()
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        for h in hubs:
            h.stop()

    statuses: Counter[int] = sum((c.statuses for c in clients), Counter())
    failed = [f for c in clients for f in c.failed]
    assert not failed, failed  # the proxy always answers
    assert set(statuses) <= {200, 502}, (statuses, errlog.read_text()[-2000:])
    assert statuses[502] <= len(clients), statuses  # only requests in flight at the kill
    assert len(acked) == len(set(acked)) and acked
    assert set(seen) == set(acked), f"missing {len(set(acked) - set(seen))}, extra {len(set(seen) - set(acked))}"
    assert max(seen.values()) == 1, "an event stored twice"
    print({"acked": len(acked), "statuses": dict(statuses)})

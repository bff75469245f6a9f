"""The jobs' lease (obshub/jobs/lease.py) on both stores: one holder at a time, a holder that
stops renewing is replaced after its expiry and not before, a release hands over at once, and a
holder cut off from the store stops holding before anyone else can take over. Each `Lease` has a
store of its own, as each hub does."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pytest

from obshub.events import now_us
from obshub.jobs.lease import KIND, Lease, leader_only
from obshub.store import Store, open_store
from tests.netcut import Relay

PERIOD_S = 2.0


@pytest.fixture
def stores(store_url: str) -> Iterator[Callable[[], Store]]:
    """Opens one more store on the same URL per call (one per simulated hub)."""
    opened: list[Store] = []

    def more() -> Store:
        s = open_store(store_url)
        s.open()
        opened.append(s)
        return s

    yield more
    for s in opened:
        s.close()


def test_of_several_contenders_exactly_one_holds(stores: Callable[[], Store]) -> None:
    leases = [Lease(stores(), holder=f"hub-{i}", period_s=PERIOD_S) for i in range(4)]
    barrier = threading.Barrier(len(leases))

    def step(lease: Lease) -> None:
        barrier.wait()
        lease.step()

    threads = [threading.Thread(target=step, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    holders = [lease.holder for lease in leases if lease.held()]
    assert len(holders) == 1
    rec = leases[0].store.get_record(KIND, "jobs")
    assert rec is not None and rec.value["holder"] == holders[0]
    for lease in leases:  # and again, now that it exists: the holder renews, nobody else takes it
        lease.step()
    assert [lease.holder for lease in leases if lease.held()] == holders
    assert all(lease.status()["holder"] == holders[0] for lease in leases)


def test_a_holder_that_stops_renewing_is_replaced_after_expiry_not_before(stores: Callable[[], Store]) -> None:
    a = Lease(stores(), holder="a", period_s=PERIOD_S)
    b = Lease(stores(), holder="b", period_s=PERIOD_S)
    a.step()
    b.step()
    assert a.held() and not b.held()
    rec = a.store.get_record(KIND, "jobs")
    assert rec is not None
    expires_at = rec.value["expires_at"]
    last_a = first_b = 0.0
    deadline = time.monotonic() + 3 * PERIOD_S
    while not b.held():  # `a` never renews again (a hub frozen or killed)
        assert time.monotonic() < deadline, "nobody took the expired lease over"
        if a.held():
            last_a = time.monotonic()
        b.step()
        first_b = time.monotonic()
        first_b_wall = now_us()
        time.sleep(0.02)
    assert first_b_wall >= expires_at, "taken before the holder's expiry"
    assert first_b_wall - expires_at < 500_000, "taken long after the expiry"
    assert last_a < first_b - 0.3, "the old holder still held when the new one took over"
    assert not a.held()
    a.step()  # the old holder wakes up: it sees b's lease and does not take it back
    assert not a.held() and b.held()
    assert b.term == 1 and a.term == 1
    assert b.previous_until_us == expires_at + int(b.margin_s * 1e6)


def test_release_hands_over_at_once(stores: Callable[[], Store]) -> None:
    a = Lease(stores(), holder="a", period_s=60)
    b = Lease(stores(), holder="b", period_s=60)
    a.start()  # its thread renews every 20 s
    b.step()
    assert a.held() and not b.held()
    before = now_us()
    a.release()
    assert not a.held()
    b.step()  # a minute's lease, released: taken at once
    assert b.held()
    assert before <= b.previous_until_us - int(b.margin_s * 1e6) <= now_us()
    a.release()  # twice: nothing more happens
    b.release()
    assert not b.held()


def test_renewals_keep_the_lease_with_the_holder(stores: Callable[[], Store]) -> None:
    period = 3.0  # renewed every 1 s, held for 2.4 s after each: room for a busy machine
    a = Lease(stores(), holder="a", period_s=period).start()
    b = Lease(stores(), holder="b", period_s=period).start()
    try:
        deadline = time.monotonic() + 2.5 * period
        while time.monotonic() < deadline:
            assert a.held() and not b.held()
            time.sleep(0.05)
        assert a.term == 1 and b.term == 0
    finally:
        a.release()
        b.release()


@dataclass
class Outage:
    """A store of one hub whose link to the backend can be cut: OpenSearch through a TCP relay
    (tests/netcut.py), SQLite by closing the hub's connections (every call then raises
    StoreUnavailable, as after an I/O error)."""

    store: Store
    cut: Callable[[], None]
    restore: Callable[[], None]


@pytest.fixture
def outage(store_url: str) -> Iterator[Outage]:
    if store_url.startswith("sqlite"):
        store = open_store(store_url)
        store.open()
        yield Outage(store, store.close, store.open)
        store.close()
        return
    parts = urlsplit(store_url)
    host, port = parts.netloc.rsplit(":", 1)
    relay = Relay((host, int(port))).start()
    store = open_store(urlunsplit(parts._replace(netloc=f"127.0.0.1:{relay.port}")))
    store.open()
    yield Outage(store, relay.cut, relay.restore)
    store.close()
    relay.close()


def test_a_holder_cut_off_from_the_store_steps_down_before_another_takes_over(
    stores: Callable[[], Store], outage: Outage
) -> None:
    """The holder loses the store: it stops holding at its next renewal, long before its expiry,
    when another hub may take over."""
    a = Lease(outage.store, holder="a", period_s=PERIOD_S)
    b = Lease(stores(), holder="b", period_s=PERIOD_S)
    a.step()
    b.step()
    assert a.held()
    outage.cut()
    a.step()  # the renewal fails
    assert not a.held()
    assert b.step() > 0 and not b.held()  # not expired yet: b waits
    deadline = time.monotonic() + 2 * PERIOD_S
    while not b.held():
        assert time.monotonic() < deadline
        time.sleep(min(b.step(), 0.1))
    outage.restore()  # back: `a` sees b holds it
    a.step()
    assert not a.held() and b.held()


def test_a_hung_store_ends_the_holding_by_the_holders_own_clock(stores: Callable[[], Store]) -> None:
    """No answer at all (no renewal returns): `held()` turns false by itself at period - margin
    after the last renewal began, before the expiry another hub waits for."""
    a = Lease(stores(), holder="a", period_s=PERIOD_S)
    started = time.monotonic()
    a.step()
    took = time.monotonic() - started  # the renewal's own round trip
    while a.held():
        time.sleep(0.01)
    held_for = time.monotonic() - started
    assert PERIOD_S - a.margin_s <= held_for <= PERIOD_S - a.margin_s + took + 0.1


def test_leader_only_runs_the_job_on_the_holder_only(stores: Callable[[], Store]) -> None:
    a = Lease(stores(), holder="a", period_s=PERIOD_S)
    b = Lease(stores(), holder="b", period_s=PERIOD_S)
    a.step()
    b.step()
    ran: list[str] = []
    job_a = leader_only(a, lambda who: ran.append(who) or len(ran))
    job_b = leader_only(b, lambda who: ran.append(who) or len(ran))
    assert job_a("a") == 1
    assert job_b("b") is None
    assert ran == ["a"]


def test_lease_period_must_be_positive(stores: Callable[[], Store]) -> None:
    with pytest.raises(ValueError, match="positive"):
        Lease(stores(), period_s=0)

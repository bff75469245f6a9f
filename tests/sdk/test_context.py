"""Correlation context across await, tasks, threads and thread pools (real asyncio, real threads)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import structlog

import obshub_sdk
from obshub_sdk.context import CORRELATION_KEYS


def test_bind_user_survives_await(sdk_log) -> None:
    async def handler() -> None:
        obshub_sdk.bind_user("u-1", "s-1")
        await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        structlog.get_logger().info("after await")

    asyncio.run(handler())
    [line] = sdk_log.lines()
    assert (line["user_id"], line["session_id"]) == ("u-1", "s-1")


def test_concurrent_tasks_do_not_see_each_other(sdk_log) -> None:
    async def request(n: int) -> None:
        obshub_sdk.bind(request_id=f"r{n}")
        obshub_sdk.bind_user(f"u{n}")
        for _ in range(5):
            await asyncio.sleep(0.001 * (n % 3))
            structlog.get_logger().info("step", n=n)

    async def main() -> None:
        await asyncio.gather(*(request(n) for n in range(20)))

    asyncio.run(main())
    lines = sdk_log.lines()
    assert len(lines) == 100
    for line in lines:
        n = line["attrs"]["n"]
        assert (line["request_id"], line["user_id"]) == (f"r{n}", f"u{n}")


def test_child_task_gets_a_copy_and_does_not_write_back() -> None:
    async def main() -> tuple[dict[str, str], dict[str, str]]:
        obshub_sdk.bind_user("parent")

        async def child() -> dict[str, str]:
            seen = obshub_sdk.current()
            obshub_sdk.bind_user("child")
            return seen

        seen = await asyncio.create_task(child())
        return seen, obshub_sdk.current()

    seen_by_child, parent_after = asyncio.run(main())
    assert seen_by_child["user_id"] == "parent"
    assert parent_after["user_id"] == "parent"


def test_to_thread_carries_context_run_in_executor_does_not(sdk_log) -> None:
    log = structlog.get_logger()

    async def main() -> None:
        obshub_sdk.bind_user("u-async")
        await asyncio.to_thread(log.info, "to_thread")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, log.info, "run_in_executor bare")
        await loop.run_in_executor(None, obshub_sdk.carry_context(log.info), "run_in_executor carried")

    asyncio.run(main())
    by_msg = {x["message"]: x for x in sdk_log.lines()}
    assert by_msg["to_thread"]["user_id"] == "u-async"
    assert "user_id" not in by_msg["run_in_executor bare"]
    assert by_msg["run_in_executor carried"]["user_id"] == "u-async"


def test_thread_pool_map_with_carry_context(sdk_log) -> None:
    # pool.map runs the same wrapped callable concurrently: each call needs its own copy of the
    # captured context, or Context.run raises "cannot enter context".
    obshub_sdk.bind_user("u-pool", "s-pool")
    barrier = threading.Barrier(4)

    def work(i: int) -> int:
        barrier.wait(5)
        structlog.get_logger().info("pooled", i=i)
        return i

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(obshub_sdk.carry_context(work), range(4))) == [0, 1, 2, 3]
    lines = sdk_log.lines()
    assert len(lines) == 4
    assert all(x["user_id"] == "u-pool" and x["session_id"] == "s-pool" for x in lines)


def test_plain_thread_starts_empty() -> None:
    obshub_sdk.bind_user("main-thread")
    seen: list[dict[str, str]] = []
    t = threading.Thread(target=lambda: seen.append(obshub_sdk.current()))
    t.start()
    t.join()
    obshub_sdk.bind_user(None)
    assert seen == [{}]


def test_bind_rejects_unknown_keys_and_unbinds_with_none() -> None:
    with pytest.raises(TypeError, match="plan"):
        obshub_sdk.bind(plan="pro")
    obshub_sdk.bind(request_id="r", user_id="u")
    obshub_sdk.bind(request_id=None, user_id=None)
    assert obshub_sdk.current() == {}
    assert CORRELATION_KEYS == ("request_id", "trace_id", "span_id", "user_id", "session_id")


def test_long_ids_are_cut_to_128() -> None:
    obshub_sdk.bind_user("x" * 1000)
    try:
        assert len(obshub_sdk.current()["user_id"]) == 128
    finally:
        obshub_sdk.bind_user(None)


def test_start_trace_binds_and_restores(sdk_log) -> None:
    obshub_sdk.bind_user("u-job")
    with obshub_sdk.start_trace(request_id="job-42") as fields:
        structlog.get_logger().info("in job")
        headers = obshub_sdk.outgoing_headers()
    structlog.get_logger().info("after job")
    inside, after = sdk_log.lines()
    assert inside["request_id"] == "job-42" and inside["user_id"] == "u-job"
    assert inside["trace_id"] == fields["trace_id"]
    assert headers["traceparent"] == f"00-{fields['trace_id']}-{fields['span_id']}-01"
    assert "request_id" not in after and after["user_id"] == "u-job"
    with pytest.raises(ValueError), obshub_sdk.start_trace(trace_id="XYZ"):
        pass

"""``ResilientChatModel`` over the real OpenAI backend and a loopback server that injects faults."""

from __future__ import annotations

import asyncio
import random
import socket
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import pytest

from hadron_hf.backends.openai import OpenAIChatModel
from hadron_hf.chat import ChatModel, Completion, Message, SamplingParams
from hadron_hf.engine.resilience import Limits, ResilientChatModel, per_minute_limiter
from hadron_hf.errors import (
    AuthenticationError,
    EndpointDownError,
    ModelNotFoundError,
    RateLimitError,
    RequestRejectedError,
    ServerError,
)
from hadron_hf.testing import FakeOpenAIServer, Faults

PARAMS = SamplingParams(temperature=0.1, max_tokens=16)


def ask(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"question {i}"}]


@asynccontextmanager
async def endpoint(url: str, limits: Limits, key: str = "k", timeout: float = 5.0,
                   sleep: Callable[[float], object] | None = None) -> AsyncIterator[ResilientChatModel]:
    inner = OpenAIChatModel("m", url, key, timeout=timeout)
    kw = {"sleep": sleep} if sleep is not None else {}
    try:
        yield ResilientChatModel(inner, "m at test", limits, **kw)  # type: ignore[arg-type]
    finally:
        await inner.aclose()


class SleepRecorder:
    """Stands in for ``asyncio.sleep``: records each call's waits and returns at once (a virtual clock)."""

    def __init__(self) -> None:
        self.waits: dict[asyncio.Task[object] | None, list[float]] = defaultdict(list)

    async def __call__(self, seconds: float) -> None:
        self.waits[asyncio.current_task()].append(seconds)
        await asyncio.sleep(0)

    def longest(self) -> float:
        """The most virtual time any one call spent waiting."""
        return max((sum(w) for w in self.waits.values()), default=0.0)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


@pytest.mark.parametrize("fault", ["429", "503", "drop", "slow", "malformed", "empty"])
async def test_each_transient_fault_is_retried_once(fault: str) -> None:
    # Only the slow reply needs a short client timeout; a loaded test machine gets a generous one.
    with FakeOpenAIServer(faults=Faults(at={1: fault}, retry_after=0.05, slow_seconds=3.0)) as srv:
        async with endpoint(srv.url, Limits(), timeout=1.0 if fault == "slow" else 10.0) as model:
            done = await model.chat(ask(1), PARAMS)
    assert done.text.startswith("teacher answer")
    assert srv.log.requests == 2 and dict(srv.log.faults) == {fault: 1} and srv.log.repeated == 0
    assert model.stats.retries == 1 and model.stats.succeeded == 1 and model.stats.failed == 0
    assert model.stats.rate_limited == (fault == "429")


async def test_the_sdk_does_not_retry_on_its_own() -> None:
    with FakeOpenAIServer(faults=Faults(rate=1.0, kinds=("503",))) as srv:
        async with endpoint(srv.url, Limits(max_retries=0)) as model:
            with pytest.raises(ServerError, match="503"):
                await model.chat(ask(1), PARAMS)
    assert srv.log.requests == 1


@pytest.mark.parametrize(
    ("server_kw", "key", "error", "fatal"),
    [({"max_prompt_chars": 5}, "k", RequestRejectedError, False),
     ({"api_key": "sk-right-0000"}, "sk-wrong-1111", AuthenticationError, True),
     ({"models": ("other",)}, "k", ModelNotFoundError, True)],
    ids=["400-context-length", "401-wrong-key", "404-unknown-model"],
)
async def test_permanent_errors_are_not_retried(server_kw: dict[str, object], key: str, error: type[Exception],
                                                fatal: bool) -> None:
    with FakeOpenAIServer(**server_kw) as srv:  # type: ignore[arg-type]
        async with endpoint(srv.url, Limits(), key=key) as model:
            with pytest.raises(error):
                await model.chat(ask(1), PARAMS)
            assert srv.log.requests == 1
            # A fatal error stops the endpoint: later calls fail at once without a request.
            with pytest.raises(error):
                await model.chat(ask(2), PARAMS)
    assert srv.log.requests == (1 if fatal else 2)
    assert (model.fatal is not None) == fatal and model.stats.retries == 0


async def test_concurrency_cap_is_respected() -> None:
    with FakeOpenAIServer(latency=0.02) as srv:
        async with endpoint(srv.url, Limits(max_concurrency=4)) as model:
            await asyncio.gather(*(model.chat(ask(i), PARAMS) for i in range(40)))
    assert srv.log.peak_in_flight == 4 and srv.log.requests == 40


async def test_a_call_keeps_its_slot_while_it_waits_to_retry() -> None:
    # Two slots, every first attempt fails: the retries go out before the queued calls start.
    faults = Faults(at={1: "503", 2: "503"})
    with FakeOpenAIServer(faults=faults) as srv:
        async with endpoint(srv.url, Limits(max_concurrency=2), sleep=SleepRecorder()) as model:
            await asyncio.gather(*(model.chat(ask(i), PARAMS) for i in range(6)))
    firsts = [m["content"] for body in srv.log.bodies for m in body["messages"]]
    # Before anything has succeeded, only the two calls holding the slots may send: a third question among
    # the first three requests would mean a retrying call gave its slot away.
    assert len(set(firsts[:3])) <= 2 and len(firsts) == 8


async def test_rpm_limit_holds_in_every_window() -> None:
    # rpm=600 is 10 a second; over any one-second window at most one second's burst plus one second's
    # rate may start (20, plus 2 for jitter in transit), where 36 unthrottled calls would start together.
    with FakeOpenAIServer() as srv:
        async with endpoint(srv.url, Limits(rpm=600)) as model:
            await asyncio.gather(*(model.chat(ask(i), PARAMS) for i in range(36)))
    arrivals = srv.log.arrivals
    busiest = max(sum(t <= u < t + 1.0 for u in arrivals) for t in arrivals)
    print(f"\nrpm=600: busiest one-second window held {busiest} of {len(arrivals)} requests")
    assert len(arrivals) == 36 and busiest <= 10 + 10 + 2


def test_per_minute_limiter_never_bursts_a_whole_minute() -> None:
    for rpm, capacity, period in [(600, 10, 1), (6000, 100, 1), (30, 1, 2), (0.5, 1, 120)]:
        limiter = per_minute_limiter(rpm)
        assert (limiter.max_rate, limiter.time_period) == pytest.approx((capacity, period))


async def test_tpm_limit_admits_a_call_larger_than_its_capacity() -> None:
    with FakeOpenAIServer() as srv:
        async with endpoint(srv.url, Limits(tpm=50)) as model:
            done = await model.chat(ask(1), SamplingParams(max_tokens=1024))
    assert done.text and srv.log.requests == 1


# Not a ScriptedChatModel: it forwards to the real OpenAI backend and timestamps what the real server did.
class StartLog:
    """A ``ChatModel`` in between that notes each attempt's start (time, question) and each 429's arrival."""

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner
        self.starts: list[tuple[float, str]] = []
        self.limited: list[tuple[float, str]] = []
        self.model: ResilientChatModel | None = None
        self.windows: list[int] = []

    async def chat(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        loop = asyncio.get_running_loop()
        self.starts.append((loop.time(), messages[-1]["content"]))
        try:
            return await self.inner.chat(messages, params)
        except RateLimitError:
            self.limited.append((loop.time(), messages[-1]["content"]))
            raise


@pytest.mark.parametrize("header", ["Retry-After", "retry-after-ms", "x-ratelimit-reset-requests"])
async def test_a_429_holds_its_call_and_cuts_the_window_without_freezing_the_endpoint(header: str) -> None:
    # Eight callers keep the endpoint busy; request 10 gets a 429 asking for 0.5 s.
    pause = 0.5
    faults = Faults(at={10: "429"}, retry_after=pause, retry_after_header=header)
    with FakeOpenAIServer(latency=0.01, faults=faults) as srv:
        inner = OpenAIChatModel("m", srv.url, "k")
        starts = StartLog(inner)
        model = ResilientChatModel(starts, "m at test", Limits(max_concurrency=8))

        async def caller(c: int) -> None:
            for i in range(5):
                await model.chat(ask(100 * c + i), PARAMS)

        await asyncio.gather(*(caller(c) for c in range(8)))
        await inner.aclose()
    [(learned, question)] = starts.limited
    [retried] = [t for t, q in starts.starts if q == question and t > learned]
    others = [t for t, q in starts.starts if learned < t < retried and q != question]
    [(sent, kind)] = srv.log.fault_times
    print(f"\n{header}: the 429'd call waited {retried - learned:.2f} s; {len(others)} other calls started meanwhile")
    # The call that got the 429 waits what the server asked; the others go on (the endpoint is not frozen),
    # under a window cut once and grown back by the successes that followed.
    assert kind == "429" and retried >= learned + pause and len(others) > 0
    assert model.endpoint.window.cuts == 1 and model.endpoint.window.current == 8
    assert model.stats.rate_limited == 1 and srv.log.requests == 41 and srv.log.repeated == 0


async def test_a_burst_of_429s_converges_to_a_pause_then_recovers() -> None:
    # The first request opens the endpoint; the next 60 all get 429: a real quota, exhausted.
    faults = Faults(at={n: "429" for n in range(2, 62)}, retry_after=0.02)
    windows: list[int] = []
    with FakeOpenAIServer(latency=0.005, faults=faults) as srv:
        inner = OpenAIChatModel("m", srv.url, "k")
        starts = StartLog(inner)
        model = ResilientChatModel(starts, "m at test", Limits(max_concurrency=16, max_retries=30))
        ep = model.endpoint

        async def caller(c: int) -> None:
            for i in range(3):
                await model.chat(ask(100 * c + i), PARAMS)
                windows.append(ep.window.current)

        await model.chat(ask(9999), PARAMS)
        limited_before = len(starts.limited)
        await asyncio.gather(*(caller(c) for c in range(16)))
        paused = ep.cool_until > 0
        await inner.aclose()
    print(f"\nburst: {srv.log.faults['429']} 429s, {ep.window.cuts} cuts, window {min(windows)}..{ep.window.current}")
    # The window halved down to one call, the endpoint then paused for the server's wait, and once the
    # quota came back every call succeeded and the window grew back to its ceiling.
    assert limited_before == 0 and srv.log.faults["429"] == 60 and paused
    assert ep.window.cuts >= 4 and srv.log.repeated == 0
    assert ep.window.current == 16 and model.stats.failed == 0 and model.stats.succeeded == 49


async def test_defaults_fail_fast_on_an_always_failing_endpoint() -> None:
    # The default budget (6 retries, backoff capped per attempt at 0.25 * 2**n) on a virtual clock:
    # the job stops after at most 0.25 + 0.5 + ... + 8 = 15.75 s of waiting, not after the dataset.
    clock = SleepRecorder()
    with FakeOpenAIServer(faults=Faults(rate=1.0, kinds=("503",))) as srv:
        async with endpoint(srv.url, Limits(), sleep=clock) as model:
            outcomes = await asyncio.gather(*(model.chat(ask(i), PARAMS) for i in range(200)),
                                            return_exceptions=True)
    print(f"\ndefaults vs always-503: stopped after {srv.log.requests} requests and at most "
          f"{clock.longest():.1f} s of (virtual) backoff")
    assert sum(isinstance(o, ServerError) for o in outcomes) == 7
    assert sum(isinstance(o, EndpointDownError) for o in outcomes) == 193
    assert clock.longest() <= 15.75
    # The calls in progress, plus those that took the slots of the first seven to give up.
    assert srv.log.requests <= (Limits().max_concurrency + 7) * 7
    assert "8 call(s) in a row failed after 6 retries each and none has ever succeeded" in str(model.fatal)


async def test_dead_endpoint_is_reported_within_a_second_of_probing() -> None:
    clock = SleepRecorder()
    async with endpoint(closed_port_url(), Limits(), sleep=clock) as model:
        with pytest.raises(EndpointDownError, match="none has ever succeeded.*cannot reach the server") as down:
            await asyncio.gather(*(model.chat(ask(i), PARAMS) for i in range(20)))
    assert "ConnectionRefusedError" in str(down.value)
    assert clock.longest() <= 6 * 0.25 and model.stats.succeeded == 0


async def test_consecutive_failures_after_successes_stop_the_endpoint() -> None:
    # One attempt per call. Two failures, a success, two failures: the success resets the count.
    # Then three failures in a row: down.
    faults = Faults(at={1: "503", 2: "503", 4: "503", 5: "503", 7: "503", 8: "503", 9: "503"})
    outcomes: list[str] = []
    with FakeOpenAIServer(faults=faults) as srv:
        async with endpoint(srv.url, Limits(max_retries=0, fail_fast_after=3)) as model:
            for i in range(10):
                try:
                    await model.chat(ask(i), PARAMS)
                    outcomes.append("ok")
                except EndpointDownError as exc:
                    outcomes.append("down")
                    assert "3 call(s) in a row" in str(exc) and "none succeeded in between" in str(exc)
                except ServerError:
                    outcomes.append("failed")
    assert outcomes == ["failed", "failed", "ok", "failed", "failed", "ok", "failed", "failed", "down", "down"]
    assert srv.log.requests == 9


async def test_repr_names_the_endpoint_only() -> None:
    async with endpoint("http://127.0.0.1:9/v1", Limits(), key="sk-secret-abcdef") as model:
        assert "sk-secret" not in repr(model) and "sk-secret" not in repr(model.inner)



async def test_a_reset_of_zero_still_backs_off() -> None:
    # Azure can send "x-ratelimit-reset-requests: 0": the server's wait is a floor, not the whole wait, so
    # retries still back off exponentially instead of going out as fast as the loop turns.
    random.seed(0)  # the backoff is jittered: a fixed draw keeps the check exact
    clock = SleepRecorder()
    faults = Faults(at={n: "429" for n in range(1, 5)}, retry_after=0.0,
                    retry_after_header="x-ratelimit-reset-requests")
    with FakeOpenAIServer(faults=faults) as srv:
        async with endpoint(srv.url, Limits(max_concurrency=1), sleep=clock) as model:
            done = await model.chat(ask(1), PARAMS)
    assert done.text and srv.log.faults["429"] == 4 and model.stats.retries == 4
    waits = [w for task_waits in clock.waits.values() for w in task_waits]
    assert len(waits) == 4 and sum(waits) >= 0.25  # 0.25 * 2**n capped backoff: never all near zero

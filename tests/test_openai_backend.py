import pytest

from hadron_hf.backends.openai import OpenAIChatModel, redact, retry_after_seconds
from hadron_hf.chat import SamplingParams, split_reasoning
from hadron_hf.errors import (
    AuthenticationError,
    CallTimeoutError,
    ConnectError,
    RateLimitError,
    RequestRejectedError,
    ServerError,
)
from hadron_hf.testing import FakeOpenAIServer, Faults

MSGS = [{"role": "user", "content": "Say something."}]
PARAMS = SamplingParams(temperature=0.1, max_tokens=16, seed=3)


@pytest.mark.parametrize(
    ("style", "reasoning"),
    [("reasoning", "Thinking as the teacher about the request."),
     ("reasoning_content", "Thinking as the teacher about the request."),
     ("think", "Thinking as the teacher about the request."),
     (None, None)],
    ids=["reasoning-field", "reasoning_content-field", "think-tags", "none"],
)
async def test_reasoning_extraction(style: str | None, reasoning: str | None) -> None:
    with FakeOpenAIServer(reasoning=style) as srv:
        model = OpenAIChatModel("m", srv.url, "k")
        done = await model.chat(MSGS, PARAMS)
        await model.aclose()
    assert done.reasoning == reasoning
    assert done.text.startswith("teacher answer") and "<think>" not in done.text
    assert done.prompt_tokens > 0 and done.completion_tokens > 0 and done.model == "m"


async def test_sends_model_sampling_and_seed(server: FakeOpenAIServer) -> None:
    model = OpenAIChatModel("my-model", server.url, "k", extra_body={"top_k": 5})
    await model.chat(MSGS, PARAMS)
    await model.aclose()
    body = server.log.bodies[-1]
    assert (body["model"], body["temperature"], body["max_tokens"], body["seed"], body["top_k"]) == (
        "my-model", 0.1, 16, 3, 5)


@pytest.mark.parametrize(
    ("fault", "error"),
    [("429", RateLimitError), ("503", ServerError), ("drop", ConnectError), ("malformed", ServerError),
     ("empty", ServerError), ("slow", CallTimeoutError)],
    ids=["429", "503", "drop", "malformed", "empty", "slow"],
)
async def test_faults_map_to_retryable_errors(fault: str, error: type[Exception]) -> None:
    with FakeOpenAIServer(faults=Faults(rate=1.0, kinds=(fault,), retry_after=1.5, slow_seconds=1.0)) as srv:
        model = OpenAIChatModel("m", srv.url, "k", timeout=0.3 if fault == "slow" else 10)
        with pytest.raises(error) as info:
            await model.chat(MSGS, PARAMS)
        await model.aclose()
    if fault == "429":
        assert info.value.retry_after == 1.5  # type: ignore[attr-defined]


async def test_wrong_key_is_fatal_and_never_echoed() -> None:
    secret = "sk-test-SECRET-0123456789abcdef"
    with FakeOpenAIServer(api_key="sk-right-key-000") as srv:
        model = OpenAIChatModel("m", srv.url, secret)
        with pytest.raises(AuthenticationError) as info:
            await model.chat(MSGS, PARAMS)
        await model.aclose()
    text = str(info.value) + repr(info.value) + repr(model)
    assert "401" in text and "api_key_env" in text
    assert secret not in text and secret[-4:] not in text


async def test_context_too_long_is_rejected_not_retried() -> None:
    with FakeOpenAIServer(max_prompt_chars=5) as srv:
        model = OpenAIChatModel("m", srv.url, "k")
        with pytest.raises(RequestRejectedError, match="context length"):
            await model.chat(MSGS, PARAMS)
        await model.aclose()


async def test_dead_endpoint_is_a_connect_error() -> None:
    with FakeOpenAIServer() as srv:
        url = srv.url
    model = OpenAIChatModel("m", url, "k", timeout=2)
    with pytest.raises(ConnectError, match="cannot reach"):
        await model.chat(MSGS, PARAMS)
    await model.aclose()


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [({"Retry-After": "2"}, 2.0), ({"retry-after-ms": "250"}, 0.25), ({"x-ratelimit-reset-requests": "6m0s"}, 360.0),
     ({"x-ratelimit-reset-tokens": "120ms", "x-ratelimit-reset-requests": "1s"}, 1.0), ({}, None),
     ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None)],
    ids=["retry-after", "ms", "reset-duration", "max-of-resets", "none", "http-date-ignored"],
)
def test_retry_after_headers(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_seconds(headers) == seconds


def test_redact_removes_keys() -> None:
    assert "abc" not in redact("bad key sk-abc123456 here", None)
    assert "mysecretvalue" not in redact("echo mysecretvalue", "mysecretvalue")


@pytest.mark.parametrize(
    ("content", "answer", "reasoning"),
    [("<think>plan</think>\nDone.", "Done.", "plan"),
     ("plan only closes</think>Done.", "Done.", "plan only closes"),
     ("<think>a</think>x<think>b</think>y", "xy", "a\n\nb"),
     ("No thinking.", "No thinking.", None)],
    ids=["block", "closing-only", "two-blocks", "none"],
)
def test_split_reasoning(content: str, answer: str, reasoning: str | None) -> None:
    assert split_reasoning(content) == (answer, reasoning)

import asyncio
import gc
import warnings

import pytest

from hadron_hf.backends._http import endpoint_label, error_detail, exhausted_limit, parse_duration, status_error
from hadron_hf.backends.openai import OpenAIChatModel, redact, retry_after_seconds
from hadron_hf.backends.openai_sdk import OpenAISDKChatModel
from hadron_hf.chat import SamplingParams, split_reasoning
from hadron_hf.config import ModelConfig
from hadron_hf.engine.local_models import LocalModels, build_backend
from hadron_hf.errors import (
    AuthenticationError,
    CallTimeoutError,
    ConfigError,
    ConnectError,
    FatalBackendError,
    ModelNotFoundError,
    RateLimitError,
    RequestRejectedError,
    RetryableError,
    ServerError,
)
from hadron_hf.testing import FakeOpenAIServer, Faults

TRANSPORTS = pytest.mark.parametrize("transport", [OpenAIChatModel, OpenAISDKChatModel], ids=["aiohttp", "sdk"])
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
@TRANSPORTS
async def test_reasoning_extraction(style: str | None, reasoning: str | None, transport: type[OpenAIChatModel]) -> None:
    with FakeOpenAIServer(reasoning=style) as srv:
        model = transport("m", srv.url, "k")
        done = await model.chat(MSGS, PARAMS)
        await model.aclose()
    assert done.reasoning == reasoning
    assert done.text.startswith("teacher answer") and "<think>" not in done.text
    assert done.prompt_tokens > 0 and done.completion_tokens > 0 and done.model == "m"


@TRANSPORTS
async def test_sends_model_sampling_and_seed(server: FakeOpenAIServer, transport: type[OpenAIChatModel]) -> None:
    model = transport("my-model", server.url, "k", extra_body={"top_k": 5})
    await model.chat(MSGS, PARAMS)
    await model.aclose()
    body = server.log.bodies[-1]
    assert (body["model"], body["temperature"], body["max_tokens"], body["seed"], body["top_k"]) == (
        "my-model", 0.1, 16, 3, 5)


@pytest.mark.parametrize(
    ("fault", "error"),
    [("429", RateLimitError), ("503", ServerError), ("drop", ConnectError), ("malformed", ServerError),
     ("empty", ServerError), ("slow", CallTimeoutError), ("no_message", ServerError), ("no_choices", ServerError),
     ("error_in_200", ServerError), ("429_tokens", RateLimitError)],
    ids=["429", "503", "drop", "malformed", "empty", "slow", "no_message", "no_choices", "error_in_200",
         "429_tokens"],
)
@TRANSPORTS
async def test_faults_map_to_retryable_errors(fault: str, error: type[Exception], transport: type[OpenAIChatModel]
                                              ) -> None:
    with FakeOpenAIServer(faults=Faults(rate=1.0, kinds=(fault,), retry_after=1.5, slow_seconds=1.0)) as srv:
        model = transport("m", srv.url, "k", timeout=0.3 if fault == "slow" else 10)
        with pytest.raises(error) as info:
            await model.chat(MSGS, PARAMS)
        await model.aclose()
    message = str(info.value)
    assert type(info.value) is error and message.startswith(f"model 'm' at {srv.url}: ")
    if fault in ("429", "429_tokens"):
        # 429_tokens names the tokens limit: its reset (1.5 s) counts, not the longer requests reset.
        assert info.value.retry_after == 1.5  # type: ignore[attr-defined]
    expected = {"no_message": "streaming chunk", "no_choices": "no choices",
                "error_in_200": "inside an HTTP 200: Provider returned error (upstream from fake-upstream: upstream "
                                "overloaded, try again)"}
    assert expected.get(fault, "") in message


@TRANSPORTS
async def test_wrong_key_is_fatal_and_never_echoed(transport: type[OpenAIChatModel]) -> None:
    secret = "sk-test-SECRET-0123456789abcdef"
    with FakeOpenAIServer(api_key="sk-right-key-000") as srv:
        model = transport("m", srv.url, secret)
        with pytest.raises(AuthenticationError) as info:
            await model.chat(MSGS, PARAMS)
        await model.aclose()
    text = str(info.value) + repr(info.value) + repr(model)
    assert "the server refused the API key (401): Incorrect API key provided" in text and "api_key_env" in text
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
     ({"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT"}, 30.0), ({"Retry-After": "Wed, 21 Oct 2015 07:27:00 GMT"}, 0.0),
     ({"x-ratelimit-reset-requests": "0"}, 0.0), ({"Retry-After": "0"}, 0.0), ({"Retry-After": "soon"}, None)],
    ids=["retry-after", "ms", "reset-duration", "max-of-resets", "none", "http-date", "http-date-past", "reset-zero",
         "retry-after-zero", "unreadable"],
)
def test_retry_after_headers(headers: dict[str, str], seconds: float | None) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert retry_after_seconds(headers, now=now) == seconds


@pytest.mark.parametrize(("limit", "seconds"), [("tokens", 0.12), ("requests", 60.0), (None, 60.0)],
                         ids=["tokens", "requests", "unnamed"])
def test_retry_after_waits_for_the_named_limit(limit: str | None, seconds: float) -> None:
    headers = {"x-ratelimit-reset-tokens": "120ms", "x-ratelimit-reset-requests": "1m0s"}
    assert retry_after_seconds(headers, limit) == seconds


@pytest.mark.parametrize(
    ("body", "detail", "headers", "limit"),
    [({"error": {"type": "tokens"}}, "", {}, "tokens"),
     (None, "Rate limit reached on requests per min (RPM): Limit 3", {}, "requests"),
     (None, "limit on TPM", {}, "tokens"),
     (None, "slow down", {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-remaining-requests": "5"}, "tokens"),
     (None, "slow down", {}, None)],
    ids=["error-type", "message-rpm", "message-tpm", "remaining-header", "unnamed"],
)
def test_exhausted_limit(body: object, detail: str, headers: dict[str, str], limit: str | None) -> None:
    assert exhausted_limit(body, detail, headers) == limit


@pytest.mark.parametrize(
    ("body", "words"),
    [({"error": "no such model 'm'"}, "no such model 'm'"),
     ({"detail": "Not Found"}, "Not Found"),
     ({"detail": [{"loc": ["body", "messages"], "msg": "field required", "type": "missing"}]},
      "body.messages: field required"),
     ({"error": {"message": "Provider returned error", "code": 400, "metadata": {"raw": {"error": "bad role"}}}},
      'Provider returned error (upstream: {"error": "bad role"})'),
     ({"error": {"message": "Invalid model", "type": "invalid_request_error"}}, "Invalid model"),
     ("<html>Bad Gateway</html>", "<html>Bad Gateway</html>")],
    ids=["string", "detail", "fastapi-validation", "openrouter-raw", "openai", "not-json"],
)
def test_error_detail_keeps_the_servers_words(body: object, words: str) -> None:
    raw = body.encode() if isinstance(body, str) else b""
    assert error_detail(None if isinstance(body, str) else body, raw) == words


@pytest.mark.parametrize(
    ("style", "words"),
    [("openai", "The model `m` does not exist."), ("string", "The model `m` does not exist."),
     ("detail", "The model `m` does not exist."),
     ("openrouter", "Provider returned error (upstream from fake-upstream: The model `m` does not exist.)")],
    ids=["openai", "mlx-string", "fastapi-detail", "openrouter-raw"],
)
@TRANSPORTS
async def test_error_bodies_reach_the_message(style: str, words: str, transport: type[OpenAIChatModel]) -> None:
    with FakeOpenAIServer(models=("other",), error_style=style) as srv:
        model = transport("m", srv.url, "k")
        with pytest.raises(ModelNotFoundError) as info:
            await model.chat(MSGS, PARAMS)
        await model.aclose()
    assert str(info.value) == f"model 'm' at {srv.url}: model or endpoint not found (404): {words}"


@pytest.mark.parametrize("style", ["string", "detail", "openrouter"])
async def test_context_too_long_in_any_error_style_is_rejected(style: str) -> None:
    with FakeOpenAIServer(max_prompt_chars=5, error_style=style) as srv:
        model = OpenAIChatModel("m", srv.url, "k")
        with pytest.raises(RequestRejectedError, match=r"request rejected \(400\): .*context length"):
            await model.chat(MSGS, PARAMS)
        await model.aclose()


@pytest.mark.parametrize(("header", "wait"), [("http-date", 120.0), ("x-ratelimit-reset-requests", 0.0)],
                         ids=["http-date", "reset-zero"])
async def test_rate_limit_waits_from_a_real_server(header: str, wait: float) -> None:
    with FakeOpenAIServer(faults=Faults(rate=1.0, kinds=("429",), retry_after=wait, retry_after_header=header)) as srv:
        model = OpenAIChatModel("m", srv.url, "k")
        with pytest.raises(RateLimitError) as info:
            await model.chat(MSGS, PARAMS)
        await model.aclose()
    asked = info.value.retry_after
    assert asked is not None
    if header == "http-date":
        assert 100.0 < asked <= 120.0  # whole seconds in the date, a few ms between formatting and reading
    else:
        assert asked == 0.0


def test_parse_duration() -> None:
    assert [parse_duration(t) for t in ("6m0s", "1s", "9ms", "0", "1.5", "bad")] == [360.0, 1.0, 0.009, 0.0, 1.5, None]


def test_endpoint_label_hides_credentials_and_query() -> None:
    label = endpoint_label("m", "https://user:sk-secret-123456@host.example/v1/?key=abc")
    assert label == "model 'm' at https://host.example/v1"


def test_bad_base_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="http"):
        OpenAIChatModel("m", "127.0.0.1:8000/v1", "k")


@pytest.mark.parametrize("backend", ["openai", "openai_sdk"])
async def test_runtime_builds_either_transport(server: FakeOpenAIServer, backend: str) -> None:
    cfg = ModelConfig(backend=backend, base_url=server.url, model="m", api_key_env=None, max_concurrency=3)
    model = build_backend(cfg, LocalModels())
    assert type(model) is (OpenAISDKChatModel if backend == "openai_sdk" else OpenAIChatModel)
    done = await model.chat(MSGS, PARAMS)  # type: ignore[attr-defined]
    await model.aclose()  # type: ignore[attr-defined]
    assert done.text.startswith("teacher answer")


async def test_concurrent_calls_share_one_session_within_the_connection_limit() -> None:
    with FakeOpenAIServer(latency=0.02) as srv:
        model = OpenAIChatModel("m", srv.url, "k", max_concurrency=4)
        done = await asyncio.gather(*(model.chat([{"role": "user", "content": f"q{i}"}], PARAMS) for i in range(12)))
        await model.aclose()
    assert len({d.text for d in done}) == 12 and srv.log.peak_in_flight <= 4


async def test_a_model_dropped_without_aclose_closes_quietly(server: FakeOpenAIServer) -> None:
    model = OpenAIChatModel("m", server.url, "k")
    await model.chat(MSGS, PARAMS)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        del model
        gc.collect()
        await asyncio.sleep(0)
    # Event loops that datasets' async map left behind may be collected here too (pyproject ignores those).
    ours = [str(w.message) for w in seen
            if issubclass(w.category, ResourceWarning) and not str(w.message).startswith("unclosed event loop")]
    assert not ours, ours


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


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, RequestRejectedError), (401, AuthenticationError), (403, AuthenticationError), (404, ModelNotFoundError),
     (408, ServerError), (409, ServerError), (413, RequestRejectedError), (422, RequestRejectedError),
     (429, RateLimitError), (500, ServerError), (502, ServerError), (503, ServerError)],
    ids=lambda v: str(v) if isinstance(v, int) else v.__name__,
)
def test_status_codes_map_into_the_error_tree(status: int, error: type[Exception]) -> None:
    found = status_error(status, b'{"error": "said the server, key sk-live-abcdef123456"}', {"Retry-After": "3"},
                         "model 'm' at http://h/v1", "sk-live-abcdef123456")
    assert type(found) is error
    assert str(found).startswith("model 'm' at http://h/v1: ") and f"({status}): said the server" in str(found)
    assert "abcdef123456" not in str(found)
    if isinstance(found, RetryableError):
        assert found.retry_after == 3.0
    assert isinstance(found, (RetryableError, FatalBackendError, RequestRejectedError))


async def test_credentials_in_the_url_never_reach_a_message() -> None:
    with FakeOpenAIServer() as srv:
        url = srv.url.replace("http://", "http://user:pa55word-secret@")
    model = OpenAIChatModel("m", url, None, timeout=2)
    with pytest.raises(ConnectError) as info:
        await model.chat(MSGS, PARAMS)
    await model.aclose()
    assert "pa55word" not in str(info.value) and str(info.value).startswith(f"model 'm' at {srv.url}: ")

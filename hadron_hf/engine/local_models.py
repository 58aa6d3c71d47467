"""In-process models (llama.cpp, mlx) owned by a job, and the raw backend of a ``ModelConfig``.

Loading a local model takes seconds, so a ``runtime.Job`` keeps its ``LocalModels`` across map calls and
frees them when it ends; a bare map's runtime owns (and frees) its own. There is no process-wide table.
"""

from __future__ import annotations

import os

from hadron_hf.chat import ChatModel
from hadron_hf.config import ModelConfig


class LocalModels:
    """In-process models (llama.cpp, mlx), loaded once per config and shared by the runtimes of their owner.

    Loading one takes seconds, so a ``Job`` keeps them across its map calls; ``close()`` frees them.
    """

    def __init__(self) -> None:
        self._models: dict[str, ChatModel] = {}

    def get(self, cfg: ModelConfig) -> ChatModel:
        """The model for ``cfg``, loaded on first use."""
        key = f"{cfg.request_fingerprint()}|{cfg.n_threads}"
        if key not in self._models:
            if cfg.backend == "llama_cpp":
                from hadron_hf.backends.llama_cpp import LlamaCppChatModel

                self._models[key] = LlamaCppChatModel(cfg.model_path, n_ctx=cfg.n_ctx, n_threads=cfg.n_threads,
                                                      model_name=cfg.model)
            else:
                from hadron_hf.backends.mlx import MlxChatModel

                self._models[key] = MlxChatModel(str(cfg.model_path), model_name=cfg.model)
        return self._models[key]

    def close(self) -> None:
        """Free every loaded model (each waits for its queued calls)."""
        models, self._models = list(self._models.values()), {}
        for model in models:
            close = getattr(model, "close", None)
            if callable(close):
                close()


def build_backend(cfg: ModelConfig, local_models: LocalModels,
                  store_path: str | os.PathLike[str] | None = None) -> ChatModel:
    """The raw backend for one ``ModelConfig``, without limits or cache (local models come from ``local_models``).

    Args:
        cfg: the model.
        local_models: where in-process models are loaded and kept.
        store_path: the request-cache database, where a batch-mode model records its batches (``None``: kept
            in memory, so a killed job cannot re-attach to them).
    """
    if cfg.backend == "openai" and cfg.mode == "batch":
        from hadron_hf.backends.batch import BatchChatModel, BatchOptions

        options = BatchOptions(cfg.batch_completion_window, cfg.batch_poll_s, cfg.batch_idle_s,
                               cfg.batch_max_requests, cfg.batch_max_bytes)
        return BatchChatModel(cfg.model, cfg.base_url, cfg.resolve_api_key(), store_path, options,
                              extra_body=cfg.extra_body, judge_constraint=cfg.judge_constraint)
    if cfg.backend in ("openai", "openai_sdk"):
        if cfg.backend == "openai":
            from hadron_hf.backends.openai import OpenAIChatModel as client
        else:
            from hadron_hf.backends.openai_sdk import OpenAISDKChatModel as client
        return client(cfg.model, cfg.base_url, cfg.resolve_api_key(), cfg.timeout, cfg.extra_body,
                      max_concurrency=cfg.max_concurrency, judge_constraint=cfg.judge_constraint)
    return local_models.get(cfg)

"""hadron_hf: LLM-refined answers for post-training data, as a ``Dataset.map`` function.

The public API, re-exported from the layers (see the README's "Architecture"): the map function and its job,
the configs, the chat protocol, the tournament, the training views, the evaluation and the errors.
"""

from hadron_hf.chat import ChatModel, Completion, Message, SamplingParams
from hadron_hf.columns import OUTPUT_FEATURES, output_features
from hadron_hf.config import AutoReasonConfig, ModelConfig, TeacherRoute
from hadron_hf.core.tournament import RoleModels, TournamentResult, TournamentSettings, run_tournament
from hadron_hf.dataset_map import autoreason_map
from hadron_hf.engine.runtime import open_job
from hadron_hf.errors import (
    AuthenticationError,
    BackendError,
    ConfigError,
    EndpointDownError,
    FatalBackendError,
    HadronError,
    InputError,
    ModelNotFoundError,
    RankingParseError,
    RetryableError,
)
from hadron_hf.evaluation import EvalResult, EvalSettings, evaluate, evaluate_async
from hadron_hf.sources import load_refined
from hadron_hf.views import (
    VIEW_NAMES,
    CriticOptions,
    PairOptions,
    SftOptions,
    ViewResult,
    build_view,
    write_views,
)

__all__ = [
    "AuthenticationError",
    "AutoReasonConfig",
    "BackendError",
    "ChatModel",
    "Completion",
    "ConfigError",
    "CriticOptions",
    "EndpointDownError",
    "EvalResult",
    "EvalSettings",
    "FatalBackendError",
    "HadronError",
    "InputError",
    "Message",
    "ModelConfig",
    "ModelNotFoundError",
    "OUTPUT_FEATURES",
    "PairOptions",
    "RankingParseError",
    "RetryableError",
    "RoleModels",
    "SamplingParams",
    "SftOptions",
    "TeacherRoute",
    "TournamentResult",
    "TournamentSettings",
    "VIEW_NAMES",
    "ViewResult",
    "autoreason_map",
    "build_view",
    "evaluate",
    "evaluate_async",
    "load_refined",
    "open_job",
    "output_features",
    "run_tournament",
    "write_views",
]

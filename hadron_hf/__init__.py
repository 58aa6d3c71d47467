"""hadron_hf: LLM-refined answers for post-training data, as a ``Dataset.map`` function."""

from hadron_hf.chat import ChatModel, Completion, Message, SamplingParams
from hadron_hf.columns import OUTPUT_FEATURES, output_features
from hadron_hf.config import AutoReasonConfig, ModelConfig, TeacherRoute
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
from hadron_hf.map import autoreason_map
from hadron_hf.tournament import RoleModels, TournamentResult, TournamentSettings, run_tournament

__all__ = [
    "AuthenticationError",
    "AutoReasonConfig",
    "BackendError",
    "ChatModel",
    "Completion",
    "ConfigError",
    "EndpointDownError",
    "FatalBackendError",
    "HadronError",
    "InputError",
    "Message",
    "ModelConfig",
    "ModelNotFoundError",
    "OUTPUT_FEATURES",
    "RankingParseError",
    "RetryableError",
    "RoleModels",
    "SamplingParams",
    "TeacherRoute",
    "TournamentResult",
    "TournamentSettings",
    "autoreason_map",
    "output_features",
    "run_tournament",
]

"""Training views of a refined dataset in TRL's formats (``builders``), the preference pairs behind them
(``pairs``), their dataset cards (``cards``), writing and publishing them (``write``, ``hub``).

Example:
    >>> result = build_view(refined, "dpo", PairOptions(min_margin=1.0))  # doctest: +SKIP
    >>> write_views(refined, "out/views")["dpo"]  # doctest: +SKIP
    PosixPath('out/views/dpo')
"""

from hadron_hf.views.builders import (
    BAD_PROMPT,
    ERROR_ROW,
    MESSAGES,
    NO_CHANGE,
    NO_REASONING,
    NO_WINNER_PAIR,
    OPTION_TYPES,
    VIEW_NAMES,
    CriticOptions,
    PairOptions,
    SftOptions,
    ViewOptions,
    ViewResult,
    build_view,
    critic_rows,
    dpo_rows,
    kto_rows,
    reward_rows,
    sft_rows,
    view_batch,
    view_features,
)
from hadron_hf.views.write import publish_view, write_view, write_views

__all__ = ["BAD_PROMPT", "ERROR_ROW", "MESSAGES", "NO_CHANGE", "NO_REASONING", "NO_WINNER_PAIR", "OPTION_TYPES",
           "VIEW_NAMES", "CriticOptions", "PairOptions", "SftOptions", "ViewOptions", "ViewResult", "build_view",
           "critic_rows", "dpo_rows", "kto_rows", "publish_view", "reward_rows", "sft_rows", "view_batch",
           "view_features", "write_view", "write_views"]

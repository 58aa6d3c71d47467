"""Layer 4, does refinement beat single-shot? A blind judge panel compares refined answers with the drafts
(``evaluate``), and the summary statistics with a bootstrap interval (``stats``)."""

from hadron_hf.evaluation.evaluate import EvalResult, EvalSettings, evaluate, evaluate_async
from hadron_hf.evaluation.stats import EvalSummary

__all__ = ["EvalResult", "EvalSettings", "EvalSummary", "evaluate", "evaluate_async"]

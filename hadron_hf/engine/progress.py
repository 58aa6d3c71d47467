"""Live progress and cost accounting of a refinement job.

``Dataset.map`` calls ``autoreason_map`` once per batch, every batch concurrently in one event loop, so
the batches of one config share one ``RunProgress``: the one their ``Runtime`` owns. It counts rows
across batches and reads the call counters and adaptive windows of the runtime's endpoints. When shown, a small
thread redraws one tqdm line a few times a second, so elapsed time and ETA move even while every row
waits on a slow call; the thread is joined when the last running batch ends.

Example:
    >>> cfg = AutoReasonConfig(model=ModelConfig(model="gpt-4o-mini", price_input_per_mtok=0.15,
    ...                                          price_output_per_mtok=0.6))  # doctest: +SKIP
    >>> PriceTable.from_config(cfg).price_of("gpt-4o-mini-2024-07-18").cost(1_000_000, 0)  # doctest: +SKIP
    0.15
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tqdm.std import tqdm

from hadron_hf.backends.batch import batch_progress
from hadron_hf.config import AutoReasonConfig, ModelConfig
from hadron_hf.core.tournament import CallRecord, TournamentResult
from hadron_hf.engine.endpoint import CallStats, Endpoint

PROGRESS_ENV = "HADRON_HF_PROGRESS"
"""``0`` hides the progress line everywhere; ``1`` shows it even when stderr is not a terminal."""

REFRESH_S = 0.25


@dataclass(frozen=True)
class Price:
    """USD per million prompt and completion tokens of one model."""

    input_per_mtok: float
    output_per_mtok: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The cost in USD of this many tokens."""
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1e6


def _price(m: ModelConfig) -> Price | None:
    if m.price_input_per_mtok is None and m.price_output_per_mtok is None:
        return None
    share = m.batch_discount if m.mode == "batch" else 1.0  # batch APIs bill a share of the live price
    return Price((m.price_input_per_mtok or 0.0) * share, (m.price_output_per_mtok or 0.0) * share)


@dataclass(frozen=True)
class PriceTable:
    """Prices of a config's models, looked up by the model name a call reports or by endpoint identity.

    A model with only one of its two prices set costs nothing for the other kind of token.
    """

    by_name: dict[str, Price]
    by_identity: dict[str, Price]

    @classmethod
    def from_config(cls, config: AutoReasonConfig) -> PriceTable:
        """The prices set on ``config``'s models (empty when none is priced)."""
        by_name: dict[str, Price] = {}
        by_identity: dict[str, Price] = {}
        for m in config.all_models():
            if (price := _price(m)) is not None:
                by_name.setdefault(m.model, price)
                by_identity[m.identity()] = price
        return cls(by_name, by_identity)

    def __bool__(self) -> bool:
        return bool(self.by_name)

    def price_of(self, model: str) -> Price | None:
        """The price of the model that answered a call.

        Servers often answer with a dated name (``gpt-4o-mini-2024-07-18`` for ``gpt-4o-mini``), so the
        longest configured name that starts the reported one matches; when every priced model costs the
        same, that price applies to any name.
        """
        if model in self.by_name:
            return self.by_name[model]
        prefixes = [name for name in self.by_name if name and model.startswith(name)]
        if prefixes:
            return self.by_name[max(prefixes, key=len)]
        distinct = set(self.by_name.values())
        return distinct.pop() if len(distinct) == 1 else None

    def row_cost(self, result: TournamentResult) -> float | None:
        """What a row cost: its calls and its discarded speculative calls (``speculate``), cache hits included.

        Returns:
            USD, or ``None`` when nothing is priced or some call's model has no price.
        """
        return self.calls_cost((*result.calls, *(d.call for d in result.discarded)))

    def calls_cost(self, calls: Iterable[CallRecord]) -> float | None:
        """What a row's calls cost, cache hits included (the cost of producing the row).

        Returns:
            USD, or ``None`` when nothing is priced or some call's model has no price.
        """
        if not self:
            return None
        total = 0.0
        for call in calls:
            price = self.price_of(call.model)
            if price is None:
                return None
            total += price.cost(call.prompt_tokens, call.completion_tokens)
        return total


@dataclass(frozen=True)
class ProgressSnapshot:
    """The counters of a running job at one moment (calls are live calls, speculative ones included; cache hits
    are not counted)."""

    rows_done: int
    rows_total: int
    in_flight: int
    calls_done: int
    failed: int
    retries: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    cost_complete: bool
    limit: int = 0
    limit_cap: int = 0
    batches: str = ""

    def describe(self) -> str:
        """One short line of the call-level counters, for the progress bar's postfix.

        The concurrency limit shows while 429s hold it below its ceiling (``limit 16/64``).
        """
        parts = [f"{self.in_flight} in flight", f"{self.calls_done} calls", f"{self.retries} retries"]
        if self.limit < self.limit_cap:
            parts.insert(1, f"limit {self.limit}/{self.limit_cap}")
        if self.failed:
            parts.append(f"{self.failed} failed")
        parts.append(f"tok {_short(self.prompt_tokens)} in/{_short(self.completion_tokens)} out")
        if self.cost_usd is not None:
            parts.append(f"{'' if self.cost_complete else '≥'}${self.cost_usd:.4f}")
        return ", ".join(parts + ([self.batches] if self.batches else []))


def _short(n: int) -> str:
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


class _Bar(tqdm):  # type: ignore[misc]  # tqdm is untyped
    monitor_interval = 0  # tqdm's own monitor thread would outlive the job


class RunProgress:
    """Rows and calls of one config's map job in one event loop, drawn as a tqdm line when shown.

    Args:
        endpoints: the runtime's endpoints by endpoint key, whose counters and windows are read.
        prices: prices for the live cost estimate.
        show: draw the line on stderr (counting happens either way).
        refresh_s: seconds between redraws.
    """

    def __init__(self, endpoints: Mapping[str, Endpoint], prices: PriceTable, show: bool,
                 refresh_s: float = REFRESH_S, expected_rows: int | None = None,
                 batch_models: Iterable[Any] = ()) -> None:
        self.endpoints = endpoints
        self.batch_models = tuple(batch_models)
        self.prices = prices
        self.show = show
        self.refresh_s = refresh_s
        self.expected_rows = expected_rows
        self.rows_total = expected_rows or 0
        self.rows_started = 0
        self.interrupted = False
        self.rows_done = 0
        self.active_batches = 0
        self._bar: _Bar | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start_batch(self, rows: int) -> None:
        """A batch of ``rows`` rows began (without ``expected_rows``, the row total grows as batches arrive)."""
        self.active_batches += 1
        self.rows_started += rows
        self.rows_total = max(self.expected_rows or 0, self.rows_started)
        if self.show and self._bar is None:
            self._open()

    def row_done(self, task: object = None) -> None:
        """One row finished (usable as a task done-callback); a cancelled row marks the job interrupted."""
        if isinstance(task, asyncio.Future) and task.cancelled():
            self.interrupted = True
            return
        self.rows_done += 1

    def end_batch(self) -> None:
        """A batch ended, finished or not; the last one closes the display."""
        self.active_batches -= 1
        if self.active_batches <= 0:
            self.close()

    def snapshot(self) -> ProgressSnapshot:
        """The counters now."""
        stats = CallStats.total(e.stats for e in self.endpoints.values())
        cost, complete = 0.0, bool(self.prices)
        for endpoint in self.endpoints.values():
            price = self.prices.by_identity.get(endpoint.identity)
            if price is None:
                complete = False
            else:
                cost += price.cost(endpoint.stats.prompt_tokens, endpoint.stats.completion_tokens)
        return ProgressSnapshot(
            self.rows_done, self.rows_total, stats.in_flight, stats.succeeded + stats.failed, stats.failed,
            stats.retries, stats.prompt_tokens, stats.completion_tokens,
            cost if self.prices else None, complete,
            sum(e.window.current for e in self.endpoints.values()), sum(e.window.cap for e in self.endpoints.values()),
            batch_progress(self.batch_models),
        )

    def close(self) -> None:
        """Stop the redraw thread, draw the final counts and release the line."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if self._bar is not None:
            if self.interrupted:
                self._bar.set_description_str("AutoReason (interrupted)", refresh=False)
            self._draw()
            self._bar.close()
            self._bar = None

    def _open(self) -> None:
        # An explicit disable=False because tqdm's defaults follow TQDM_DISABLE, and forcing must win.
        self._bar = _Bar(total=self.rows_total, initial=self.rows_done, desc="AutoReason", unit="row",
                         dynamic_ncols=True, leave=True, file=sys.stderr, disable=False,
                         bar_format="{desc}: {n_fmt}/{total_fmt} rows [{elapsed}<{remaining}{postfix}]")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._redraw, name="hadron-hf-progress", daemon=True)
        self._thread.start()

    def _redraw(self) -> None:
        while not self._stop.wait(self.refresh_s):
            self._draw()

    def _draw(self) -> None:
        bar = self._bar
        if bar is None:
            return
        snap = self.snapshot()
        bar.total = snap.rows_total
        bar.n = snap.rows_done
        bar.set_postfix_str(snap.describe(), refresh=False)
        bar.refresh()


def progress_for(config: AutoReasonConfig, runtime: Any) -> RunProgress:
    """The progress of ``config``'s job: the one ``runtime`` (from ``runtime_for(config)``) owns.

    Args:
        config: the job's config (``config.progress=False`` hides the line).
        runtime: the ``Runtime`` whose progress it is.
    """
    if runtime.progress is None:
        runtime.progress = RunProgress(runtime.endpoints, PriceTable.from_config(config), should_show(config),
                                       expected_rows=config.progress_total)
    progress: RunProgress = runtime.progress
    return progress


def should_show(config: AutoReasonConfig) -> bool:
    """Whether to draw the progress line: on a terminal, in the main process, unless turned off.

    ``HADRON_HF_PROGRESS=1`` forces it on (any stream, any process) and ``=0`` off; ``config.progress``
    off always wins.
    """
    forced = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if not config.progress or forced in {"0", "false", "no", "off"}:
        return False
    if forced in {"1", "true", "yes", "on", "force"}:
        return True
    # Worker processes of map(num_proc=...) would draw over each other; datasets shows their rows.
    in_worker = multiprocessing.parent_process() is not None or _in_multiprocess_worker()
    isatty = getattr(sys.stderr, "isatty", None)
    return not in_worker and callable(isatty) and bool(isatty())


def _in_multiprocess_worker() -> bool:
    try:
        import multiprocess  # datasets' dill-based fork of multiprocessing
    except ImportError:
        return False
    return multiprocess.parent_process() is not None

"""A ``ChatModel`` that sends its calls through an OpenAI-compatible batch API, at the batch price.

The rows of a job move through the tournament together: every row's teacher call, then every critic call,
and so on. ``BatchChatModel.chat`` parks each call; once no new call has come for ``idle_s`` seconds (or
the provider's size limit is reached) the parked calls go out as one batch, which is polled every
``poll_s`` seconds until it ends; then every row gets its answer and moves on to its next call. A job
therefore buys about one batch per dependent step, and the tournament itself does not change.

Nothing is lost or bought twice (see ``batch_store``): batch ids and request keys are recorded when a
batch is submitted, answers as soon as its output file is read. A re-run re-attaches to batches still in
flight. A request that failed inside a batch (error file) or did not run before the batch expired or was
cancelled raises a ``RetryableError`` with ``retry_after=0``, so the resilience layer sends it again in
the next batch, within ``max_retries``; a 400-style failure fails its row with the provider's message,
and a wrong key or unknown model stops the job as in live mode.

Example:
    >>> cfg = ModelConfig(base_url="https://api.openai.com/v1", model="gpt-4o-mini", mode="batch")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from hadron_hf.backends import constraints
from hadron_hf.backends._http import DEFAULT_BASE_URL, endpoint_label
from hadron_hf.backends.batch_api import (
    TERMINAL,
    BatchAPI,
    BatchState,
    batch_failure,
    completion_from_body,
    line_outcome,
    read_lines,
)
from hadron_hf.backends.batch_store import ANSWERED, REJECTED, SUBMITTED, SUBMITTING, BatchStore, request_key
from hadron_hf.chat import Completion, Message, SamplingParams
from hadron_hf.errors import (
    BackendError,
    FatalBackendError,
    RequestRejectedError,
    ServerError,
)

log = logging.getLogger("hadron_hf")

POLL_FAILURES_BEFORE_GIVING_UP = 5
"""Polls in a row that fail before the batch's calls get the error (their retry re-attaches to it)."""


@dataclass(frozen=True)
class BatchOptions:
    """When and how batches are submitted.

    Args:
        completion_window: the provider's window (OpenAI: ``"24h"``).
        poll_s: seconds between two looks at a batch in flight.
        idle_s: submit once no new call has arrived for this long.
        max_requests: the provider's cap on requests per batch (OpenAI: 50,000).
        max_bytes: the provider's cap on an input file's size (OpenAI: 200 MB).
    """

    completion_window: str = "24h"
    poll_s: float = 30.0
    idle_s: float = 2.0
    max_requests: int = 50_000
    max_bytes: int = 200_000_000


@dataclass
class BatchCounters:
    """What this model has done, for progress lines, benchmarks and tests."""

    batches_submitted: int = 0
    requests_submitted: int = 0
    reattached: int = 0
    answered_from_records: int = 0
    finished: dict[str, int] = field(default_factory=dict)


@dataclass
class _Run:
    state: BatchState
    keys: set[str]
    poll_failures: int = 0


class BatchChatModel:
    """``ChatModel`` over an OpenAI-compatible batch API; build one per endpoint, model and event loop.

    Args:
        model: model name sent with each request.
        base_url: the server's ``/v1`` URL (``None``: the OpenAI API).
        api_key: the key; kept only for the ``Authorization`` header.
        store_path: the request-cache database where batch records live (``None``: in memory, no resume).
        options: when and how batches are submitted.
        timeout: seconds per HTTP request to the files and batches endpoints.
        extra_body: extra JSON fields for every request body.
        judge_constraint: how the server is told to force a ranking (``ModelConfig.judge_constraint``).
    """

    def __init__(self, model: str, base_url: str | None, api_key: str | None,
                 store_path: str | os.PathLike[str] | None = None,
                 options: BatchOptions | None = None, timeout: float = 600.0,
                 extra_body: Mapping[str, Any] | None = None, judge_constraint: str = "auto") -> None:
        self.model = model
        self._constraint = constraints.resolve_mode(judge_constraint, base_url)
        self.options = options or BatchOptions()
        self.api = BatchAPI(base_url, api_key, timeout)
        self._where = endpoint_label(model, base_url or DEFAULT_BASE_URL) + " (batch)"
        self.endpoint = f"{self.api.base_url}|{model}"
        self.store = BatchStore(store_path, self.endpoint)
        self.counters = BatchCounters()
        self._extra_body = dict(extra_body or {})
        self._waiters: dict[str, list[asyncio.Future[Completion]]] = {}
        self._pending: dict[str, bytes] = {}
        self._pending_bytes = 0
        self._last_arrival = 0.0
        self._runs: dict[str, _Run] = {}
        self._run_of: dict[str, str] = {}
        self._next_poll = 0.0
        self._wake = asyncio.Event()
        self._driver: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"BatchChatModel(model={self.model!r}, base_url={self.api.base_url!r})"

    async def chat(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        """Park the call until its batch has answered it.

        Raises:
            RetryableError: it failed inside its batch or did not run before the batch ended (retry it).
            RequestRejectedError: the provider refused it (this row fails).
            FatalBackendError: wrong key, unknown model.
        """
        body = constraints.chat_body(self.model, messages, params, self._constraint, self._extra_body)
        key = request_key(self.endpoint, body)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Completion] = loop.create_future()
        waiters = self._waiters.setdefault(key, [])
        waiters.append(done)
        if key not in self._pending and key not in self._run_of:
            line = json.dumps({"custom_id": key, "method": "POST", "url": "/v1/chat/completions", "body": body},
                              ensure_ascii=False)
            self._pending[key] = (line + "\n").encode()
            self._pending_bytes += len(self._pending[key])
            self._last_arrival = loop.time()
            if len(self._pending) == 1 or self._full():
                self._wake.set()
        if self._driver is None:
            self._driver = loop.create_task(self._drive(), name="hadron-hf-batches")
        try:
            return constraints.constrained_reply(await done, params, self._constraint)
        finally:
            if done in waiters:
                waiters.remove(done)
            if not waiters and self._waiters.get(key) is waiters:
                del self._waiters[key]

    def batches(self) -> list[BatchState]:
        """The batches in flight now, as last polled (safe to call from the progress thread)."""
        return [copy.copy(run.state) for run in list(self._runs.values())]  # list(): one step under the GIL

    def describe(self) -> str:
        """One short line: each batch in flight with its state and counts, and how many have ended."""
        parts = [f"{s.status} {s.completed}/{s.total}" + (f" ({s.failed} failed)" if s.failed else "")
                 for s in self.batches()]
        ended = sum(self.counters.finished.values())
        if ended:
            parts.append(f"{ended} done")
        return f"batches: {', '.join(parts)}" if parts else ""

    async def aclose(self) -> None:
        """Stop polling (batches in flight stay recorded: a re-run re-attaches) and close the records."""
        if self._driver is not None:
            self._driver.cancel()
            await asyncio.gather(self._driver, return_exceptions=True)
        await asyncio.to_thread(self.store.close)

    def _full(self) -> bool:
        return len(self._pending) >= self.options.max_requests or self._pending_bytes >= self.options.max_bytes

    async def _drive(self) -> None:
        """Submit parked calls and poll batches until nothing is left to do, on one HTTP session."""
        loop = asyncio.get_running_loop()
        session = self.api.session()
        try:
            while True:
                self._drop_abandoned_runs()
                if not self._pending and not self._runs:
                    self._driver = None  # checked and cleared with no await in between: no call is stranded
                    return
                now = loop.time()
                if self._pending and (self._full() or now >= self._last_arrival + self.options.idle_s):
                    await self._flush(session)
                elif self._runs and now >= self._next_poll:
                    self._next_poll = now + self.options.poll_s
                    await self._poll(session)
                else:
                    due = [self._next_poll] if self._runs else []
                    due += [self._last_arrival + self.options.idle_s] if self._pending else []
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), max(0.0, min(due) - now))
                    except TimeoutError:
                        pass
        except asyncio.CancelledError as exc:
            self._driver = None
            self._fail_everything(exc)
            raise
        except Exception as exc:  # a bug here must not leave every row waiting forever
            log.exception("the batch driver of %s stopped", self.api.base_url)
            self._driver = None
            self._fail_everything(exc)
        finally:
            await session.close()

    def _take(self) -> dict[str, bytes]:
        taken: dict[str, bytes] = {}
        size = 0
        for key, line in self._pending.items():
            if taken and (len(taken) >= self.options.max_requests or size + len(line) > self.options.max_bytes):
                break
            taken[key] = line
            size += len(line)
        for key in taken:
            del self._pending[key]
        self._pending_bytes -= size
        return taken

    async def _flush(self, session: aiohttp.ClientSession) -> None:
        """Answer parked calls from the records, re-attach them to their batches, or submit a new batch."""
        taken = {k: line for k, line in self._take().items() if self._waiters.get(k)}
        if not taken:
            return
        stored = await asyncio.to_thread(self.store.lookup, list(taken))
        new: list[str] = []
        recover: dict[str, list[str]] = {}
        for key in taken:
            record = stored.get(key)
            if record is None:
                new.append(key)
            elif record.state == ANSWERED and record.answer is not None:
                self.counters.answered_from_records += 1
                self._answer(key, record.answer)
            elif record.state == REJECTED:
                self._resolve(key, RequestRejectedError(record.error or "request rejected in an earlier batch"))
            elif record.state == SUBMITTED and record.batch_id:
                self._attach(record.batch_id, [key])
            elif record.state == SUBMITTING and record.file_id:
                recover.setdefault(record.file_id, []).append(key)
            else:
                new.append(key)
        for file_id, keys in recover.items():
            try:
                found = await self.api.find_batch(session, file_id)
            except BackendError as exc:
                self._resolve_all(keys, exc)
                continue
            if found is None:
                new.extend(keys)  # the kill came before the batch was created: nothing was bought
                continue
            await asyncio.to_thread(self.store.mark_submitted, keys, str(found["id"]), file_id, str(found["status"]))
            self._attach(str(found["id"]), keys, found)
        if new:
            await self._submit(session, new, b"".join(taken[k] for k in new))

    async def _submit(self, session: aiohttp.ClientSession, keys: list[str], jsonl: bytes) -> None:
        try:
            file_id = await self.api.upload(session, jsonl)
            # Recorded before the batch exists: a kill right after creating it is recovered by its file id.
            await asyncio.to_thread(self.store.mark_submitting, keys, file_id)
            batch = await self.api.create(session, file_id, self.options.completion_window)
        except BackendError as exc:
            self._resolve_all(keys, exc)
            return
        await asyncio.to_thread(self.store.mark_submitted, keys, str(batch["id"]), file_id, str(batch["status"]))
        self.counters.batches_submitted += 1
        self.counters.requests_submitted += len(keys)
        log.info("submitted batch %s with %d requests to %s", batch["id"], len(keys), self.api.base_url)
        self._attach(str(batch["id"]), keys, batch, fresh=True)

    def _attach(self, batch_id: str, keys: Iterable[str], batch: Mapping[str, Any] | None = None,
                fresh: bool = False) -> None:
        run = self._runs.get(batch_id)
        if run is None:
            run = self._runs[batch_id] = _Run(BatchState(batch_id, "validating", 0), set())
            if not fresh:
                self.counters.reattached += 1
                self._next_poll = 0.0  # a batch found in the records may be long done: look now
            elif len(self._runs) == 1:
                self._next_poll = asyncio.get_running_loop().time() + self.options.poll_s
        for key in keys:
            run.keys.add(key)
            self._run_of[key] = batch_id
        if batch is not None:
            run.state.update(batch)

    async def _poll(self, session: aiohttp.ClientSession) -> None:
        for batch_id, run in list(self._runs.items()):
            try:
                batch = await self.api.retrieve(session, batch_id)
                run.state.update(batch)
                if run.state.status in TERMINAL:
                    await self._finish(session, run, batch)
                run.poll_failures = 0
            except FatalBackendError as exc:
                self._end_run(run, exc)
            except BackendError as exc:
                run.poll_failures += 1
                log.warning("batch %s: polling failed (%s)", batch_id, exc)
                if run.poll_failures >= POLL_FAILURES_BEFORE_GIVING_UP:
                    self._end_run(run, exc)

    async def _finish(self, session: aiohttp.ClientSession, run: _Run, batch: Mapping[str, Any]) -> None:
        """Read a finished batch's files, store every answer at once, then hand each row its outcome."""
        status = run.state.status
        outcomes: dict[str, Completion | BackendError] = {}
        answered: dict[str, str] = {}
        if status == "failed":
            failure = batch_failure(batch)
            outcomes = dict.fromkeys(run.keys, failure)
        for file_key in ("output_file_id", "error_file_id"):
            if status != "failed" and batch.get(file_key):
                for line in read_lines(await self.api.content(session, str(batch[file_key]))):
                    # Every answer is stored, also those of rows that have not asked again yet (a re-run).
                    outcome = line_outcome(line, self.model, answered, self._where)
                    if (key := str(line.get("custom_id"))) in run.keys:
                        outcomes[key] = outcome
        for key in run.keys - outcomes.keys():
            outcomes[key] = ServerError(f"request did not run before batch {run.state.batch_id} ended ({status})",
                                        retry_after=0.0)
        rejected = {k: str(o) for k, o in outcomes.items() if isinstance(o, RequestRejectedError)}
        retry = [k for k, o in outcomes.items() if isinstance(o, BackendError) and k not in rejected]
        await asyncio.to_thread(self.store.record_outcome, run.state.batch_id, status, answered, rejected, retry)
        self.counters.finished[status] = self.counters.finished.get(status, 0) + 1
        log.info("batch %s %s: %d answered, %d failed", run.state.batch_id, status, len(answered),
                 len(outcomes) - len(answered))
        self._forget_run(run)
        for key, outcome in outcomes.items():
            self._resolve(key, outcome)

    def _end_run(self, run: _Run, exc: BackendError) -> None:
        self._forget_run(run)
        self._resolve_all(list(run.keys), exc)

    def _forget_run(self, run: _Run) -> None:
        self._runs.pop(run.state.batch_id, None)
        for key in run.keys:
            if self._run_of.get(key) == run.state.batch_id:
                del self._run_of[key]

    def _drop_abandoned_runs(self) -> None:
        # Nobody waits for them (the job stopped): stop polling; a re-run re-attaches from the records.
        for run in list(self._runs.values()):
            if not any(self._waiters.get(k) for k in run.keys):
                self._forget_run(run)

    def _answer(self, key: str, body: str) -> None:
        try:
            self._resolve(key, completion_from_body(json.loads(body), self.model, self._where))
        except (ValueError, BackendError) as exc:
            self._resolve(key, exc if isinstance(exc, BackendError) else ServerError("stored answer unreadable"))

    def _resolve(self, key: str, outcome: Completion | BaseException) -> None:
        for waiter in list(self._waiters.get(key, ())):
            if waiter.done():
                continue
            if isinstance(outcome, BaseException):
                # A copy per waiter: one exception object raised in many tasks would pile up tracebacks.
                waiter.set_exception(copy.copy(outcome))
            else:
                waiter.set_result(outcome)

    def _resolve_all(self, keys: Iterable[str], exc: BaseException) -> None:
        for key in keys:
            self._resolve(key, exc)

    def _fail_everything(self, exc: BaseException) -> None:
        error = exc if isinstance(exc, BackendError) else ServerError(f"the batch driver stopped: {exc!r}")
        self._pending.clear()
        self._pending_bytes = 0
        self._runs.clear()
        self._run_of.clear()
        self._resolve_all(list(self._waiters), error)


def batch_progress(models: Iterable[object]) -> str:
    """The batch part of a progress line, over a runtime's backends (empty when none uses a batch API)."""
    return "; ".join(d for m in models if isinstance(m, BatchChatModel) and (d := m.describe()))

"""A loopback fake of OpenAI's batch API, on top of ``FakeOpenAIServer`` (import it from ``hadron_hf.testing``).

It serves ``POST /v1/files`` (multipart upload), ``GET /v1/files/{id}`` and ``/content``, ``POST /v1/batches``,
``GET /v1/batches`` (newest first, ``limit``/``after``), ``GET /v1/batches/{id}`` and
``POST /v1/batches/{id}/cancel`` in OpenAI's shapes. A batch is ``validating`` for the first tenth of its
``completion_delay``, ``in_progress`` (with growing ``request_counts``) until nine tenths, ``finalizing``
until the delay is over, then ``completed``, or ``expired`` when scripted so. Each request gets the same
deterministic reply the live ``/v1/chat/completions`` route gives it, so a batch run and a live run of a
job produce the same rows. Faults: scripted or random per-request failures (error file), expiry with part
of a batch done, an unknown model failing validation, over-long prompts answered 400.

Example:
    >>> with FakeBatchServer(completion_delay=0.2) as server:  # doctest: +SKIP
    ...     cfg = ModelConfig(base_url=server.url, model="fake", mode="batch", batch_poll_s=0.02)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from hadron_hf.testing.openai_server import FakeOpenAIServer
from hadron_hf.testing.replies import role_of, scripted_reply

_STAGES = ((0.1, "validating"), (0.9, "in_progress"), (1.0, "finalizing"))


@dataclass
class BatchFaults:
    """Faults of the batch API.

    Args:
        fail_lines: by request number over all batches (1 for the first line ever submitted), the HTTP
            status that request gets in its batch's error file (500 and 429 are worth retrying, 400 is not).
        fail_rate: probability that a request gets a 500 in the error file.
        expire: batch numbers (1 for the first batch created) that expire at the end of their window.
        expire_done: the share of an expiring batch's requests done before it expires.
        seed: seed of the random draws.
    """

    fail_lines: dict[int, int] = field(default_factory=dict)
    fail_rate: float = 0.0
    expire: set[int] = field(default_factory=set)
    expire_done: float = 0.5
    seed: int = 0


@dataclass
class BatchLog:
    """What the batch API saw.

    Args:
        files: input files uploaded.
        batches: ids of the batches created, in order.
        sizes: requests in each of those batches.
        submitted: how often each ``custom_id`` was submitted in a batch.
        bodies: how often each exact request body was submitted in a batch.
        failed: requests that ended in an error file (failed, expired or cancelled before they ran).
        polls: ``GET /v1/batches/{id}`` requests.
        cancelled: batches cancelled through the API.
        statuses: the final status of each finished batch.
    """

    files: int = 0
    batches: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    submitted: Counter[str] = field(default_factory=Counter)
    bodies: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    polls: int = 0
    cancelled: int = 0
    statuses: dict[str, str] = field(default_factory=dict)

    @property
    def resubmitted(self) -> int:
        """Request bodies submitted more than once (a resumed job should have none)."""
        return sum(n - 1 for n in self.bodies.values() if n > 1)

    @property
    def lines(self) -> int:
        """Requests submitted over all batches."""
        return sum(self.submitted.values())


@dataclass
class _Batch:
    obj: dict[str, Any]
    lines: list[dict[str, Any]]
    number: int
    first_line: int
    started: float
    invalid: list[dict[str, Any]]
    cancel_at: float | None = None


class FakeBatchServer(FakeOpenAIServer):
    """``FakeOpenAIServer`` plus OpenAI's files and batches endpoints.

    Args:
        completion_delay: seconds from creating a batch to its output file.
        batch_faults: faults of the batch API (``None``: none).
        **kwargs: ``FakeOpenAIServer`` options (``api_key``, ``models``, ``max_prompt_chars``,
            ``responder``, ``reasoning``, ``no_flaws_rate``, live ``faults``...).
    """

    def __init__(self, completion_delay: float = 0.2, batch_faults: BatchFaults | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.completion_delay = completion_delay
        self.batch_faults = batch_faults or BatchFaults()
        self.batch_log = BatchLog()
        self._files: dict[str, bytes] = {}
        self._batches: dict[str, _Batch] = {}
        self._ids = itertools.count(1)
        self._line_count = 0
        self._batch_rng = random.Random(self.batch_faults.seed)

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{file_id}", self._file)
        app.router.add_get("/v1/files/{file_id}/content", self._content)
        app.router.add_post("/v1/batches", self._create)
        app.router.add_get("/v1/batches", self._list)
        app.router.add_get("/v1/batches/{batch_id}", self._retrieve)
        app.router.add_post("/v1/batches/{batch_id}/cancel", self._cancel)

    def _refused(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        self.log.keys_seen.append(auth)
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            return self._error(401, "Incorrect API key provided.", "invalid_api_key")
        return None

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):06d}"

    async def _upload(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        form = await request.post()
        upload = form.get("file")
        if form.get("purpose") != "batch" or not isinstance(upload, web.FileField):
            return self._error(400, "Upload a 'file' with purpose 'batch'.", "invalid_request")
        data = upload.file.read()
        file_id = self._new_id("file")
        self._files[file_id] = data
        self.batch_log.files += 1
        return web.json_response(self._file_object(file_id, upload.filename, "batch"))

    def _file_object(self, file_id: str, filename: str, purpose: str) -> dict[str, Any]:
        return {"id": file_id, "object": "file", "bytes": len(self._files[file_id]), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed"}

    async def _file(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        if file_id not in self._files:
            return self._error(404, f"No such File object: {file_id}", "not_found")
        return web.json_response(self._file_object(file_id, f"{file_id}.jsonl", "batch"))

    async def _content(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        file_id = request.match_info["file_id"]
        if file_id not in self._files:
            return self._error(404, f"No such File object: {file_id}", "not_found")
        return web.Response(body=self._files[file_id], content_type="application/octet-stream")

    async def _create(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        body = await request.json()
        file_id = body.get("input_file_id")
        if file_id not in self._files:
            return self._error(400, f"Invalid input_file_id: {file_id}", "invalid_request")
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            return self._error(400, "Only /v1/chat/completions and a 24h window are supported.", "invalid_request")
        lines, invalid = self._parse_input(self._files[file_id])
        batch_id = self._new_id("batch")
        now = self._now()
        obj = {
            "id": batch_id, "object": "batch", "endpoint": body["endpoint"], "errors": None,
            "input_file_id": file_id, "completion_window": "24h", "status": "validating",
            "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
            "in_progress_at": None, "expires_at": int(time.time()) + 86400, "finalizing_at": None,
            "completed_at": None, "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
        }
        number = len(self.batch_log.batches) + 1
        self._batches[batch_id] = _Batch(obj, lines, number, self._line_count + 1, now, invalid)
        self.batch_log.batches.append(batch_id)
        self.batch_log.sizes.append(len(lines))
        if not invalid:
            self._line_count += len(lines)
            for line in lines:
                self.batch_log.submitted[line["custom_id"]] += 1
                self.batch_log.bodies[_digest(line["body"])] += 1
        return web.json_response(obj)

    def _parse_input(self, data: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        lines: list[dict[str, Any]] = []
        invalid: list[dict[str, Any]] = []
        seen: set[str] = set()
        for number, raw in enumerate(data.decode().splitlines(), 1):
            try:
                line = json.loads(raw)
                ok = (set(line) == {"custom_id", "method", "url", "body"} and line["method"] == "POST"
                      and line["url"] == "/v1/chat/completions" and isinstance(line["body"], dict))
            except (ValueError, TypeError):
                ok = False
            if not ok:
                invalid.append({"code": "invalid_request", "message": "Invalid request line.", "line": number})
                continue
            if line["custom_id"] in seen:
                invalid.append({"code": "duplicate_custom_id", "message": "Duplicate custom_id.", "line": number})
            seen.add(line["custom_id"])
            model = str(line["body"].get("model", ""))
            if self.models is not None and model not in self.models:
                invalid.append({"code": "model_not_found", "param": "body.model", "line": number,
                                "message": f"The provided model '{model}' does not exist."})
            lines.append(line)
        return lines, invalid

    async def _list(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        limit = int(request.query.get("limit", "20"))
        ids = list(reversed(self.batch_log.batches))
        if "after" in request.query and request.query["after"] in ids:
            ids = ids[ids.index(request.query["after"]) + 1 :]
        page = [self._advance(self._batches[i]) for i in ids[:limit]]
        return web.json_response({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                                  "last_id": page[-1]["id"] if page else None, "has_more": len(ids) > limit})

    async def _retrieve(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        batch = self._batches.get(request.match_info["batch_id"])
        if batch is None:
            return self._error(404, f"No batch found with id '{request.match_info['batch_id']}'.", "not_found")
        self.batch_log.polls += 1
        return web.json_response(self._advance(batch))

    async def _cancel(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        batch = self._batches.get(request.match_info["batch_id"])
        if batch is None:
            return self._error(404, "No such batch.", "not_found")
        obj = self._advance(batch)
        if obj["status"] in ("validating", "in_progress", "finalizing"):
            batch.cancel_at = self._now()
            self.batch_log.cancelled += 1
            obj["status"], obj["cancelling_at"] = "cancelling", int(time.time())
        return web.json_response(obj)

    def _now(self) -> float:
        return time.monotonic()

    def _advance(self, batch: _Batch) -> dict[str, Any]:
        """Move a batch along its timeline to now; finish it (write its files) once its time is up."""
        obj = batch.obj
        if obj["status"] in ("completed", "failed", "expired", "cancelled"):
            return obj
        delay = max(self.completion_delay, 1e-9)
        share = (self._now() - batch.started) / delay
        if batch.invalid and share >= _STAGES[0][0]:
            obj.update(status="failed", failed_at=int(time.time()),
                       errors={"object": "list", "data": batch.invalid[:10]})
            self.batch_log.statuses[obj["id"]] = "failed"
            return obj
        if batch.cancel_at is not None:
            done = min(1.0, (batch.cancel_at - batch.started) / delay)
            return self._finish(batch, "cancelled", max(0.0, (done - 0.1) / 0.8))
        if share >= 1.0:
            if batch.number in self.batch_faults.expire:
                return self._finish(batch, "expired", self.batch_faults.expire_done)
            return self._finish(batch, "completed", 1.0)
        obj["status"] = next(name for end, name in _STAGES if share < end)
        running = max(0.0, min(1.0, (share - 0.1) / 0.8))
        obj["request_counts"]["completed"] = int(len(batch.lines) * running)
        return obj

    def _finish(self, batch: _Batch, status: str, done_share: float) -> dict[str, Any]:
        obj, done = batch.obj, int(len(batch.lines) * done_share)
        output: list[str] = []
        errors: list[str] = []
        for index, line in enumerate(batch.lines):
            request_id = f"req_{hashlib.sha256(line['custom_id'].encode()).hexdigest()[:16]}"
            out: dict[str, Any] = {"id": f"batch_req_{batch.first_line + index}", "custom_id": line["custom_id"],
                                   "response": None, "error": None}
            if index >= done:
                expired = status == "expired"
                out["error"] = {"code": "batch_expired" if expired else "batch_cancelled", "message": (
                    "This request could not be executed before the completion window expired." if expired
                    else "This request was not executed because the batch was cancelled.")}
                errors.append(json.dumps(out))
                continue
            status_code, body = self._reply_to(line["body"], batch.first_line + index)
            out["response"] = {"status_code": status_code, "request_id": request_id, "body": body}
            (output if status_code == 200 else errors).append(json.dumps(out))
        for key, lines in (("output_file_id", output), ("error_file_id", errors)):
            if lines:
                file_id = self._new_id("file")
                self._files[file_id] = ("\n".join(lines) + "\n").encode()
                obj[key] = file_id
        stamp = int(time.time())
        obj.update(status=status, finalizing_at=stamp, **{f"{status}_at": stamp})
        obj["request_counts"] = {"total": len(batch.lines), "completed": len(output), "failed": len(errors)}
        self.batch_log.statuses[obj["id"]] = status
        self.batch_log.failed += len(errors)
        return obj

    def _reply_to(self, body: dict[str, Any], number: int) -> tuple[int, dict[str, Any]]:
        """The status and body the live route would give ``body`` (plus the scripted batch faults)."""
        messages: list[dict[str, str]] = body["messages"]
        model = str(body.get("model", ""))
        role = role_of(messages)
        self.log.models.append((role, model))
        self.log.bodies.append(body)
        faults = self.batch_faults
        status = faults.fail_lines.get(number)
        if status is None and faults.fail_rate > 0 and self._batch_rng.random() < faults.fail_rate:
            status = 500
        if status is not None:
            return status, _error_body(status)
        if self.max_prompt_chars is not None and sum(len(m["content"]) for m in messages) > self.max_prompt_chars:
            return 400, {"error": {"message": "This model's maximum context length is exceeded.",
                                   "type": "invalid_request_error", "param": "messages",
                                   "code": "context_length_exceeded"}}
        digest = hashlib.sha256(json.dumps([model, messages, body.get("seed")], sort_keys=True).encode()).hexdigest()
        text = self.responder(role, messages, body) if self.responder else None
        if text is None:
            text = scripted_reply(role, messages, digest, self.no_flaws_rate)
        self.log.answered[digest] += 1
        return 200, self._completion(model, role, text, messages)


def _error_body(status: int) -> dict[str, Any]:
    messages = {429: ("Rate limit reached.", "rate_limit_exceeded"), 400: ("Invalid request.", "invalid_request")}
    message, code = messages.get(status, ("The server had an error while processing your request.", "server_error"))
    return {"error": {"message": message, "type": "invalid_request_error" if status < 500 else "server_error",
                      "param": None, "code": code}}


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

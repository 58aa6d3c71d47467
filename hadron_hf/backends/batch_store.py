"""Where the batch backend remembers what it bought: batch ids and every request's state, in SQLite.

The tables live in the request-cache database (``AutoReasonConfig.cache_path()``) next to the cache's own
``calls`` table, through a connection of their own. Each request is a row keyed by its request key (which
is also its ``custom_id``):

- ``submitting``: written into input file ``file_id`` whose batch may or may not have been created (a kill
  between the two); a re-run looks the file up in the provider's batch list before paying again.
- ``submitted``: part of batch ``batch_id``; a re-run re-attaches to that batch.
- ``answered``: the provider's response body, stored as soon as the batch's output file is read.
- ``rejected``: the provider's message for a request that can never succeed (400-style).

A request that failed in a way worth retrying is deleted, so the next call submits it again. Every write
commits at once (WAL), so it survives a ``kill -9``. The methods block: call them off the event loop
(``asyncio.to_thread``); a lock keeps the one connection to one thread at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("hadron_hf")

SUBMITTING, SUBMITTED, ANSWERED, REJECTED = "submitting", "submitted", "answered", "rejected"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS batch_jobs (batch_id TEXT PRIMARY KEY, endpoint TEXT NOT NULL, "
    "input_file_id TEXT NOT NULL, status TEXT NOT NULL, requests INTEGER NOT NULL, created REAL NOT NULL, "
    "finished REAL)",
    "CREATE TABLE IF NOT EXISTS batch_requests (key TEXT PRIMARY KEY, endpoint TEXT NOT NULL, "
    "custom_id TEXT NOT NULL, state TEXT NOT NULL, file_id TEXT, batch_id TEXT, answer TEXT, error TEXT, "
    "updated REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS batch_requests_batch ON batch_requests (batch_id)",
)
_CHUNK = 500  # SQLite's default cap on bound parameters is 999


def request_key(endpoint: str, body: Mapping[str, Any]) -> str:
    """The key (and ``custom_id``) of one request: its endpoint and exact body, hashed."""
    blob = json.dumps([endpoint, body], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class StoredRequest:
    """One request's recorded state (see the module docstring for ``state``)."""

    state: str
    file_id: str | None
    batch_id: str | None
    answer: str | None
    error: str | None


class BatchStore:
    """Batch ids and request states of one endpoint, in a SQLite file (``None``: in memory, no resume).

    Args:
        path: the request-cache database file.
        endpoint: the endpoint this store's rows belong to (base URL and model, no secrets).
    """

    def __init__(self, path: str | os.PathLike[str] | None, endpoint: str) -> None:
        self.path = Path(path) if path is not None else None
        self.endpoint = endpoint
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._warned = False

    def __repr__(self) -> str:
        return f"BatchStore({str(self.path) if self.path else ':memory:'!r})"

    def lookup(self, keys: Sequence[str]) -> dict[str, StoredRequest]:
        """The recorded state of each of ``keys`` that has one."""
        found: dict[str, StoredRequest] = {}
        with self._lock:
            try:
                conn = self._db()
                for i in range(0, len(keys), _CHUNK):
                    chunk = keys[i : i + _CHUNK]
                    rows = conn.execute(
                        "SELECT key, state, file_id, batch_id, answer, error FROM batch_requests "
                        f"WHERE key IN ({','.join('?' * len(chunk))})", chunk,
                    ).fetchall()
                    found.update({r[0]: StoredRequest(*r[1:]) for r in rows})
            except sqlite3.Error as exc:
                self._warn(exc)
        return found

    def mark_submitting(self, keys: Iterable[str], file_id: str) -> None:
        """Record that ``keys`` were uploaded in input file ``file_id`` (before the batch is created)."""
        now = time.time()
        self._write([("INSERT OR REPLACE INTO batch_requests VALUES (?, ?, ?, ?, ?, NULL, NULL, NULL, ?)",
                      [(k, self.endpoint, k, SUBMITTING, file_id, now) for k in keys])])

    def mark_submitted(self, keys: Sequence[str], batch_id: str, file_id: str, status: str) -> None:
        """Record batch ``batch_id`` (made from ``file_id``) and that ``keys`` are in it."""
        now = time.time()
        self._write([
            ("INSERT OR REPLACE INTO batch_jobs VALUES (?, ?, ?, ?, ?, ?, NULL)",
             [(batch_id, self.endpoint, file_id, status, len(keys), now)]),
            ("INSERT OR REPLACE INTO batch_requests VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, ?)",
             [(k, self.endpoint, k, SUBMITTED, file_id, batch_id, now) for k in keys]),
        ])

    def record_outcome(self, batch_id: str, status: str, answered: Mapping[str, str],
                       rejected: Mapping[str, str], retry: Iterable[str]) -> None:
        """Store a finished batch's answers and rejections, forget requests to retry, close the batch."""
        now = time.time()
        self._write([
            ("UPDATE batch_requests SET state = ?, answer = ?, updated = ? WHERE key = ?",
             [(ANSWERED, body, now, k) for k, body in answered.items()]),
            ("UPDATE batch_requests SET state = ?, error = ?, updated = ? WHERE key = ?",
             [(REJECTED, message, now, k) for k, message in rejected.items()]),
            ("DELETE FROM batch_requests WHERE key = ? AND batch_id = ?", [(k, batch_id) for k in retry]),
            ("UPDATE batch_jobs SET status = ?, finished = ? WHERE batch_id = ?", [(status, now, batch_id)]),
        ])

    def forget(self, keys: Iterable[str]) -> None:
        """Forget ``keys`` (their next call submits them again)."""
        self._write([("DELETE FROM batch_requests WHERE key = ?", [(k,) for k in keys])])

    def batches(self) -> list[tuple[str, str, int]]:
        """``(batch_id, status, requests)`` of every batch this endpoint submitted, oldest first."""
        with self._lock:
            try:
                rows = self._db().execute("SELECT batch_id, status, requests FROM batch_jobs WHERE endpoint = ? "
                                          "ORDER BY created", (self.endpoint,)).fetchall()
            except sqlite3.Error as exc:
                self._warn(exc)
                return []
        return [(str(b), str(s), int(n)) for b, s, n in rows]

    def close(self) -> None:
        """Close this process's connection."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def _write(self, statements: list[tuple[str, list[tuple[object, ...]]]]) -> None:
        with self._lock:
            try:
                conn = self._db()
                with conn:  # one transaction: a batch's outcome is stored whole or not at all
                    for sql, rows in statements:
                        if rows:
                            conn.executemany(sql, rows)
            except sqlite3.Error as exc:
                self._warn(exc)

    def _db(self) -> sqlite3.Connection:
        # A connection must not cross a fork: each process opens its own.
        if self._conn is None or self._pid != os.getpid():
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path or ":memory:", timeout=60, isolation_level=None,
                                   check_same_thread=False)
            if self.path is not None:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.isolation_level = "DEFERRED"
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _warn(self, exc: sqlite3.Error) -> None:
        if not self._warned:
            log.warning("batch records in %s are unavailable (%s): a killed job cannot re-attach to its batches",
                        self.path, exc)
            self._warned = True

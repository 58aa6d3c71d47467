"""Request-level cache: every completed call is kept in SQLite (WAL), so a re-run resumes for free."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from hadron_hf.chat import ChatModel, Completion, Message, SamplingParams

log = logging.getLogger("hadron_hf")

_SCHEMA = "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"


@dataclass
class CacheStats:
    """Hits and misses of one cache handle."""

    hits: int = 0
    misses: int = 0
    bad_entries: int = 0


class RequestCache:
    """A SQLite file of completed calls, safe for several processes and a ``kill -9`` at any point.

    Each entry is committed as soon as its call completes (WAL, ``synchronous=NORMAL``). A file that
    is not a readable database is moved aside and a fresh one started; an entry that cannot be decoded
    is ignored and recomputed. Only answers are stored: never keys, headers or tokens.

    Args:
        path: the database file (its folder is created).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.stats = CacheStats()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    def __repr__(self) -> str:
        return f"RequestCache({str(self.path)!r})"

    def get(self, key: str) -> Completion | None:
        """The cached completion for ``key``, or ``None``."""
        try:
            row = self._db().execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
        except sqlite3.DatabaseError as exc:
            self._recover(exc)
            row = None
        if row is None:
            self.stats.misses += 1
            return None
        try:
            done = Completion(**json.loads(row[0]))
        except (ValueError, TypeError):
            self.stats.bad_entries += 1
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return done

    def put(self, key: str, done: Completion) -> None:
        """Store ``done`` under ``key`` and commit at once."""
        value = json.dumps({**asdict(done), "cached": False})
        for _ in range(2):
            try:
                with self._db() as conn:
                    conn.execute("INSERT OR REPLACE INTO calls VALUES (?, ?, ?)", (key, value, time.time()))
                return
            except sqlite3.DatabaseError as exc:
                self._recover(exc)

    def count(self) -> int:
        """How many calls are stored."""
        return int(self._db().execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def close(self) -> None:
        """Close this process's connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _db(self) -> sqlite3.Connection:
        # A connection must not cross a fork: each process opens its own.
        if self._conn is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(_SCHEMA)
            except sqlite3.DatabaseError:
                conn.close()
                raise
            conn.isolation_level = "DEFERRED"
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _recover(self, exc: sqlite3.DatabaseError) -> None:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return
        self.close()
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}-{os.getpid()}")
        log.warning("request cache %s is unreadable (%s); moved it to %s and started afresh", self.path, exc, aside)
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                src.replace(Path(str(aside) + suffix))


def request_key(identity: str, messages: Sequence[Message], params: SamplingParams) -> str:
    """A stable key for one call: endpoint identity (no secrets), messages and sampling params."""
    blob = json.dumps([identity, list(messages), asdict(params)], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class CachedChatModel:
    """A ``ChatModel`` that answers from a ``RequestCache`` when it can, and stores every new answer.

    Args:
        inner: the model to call on a miss.
        cache: the cache.
        identity: endpoint+model identity without secrets (``ModelConfig.identity()``).
    """

    def __init__(self, inner: ChatModel, cache: RequestCache, identity: str) -> None:
        self.inner = inner
        self.cache = cache
        self.identity = identity

    def __repr__(self) -> str:
        return f"CachedChatModel({self.identity!r})"

    async def chat(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        key = request_key(self.identity, messages, params)
        hit = self.cache.get(key)
        if hit is not None:
            return Completion(**{**asdict(hit), "cached": True})
        done = await self.inner.chat(messages, params)
        self.cache.put(key, done)
        return done

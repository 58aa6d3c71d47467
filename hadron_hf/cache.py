"""Request-level cache: every completed call is kept in SQLite (WAL), so a re-run resumes for free."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from hadron_hf.chat import ChatModel, Completion, Message, SamplingParams

log = logging.getLogger("hadron_hf")

_SCHEMA = "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "text": (str,), "reasoning": (str, type(None)), "prompt_tokens": (int,), "completion_tokens": (int,),
    "model": (str,), "constrained": (bool,), "cached": (bool,),
}
_PUT_ATTEMPTS = 5


@dataclass
class CacheStats:
    """Hits and misses of one cache handle."""

    hits: int = 0
    misses: int = 0
    bad_entries: int = 0
    write_failures: int = 0


class RequestCache:
    """A SQLite file of completed calls, safe for several processes and a ``kill -9`` at any point.

    Each entry is committed as soon as its call completes (WAL, ``synchronous=NORMAL``: a committed
    call survives the process being killed). A file that is not a readable database is moved aside
    (``<name>.corrupt-<time>-<pid>``) and a fresh one started; an entry that cannot be decoded is
    ignored, recomputed and overwritten. The cache never stops a run: when it cannot be used at all, a
    warning says so and calls go on uncached. Only answers are stored: never keys, headers or tokens.

    Args:
        path: the database file (its folder is created).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.stats = CacheStats()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._inode: int | None = None
        self._warned = False

    def __repr__(self) -> str:
        return f"RequestCache({str(self.path)!r})"

    def get(self, key: str) -> Completion | None:
        """The cached completion for ``key``, or ``None`` (missing, undecodable or unreadable)."""
        try:
            row = self._db().execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
        except (sqlite3.Error, OSError) as exc:
            self._recover(exc)
            row = None
        done = decode_entry(row[0]) if row is not None else None
        if done is None:
            self.stats.misses += 1
            self.stats.bad_entries += row is not None
            return None
        self.stats.hits += 1
        return done

    def put(self, key: str, done: Completion) -> None:
        """Store ``done`` under ``key`` and commit at once (it is durable when this returns)."""
        value = json.dumps({**asdict(done), "cached": False}, ensure_ascii=False)
        for attempt in range(_PUT_ATTEMPTS):
            try:
                with self._db() as conn:
                    conn.execute("INSERT OR REPLACE INTO calls VALUES (?, ?, ?)", (key, value, time.time()))
                return
            except (sqlite3.Error, OSError) as exc:
                self._recover(exc)
                if attempt >= 1 and not _busy(exc):
                    break
                time.sleep(0.05 * attempt)
        self.stats.write_failures += 1
        log.warning("request cache %s: could not store a completed call; a re-run will pay for it again", self.path)

    def count(self) -> int:
        """How many calls are stored (0 when the file cannot be read)."""
        try:
            return int(self._db().execute("SELECT COUNT(*) FROM calls").fetchone()[0])
        except (sqlite3.Error, OSError) as exc:
            self._recover(exc)
            return 0

    def close(self) -> None:
        """Close this process's connection."""
        if self._conn is not None:
            if self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def _db(self) -> sqlite3.Connection:
        # A connection must not cross a fork: each process opens its own.
        if self._conn is None or self._pid != os.getpid():
            self._conn = None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            try:
                self._inode = _inode(self.path)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(_SCHEMA)
            except sqlite3.Error:
                conn.close()
                raise
            conn.isolation_level = "DEFERRED"
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _recover(self, exc: sqlite3.Error | OSError) -> None:
        opened = self._inode
        self.close()
        if isinstance(exc, sqlite3.OperationalError) or not isinstance(exc, sqlite3.DatabaseError):
            # Busy, locked, unwritable folder: the file itself may be fine, so leave it where it is.
            if not self._warned:
                log.warning("request cache %s is unavailable for now (%s)", self.path, exc)
                self._warned = True
            return
        if opened is None or _inode(self.path) != opened:
            return  # another process already moved the bad file aside; the next call reopens a fresh one
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}-{os.getpid()}")
        log.warning("request cache %s is unreadable (%s); moved it to %s and started afresh", self.path, exc, aside)
        for suffix in ("", "-wal", "-shm"):
            try:
                Path(str(self.path) + suffix).replace(Path(str(aside) + suffix))
            except FileNotFoundError:
                pass
            except OSError as err:
                log.warning("request cache: cannot move %s%s aside: %s", self.path, suffix, err)


def _busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def decode_entry(value: Any) -> Completion | None:
    """A stored entry as a ``Completion``, or ``None`` when it is not exactly what ``put`` writes."""
    try:
        data = json.loads(value)
    except (TypeError, ValueError):
        return None
    names = {f.name for f in fields(Completion)}
    if not isinstance(data, dict) or set(data) != names:
        return None
    if not all(isinstance(data[k], types) for k, types in _FIELD_TYPES.items()):
        return None
    return Completion(**data)


def request_key(identity: str, messages: Sequence[Message], params: SamplingParams) -> str:
    """A stable key for one call: endpoint identity (no secrets), messages and sampling params.

    The per-call seed is part of ``params``, so two calls that differ only by their seed (two judges of
    one panel) never share an answer.
    """
    # Speculation (issue 21): ``speculative`` is scheduling metadata, not part of the request.
    request = {k: v for k, v in asdict(params).items() if k != "speculative"}
    blob = json.dumps([identity, list(messages), request], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class CachedChatModel:
    """A ``ChatModel`` that answers from a ``RequestCache`` when it can, and stores every new answer.

    Identical calls in flight at the same time are sent once: the others wait for that answer.

    Args:
        inner: the model to call on a miss.
        cache: the cache.
        identity: endpoint+model identity without secrets (``ModelConfig.identity()``).
    """

    def __init__(self, inner: ChatModel, cache: RequestCache, identity: str) -> None:
        self.inner = inner
        self.cache = cache
        self.identity = identity
        self._pending: dict[str, asyncio.Future[Completion | None]] = {}

    def __repr__(self) -> str:
        return f"CachedChatModel({self.identity!r})"

    async def chat(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        """Answer from the cache, from an identical call in flight, or through ``inner`` (then store it)."""
        key = request_key(self.identity, messages, params)
        hit = self.cache.get(key)
        if hit is not None:
            return replace(hit, cached=True)
        waiting = self._pending.get(key)
        if waiting is not None:
            shared = await asyncio.shield(waiting)
            if shared is not None:
                return replace(shared, cached=True)
            return await self.chat(messages, params)  # that call failed: make our own
        self._pending[key] = asyncio.get_running_loop().create_future()
        done: Completion | None = None
        try:
            done = await self.inner.chat(messages, params)
            self.cache.put(key, done)
        finally:
            self._pending.pop(key).set_result(done)
        return done

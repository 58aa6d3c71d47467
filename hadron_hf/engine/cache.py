"""Request-level cache: every completed call is kept in SQLite (WAL), so a re-run resumes for free.

``CachedChatModel`` serves over a ``CacheStore``: ``SQLiteStore`` (a file, its I/O on one thread of its own
so the event loop never waits on the disk or on a busy database) or, on Ray, the cache actor's store
(``hadron_hf.scale.ray_engine.ActorStore``). A call is keyed by its model's request fingerprint
(``ModelConfig.request_fingerprint()``, or a fallback chain's), its messages and its sampling params.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Protocol

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
        self.put_many([(key, done)])

    def put_many(self, items: Sequence[tuple[str, Completion]]) -> None:
        """Store several answers in one transaction (each durable when this returns)."""
        rows = [(key, json.dumps({**asdict(done), "cached": False}, ensure_ascii=False), time.time())
                for key, done in items]
        for attempt in range(_PUT_ATTEMPTS):
            try:
                with self._db() as conn:
                    conn.executemany("INSERT OR REPLACE INTO calls VALUES (?, ?, ?)", rows)
                return
            except (sqlite3.Error, OSError) as exc:
                self._recover(exc)
                if attempt >= 1 and not _busy(exc):
                    break
                time.sleep(0.05 * attempt)  # on the store's own thread, never the event loop
        self.stats.write_failures += len(rows)
        what = "a completed call; a re-run will pay for it" if len(rows) == 1 else \
            f"{len(rows)} completed calls; a re-run will pay for them"
        log.warning("request cache %s: could not store %s again", self.path, what)

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


def request_key(fingerprint: str, messages: Sequence[Message], params: SamplingParams) -> str:
    """A stable key for one call: its model's request fingerprint (no secrets), messages and sampling params.

    The per-call seed is part of ``params``, so two calls that differ only by their seed (two judges of
    one panel) never share an answer.
    """
    # Speculation (issue 21): ``speculative`` is scheduling metadata, not part of the request. ``vars``, not
    # ``asdict``: the fields are flat values, and asdict's deep copy is a hot-path cost.
    request = {k: v for k, v in vars(params).items() if k != "speculative"}
    blob = json.dumps([fingerprint, list(messages), request], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class CacheStore(Protocol):
    """Where ``CachedChatModel`` keeps answers: async, never blocking the event loop."""

    async def get(self, key: str) -> Completion | None:
        """The stored completion for ``key``, or ``None``."""
        ...

    async def put(self, key: str, done: Completion) -> None:
        """Store ``done`` under ``key``; it is durable when this returns."""
        ...

    async def aclose(self) -> None:
        """Flush and release the store."""
        ...


class SQLiteStore:
    """A ``RequestCache`` file served from one thread of its own, so no disk wait ever runs on the event loop.

    Writes that queue up while one commits are committed together in the next transaction; each ``put``
    returns once its answer is durable. Reads run on the same thread, after the writes queued before them.

    Args:
        path: the database file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.cache = RequestCache(path)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._queued: list[tuple[str, Completion, asyncio.Future[None]]] = []
        self._flush_scheduled = False

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.cache.path)!r})"

    @property
    def stats(self) -> CacheStats:
        """Hits, misses and failures of the file."""
        return self.cache.stats

    async def get(self, key: str) -> Completion | None:
        """The cached completion for ``key`` (read on the store's thread)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor(), self.cache.get, key)

    async def put(self, key: str, done: Completion) -> None:
        """Queue ``done`` for the next commit and wait until it is committed."""
        loop = asyncio.get_running_loop()
        committed: asyncio.Future[None] = loop.create_future()
        self._queued.append((key, done, committed))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._executor().submit(self._flush, loop)
        await asyncio.shield(committed)

    async def count(self) -> int:
        """How many calls are stored."""
        return await asyncio.get_running_loop().run_in_executor(self._executor(), self.cache.count)

    async def aclose(self) -> None:
        """Commit what is queued, close the connection and end the thread."""
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        await asyncio.get_running_loop().run_in_executor(pool, self.cache.close)
        pool.shutdown(wait=False)

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hadron-hf-cache")
        return self._pool

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        # Runs on the store's thread. Taking the queue is safe without a lock: list swaps are atomic under
        # the GIL, and the loop thread only appends.
        self._flush_scheduled = False
        batch, self._queued = self._queued, []
        if not batch:
            return
        self.cache.put_many([(key, done) for key, done, _ in batch])
        loop.call_soon_threadsafe(_resolve, [fut for _, _, fut in batch])


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_result(None)


class CachedChatModel:
    """A ``ChatModel`` that answers from a ``CacheStore`` when it can, and stores every new answer.

    Identical calls in flight at the same time are sent once: the others wait for that answer. An
    answer is stored before it is returned, so nothing built on it can outlive it in a crash.

    Args:
        inner: the model to call on a miss (a backend stack, or a fallback chain).
        store: the store.
        fingerprint: the request fingerprint of ``inner`` (``ModelConfig.request_fingerprint()``, or a
            chain's), so a different model, server or ``extra_body`` never shares an answer.
    """

    def __init__(self, inner: ChatModel, store: CacheStore, fingerprint: str) -> None:
        self.inner = inner
        self.store = store
        self.fingerprint = fingerprint
        self._pending: dict[str, asyncio.Future[Completion | None]] = {}

    def __repr__(self) -> str:
        return f"CachedChatModel({self.fingerprint!r})"

    async def chat(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        """Answer from the store, from an identical call in flight, or through ``inner`` (then store it)."""
        key = request_key(self.fingerprint, messages, params)
        waiting = self._pending.get(key)
        if waiting is not None:
            shared = await asyncio.shield(waiting)
            if shared is not None:
                return replace(shared, cached=True)
            return await self.chat(messages, params)  # that call failed: make our own
        self._pending[key] = asyncio.get_running_loop().create_future()
        done: Completion | None = None
        try:
            hit = await self.store.get(key)
            if hit is not None:
                done = hit
                return replace(hit, cached=True)
            done = await self.inner.chat(messages, params)
            await self.store.put(key, done)
        finally:
            self._pending.pop(key).set_result(done)
        return done

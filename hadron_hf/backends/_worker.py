"""One worker thread that runs an in-process model's blocking calls one at a time, in arrival order.

In-process inference libraries (llama.cpp, mlx-lm) hold state that is not thread-safe, and their calls
block. ``SerialWorker`` keeps them off the event loop and strictly serial, while callers may start as many
coroutines as they like. A ``ThreadPoolExecutor``, unlike an asyncio lock or queue, belongs to no event
loop, so successive loops (``Dataset.map`` makes one per call) can share one worker and one loaded model.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class SerialWorker:
    """Run blocking calls on one dedicated thread, one after another.

    The thread starts on the first call and again after ``close``, so a closed worker can still be used.

    Args:
        name: prefix of the thread's name (shown in tracebacks and profilers).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` on the worker thread, after every call already queued.

        Returns:
            What ``fn`` returned; what it raised is raised here.
        """
        loop = asyncio.get_running_loop()
        # Submitted under the lock so that close() cannot shut the executor down in between.
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
            future = loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        return await future

    def close(self, last: Callable[[], None] | None = None) -> None:
        """Wait for queued calls, run ``last`` on the worker thread (to free the model there), then stop it."""
        with self._lock:
            executor, self._executor = self._executor, None
            if executor is not None and last is not None:
                executor.submit(last)
        if executor is not None:
            executor.shutdown(wait=True)

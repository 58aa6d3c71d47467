"""Ctrl+C as a graceful stop of a running job: calls in flight land and are cached, then the job ends."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from typing import Any

from hadron_hf.engine.endpoint import InterruptedJobError


def raise_interrupt() -> None:
    """Raise ``KeyboardInterrupt`` (scheduled on the loop, so the loop itself raises it)."""
    raise KeyboardInterrupt


class InterruptGuard:
    """While a runtime runs in the main thread: the first Ctrl+C stops the job gracefully, a second quits now.

    Installed only over Python's default SIGINT handler, and removed when the runtime closes; if the loop
    is not running when Ctrl+C comes (an abandoned runtime), it behaves as the default handler.

    Args:
        runtime: the runtime to stop (it has ``grace_s``, ``stop`` and ``halt``).
        loop: the loop it runs in.
    """

    def __init__(self, runtime: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._runtime = runtime
        self._loop = loop
        self._previous = signal.getsignal(signal.SIGINT)
        self.installed = False
        if threading.current_thread() is threading.main_thread() and self._previous is signal.default_int_handler:
            signal.signal(signal.SIGINT, self._handle)
            self.installed = True

    def remove(self) -> None:
        """Put the previous handler back."""
        if self.installed and signal.getsignal(signal.SIGINT) == self._handle:
            signal.signal(signal.SIGINT, self._previous)
        self.installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        self.remove()
        if not self._loop.is_running() or self._runtime.stop.error is not None:
            raise KeyboardInterrupt
        print(f"\nhadron-hf: interrupted; letting calls in flight land (up to {self._runtime.grace_s:g} s), "
              "press Ctrl+C again to quit now", file=sys.stderr)
        self._loop.call_soon_threadsafe(self._runtime.halt, InterruptedJobError("interrupted by the user"))

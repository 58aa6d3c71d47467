"""Shared fixtures. The Hub environment is set here, before anything imports ``huggingface_hub``."""

from __future__ import annotations

import os
import socket
import tempfile


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


HUB_PORT = _free_port()
_HF_HOME = tempfile.mkdtemp(prefix="hadron-hf-home-")
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{HUB_PORT}"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_TOKEN"] = "hf_fake_test_token_0123456789"
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_DATASETS_CACHE"] = os.path.join(_HF_HOME, "datasets")
os.environ.setdefault("TQDM_DISABLE", "1")


import platform  # noqa: E402
import sys  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from hadron_hf.testing import FakeOpenAIServer  # noqa: E402


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    """A fresh loopback OpenAI-compatible server with a little latency."""
    with FakeOpenAIServer(latency=0.002) as srv:
        yield srv


@pytest.fixture
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An empty request-cache folder."""
    return str(tmp_path_factory.mktemp("cache"))


from fakehub import fake_hub  # noqa: E402, F401  (session fixture: the loopback Hub)

# Under CI (``CI`` set, as .ci/run does) a skip fails the run unless its reason starts with one of these: skips
# that the [test] extra cannot prevent. Anything the extra installs (llama-cpp-python, Ray, mlx-lm where it has
# wheels) must be there, so its tests must run.
_MLX_WHEELS = (sys.platform == "linux" and platform.machine() == "x86_64") or (
    sys.platform == "darwin" and platform.machine() == "arm64")
ALLOWED_SKIPS: dict[str, str] = {
    "chromium is not installed": "a system package, not in the [test] extra (.ci/run installs it where it can)",
    "chromium could not be launched": "a sandbox may forbid a headless browser",
    "mlx and mlx-lm are installed": "the install-hint test needs mlx to be missing",
    **({} if _MLX_WHEELS else {
        "mlx is not usable here": "mlx-lm has wheels for Linux x86_64 and macOS arm64 only",
        "mlx_lm is not importable here": "mlx-lm has wheels for Linux x86_64 and macOS arm64 only",
    }),
}
_STRICT = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
_FORBIDDEN_SKIPS: list[str] = []


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Under CI, remember each skip whose reason is not on ``ALLOWED_SKIPS``."""
    if _STRICT and report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if not reason.startswith(tuple(ALLOWED_SKIPS)):
            _FORBIDDEN_SKIPS.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI, a forbidden skip fails the session (exit code 1)."""
    if _FORBIDDEN_SKIPS and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List the forbidden skips, so that CI says what was hidden."""
    if _FORBIDDEN_SKIPS:
        terminalreporter.section("skips that fail CI (the [test] extra installs what they need)", red=True)
        for line in _FORBIDDEN_SKIPS:
            terminalreporter.line(line)

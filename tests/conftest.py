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

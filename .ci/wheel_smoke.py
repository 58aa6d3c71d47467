"""Run the installed ``hadron-hf`` from a wheel: refine against a loopback server, then a recipe and a report.

Run it with the Python of a virtual environment where the wheel is installed without ``-e``, from a folder
outside the source tree (so that the checkout cannot be imported instead of the install).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import hadron_hf
from hadron_hf.testing import FakeOpenAIServer


def run(*argv: str) -> str:
    done = subprocess.run(["hadron-hf", *argv], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        sys.exit(f"hadron-hf {' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def main() -> None:
    where = Path(hadron_hf.__file__).resolve()
    if "site-packages" not in where.parts:
        sys.exit(f"hadron_hf was imported from {where}, not from an installed wheel")
    work = Path(tempfile.mkdtemp(prefix="hadron-hf-wheel-"))
    os.chdir(work)
    os.environ["HADRON_HF_CACHE"] = str(work / "cache")
    with FakeOpenAIServer() as server:
        run("refine", "bundled", "--limit", "2", "--base-url", server.url, "--model", "m", "--judges", "2",
            "--max-iterations", "1", "-o", "out")
    run("recipe", "sft", "out", "-o", "sft")
    run("report", "out/refined", "-o", "report.html")
    for card in ("out/refined/README.md", "out/views/dpo/README.md", "sft/README.md"):
        if "## Generation" not in (work / card).read_text():
            sys.exit(f"{card} is not a rendered card")
    print(f"wheel smoke test passed: hadron-hf {hadron_hf.__name__} from {where.parent} ({work})")


if __name__ == "__main__":
    main()

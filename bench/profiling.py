"""Where a profiled benchmark's client CPU went: by package, in four parts (transport, hadron_hf, asyncio,
other), and the top functions (``bench/throughput.py --profile``, ``bench/overhead.py --profile``)."""

from __future__ import annotations

import os
from typing import Any


def exclusive_times(stats: Any) -> dict[tuple[str, int, str], float]:
    """Each Python function's own time plus the C builtins it called directly (socket sends, sqlite,
    json, hashing), so that time lands on the code that asked for it."""
    times: dict[tuple[str, int, str], float] = {}
    for key, (_cc, _nc, tottime, _ct, callers) in stats.stats.items():
        if not _is_builtin(key[0]):
            times[key] = times.get(key, 0.0) + tottime
            continue
        for caller, edge in callers.items():
            times[caller] = times.get(caller, 0.0) + edge[2]
    return times


def profile_shares(stats: Any) -> list[tuple[str, float]]:
    """CPU time of a ``pstats.Stats`` grouped by package (``stdlib:<module>`` for the standard library),
    largest first, as shares of the total."""
    groups: dict[str, float] = {}
    for (filename, _line, _func), t in exclusive_times(stats).items():
        package = _package_of(filename)
        groups[package] = groups.get(package, 0.0) + t
    total = sum(groups.values()) or 1.0
    return sorted(((name, t / total) for name, t in groups.items()), key=lambda item: -item[1])


def top_functions(stats: Any, top: int = 5, package: str | None = None) -> list[tuple[str, float]]:
    """The ``top`` functions by exclusive time (see ``exclusive_times``), as shares of the total.

    Args:
        package: only functions of this package (as ``profile_shares`` names them).
    """
    times = exclusive_times(stats)
    total = sum(times.values()) or 1.0
    rows = [(f"{_short(f)}:{line}({func})", t / total) for (f, line, func), t in times.items()
            if package is None or _package_of(f) == package]
    return sorted(rows, key=lambda r: -r[1])[:top]


TRANSPORT_PACKAGES = frozenset({
    "aiohttp", "yarl", "multidict", "propcache", "frozenlist", "aiosignal", "aiohappyeyeballs", "openai", "httpx",
    "httpx2", "httpcore", "httpcore2", "h11", "anyio", "sniffio", "pydantic", "pydantic_core", "jiter", "typing",
    "typing_extensions", "stdlib:typing", "stdlib:http", "stdlib:email", "stdlib:socket", "stdlib:ssl",
    "stdlib:selectors", "stdlib:json", "stdlib:urllib"})
"""What ``profile_split`` counts as the transport: HTTP client libraries, their helpers and the SDK."""


def profile_split(stats: Any) -> dict[str, float]:
    """CPU shares of a profile in four parts: ``transport`` (HTTP, JSON, the SDK), ``hadron_hf``, ``asyncio``
    (the event loop and its tasks) and ``other`` (datasets, pyarrow, tenacity, aiolimiter, sqlite, ...)."""
    split = {"transport": 0.0, "hadron_hf": 0.0, "asyncio": 0.0, "other": 0.0}
    for name, share in profile_shares(stats):
        if name in TRANSPORT_PACKAGES:
            split["transport"] += share
        elif name in ("hadron_hf", "stdlib:asyncio"):
            split["hadron_hf" if name == "hadron_hf" else "asyncio"] += share
        else:
            split["other"] += share
    return split


def print_profile(stats: Any, label: str, top: int = 8, cpu_ms_per_call: float | None = None) -> None:
    """Print where a profiled run's CPU time went: by package, then the top functions, then ours.

    Args:
        cpu_ms_per_call: the unprofiled run's CPU per call, to turn hadron_hf's share into milliseconds.
    """
    shares = profile_shares(stats)
    ours = dict(shares).get("hadron_hf", 0.0)
    print(f"profile {label}: " + ", ".join(f"{name} {share:.0%}" for name, share in shares[:top]))
    split = profile_split(stats)
    print("  split: " + ", ".join(f"{name} {share:.0%}" + (f" ({share * cpu_ms_per_call:.3f} ms/call)"
                                                          if cpu_ms_per_call is not None else "")
                                  for name, share in split.items()))
    if cpu_ms_per_call is not None:
        print(f"  hadron_hf's own code ≈ {ours * cpu_ms_per_call:.3f} ms of the {cpu_ms_per_call:.3f} CPU ms per call")
    print("  top functions (own time plus the C calls they make directly): " + ", ".join(
        f"{name} {share:.1%}" for name, share in top_functions(stats, 4)))
    print(f"  hadron_hf code: {ours:.1%} of client CPU; its top functions: " + ", ".join(
        f"{name} {share:.1%}" for name, share in top_functions(stats, 4, "hadron_hf")))


def _is_builtin(filename: str) -> bool:
    return filename == "~"


def _short(filename: str) -> str:
    path = filename.replace(os.sep, "/")
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    if "/hadron_hf/" in path:
        return "hadron_hf/" + path.split("/hadron_hf/", 1)[1]
    if "/lib/python" in path:
        return path.split("/lib/python", 1)[1].split("/", 1)[-1]
    return path


def _package_of(filename: str) -> str:
    path = filename.replace(os.sep, "/")
    if "/hadron_hf/" in path and "site-packages" not in path:
        return "hadron_hf"
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if _is_builtin(path):
        return "builtins"
    if "/lib/python" in path:
        rest = path.split("/lib/python", 1)[1].split("/", 2)
        return "stdlib:" + (rest[1].removesuffix(".py") if len(rest) > 1 else "?")
    return "other"

"""The run facts a report shows: from the ``run.json`` of a refine output folder (read by
``hadron_hf.sources.read_run_info``, like the rows by ``load_refined``), and what can be said about the run
without it, read off the rows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hadron_hf import columns as col

ROLES = ("teacher", "critic", "author", "synthesizer")
# reasoning_traces name the author's calls after the candidate it writes.
_TRACE_ROLES = {"teacher": "teacher", "critic": "critic", "author_b": "author", "synthesizer": "synthesizer"}
_SECRET_KEYS = ("api_key", "apikey", "secret", "password", "authorization", "hf_token")


@dataclass(frozen=True)
class RunInfo:
    """The header facts of a report; ``None`` means unknown, and ``derived`` names facts read off the rows."""

    input: str | None = None
    location: str | None = None
    split: str | None = None
    created: str | None = None
    version: str | None = None
    variant: str | None = None
    seed: int | None = None
    panel: int | None = None
    max_iterations: int | None = None
    converge_k: int | None = None
    roles: dict[str, str] = field(default_factory=dict)
    judges: list[str] = field(default_factory=list)
    config: dict[str, Any] | None = None
    has_run_file: bool = False
    derived: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        """``AutoReason report: <input name>``."""
        if self.input:
            name = self.input.rstrip("/")
            is_path = name.startswith((".", "/", "~")) or Path(name).suffix != "" or Path(name).exists()
            return f"AutoReason report: {Path(name).name if is_path else name}"
        if self.location:
            # Without run.json the best stand-in is the run's folder, not the generic "refined" inside it.
            path = Path(self.location)
            if path.stem == "refined" and path.parent.name:
                path = path.parent
            return f"AutoReason report: {path.stem}"
        return "AutoReason report"


def redact(value: Any) -> Any:
    """A copy of ``value`` with every secret-looking key's value replaced (``*_env`` names are kept)."""
    if isinstance(value, dict):
        return {k: "***" if _secret(str(k)) and value[k] else redact(value[k]) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _secret(key: str) -> bool:
    key = key.lower()
    return not key.endswith("_env") and any(word in key for word in _SECRET_KEYS)


def run_info(rows: Sequence[dict[str, Any]], run: dict[str, Any] | None, source: str | None = None) -> RunInfo:
    """The report header's facts: from ``run.json`` where given, else read off the rows.

    Args:
        rows: the refined rows.
        run: the parsed ``run.json``, or ``None``.
        source: the path the rows were loaded from, the input's stand-in when ``run.json`` is missing.
    """
    run = run or {}
    config = run.get("config") if isinstance(run.get("config"), dict) else {}
    roles_in = run.get("roles") if isinstance(run.get("roles"), dict) else {}
    derived: list[str] = []
    roles = {r: str(roles_in[r]) for r in ROLES if roles_in.get(r)}
    judges = [str(j) for j in roles_in.get("judges") or []]
    seen = _models_in_rows(rows)
    if not roles and seen["roles"]:
        roles, judges = seen["roles"], judges or seen["judges"]
        derived.append("models")
    elif not judges and seen["judges"]:
        judges = seen["judges"]
        derived.append("judges")
    variant = config.get("variant") or _common(r.get(col.TRACE, {}) and r[col.TRACE].get("variant") for r in rows)
    if variant and not config.get("variant"):
        derived.append("variant")
    panel = config.get("judges") if isinstance(config.get("judges"), int) else None
    if panel is None:
        panel = _panel_size(rows)
        derived.append("panel")
    return RunInfo(
        input=run.get("input"), location=source, split=run.get("split"), created=run.get("created"),
        version=run.get("hadron_hf_version"), variant=variant, seed=config.get("seed"), panel=panel,
        max_iterations=config.get("max_iterations"), converge_k=config.get("converge_k"), roles=roles,
        judges=judges, config=redact(config) if config else None, has_run_file=bool(run), derived=tuple(derived),
    )


def _common(values: Any) -> str | None:
    found = sorted({str(v) for v in values if v})
    return ", ".join(found) or None


def _models_in_rows(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    by_role: dict[str, Counter[str]] = {}
    judges: Counter[str] = Counter()
    for row in rows:
        for call in row.get(col.REASONING) or []:
            role = _TRACE_ROLES.get(str(call.get("role")))
            if role and call.get("model"):
                by_role.setdefault(role, Counter())[str(call["model"])] += 1
        for rnd in (row.get(col.TRACE) or {}).get("rounds") or []:
            judges.update(str(v["model"]) for v in rnd.get("votes") or [] if v.get("model"))
    roles = {r: ", ".join(sorted(by_role[r])) for r in ROLES if r in by_role}
    return {"roles": roles, "judges": sorted(judges)}


def _panel_size(rows: Sequence[dict[str, Any]]) -> int | None:
    # Seats re-asked after a failed vote add votes beyond the panel; skipped seats (settled early) are missing.
    sizes = [len(rnd.get("votes") or []) + int(rnd.get("votes_skipped") or 0) - int(rnd.get("reasked") or 0)
             for row in rows for rnd in (row.get(col.TRACE) or {}).get("rounds") or [] if not rnd.get("no_flaws")]
    return max(sizes) if sizes else None

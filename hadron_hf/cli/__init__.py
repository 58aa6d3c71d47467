"""hadron-hf: refine datasets with the AutoReason tournament, then build, publish, inspect and evaluate the
training data it makes.

Every command takes its input as its first argument and writes to ``-o/--output``; an existing, non-empty
output is refused unless ``--overwrite`` is given. ``--limit N`` always means the first N rows, ``--split``
the input's split, ``--private``/``--public`` the visibility of created Hub repos. ``-q/--quiet`` leaves only
errors and the ``Wrote``/``Pushed to`` lines. User errors (``HadronError``, unreadable files, Hub and network
failures) end in one line and exit code 2.

Each command module (``COMMANDS``: ``refine`` for demo and refine, ``recipe``, ``report``, ``evaluate``,
``build``) adds its subcommand with ``add_subcommand(subparsers)``; the parser it adds sets ``func(args) -> int``.
The options every command shares are in ``hadron_hf.cli.options``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hadron_hf.cli import build, evaluate, recipe, refine, report
from hadron_hf.errors import HadronError
from hadron_hf.sources import one_line
from hadron_hf.views.cards import package_version

COMMANDS = (refine, recipe, report, evaluate, build)
"""The command modules, in help order."""

_FINAL_LINES = ("Wrote ", "Pushed to ")  # what --quiet keeps
_NETWORK_MODULES = {"httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3", "aiohttp", "huggingface_hub",
                    "fsspec"}

_EPILOG = """\
Start with `hadron-hf demo` (no key, no network). `hadron-hf COMMAND --help` shows each command's options
with their defaults. Run it with `-q` to keep only errors and the paths written."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default (unless its help already says it, or it is an on/off flag), and keeps
    descriptions laid out as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, False, True, argparse.SUPPRESS) or action.nargs == 0:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help shows defaults; sub-commands get the same class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    return run_command(args, "hadron-hf")


def run_script(doc: str | None, add_arguments: Callable[[argparse.ArgumentParser], None],
               run: Callable[[argparse.Namespace], int], argv: Sequence[str] | None = None) -> int:
    """The ``main`` of a recipe script: parse with ``add_arguments``, ``run``, and turn our errors into one line.

    Args:
        doc: the script's docstring; its first paragraph becomes the description.
        add_arguments: adds the script's options to the parser.
        run: runs the parsed arguments and returns the exit code.
        argv: the arguments (default: ``sys.argv[1:]``).
    """
    parser = Parser(description=(doc or "").split("\n\n")[0].replace("\n", " "))
    add_arguments(parser)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    args.func = run
    return run_command(args, parser.prog)


def run_command(args: argparse.Namespace, prog: str) -> int:
    """Run ``args.func(args)``: ``--quiet`` applied, our errors and network failures as one line.

    Returns:
        The command's exit code; 2 for a user error, 130 after Ctrl+C.
    """
    try:
        with _quiet(getattr(args, "quiet", False)):
            return int(args.func(args))
    except HadronError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; completed calls are in the request cache, re-run to resume", file=sys.stderr)
        return 130
    except Exception as exc:
        if _is_network_error(exc):
            print(f"{prog}: error: network or Hub failure: {one_line(exc)}", file=sys.stderr)
        elif isinstance(exc, OSError):  # an unwritable output, a full disk
            print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        else:
            raise
        return 2


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = Parser(prog="hadron-hf", description=__doc__.split("\n\n")[0].replace("\n", " "), epilog=_EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("-q", "--quiet", action="store_true", default=False,
                        help="no progress line and no summary: only errors and the paths written")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    for module in COMMANDS:
        module.add_subcommand(sub)
    for command in sub.choices.values():
        add_common_arguments(command)
    return parser


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``-q/--quiet`` to a command and to every sub-command below it."""
    if not any("--quiet" in a.option_strings for a in parser._actions):
        # SUPPRESS: a sub-command's default must not undo ``hadron-hf -q COMMAND``.
        parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                            help="no progress line and no summary: only errors and the paths written")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                add_common_arguments(child)


def _is_network_error(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    return any(kind.__module__.split(".")[0] in _NETWORK_MODULES for kind in type(exc).__mro__)


class _KeepFinalLines(io.TextIOBase):
    """A stdout that passes on only the ``Wrote``/``Pushed to`` lines (``--quiet``)."""

    def __init__(self, out: Any) -> None:
        self.out, self.pending = out, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.startswith(_FINAL_LINES):
                self.out.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.out.flush()


@contextlib.contextmanager
def _quiet(on: bool) -> Iterator[None]:
    if not on:
        yield
        return
    from hadron_hf.sources import quiet_progress_bars

    with quiet_progress_bars(), contextlib.redirect_stdout(_KeepFinalLines(sys.stdout)):
        yield


def _version() -> str:
    return package_version()

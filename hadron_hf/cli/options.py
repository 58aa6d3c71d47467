"""The command-line options every command shares, so that they mean the same everywhere: the positional input,
``--split``, ``--limit`` (the first N rows), ``-o/--output`` with ``--overwrite``, and ``--push-to-hub`` with
``--private``/``--public``. Part of the CLI layer: library code never imports it.
"""

from __future__ import annotations

import argparse

from hadron_hf.errors import ConfigError


def add_refined_input_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the positional input and ``--split``: where a recipe reads its refined dataset (see ``load_refined``)."""
    parser.add_argument("input", nargs="?", help="refined dataset: an output folder of refine/demo/build, a "
                                                 "save_to_disk folder, a .parquet/.jsonl file, or a Hub repo")
    # The recipes took --input before every command took its input as a positional; old scripts keep working.
    parser.add_argument("--input", dest="input_option", help=argparse.SUPPRESS)
    parser.add_argument("--split", default="train", help="split of the input")
    parser.add_argument("--limit", type=int, default=None, help="only the first N rows of the input")


def add_output_arguments(parser: argparse.ArgumentParser, default: str) -> None:
    """``-o/--output`` and ``--overwrite``."""
    parser.add_argument("-o", "--output", default=default, help="output folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into the output even when it exists and is not empty")


def add_hub_arguments(parser: argparse.ArgumentParser, metavar: str, help: str) -> None:  # noqa: A002
    """``--push-to-hub`` and ``--private``/``--public`` (private by default)."""
    group = parser.add_argument_group("Hub")
    group.add_argument("--push-to-hub", metavar=metavar, help=help)
    visibility = group.add_mutually_exclusive_group()
    visibility.add_argument("--private", dest="private", action="store_true", default=True,
                            help="create new Hub repos private (the default)")
    visibility.add_argument("--public", dest="private", action="store_false", help="create new Hub repos public")


def refined_input(args: argparse.Namespace) -> str:
    """The input a recipe was given, positional or through the old ``--input``.

    Raises:
        ConfigError: neither, or two different ones.
    """
    given = [v for v in (args.input, getattr(args, "input_option", None)) if v is not None]
    if not given or len(set(given)) > 1:
        raise ConfigError("give the refined dataset once, as the first argument (e.g. hadron-hf-output/demo)")
    return given[0]

"""``cascade``: the Cascade command line.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds its parser and
sets ``func`` (``func(args) -> int`` exit code). To add one (``models``, ``events``, ``experiments``),
write the module and list it in :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from types import ModuleType

from cascade_cli import events, experiments, models, recommend

COMMAND_MODULES: tuple[ModuleType, ...] = (recommend, events, experiments, models)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cascade", description="Cascade recommendation platform command line."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())

"""``cascade``: the Cascade command line.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds its parser and
sets ``func`` (``func(args) -> int`` exit code). To add one (``models``, ``events``, ``experiments``),
write the module and list it in :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import os
import sys
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


def cli_entry() -> None:
    """The ``cascade`` command: :func:`main`, then exit without interpreter teardown.

    The command's output is complete when ``main`` returns (every command closes its own channels,
    producers and files). Native threads left by grpc (and pyarrow, when titles were read) can then
    ``abort()`` while the interpreter finalizes ("terminate called without an active exception",
    exit status -6) -- seen about once in 20 ``cascade recommend`` runs -- turning a successful command
    into a crash. Flushing and ``os._exit`` keeps the command's own exit status.
    """
    try:
        code = main()
    except SystemExit as e:  # argparse usage errors and --help
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    cli_entry()

"""``cascade models``: list, promote, roll back and abort ranker versions; sync MLflow.

    cascade models list
    cascade models promote ranker v2 --canary 10
    cascade models promote ranker v2 --full
    cascade models abort ranker
    cascade models rollback ranker
    cascade models audit
    cascade models sync

The logic lives in :mod:`cascade_modelops` (shared with the ``kubectl cascade`` plugin): see its
``cli`` module for the target flags (local routing file, or ``--configmap`` for a cluster).
"""

from __future__ import annotations

import argparse

from cascade_cli.common import EXIT_USAGE, error

NAME = "models"


def _run(args: argparse.Namespace) -> int:
    from cascade_modelops import cli

    return cli.run(args, f"cascade {NAME} {args.action}")


def _missing(_args: argparse.Namespace) -> int:
    error(NAME, "needs cascade-modelops installed (pip install -c constraints.txt -e libs/modelops)")
    return EXIT_USAGE


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(NAME, help="model versions: list, promote, rollback, abort, audit, sync",
                              description=__doc__.split("\n")[0])
    try:
        from cascade_modelops import cli
    except ImportError:
        p.set_defaults(func=_missing)
        return
    sub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    cli.add_actions(sub, kube=False)
    p.set_defaults(func=_run)

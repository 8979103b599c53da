"""``cascade experiments``: analyse, validate and inspect experiments.

    cascade experiments report ranker-demo --bootstrap 127.0.0.1:9092 --config docs/examples/experiments.yaml
    cascade experiments report ranker-demo --exposures exposures.jsonl --events events.jsonl --planned 5000
    cascade experiments validate docs/examples/experiments.yaml
    cascade experiments assign 42 --config docs/examples/experiments.yaml \
        [--context cascade.force_variant=ranker-demo/treatment]

``report`` is :mod:`cascade_pipelines.analysis` (per-variant CTR / add-to-cart / conversion with
intervals, fixed-horizon verdicts, sample-ratio-mismatch check, interleaving wins); ``validate`` and
``assign`` use the router's own config parser and assigner, so they agree with what the router does.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cascade_cli.common import EXIT_OK, EXIT_USAGE, error

NAME = "experiments"


def _report(args: argparse.Namespace) -> int:
    try:
        from cascade_pipelines import analysis
    except ImportError:
        error(f"{NAME} report", "needs cascade-pipelines installed (pip install -e pipelines)")
        return EXIT_USAGE
    return analysis.run(args)


def _router_experiments() -> Any:
    try:
        from cascade_router import experiments
    except ImportError:
        return None
    return experiments


def _validate(args: argparse.Namespace) -> int:
    exp = _router_experiments()
    if exp is None:
        error(f"{NAME} validate", "needs cascade-router installed (it owns the config format)")
        return EXIT_USAGE
    try:
        cfg = exp.load_experiments(args.file)
    except exp.ExperimentConfigError as e:
        error(f"{NAME} validate", str(e))
        return EXIT_USAGE
    print(f"{args.file}: valid: {cfg.summary()}")
    return EXIT_OK


def _assign(args: argparse.Namespace) -> int:
    exp = _router_experiments()
    if exp is None:
        error(f"{NAME} assign", "needs cascade-router installed (it owns the config format)")
        return EXIT_USAGE
    context = {}
    for pair in args.context:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            error(f"{NAME} assign", f"--context expects KEY=VALUE, got {pair!r}")
            return EXIT_USAGE
        context[key] = value
    try:
        cfg = exp.load_experiments(args.config) if args.config else exp.ExperimentsConfig.default()
        a = exp.Assigner(cfg).assign(args.user, context)
    except exp.ExperimentConfigError as e:
        error(f"{NAME} assign", str(e))
        return EXIT_USAGE
    except Exception as e:  # InvalidArgumentError for a bad forced variant
        error(f"{NAME} assign", getattr(e, "message", str(e)))
        return EXIT_USAGE
    doc = {
        "user_id": args.user, "experiment": a.experiment, "variant": a.name, "kind": a.kind,
        "forced": a.forced, "ranker_version": a.ranker_version,
        "num_candidates": a.variant.num_candidates,
        "arms": [{"name": v.name, "ranker_version": v.ranker_version} for v in a.arms] if a.arms else None,
    }
    print(json.dumps(doc, indent=2))
    return EXIT_OK


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(NAME, help="experiment analysis and config tools", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="experiments_command", required=True, metavar="SUBCOMMAND")
    rep = sub.add_parser("report", help="per-variant metrics, intervals, SRM check, verdict")
    try:
        from cascade_pipelines.analysis import add_arguments
    except ImportError:  # keep the CLI usable; running report says what to install
        rep.add_argument("experiment")
        rep.add_argument("rest", nargs=argparse.REMAINDER)
    else:
        add_arguments(rep)
    rep.set_defaults(func=_report)
    val = sub.add_parser("validate", help="check an experiment YAML file the way the router does")
    val.add_argument("file", type=Path)
    val.set_defaults(func=_validate)
    asg = sub.add_parser("assign", help="which experiment/variant a user gets")
    asg.add_argument("user")
    asg.add_argument("--config", type=Path, default=None, help="experiment YAML (default: no experiments)")
    asg.add_argument("--context", action="append", default=[], metavar="KEY=VALUE")
    asg.set_defaults(func=_assign)

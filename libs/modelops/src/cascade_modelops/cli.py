"""Argument parsing and output shared by ``cascade models`` and ``kubectl cascade``.

    cascade models list
    cascade models promote ranker v2 --canary 10        # 10 % of ranking traffic to v2
    cascade models promote ranker v2 --full             # v2 becomes the default
    cascade models abort ranker                         # drop the canary
    cascade models rollback ranker                      # previous default again
    cascade models audit [--last 20]                     # the audit log's last entries
    cascade models sync                                 # backfill MLflow runs/versions/aliases

Target: locally the ranking service's routing file (``--routing-file``, default
``$CASCADE_MODEL_ROUTING_FILE`` or ``.run/model-routing.json`` as ``make up`` writes it); with
``--configmap`` (or ``$CASCADE_ROUTING_CONFIGMAP``, and always for ``kubectl cascade``) the routing
ConfigMap through the Kubernetes API. Versions are validated against the registry
(``--artifacts``, default ``$CASCADE_ARTIFACTS_DIR`` or ``./artifacts``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cascade_core.errors import NotFoundError
from cascade_core.registry import Registry, artifacts_dir

from cascade_modelops.appliers import LocalFileApplier, RoutingApplier, RoutingStateError
from cascade_modelops.audit import AuditLog
from cascade_modelops.kube import DEFAULT_CONFIGMAP, DEFAULT_KEY, ConfigMapApplier, core_api
from cascade_modelops.ops import ModelOps, Outcome
from cascade_modelops.promotion import PromotionError, RolloutState

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
DEFAULT_ROUTING_FILE = Path(".run") / "model-routing.json"


def add_common_args(p: argparse.ArgumentParser, *, kube: bool) -> None:
    g = p.add_argument_group("where routing lives")
    if not kube:
        g.add_argument("--routing-file", type=Path, default=None,
                       help="ranking routing file (default $CASCADE_MODEL_ROUTING_FILE or .run/model-routing.json)")
    g.add_argument("--configmap", default=None if not kube else os.environ.get("CASCADE_ROUTING_CONFIGMAP",
                                                                             DEFAULT_CONFIGMAP),
                   help="routing ConfigMap the ranking pods mount" + (" (default cascade-model-routing)" if kube
                                                                       else "; switches to the Kubernetes API"))
    g.add_argument("-n", "--namespace", default=os.environ.get("CASCADE_K8S_NAMESPACE"),
                   help="ConfigMap namespace (default: the kubeconfig context's, else 'default')")
    g.add_argument("--key", default=DEFAULT_KEY, help=f"ConfigMap data key (default {DEFAULT_KEY})")
    g.add_argument("--kubeconfig", default=None, help="kubeconfig file (default $KUBECONFIG, ~/.kube/config)")
    g.add_argument("--context", default=None, help="kubeconfig context")
    p.add_argument("--artifacts", type=Path, default=None,
                   help="artifacts root holding registry/ (default $CASCADE_ARTIFACTS_DIR or ./artifacts)")
    p.add_argument("--audit-log", type=Path, default=None, help="audit log (default $CASCADE_DATA_DIR/audit.log)")
    p.add_argument("--actor", default=None, help="who is acting (default $CASCADE_ACTOR or user@host)")


def add_actions(sub: argparse._SubParsersAction, *, kube: bool) -> None:
    p = sub.add_parser("list", help="registry versions and what serves them")
    add_common_args(p, kube=kube)
    p.set_defaults(action="list")

    p = sub.add_parser("promote", help="canary (--canary N) or full (--full) promotion of a version")
    p.add_argument("model", help="model name (ranker)")
    p.add_argument("version", help="registry version id")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--canary", type=int, metavar="PERCENT", help="share of ranking traffic, 1-99")
    how.add_argument("--full", action="store_true", help="make it the default (100%%)")
    add_common_args(p, kube=kube)
    p.set_defaults(action="promote")

    for name, text in (("rollback", "return to the previous default"), ("abort", "drop the canary")):
        p = sub.add_parser(name, help=text)
        p.add_argument("model", help="model name (ranker)")
        add_common_args(p, kube=kube)
        p.set_defaults(action=name)

    p = sub.add_parser("audit", help="last audit-log entries")
    p.add_argument("--last", type=int, default=20, help="how many entries (default 20)")
    add_common_args(p, kube=kube)
    p.set_defaults(action="audit")

    p = sub.add_parser("sync", help="record every registry version in MLflow and align its aliases")
    p.add_argument("--model", default="ranker")
    add_common_args(p, kube=kube)
    p.set_defaults(action="sync")


def make_applier(args: argparse.Namespace) -> RoutingApplier:
    configmap = args.configmap or os.environ.get("CASCADE_ROUTING_CONFIGMAP")
    if configmap:
        api, ctx_namespace = core_api(args.kubeconfig, args.context)
        return ConfigMapApplier(api, args.namespace or ctx_namespace or "default", configmap, args.key)
    path = getattr(args, "routing_file", None) or os.environ.get("CASCADE_MODEL_ROUTING_FILE") or DEFAULT_ROUTING_FILE
    return LocalFileApplier(path)


def _registry(args: argparse.Namespace) -> Registry:
    return Registry(args.artifacts.resolve() if args.artifacts else artifacts_dir())


def _tracker():
    from cascade_modelops.mlflow_sync import MlflowTracker

    return MlflowTracker.from_env()


def _print_outcome(prog: str, out: Outcome, target: str) -> None:
    d = out.decision
    print(f"{prog}: {d.summary}")
    for note in d.notes:
        print(f"  note: {note}")
    print(f"  routing now: {d.after.routing.describe()}  [{target}]")
    print("  the ranking service loads new versions before switching traffic and unloads dropped ones after "
          "its grace period")
    print(f"  audit: {out.record.actor} at {out.record.ts}")
    if out.tracking_error:
        print(f"{prog}: warning: MLflow aliases not updated ({out.tracking_error}); run `cascade models sync` "
              "once MLflow is reachable", file=sys.stderr)


def _list(args: argparse.Namespace, prog: str) -> int:
    reg = _registry(args)
    versions = reg.versions()
    state: RolloutState | None = None
    try:
        state = make_applier(args).read()
    except RoutingStateError as e:
        print(f"{prog}: note: {e}", file=sys.stderr)
    latest = reg.latest() if (reg.registry_dir / "LATEST").is_file() else None
    aliases: dict[str, str] = {}
    tracker = _tracker()
    if tracker is not None:
        try:
            aliases = tracker.aliases("ranker")
        except Exception as e:  # noqa: BLE001 - listing must work without MLflow
            print(f"{prog}: note: MLflow aliases unavailable: {e}", file=sys.stderr)
    if not versions:
        print(f"no versions in {reg.registry_dir}")
        return EXIT_OK
    print(f"{'VERSION':<36} {'CREATED':<20} {'DATASET':<16} {'FEATURES':>8}  SERVING / ALIASES")
    for v in versions:
        m = reg.manifest(v)
        marks: list[str] = []
        if state is not None:
            if v == state.routing.default:
                marks.append(f"default {100 - state.routing.canary_weight}%")
            if v == state.routing.canary:
                marks.append(f"canary {state.routing.canary_weight}%")
            if state.history and v == state.history[-1]:
                marks.append("rollback target")
        if v == latest:
            marks.append("LATEST")
        marks += [f"@{a}" for a, av in sorted(aliases.items()) if av == v]
        print(f"{v:<36} {m.created_at.strftime('%Y-%m-%d %H:%M:%S'):<20} {m.dataset[:16]:<16} "
              f"{len(m.ranker.feature_names):>8}  {', '.join(marks)}")
    return EXIT_OK


def _audit(args: argparse.Namespace) -> int:
    records = AuditLog(args.audit_log).records()[-args.last:]
    for r in records:
        # the log also holds other admin actions (the router's experiment reloads): no model/version
        what = f"{r['model']}:{r['version']}" if "model" in r else r.get("target", "")
        print(f"{r['ts']}  {r['actor']:<24} {r['action']:<15} {what:<30} {r['summary']}")
    return EXIT_OK


def _sync(args: argparse.Namespace, prog: str) -> int:
    tracker = _tracker()
    if tracker is None:
        print(f"{prog}: CASCADE_MLFLOW_TRACKING_URI is not set: point it at an MLflow server "
              "(`python -m cascade_modelops.tracking_server serve` runs one locally)", file=sys.stderr)
        return EXIT_USAGE
    reg = _registry(args)
    for v in reg.versions():
        rec = tracker.record_version(reg.path(v), args.model, alias=None)
        print(f"{v}: MLflow {tracker.registered_name(args.model)} version {rec.model_version} "
              f"({'recorded' if rec.created else 'already recorded'})")
    try:
        state = make_applier(args).read()
    except RoutingStateError as e:
        print(f"{prog}: aliases left as they are: {e}", file=sys.stderr)
        return EXIT_OK
    aliases = {"production": state.routing.default, "canary": state.routing.canary}
    tracker.set_aliases(args.model, aliases, reg)
    print(f"aliases: production={aliases['production']} canary={aliases['canary'] or '-'}")
    return EXIT_OK


def run(args: argparse.Namespace, prog: str) -> int:
    """Run the parsed action; returns the exit code (2: refused/usage, 1: platform failure)."""
    from cascade_modelops.mlflow_sync import TrackingError

    try:
        if args.action == "list":
            return _list(args, prog)
        if args.action == "audit":
            return _audit(args)
        if args.action == "sync":
            return _sync(args, prog)
        applier = make_applier(args)
        ops = ModelOps(_registry(args), applier, AuditLog(args.audit_log), _tracker(), args.actor)
        if args.action == "promote":
            out = ops.promote(args.model, args.version, None if args.full else args.canary)
        elif args.action == "rollback":
            out = ops.rollback(args.model)
        else:
            out = ops.abort(args.model)
        _print_outcome(prog, out, applier.target)
        return EXIT_OK
    except PromotionError as e:
        print(f"{prog}: refused: {e}", file=sys.stderr)
        return EXIT_USAGE
    except NotFoundError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (RoutingStateError, TrackingError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return EXIT_FAILURE

"""``kubectl cascade``: the kubectl plugin (``kubectl-cascade`` on PATH) for ranker rollouts in a cluster.

    kubectl cascade promote ranker <version> --canary 10 [-n NAMESPACE] [--configmap NAME]
    kubectl cascade promote ranker <version> --full
    kubectl cascade abort ranker
    kubectl cascade rollback ranker
    kubectl cascade list | audit | sync

Same actions as ``cascade models``, always applied to the routing ConfigMap through the Kubernetes
API (kubeconfig/context as kubectl resolves them: ``--kubeconfig``, ``$KUBECONFIG``,
``~/.kube/config``, else the pod's service account).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from cascade_modelops import cli

PROG = "kubectl cascade"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Ranker rollouts on the cluster's routing ConfigMap.")
    sub = parser.add_subparsers(dest="action_name", required=True, metavar="ACTION")
    cli.add_actions(sub, kube=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return cli.run(args, PROG)


if __name__ == "__main__":
    raise SystemExit(main())

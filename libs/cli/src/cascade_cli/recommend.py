"""``cascade recommend``: ask the router for one user's recommendations and print them with titles."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import grpc
from cascade.router.v1 import router_pb2, router_pb2_grpc

from cascade_cli.common import EXIT_OK, EXIT_USAGE, error, rpc_failure
from cascade_cli.titles import load_titles

NAME = "recommend"


def _context(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise ValueError(f"--context expects KEY=VALUE, got {p!r}")
        out[key] = value
    return out


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        NAME,
        help="recommendations for one user",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--user", required=True, help="user id")
    p.add_argument("--n", type=int, default=10, help="number of items (1-200)")
    p.add_argument(
        "--target",
        default=os.environ.get("CASCADE_ROUTER_TARGET", "127.0.0.1:50051"),
        help="router gRPC target (env CASCADE_ROUTER_TARGET)",
    )
    p.add_argument(
        "--exclude", nargs="+", action="extend", default=[], metavar="ID", help="item ids to exclude"
    )
    p.add_argument(
        "--context", action="append", default=[], metavar="KEY=VALUE", help="request context entry"
    )
    p.add_argument("--request-id", default="", help="correlation id (generated when empty)")
    p.add_argument("--timeout", type=float, default=2.0, help="deadline in seconds")
    p.add_argument(
        "--api-key",
        default=os.environ.get("CASCADE_API_KEY", ""),
        help="API key or JWT sent as `authorization: Bearer ...` when the router requires auth "
        "(env CASCADE_API_KEY; see docs/security.md)",
    )
    p.add_argument(
        "--artifacts-dir",
        default=os.environ.get("CASCADE_ARTIFACTS_DIR", "artifacts"),
        help="registry root for titles (env CASCADE_ARTIFACTS_DIR)",
    )
    p.add_argument("--model-version", default="latest", help="registry version whose catalog gives titles")
    p.add_argument("--json", action="store_true", help="print the response as JSON")
    p.set_defaults(func=run)


def _as_dict(resp: router_pb2.RecommendResponse, titles: dict[str, str]) -> dict[str, Any]:
    return {
        "request_id": resp.request_id,
        "variant": resp.variant,
        "model_version": resp.model_version,
        "degraded": resp.degraded,
        "items": [
            {
                "rank": i.rank,
                "item_id": i.item_id,
                "score": i.score,
                "source": i.source,
                "title": titles.get(i.item_id),
            }
            for i in resp.items
        ],
    }


def _table(user: str, resp: router_pb2.RecommendResponse, titles: dict[str, str]) -> str:
    lines = [
        f"user {user}  variant {resp.variant}  model_version {resp.model_version}  "
        f"degraded {'yes' if resp.degraded else 'no'}  request_id {resp.request_id}",
    ]
    if not resp.items:
        lines.append("(no items)")
        return "\n".join(lines)
    w = max(len("item_id"), *(len(i.item_id) for i in resp.items))
    lines.append(f"{'rank':>4}  {'item_id':<{w}}  {'score':>10}  {'source':<8}  title")
    for i in resp.items:
        lines.append(
            f"{i.rank:>4}  {i.item_id:<{w}}  {i.score:>10.4f}  {i.source:<8}  {titles.get(i.item_id, '?')}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        context = _context(args.context)
    except ValueError as e:
        error(NAME, str(e))
        return EXIT_USAGE
    if args.timeout <= 0:
        error(NAME, f"--timeout must be > 0, got {args.timeout}")
        return EXIT_USAGE
    req = router_pb2.RecommendRequest(
        user_id=args.user,
        num_items=args.n,
        exclude_item_ids=args.exclude,
        context=context,
        request_id=args.request_id,
    )
    with grpc.insecure_channel(args.target) as channel:
        try:
            md = (("authorization", f"Bearer {args.api_key}"),) if args.api_key else ()
            resp = router_pb2_grpc.RecommendationServiceStub(channel).Recommend(
                req, timeout=args.timeout, metadata=md
            )
        except grpc.RpcError as e:
            return rpc_failure(NAME, args.target, e)
    titles, problem = load_titles(args.artifacts_dir, args.model_version)
    if problem:
        print(f"cascade {NAME}: titles unavailable: {problem}", file=sys.stderr)
    print(json.dumps(_as_dict(resp, titles), indent=2) if args.json else _table(args.user, resp, titles))
    return EXIT_OK

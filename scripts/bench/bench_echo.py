"""The bare gRPC hop floor: a trivial grpc.aio server and a rate-paced grpc.aio client, two processes.

``serve``: one generic unary method ``/bench.Echo/Echo`` on raw bytes (no protobuf, no interceptor,
no metrics) answering a fixed ``--resp-bytes`` payload. ``drive``: an open-loop client sending
``--req-bytes`` payloads at ``--rate`` requests/s for ``--duration`` seconds (each call its own task,
so a slow answer never delays the next send), then printing one JSON line with the count and
latency percentiles. The bench reads both processes' CPU from ``/proc``: client + server CPU per call
is the floor one Cascade RPC hop (router client side + downstream server side) is compared with.
Both run on the event loop the services use (``--loop``, default uvloop like ``CASCADE_EVENT_LOOP``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import grpc

METHOD = "/bench.Echo/Echo"


async def serve(port: int, resp_bytes: int) -> None:
    payload = b"\x01" * resp_bytes

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return payload

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


async def drive(target: str, rate: float, duration_s: float, req_bytes: int, warmup: int) -> dict:
    payload = b"\x02" * req_bytes
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(METHOD)
        for _ in range(warmup):
            await call(payload, timeout=5)
        lat: list[float] = []
        errors = 0

        async def one() -> None:
            nonlocal errors
            t0 = time.perf_counter()
            try:
                await call(payload, timeout=5)
                lat.append(time.perf_counter() - t0)
            except grpc.aio.AioRpcError:
                errors += 1

        tasks = []
        n = int(rate * duration_s)
        start = time.perf_counter()
        print(json.dumps({"event": "start"}), flush=True)
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one()))
        await asyncio.gather(*tasks)
    lat.sort()
    pick = lambda q: lat[max(0, int(q * len(lat)) - 1)] * 1e3 if lat else float("nan")  # noqa: E731
    return {"event": "done", "calls": len(lat), "errors": errors, "p50_ms": pick(0.5), "p99_ms": pick(0.99)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--resp-bytes", type=int, default=1000)
    d = sub.add_parser("drive")
    d.add_argument("--target", required=True)
    d.add_argument("--rate", type=float, required=True)
    d.add_argument("--duration", type=float, default=10.0)
    d.add_argument("--req-bytes", type=int, default=1000)
    d.add_argument("--warmup", type=int, default=50)
    for p in (s, d):
        p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    a = ap.parse_args(argv)
    if a.loop == "uvloop":
        import uvloop

        run = uvloop.run
    else:
        run = asyncio.run
    if a.cmd == "serve":
        run(serve(a.port, a.resp_bytes))
        return 0
    print(json.dumps(run(drive(a.target, a.rate, a.duration, a.req_bytes, a.warmup))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

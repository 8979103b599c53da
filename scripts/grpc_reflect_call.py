"""Call a gRPC method knowing nothing but server reflection (a tiny grpcurl).

    python scripts/grpc_reflect_call.py 127.0.0.1:50051 \
        cascade.router.v1.RecommendationService/Recommend '{"user_id": "1", "num_items": 10}'

Fetches the service's file descriptors over grpc.reflection.v1alpha, builds the request/response
classes at run time (no generated code imported), sends the JSON request and prints the JSON reply.
Exit code: 0 on OK, otherwise the numeric gRPC status code (message on stderr).
"""

from __future__ import annotations

import json
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


def _fetch_files(channel: grpc.Channel, symbol: str) -> list[descriptor_pb2.FileDescriptorProto]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    resps = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)]),
                                      timeout=5)
    files: list[descriptor_pb2.FileDescriptorProto] = []
    for r in resps:
        if r.HasField("error_response"):
            raise SystemExit(f"reflection error: {r.error_response.error_message}")
        for raw in r.file_descriptor_response.file_descriptor_proto:
            fd = descriptor_pb2.FileDescriptorProto()
            fd.ParseFromString(raw)
            files.append(fd)
    return files


def call(target: str, method: str, request_json: str, timeout_s: float = 5.0) -> tuple[grpc.StatusCode, str]:
    service, _, rpc = method.partition("/")
    with grpc.insecure_channel(target) as ch:
        pool = descriptor_pool.DescriptorPool()
        pending = _fetch_files(ch, service)
        added: set[str] = set()
        while pending:  # add in dependency order
            progressed = False
            for fd in list(pending):
                if all(d in added for d in fd.dependency):
                    pool.Add(fd)
                    added.add(fd.name)
                    pending.remove(fd)
                    progressed = True
            if not progressed:
                raise SystemExit(f"unresolved descriptor dependencies: {[f.name for f in pending]}")
        sdesc = pool.FindServiceByName(service)
        mdesc = sdesc.FindMethodByName(rpc)
        req_cls = message_factory.GetMessageClass(mdesc.input_type)
        resp_cls = message_factory.GetMessageClass(mdesc.output_type)
        req = json_format.Parse(request_json, req_cls())
        fn = ch.unary_unary(f"/{service}/{rpc}", request_serializer=req_cls.SerializeToString,
                            response_deserializer=resp_cls.FromString)
        try:
            resp = fn(req, timeout=timeout_s)
        except grpc.RpcError as e:
            return e.code(), e.details() or ""
        return grpc.StatusCode.OK, json_format.MessageToJson(resp, preserving_proto_field_name=True)


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    code, out = call(argv[1], argv[2], argv[3])
    if code == grpc.StatusCode.OK:
        print(out)
        return 0
    print(json.dumps({"code": code.name, "message": out}), file=sys.stderr)
    return code.value[0]


if __name__ == "__main__":
    sys.exit(main(sys.argv))

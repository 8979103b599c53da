"""Helpers shared by subcommands: error reporting and gRPC failures as exit codes."""

from __future__ import annotations

import sys

import grpc

EXIT_OK = 0
EXIT_FAILURE = 1  # the platform failed (unavailable, internal)
EXIT_USAGE = 2  # the user must fix the input (argparse uses 2 as well)


def error(command: str, message: str) -> None:
    print(f"cascade {command}: {message}", file=sys.stderr)


def rpc_failure(command: str, target: str, e: grpc.RpcError) -> int:
    """Report a failed RPC and return the exit code: 2 for the caller's mistakes, 1 otherwise."""
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = e.details() if hasattr(e, "details") else str(e)
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
        error(command, f"{code.name}: {details}")
        return EXIT_USAGE
    error(command, f"{target} {code.name}: {details}")
    return EXIT_FAILURE

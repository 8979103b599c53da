#!/usr/bin/env bash
# Run the real tritonserver binary from .tools/triton (built by `make triton-env`) on loopback.
#
#   scripts/triton/tritonserver.sh --model-repository DIR [--grpc-port N] [--http-port N]
#                                  [--metrics-port N] [--address 127.0.0.1] [any other tritonserver flag]
#
# Ports not given are picked free. Model control is explicit (the ranking service loads/unloads
# models through the gRPC repository API). The script `exec`s the binary, so the PID a caller
# started is tritonserver's own PID: stop it with SIGTERM (then SIGKILL). The python backend's stub
# embeds the venv's Python: that venv's bin/ goes first on PATH (the embedded interpreter finds its
# prefix there) and LD_LIBRARY_PATH holds that Python's LIBDIR plus the wheel's bundled libraries.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="${TRITON_HOME:-$ROOT/.tools/triton}"
if [[ ! -f "$DEST/env.sh" ]]; then
  echo "tritonserver.sh: Triton environment missing in $DEST: run \`make triton-env\`" >&2
  exit 2
fi
# shellcheck disable=SC1091
source "$DEST/env.sh"

free_port() {
  "$TRITON_VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

REPO="" GRPC="" HTTP="" METRICS="" ADDR="127.0.0.1"
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model-repository=*) REPO="${1#*=}" ;;
    --model-repository) REPO="$2"; shift ;;
    --grpc-port=*) GRPC="${1#*=}" ;;
    --grpc-port) GRPC="$2"; shift ;;
    --http-port=*) HTTP="${1#*=}" ;;
    --http-port) HTTP="$2"; shift ;;
    --metrics-port=*) METRICS="${1#*=}" ;;
    --metrics-port) METRICS="$2"; shift ;;
    --address=*) ADDR="${1#*=}" ;;
    --address) ADDR="$2"; shift ;;
    *) EXTRA+=("$1") ;;
  esac
  shift
done
[[ -n "$REPO" ]] || { echo "tritonserver.sh: --model-repository DIR is required" >&2; exit 2; }
[[ -d "$REPO" ]] || { echo "tritonserver.sh: model repository $REPO does not exist" >&2; exit 2; }
GRPC="${GRPC:-$(free_port)}"
HTTP="${HTTP:-$(free_port)}"
METRICS="${METRICS:-$(free_port)}"

export PATH="$TRITON_VENV/bin:$PATH"
export LD_LIBRARY_PATH="$TRITON_LD_LIBRARY_PATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "tritonserver.sh: grpc=$ADDR:$GRPC http=$ADDR:$HTTP metrics=$ADDR:$METRICS repo=$REPO" >&2

exec "$TRITON_BIN" \
  --model-repository="$REPO" \
  --backend-directory="$TRITON_BACKEND_DIR" \
  --model-control-mode=explicit \
  --grpc-address="$ADDR" --grpc-port="$GRPC" \
  --http-address="$ADDR" --http-port="$HTTP" \
  --metrics-address="$ADDR" --metrics-port="$METRICS" \
  --allow-gpu-metrics=false \
  "${EXTRA[@]}"

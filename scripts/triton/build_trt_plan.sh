#!/usr/bin/env bash
# Build a TensorRT plan (FP16) from a registry ranker and add it to a Triton repository. GPU nodes only.
#
#   scripts/triton/build_trt_plan.sh [--version latest] [--variant fp32|fp16] [--out DIR]
#                                    [--max-batch 4096] [--opt-batch 256] [--int8]
#
# UNTESTED: written on a machine without a GPU. Run it on the node type that serves the plan (a plan
# is tied to the GPU architecture and TensorRT version that built it), inside the Triton image
# (nvcr.io/nvidia/tritonserver:<ver>-py3 ships trtexec at /usr/src/tensorrt/bin/trtexec) or anywhere
# `trtexec` or the TensorRT Python API (`import tensorrt`) is available.
#
# The plan gets one optimization profile over the dynamic batch N: min 1, opt --opt-batch, max
# --max-batch rows of F features, so the Triton config's max_batch_size must not exceed --max-batch.
# INT8 plans (--int8) need a calibration cache; the ONNX QDQ graph from `cascade_pipelines.optimize`
# (ranker.int8.onnx) carries its own scales, so pass --variant int8 --int8 for that route.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
VERSION=latest VARIANT=fp32 OUT="$ROOT/artifacts/triton-repo-gpu" MAX_BATCH=4096 OPT_BATCH=256 INT8=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --version) VERSION="$2"; shift ;;
    --variant) VARIANT="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --max-batch) MAX_BATCH="$2"; shift ;;
    --opt-batch) OPT_BATCH="$2"; shift ;;
    --int8) INT8=1 ;;
    -h|--help) sed -n 2,17p "$0"; exit 0 ;;
    *) echo "build_trt_plan.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null || { echo "build_trt_plan.sh: no GPU visible (nvidia-smi)" >&2; exit 1; }

# Resolve the ONNX file, its input name and feature count from the registry manifest.
read -r VID ONNX INPUT NFEAT < <("$PY" - "$VERSION" "$VARIANT" <<'EOF'
import sys
from cascade_core.registry import Registry
from cascade_pipelines.triton_repo import variant_path
reg = Registry()
m = reg.manifest(sys.argv[1])
print(m.version_id, variant_path(reg, m.version_id, sys.argv[2]), m.ranker.input_name, len(m.ranker.feature_names))
EOF
)
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
PLAN="$WORK/model.plan"
SHAPES=(--minShapes="$INPUT:1x$NFEAT" --optShapes="$INPUT:${OPT_BATCH}x$NFEAT" --maxShapes="$INPUT:${MAX_BATCH}x$NFEAT")
PREC=(--fp16)
[[ "$INT8" == 1 ]] && PREC+=(--int8)

TRTEXEC="$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)"
if [[ -x "$TRTEXEC" ]]; then
  echo "build_trt_plan.sh: trtexec $ONNX -> $PLAN (${PREC[*]})"
  "$TRTEXEC" --onnx="$ONNX" --saveEngine="$PLAN" "${SHAPES[@]}" "${PREC[@]}" --memPoolSize=workspace:1024
else
  echo "build_trt_plan.sh: no trtexec; using the TensorRT Python API"
  "$PY" - "$ONNX" "$PLAN" "$INPUT" "$NFEAT" "$OPT_BATCH" "$MAX_BATCH" "$INT8" <<'EOF'
import sys
import tensorrt as trt
onnx_path, plan, name, f, opt, mx, int8 = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:])
logger = trt.Logger(trt.Logger.WARNING)
builder = trt.Builder(logger)
network = builder.create_network(0)
parser = trt.OnnxParser(network, logger)
if not parser.parse_from_file(onnx_path):
    raise SystemExit("\n".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
config = builder.create_builder_config()
config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
config.set_flag(trt.BuilderFlag.FP16)
if int8:
    config.set_flag(trt.BuilderFlag.INT8)
profile = builder.create_optimization_profile()
profile.set_shape(name, (1, f), (opt, f), (mx, f))
config.add_optimization_profile(profile)
engine = builder.build_serialized_network(network, config)
if engine is None:
    raise SystemExit("TensorRT build failed")
open(plan, "wb").write(engine)
EOF
fi

"$PY" -m cascade_pipelines.triton_repo --version "$VID" --out "$OUT" --profile tensorrt_plan --plan "$PLAN" \
  --max-batch-size "$MAX_BATCH"
echo "build_trt_plan.sh: $OUT/ranker__$VID (tensorrt_plan, max_batch_size $MAX_BATCH) — serve with KIND_GPU Triton"

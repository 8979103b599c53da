"""Write a Triton model repository for one registry version.

    python -m cascade_pipelines.triton_repo --version latest --out DIR [--profile cpu|gpu|python|tensorrt_plan]

Layout (one Triton model per registry version, see ``cascade_ranking.backends.triton``)::

    DIR/<model>__<version>/config.pbtxt
    DIR/<model>__<version>/1/model.onnx        (model.plan for tensorrt_plan; + model.py for python)

Profiles: ``cpu`` and ``gpu`` are the production configs (``onnxruntime_onnx``; the GPU one with the
TensorRT execution accelerator in FP16); ``tensorrt_plan`` wraps a plan built on a GPU node by
``scripts/triton/build_trt_plan.sh`` (``--plan``); ``python`` runs the same ONNX file through
onnxruntime inside Triton's python backend (the pip-installed tritonserver has no onnxruntime
backend). Configs come from the same renderer the ranking service's Triton backend uses, so a
pre-built repository and a model loaded at run time are configured identically.
``--variant fp16|int8`` picks an optimized graph written by :mod:`cascade_pipelines.optimize`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import shutil
from pathlib import Path
from typing import get_args

from cascade_core.registry import Registry
from cascade_ranking.backends.triton import (
    ModelSpec,
    Profile,
    config_pbtxt,
    model_config,
    model_files,
    triton_model_name,
)

VARIANTS = ("fp32", "fp16", "int8")


def variant_path(registry: Registry, version: str, variant: str) -> Path:
    """ONNX file of ``variant``: the registry's ranker for fp32, else ``optimized/ranker.<variant>.onnx``."""
    if variant == "fp32":
        return registry.file(version, "ranker")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} (choose from {', '.join(VARIANTS)})")
    p = registry.path(version) / "optimized" / f"ranker.{variant}.onnx"
    if not p.is_file():
        raise FileNotFoundError(f"{p} missing: run `python -m cascade_pipelines.optimize --version {version}`")
    return p


def write_model(out: Path, spec: ModelSpec, model_file: Path) -> Path:
    """Write ``out/<spec.name>/`` (replacing an older copy) and return it."""
    data = model_file.read_bytes()
    spec = dataclasses.replace(spec, digest=hashlib.sha256(data).hexdigest())
    cfg = model_config(spec)
    model_dir = out / spec.name
    tmp = out / f".{spec.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, blob in model_files(spec, data).items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(blob)
    (tmp / "config.pbtxt").write_text(config_pbtxt(cfg))
    shutil.rmtree(model_dir, ignore_errors=True)
    tmp.rename(model_dir)
    return model_dir


def build_repository(
    out: Path,
    version: str | None = "latest",
    profile: Profile = "cpu",
    variant: str = "fp32",
    plan: Path | None = None,
    registry: Registry | None = None,
    *,
    max_batch_size: int = 4096,
    max_queue_delay_us: int = 500,
    instances: int = 1,
    threads: int = 1,
) -> Path:
    """Add the ranker of registry ``version`` to the repository at ``out``; returns the model dir."""
    reg = registry or Registry()
    manifest = reg.manifest(version)
    ranker = manifest.ranker
    if profile == "tensorrt_plan":
        if plan is None or not Path(plan).is_file():
            raise FileNotFoundError("the tensorrt_plan profile needs --plan PATH (scripts/triton/build_trt_plan.sh)")
        model_file = Path(plan)
    else:
        model_file = variant_path(reg, manifest.version_id, variant)
    spec = ModelSpec(
        name=triton_model_name(ranker.name, manifest.version_id),
        n_features=len(ranker.feature_names),
        profile=profile,
        input_name=ranker.input_name,
        output_name=ranker.output_name,
        max_batch_size=max_batch_size,
        max_queue_delay_us=max_queue_delay_us,
        instances=instances,
        threads=threads,
    )
    out.mkdir(parents=True, exist_ok=True)
    return write_model(out, spec, model_file)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m cascade_pipelines.triton_repo", description=__doc__.split("\n")[0])
    ap.add_argument("--version", default="latest", help="registry version id or 'latest'")
    ap.add_argument("--out", type=Path, required=True, help="model repository directory")
    ap.add_argument("--profile", choices=get_args(Profile), default="cpu")
    ap.add_argument("--variant", choices=VARIANTS, default="fp32", help="which ONNX graph to serve")
    ap.add_argument("--plan", type=Path, help="TensorRT plan for --profile tensorrt_plan")
    ap.add_argument("--artifacts", type=Path, help="artifacts root (default $CASCADE_ARTIFACTS_DIR or ./artifacts)")
    ap.add_argument("--max-batch-size", type=int, default=4096)
    ap.add_argument("--max-queue-delay-us", type=int, default=500)
    ap.add_argument("--instances", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    model_dir = build_repository(
        a.out, a.version, a.profile, a.variant, a.plan, Registry(a.artifacts),
        max_batch_size=a.max_batch_size, max_queue_delay_us=a.max_queue_delay_us,
        instances=a.instances, threads=a.threads,
    )
    print(model_dir)


if __name__ == "__main__":
    main()

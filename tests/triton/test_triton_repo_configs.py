"""Every generated config.pbtxt parses into Triton's ModelConfig protobuf (a typo fails CI).

Needs no server: runs in the plain test suite too.
"""

from __future__ import annotations

import pathlib

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from cascade_pipelines.triton_repo import main as triton_repo_main

PROFILES = ("cpu", "gpu", "python", "tensorrt_plan")


def parse(path: pathlib.Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


@pytest.fixture(scope="module")
def repositories(ranker_registry, tmp_path_factory) -> dict[str, pathlib.Path]:
    base = tmp_path_factory.mktemp("repos")
    plan = base / "fake.plan"
    plan.write_bytes(b"opaque TensorRT engine bytes")  # the config is under test, not the engine
    out = {}
    for profile in PROFILES:
        argv = ["--version", ranker_registry.version, "--out", str(base / profile), "--profile", profile,
                "--artifacts", str(ranker_registry.registry.root)]
        if profile == "tensorrt_plan":
            argv += ["--plan", str(plan)]
        triton_repo_main(argv)
        out[profile] = base / profile
    return out


@pytest.mark.parametrize("profile", PROFILES)
def test_generated_config_parses_and_describes_the_ranker(repositories, ranker_registry, profile):
    model_dirs = [p for p in repositories[profile].iterdir() if p.is_dir()]
    assert [p.name for p in model_dirs] == [f"ranker__{ranker_registry.version}"]
    d = model_dirs[0]
    cfg = parse(d / "config.pbtxt")
    assert cfg.name == d.name
    assert cfg.max_batch_size >= 2000  # a full candidate list fits in one request
    assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == [
        ("features", mc.TYPE_FP32, [ranker_registry.n_features])]
    assert [(o.name, o.data_type, list(o.dims), o.HasField("reshape")) for o in cfg.output] == [
        ("score", mc.TYPE_FP32, [1], True)]
    assert cfg.HasField("dynamic_batching") and cfg.dynamic_batching.max_queue_delay_microseconds > 0
    assert list(cfg.dynamic_batching.preferred_batch_size) == sorted(cfg.dynamic_batching.preferred_batch_size)
    kind = mc.ModelInstanceGroup.KIND_GPU if profile in ("gpu", "tensorrt_plan") else mc.ModelInstanceGroup.KIND_CPU
    assert [g.kind for g in cfg.instance_group] == [kind]
    expected_platform = {"cpu": "onnxruntime_onnx", "gpu": "onnxruntime_onnx", "tensorrt_plan": "tensorrt_plan"}
    if profile == "python":
        assert (cfg.backend, cfg.platform) == ("python", "")
        assert (d / "1" / "model.py").is_file() and (d / "1" / "model.onnx").is_file()
    else:
        assert cfg.platform == expected_platform[profile]
    filename = "model.plan" if profile == "tensorrt_plan" else "model.onnx"
    assert (d / "1" / filename).stat().st_size > 0
    accelerators = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    if profile == "gpu":
        assert [a.name for a in accelerators] == ["tensorrt"]
        assert accelerators[0].parameters["precision_mode"] == "FP16"
        n = ranker_registry.n_features
        assert accelerators[0].parameters["trt_profile_max_shapes"] == f"features:{cfg.max_batch_size}x{n}"
    else:
        assert len(accelerators) == 0


def test_onnx_file_is_the_registry_ranker(repositories, ranker_registry):
    d = repositories["cpu"] / f"ranker__{ranker_registry.version}"
    assert (d / "1" / "model.onnx").read_bytes() == ranker_registry.onnx_path.read_bytes()


def test_a_typo_in_a_config_fails_to_parse(repositories, ranker_registry):
    text = (repositories["cpu"] / f"ranker__{ranker_registry.version}" / "config.pbtxt").read_text()
    assert "max_batch_size" in text
    with pytest.raises(text_format.ParseError):
        text_format.Parse(text.replace("max_batch_size", "max_batch_sise"), mc.ModelConfig())
    with pytest.raises(text_format.ParseError):
        text_format.Parse(text.replace("KIND_CPU", "KIND_CPUU"), mc.ModelConfig())


def test_regenerating_replaces_the_model_directory(repositories, ranker_registry):
    out = repositories["python"]
    stale = out / f"ranker__{ranker_registry.version}" / "1" / "stale.txt"
    stale.write_text("left over")
    triton_repo_main(["--version", ranker_registry.version, "--out", str(out), "--profile", "python",
                      "--artifacts", str(ranker_registry.registry.root)])
    assert not stale.exists()
    assert parse(out / f"ranker__{ranker_registry.version}" / "config.pbtxt").backend == "python"

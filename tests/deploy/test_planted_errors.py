"""Each checker catches a real mistake: plant one error in a temp copy of the
deploy files, run the same check the repo passes, and require it to fail with a
message naming the mistake. (A check that cannot fail would pass all of these.)"""

from pathlib import Path

import pytest


def _edit(rel: str, old: str, new: str):
    """Mutation replacing `old` (must be present) with `new` in one file."""

    def mutate(root: Path):
        f = root / rel
        text = f.read_text()
        assert old in text, f"plant target missing in {rel}: {old!r}"
        f.write_text(text.replace(old, new, 1))

    return mutate


def _add(rel: str, content: str):
    """Mutation adding a new file."""

    def mutate(root: Path):
        (root / rel).write_text(content)

    return mutate


OLD_PDB = """apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata: {name: legacy}
spec:
  maxUnavailable: 1
  selector: {matchLabels: {app: legacy}}
"""
OLD_HPA = """apiVersion: autoscaling/v2beta1
kind: HorizontalPodAutoscaler
metadata: {name: legacy}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: legacy}
  minReplicas: 1
  maxReplicas: 2
"""

PLANTS = {
    # values.yaml value of the wrong type -> values.schema.json (helm lint/template)
    "values-schema-type": (
        "helm",
        _edit("charts/cascade/values.yaml", "port: 50051", 'port: "fifty"'),
        "port",
    ),
    # removed Kubernetes APIs -> kubernetes-validate
    "removed-api-pdb-v1beta1": (
        "helm",
        _add("charts/cascade/templates/legacy-pdb.yaml", OLD_PDB),
        "policy/v1beta1 PodDisruptionBudget is unknown or removed",
    ),
    "removed-api-hpa-v2beta1": (
        "helm",
        _add("charts/cascade/templates/legacy-hpa.yaml", OLD_HPA),
        "autoscaling/v2beta1 HorizontalPodAutoscaler is unknown or removed",
    ),
    # wrong field type in a template -> kubernetes-validate strict
    "k8s-field-type": (
        "helm",
        _edit(
            "charts/cascade-lib/templates/_scaling.tpl",
            "minReplicas: {{ $a.minReplicas }}",
            "minReplicas: {{ $a.minReplicas | quote }}",
        ),
        "minReplicas",
    ),
    # CRD object violating the shipped schema (Strimzi KafkaTopic) -> crd-schemas via kustomize build
    "crd-schema": (
        "kustomize",
        _edit("k8s/components/strimzi-kafka/topics.yaml", "partitions: 3", 'partitions: "three"'),
        "partitions",
    ),
    "k8s-manifest-type": (
        "kustomize",
        _edit("k8s/components/redis/redis.yaml", "containerPort: 6379", 'containerPort: "6379"'),
        "containerPort",
    ),
    # bad PromQL in an alert -> promtool check rules
    "bad-promql-alert": (
        "promtool",
        _edit(
            "charts/cascade/templates/prometheusrule.yaml",
            "sum by (variant) (rate(cascade_recommend_degraded_total",
            "sum by (variant (rate(cascade_recommend_degraded_total",
        ),
        "parse error",
    ),
    # threshold regression -> promtool test rules (unit tests bite)
    "alert-threshold-regression": (
        "promtool",
        _edit("charts/cascade/values.yaml", "errorRatio: 0.01", "errorRatio: 0.5"),
        "CascadeErrorRateHigh",
    ),
    # bad PromQL in an AnalysisTemplate -> promtool on the canary queries
    "bad-promql-analysis": (
        "promql",
        _edit(
            "charts/cascade/templates/analysistemplates.yaml",
            "histogram_quantile(0.99, sum by (le)",
            "histogram_quantile(0.99, sum by (le",
        ),
        "AnalysisTemplate",
    ),
    # Dockerfile smell -> hadolint
    "bad-dockerfile": (
        "hadolint",
        _edit(
            "services/router/Dockerfile",
            "USER 10001:10001",
            "RUN apt-get update && apt-get install -y curl\nUSER 10001:10001",
        ),
        "DL3008",
    ),
    # in-repo dependency not installed in an image -> dockerfile-sources
    "dockerfile-missing-local-dep": (
        "dockerfile-sources",
        _edit("services/stream/Dockerfile", " ./services/features ./services/stream", " ./services/stream"),
        "does not install in-repo dependency cascade-features",
    ),
    # unknown skaffold field -> skaffold v4beta13 JSON schema
    "bad-skaffold-field": (
        "skaffold",
        _edit(
            "skaffold.yaml",
            "      docker: {dockerfile: services/router/Dockerfile}",
            "      docker: {dockerFile: services/router/Dockerfile}",
        ),
        "check-jsonschema skaffold.yaml (exit 1)",
    ),
    # unformatted HCL -> terraform fmt -check
    "unformatted-hcl": (
        "terraform-fmt",
        _edit("terraform/modules/model_bucket/main.tf", "  bucket        = var.name", "  bucket = var.name"),
        "model_bucket/main.tf",
    ),
    # broken HCL -> python-hcl2
    "invalid-hcl": (
        "terraform-hcl",
        _edit(
            "terraform/modules/ecr/main.tf",
            'resource "aws_ecr_repository" "this" {',
            'resource "aws_ecr_repository" "this" {{',
        ),
        "ecr/main.tf",
    ),
    # reference to an undeclared variable -> terraform validate (real AWS provider schema)
    "terraform-undeclared-var": (
        "terraform-validate",
        _edit(
            "terraform/modules/msk/main.tf",
            "number_of_broker_nodes = var.broker_count",
            "number_of_broker_nodes = var.brokers_count",
        ),
        "undeclared input variable",
    ),
}


@pytest.mark.parametrize("plant", list(PLANTS))
def test_planted_error_fails_its_check(tree, run_check, plant):
    check, mutate, expected = PLANTS[plant]
    mutate(tree)
    problems = run_check(check, tree)
    assert problems, f"{check} passed despite planted error {plant}"
    assert expected in "\n".join(problems), "\n".join(problems)

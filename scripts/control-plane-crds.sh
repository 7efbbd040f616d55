#!/usr/bin/env bash
# The CustomResourceDefinitions the platform's charts and overlays would install, taken from the
# projects' own Go modules (no chart repository is needed), for the control-plane tests.
#
#   scripts/control-plane-crds.sh [OUT]   # OUT defaults to $MLPLATFORM_CRDS_DIR or ~/.cache/ml-platform-crds
#
# Interface (what tests/integration/control_plane.py reads): OUT holds one CRD per *.yaml file and
# SOURCES, a line "<file> <module>@<version> <pinned>" per file; VERSION stamps the set, and a
# matching VERSION means nothing is fetched again (FORCE=1 refetches). Anything that produces such a
# folder (for example the offline kubectl-validate pipeline) can replace this script: point
# MLPLATFORM_CRDS_DIR at it.
#
# Versions: the module proxy does not serve every pinned release, so each source is the served
# version nearest the pin (confirmed with `go list -m -versions`):
# - Karpenter chart 1.8.1 (components/karpenter.py): github.com/aws/karpenter-provider-aws v1.8.2,
#   whose pkg/apis/crds holds the chart's CRDs (karpenter.sh and karpenter.k8s.aws); 1.8.1 is not
#   served.
# - kube-prometheus-stack 79.7.1 (components/monitoring_stack.py; Prometheus Operator v0.86): the
#   operator's module is served at v0.85.0 only; its example/prometheus-operator-crd is the chart's
#   CRD set (monitoring.coreos.com/v1 is unchanged between the two).
# - Kueue chart 0.19.6 (components/training_queues.py): sigs.k8s.io/kueue is served at v0.17.0
#   only, which has kueue.x-k8s.io/v1beta2 (the version the platform writes).
# - Kubeflow Training Operator v1.9.4 (components/training_operator.py): the module is served at
#   v1.8.1 only; kubeflow.org/v1 PyTorchJob.
set -euo pipefail

OUT="$(realpath -m "${1:-${MLPLATFORM_CRDS_DIR:-$HOME/.cache/ml-platform-crds}}")"
# "<module> <version> <folder in the module> <pinned release it stands for>"
SOURCES=(
  "github.com/aws/karpenter-provider-aws v1.8.2 pkg/apis/crds karpenter-chart-1.8.1"
  "github.com/prometheus-operator/prometheus-operator v0.85.0 example/prometheus-operator-crd kube-prometheus-stack-79.7.1"
  "sigs.k8s.io/kueue v0.17.0 config/components/crd/bases kueue-chart-0.19.6"
  "github.com/kubeflow/training-operator v1.8.1 manifests/base/crds training-operator-v1.9.4"
)
STAMP="$(printf '%s\n' "${SOURCES[@]}" | sha256sum | cut -c1-16)"
log() { printf '[control-plane-crds] %s\n' "$*" >&2; }

if [ -z "${FORCE:-}" ] && [ "$(cat "$OUT/VERSION" 2>/dev/null)" = "$STAMP" ]; then
  log "up to date in $OUT"
  exit 0
fi
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" GOFLAGS=-mod=mod
tmp="$(mktemp -d "${TMPDIR:-/tmp}/crds.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
: >"$tmp/SOURCES"
for source in "${SOURCES[@]}"; do
  read -r module version folder pinned <<<"$source"
  dir="$(cd "$tmp" && go mod download -json "$module@$version" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["Error"]) if d.get("Error") else print(d["Dir"])')"
  for f in "$dir/$folder"/*.yaml; do
    grep -q '^kind: CustomResourceDefinition' "$f" || continue # kustomization.yaml and the like
    install -m 0644 "$f" "$tmp/$(basename "$f")"
    echo "$(basename "$f") $module@$version $pinned" >>"$tmp/SOURCES"
  done
  log "$module@$version: $(grep -c " $module@" "$tmp/SOURCES") CRDs (standing for $pinned)"
done
mkdir -p "$OUT"
rm -f "$OUT"/*.yaml
cp "$tmp"/*.yaml "$tmp/SOURCES" "$OUT/"
echo "$STAMP" >"$OUT/VERSION"
log "done: $OUT ($(wc -l <"$OUT/SOURCES") CRDs)"

#!/usr/bin/env bash
# Build a real Kubernetes control plane from the Go module proxy, outside the repository, for the
# control-plane tests (tests/integration/test_control_plane.py; docs/integration-tests.md).
#
#   scripts/build-control-plane.sh [OUT]   # OUT defaults to ~/.cache/ml-platform-control-plane
#   scripts/control-plane.sh start RUN_DIR  # then: KUBECONFIG=RUN_DIR/kubeconfig kubectl ...
#
# OUT gets kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (k8s.io/kubernetes),
# etcd (go.etcd.io/etcd/server/v3) and kwok (sigs.k8s.io/kwok: nodes that become Ready and pods
# that become Running, without containers), kwok's own stage files, and VERSION. When VERSION
# matches the versions below, nothing is rebuilt (FORCE=1 rebuilds). Sources go to OUT/src.
#
# Versions (all confirmed with `go list -m -versions` against the module proxy):
# - Kubernetes v1.33.13: the minor the dev and prod stacks run on EKS (cluster.kubernetesVersion
#   1.33), at the newest 1.33 patch the proxy serves.
# - etcd v3.5.23: Kubernetes 1.33.13 ships 3.5.24 (its build/dependencies.yaml), which the proxy
#   does not serve; 3.5.23 is the nearest 3.5 patch it does.
# - kwok v0.8.0: the newest release.
set -euo pipefail

OUT="$(realpath -m "${1:-${MLPLATFORM_CONTROL_PLANE_DIR:-$HOME/.cache/ml-platform-control-plane}}")"
SRC="$OUT/src"
KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.33.13}"
ETCD_VERSION="${ETCD_VERSION:-v3.5.23}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
# Bump RECIPE when the way things are built changes, so cached builds are redone.
RECIPE=1
STAMP="kubernetes=$KUBERNETES_VERSION etcd=$ETCD_VERSION kwok=$KWOK_VERSION recipe=$RECIPE"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok)

log() { printf '[build-control-plane] %s\n' "$*" >&2; }

up_to_date() {
  [ "$(cat "$OUT/VERSION" 2>/dev/null)" = "$STAMP" ] || return 1
  local b
  for b in "${BINARIES[@]}"; do [ -x "$OUT/$b" ] || return 1; done
  [ -d "$OUT/kwok-stages" ]
}
if [ -z "${FORCE:-}" ] && up_to_date; then
  log "up to date in $OUT ($STAMP)"
  exit 0
fi
log "building into $OUT ($STAMP; was: $(cat "$OUT/VERSION" 2>/dev/null || echo none))"
rm -f "$OUT/VERSION"

export CGO_ENABLED=0 GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" GOFLAGS=-mod=mod GOWORK=off
NICE=(nice -n "${NICENESS:-10}") # the machine is shared; keep the compiler out of everyone's way
mkdir -p "$OUT" "$SRC"

module_dir() { # module version -> its folder in the module cache
  go mod download -json "$1@$2" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["Error"]) if d.get("Error") else print(d["Dir"])'
}
# Copy a module out of the module cache into a writable folder: `go install mod@version` refuses
# modules whose go.mod has replace directives (golang/go#44840), so they are edited and built here.
module_copy() { # module version dest
  local dir
  dir="$(module_dir "$1" "$2")"
  rm -rf "$3"
  cp -r "$dir" "$3"
  chmod -R u+w "$3"
}
# Turn every replace whose target is a local folder (PREFIX...) into the published module: at the
# version the go.mod requires, or at VERSION where it requires only a placeholder (v0.0.0).
replace_local() { # prefix version
  local old version
  while read -r old version; do
    go mod edit -dropreplace="$old" -replace="$old=$old@$version"
  done < <(go mod edit -json | python3 -c '
import json, sys
mod = json.load(sys.stdin)
required = {r["Path"]: r["Version"] for r in mod.get("Require") or []}
for r in mod.get("Replace") or []:
    if r["New"]["Path"].startswith(sys.argv[1]) and "FORBIDDEN" not in r["New"]["Path"]:
        path = r["Old"]["Path"]
        version = required.get(path, "v0.0.0")
        print(path, sys.argv[2] if version.startswith("v0.0.0") else version)' "$1" "$2")
}

start=$SECONDS
log "kube-apiserver, kube-controller-manager, kube-scheduler, kubectl: k8s.io/kubernetes $KUBERNETES_VERSION"
module_copy k8s.io/kubernetes "$KUBERNETES_VERSION" "$SRC/kubernetes"
(
  cd "$SRC/kubernetes"
  # The module's go.mod points every k8s.io/<x> at ./staging/src/k8s.io/<x>, which the module zip
  # leaves out; the same code is published as k8s.io/<x> v0.<minor>.<patch>.
  rm -rf vendor go.work go.work.sum
  replace_local ./staging/ "v0${KUBERNETES_VERSION#v1}"
  # Without these the binaries report v0.0.0-master, and clients that gate features on the
  # server version (the Pulumi Kubernetes provider does) misjudge it.
  minor="${KUBERNETES_VERSION#v1.}"
  minor="${minor%%.*}"
  pkg=k8s.io/component-base/version
  ldflags="-s -w -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  "${NICE[@]}" go build -trimpath -ldflags "$ldflags" -o "$OUT/" \
    ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kube-scheduler ./cmd/kubectl
)
log "  $((SECONDS - start)) s"

start=$SECONDS
log "etcd: go.etcd.io/etcd/server/v3 $ETCD_VERSION"
module_copy go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$SRC/etcd"
(
  cd "$SRC/etcd"
  replace_local ../ "$ETCD_VERSION" # ../api, ../client/pkg, ../client/v2 (v2.305.x), ...
  "${NICE[@]}" go build -trimpath -ldflags "-s -w" -o "$OUT/etcd" .
)
log "  $((SECONDS - start)) s"

start=$SECONDS
log "kwok: sigs.k8s.io/kwok $KWOK_VERSION"
GOBIN="$OUT" "${NICE[@]}" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
# kwok refuses to start without stages; its defaults are YAML files in its own module.
stages="$(module_dir sigs.k8s.io/kwok "$KWOK_VERSION")/kustomize/stage"
rm -rf "$OUT/kwok-stages"
mkdir -p "$OUT/kwok-stages"
for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
  pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
  install -m 0644 "$stages/$f" "$OUT/kwok-stages/$(basename "$f")"
done
log "  $((SECONDS - start)) s"

"$OUT/kube-apiserver" --version
"$OUT/etcd" --version | head -1
"$OUT/kwok" --version
echo "$STAMP" >"$OUT/VERSION"
log "done: $OUT"

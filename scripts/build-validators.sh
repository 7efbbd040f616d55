#!/usr/bin/env bash
# Build the manifest validator the tests run: kubectl-validate (the Kubernetes API server's own
# validation code, CEL rules included), the CRDs of the versions the platform pins, and the
# OpenAPI documents of the Kubernetes version the stacks run. Everything comes from the Go module
# proxy; what comes from where is scripts/crd-sources.txt. Nothing is written into the repository.
#
#   eval "$(scripts/build-validators.sh [OUT])"    # OUT defaults to ~/.cache/ml-platform-validators
#
# stdout is only the exports below (progress goes to stderr); the tests find OUT's default folders
# without them:
#   MLPLATFORM_KUBECTL_VALIDATE  OUT/bin/kubectl-validate
#   MLPLATFORM_CRDS_DIR          OUT/crds: one CustomResourceDefinition per file, unedited from the
#                                projects' modules; `kubectl apply --server-side -f OUT/crds` installs
#                                them (several are over the 256 KiB that client-side apply can store);
#                                OUT/crds/CONTENTS names the row each file came from
#   MLPLATFORM_KUBE_OPENAPI_DIR  OUT/openapi: api/<version>.json, apis/<group>/<version>.json
# Each output keeps the crd-sources.txt rows it was built from (OUT/crds/SOURCES, ...); an output
# whose rows still match is reused, so a warm run takes about a second.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$(realpath -m "${1:-$HOME/.cache/ml-platform-validators}")"
SOURCES="$REPO/scripts/crd-sources.txt"
export CGO_ENABLED=0 GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" GOFLAGS=-mod=mod
NICE=(nice -n "${NICENESS:-19}") # the machine is shared; keep the compiler out of everyone else's way
log() { printf '[build-validators] %s\n' "$*" >&2; }
mkdir -p "$OUT"

rows() { grep -Ev '^[[:space:]]*(#|$)' "$SOURCES"; }
row() { rows | awk -v n="$1" '$1 == n'; }
# The folder of module@version in the module cache (downloaded when missing).
module_dir() {
  (cd "$OUT" && go mod download -json "$1@$2") |
    python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["Error"]) if d.get("Error") else print(d["Dir"])'
}
# Whether the output folder $1 was built from exactly the rows in $2.
current() { [ -f "$1/SOURCES" ] && [ "$(cat "$1/SOURCES")" = "$2" ]; }

# kubectl-validate ---------------------------------------------------------------------------
want="$(row kubectl-validate)"
read -r _ _ module version _ <<<"$want"
if current "$OUT/bin" "$want" && [ -x "$OUT/bin/kubectl-validate" ]; then
  log "kubectl-validate $version: cached"
else
  log "kubectl-validate $version: building (a few minutes cold)"
  rm -rf "$OUT/bin"
  GOBIN="$OUT/bin" "${NICE[@]}" go install -trimpath "$module@$version"
  printf '%s\n' "$want" >"$OUT/bin/SOURCES"
fi

# CRDs -----------------------------------------------------------------------------------------
want="$(rows | awk '$5 ~ /\.yaml$/')"
if current "$OUT/crds" "$want"; then
  log "CRDs: cached"
else
  rm -rf "$OUT/crds.new"
  mkdir -p "$OUT/crds.new"
  while read -r name _ module version files; do
    dir="$(module_dir "$module" "$version")"
    count=0
    for f in "$dir"/$files; do
      # only CustomResourceDefinitions, so `kubectl apply -f` on the folder installs nothing else
      grep -q '^kind: CustomResourceDefinition' "$f" || continue
      [ ! -e "$OUT/crds.new/$(basename "$f")" ] || { log "two sources for $(basename "$f")"; exit 1; }
      cp "$f" "$OUT/crds.new/"
      printf '%s %s\n' "$name" "$(basename "$f")" >>"$OUT/crds.new/CONTENTS"
      count=$((count + 1))
    done
    [ "$count" -gt 0 ] || { log "$name: no CRDs at $module@$version/$files"; exit 1; }
    log "CRDs: $name from $module@$version ($count)"
  done <<<"$want"
  chmod -R u+w "$OUT/crds.new"
  printf '%s\n' "$want" >"$OUT/crds.new/SOURCES" # no .yaml suffix: kubectl and the validator skip it
  rm -rf "$OUT/crds"
  mv "$OUT/crds.new" "$OUT/crds"
fi

# Native kinds' OpenAPI documents --------------------------------------------------------------
want="$(row kubernetes)"
read -r _ _ module version files <<<"$want"
if current "$OUT/openapi" "$want"; then
  log "OpenAPI $version: cached"
else
  dir="$(module_dir "$module" "$version")"
  rm -rf "$OUT/openapi.new"
  # k8s publishes apis__<group>__<version>_openapi.json; kubectl-validate's --local-schemas reads
  # apis/<group>/<version>.json and api/<version>.json. Group lists and discovery documents are
  # left out.
  python3 - "$OUT/openapi.new" "$dir"/$files <<'PY'
import pathlib, shutil, sys
out = pathlib.Path(sys.argv[1])
for f in map(pathlib.Path, sys.argv[2:]):
    parts = f.name.removesuffix("_openapi.json").split("__")
    if (parts[0], len(parts)) in (("api", 2), ("apis", 3)):
        dest = out.joinpath(*parts).with_suffix(".json")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)
PY
  [ -f "$OUT/openapi.new/api/v1.json" ] || { log "no core/v1 OpenAPI in $module@$version"; exit 1; }
  printf '%s\n' "$want" >"$OUT/openapi.new/SOURCES"
  rm -rf "$OUT/openapi"
  mv "$OUT/openapi.new" "$OUT/openapi"
  log "OpenAPI: Kubernetes $version"
fi

printf 'export MLPLATFORM_KUBECTL_VALIDATE=%q\n' "$OUT/bin/kubectl-validate"
printf 'export MLPLATFORM_CRDS_DIR=%q\n' "$OUT/crds"
printf 'export MLPLATFORM_KUBE_OPENAPI_DIR=%q\n' "$OUT/openapi"

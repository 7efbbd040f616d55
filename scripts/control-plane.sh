#!/usr/bin/env bash
# Start or stop a real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok (nodes without kubelets; pods become Running
# without containers). Binaries come from scripts/build-control-plane.sh.
#
#   scripts/control-plane.sh start RUN_DIR   # prints RUN_DIR/kubeconfig when the API is ready
#   scripts/control-plane.sh stop RUN_DIR    # stops what `start` started there (by PID file)
#
# Everything lives in RUN_DIR: etcd data, certificates, logs (*.log), PID files, kubeconfig
# (context "mlplatform-control-plane", admin token in system:masters). Ports are picked free, so
# several control planes can run side by side. The API server enforces what a real one does,
# Pod Security admission included. kwok manages only nodes annotated kwok.x-k8s.io/node=fake, and
# the stages in scripts/control-plane/stages (with kwok's own) make them Ready, pods Running, and
# provision a volume for every claim the PV controller hands to an external provisioner.
set -euo pipefail

BIN="$(realpath -m "${MLPLATFORM_CONTROL_PLANE_DIR:-$HOME/.cache/ml-platform-control-plane}")"
HERE="$(cd "$(dirname "$0")" && pwd)"
CONTEXT=mlplatform-control-plane
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
# Seconds each component may take to come up: seconds on an idle machine, minutes on a busy one.
TIMEOUT="${CONTROL_PLANE_TIMEOUT:-600}"

usage() {
  echo "usage: $0 start|stop RUN_DIR" >&2
  exit 2
}
[ $# -eq 2 ] || usage
RUN="$(realpath -m "$2")"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

launch() { # name args...
  local name=$1
  shift
  setsid "$BIN/$name" "$@" >"$RUN/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

wait_for() { # what seconds command...
  local what=$1 seconds=$2 i
  shift 2
  for ((i = 0; i < seconds * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    local c
    for c in "${COMPONENTS[@]}"; do
      if [ -f "$RUN/$c.pid" ] && ! alive "$c"; then
        echo "control-plane: $c exited; last lines of $RUN/$c.log:" >&2
        tail -n 20 "$RUN/$c.log" >&2
        return 1
      fi
    done
    sleep 0.2
  done
  echo "control-plane: $what not ready after ${seconds}s" >&2
  return 1
}

stop() {
  local c pid i
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    c=${COMPONENTS[i]}
    [ -f "$RUN/$c.pid" ] || continue
    pid="$(cat "$RUN/$c.pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$RUN/$c.pid"
  done
}

start() {
  local missing=() c
  for c in "${COMPONENTS[@]}" kubectl; do [ -x "$BIN/$c" ] || missing+=("$c"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "control-plane: missing in $BIN: ${missing[*]} (run scripts/build-control-plane.sh)" >&2
    exit 3
  fi
  if [ -e "$RUN/kubeconfig" ] || ls "$RUN"/*.pid >/dev/null 2>&1; then
    echo "control-plane: $RUN was used before; stop it and use a new folder" >&2
    exit 2
  fi
  mkdir -p "$RUN/pki" "$RUN/etcd"
  trap 'stop' ERR
  set -E # the ERR trap also fires for a failing wait_for inside start

  local etcd_port etcd_peer api_port token
  etcd_port="$(free_port)"
  etcd_peer="$(free_port)"
  api_port="$(free_port)"
  token="$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
  echo "$token,admin,admin,system:masters" >"$RUN/pki/tokens.csv"
  openssl genrsa -out "$RUN/pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$RUN/pki/sa.key" -pubout -out "$RUN/pki/sa.pub" 2>/dev/null

  # etcd: throwaway data, so skip fsync (the slow part on a shared disk).
  launch etcd --name=cp --data-dir="$RUN/etcd" --unsafe-no-fsync \
    --listen-client-urls="http://127.0.0.1:$etcd_port" \
    --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer" \
    --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer" \
    --initial-cluster="cp=http://127.0.0.1:$etcd_peer" --log-level=warn
  wait_for etcd "$TIMEOUT" curl -fsS "http://127.0.0.1:$etcd_port/health"

  launch kube-apiserver --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
    --cert-dir="$RUN/pki" --token-auth-file="$RUN/pki/tokens.csv" \
    --authorization-mode=RBAC --allow-privileged=true \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$RUN/pki/sa.pub" \
    --service-account-signing-key-file="$RUN/pki/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 --profiling=false
  wait_for kube-apiserver "$TIMEOUT" curl -fsSk -H "Authorization: Bearer $token" \
    "https://127.0.0.1:$api_port/readyz"

  # The apiserver's self-signed serving certificate is its own CA.
  local ca
  ca="$(base64 -w0 <"$RUN/pki/apiserver.crt")"
  cat >"$RUN/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $CONTEXT
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $ca
users:
- name: admin
  user:
    token: $token
contexts:
- name: $CONTEXT
  context: {cluster: $CONTEXT, user: admin}
current-context: $CONTEXT
EOF
  chmod 0600 "$RUN/kubeconfig"

  local kcm_port scheduler_port
  kcm_port="$(free_port)"
  scheduler_port="$(free_port)"
  launch kube-controller-manager --kubeconfig="$RUN/kubeconfig" \
    --authentication-kubeconfig="$RUN/kubeconfig" --authorization-kubeconfig="$RUN/kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$kcm_port" --leader-elect=false \
    --controllers='*,-nodeipam,-cloud-node-lifecycle' \
    --service-account-private-key-file="$RUN/pki/sa.key" --root-ca-file="$RUN/pki/apiserver.crt" \
    --use-service-account-credentials=false --kube-api-qps=100 --kube-api-burst=200
  launch kube-scheduler --kubeconfig="$RUN/kubeconfig" \
    --authentication-kubeconfig="$RUN/kubeconfig" --authorization-kubeconfig="$RUN/kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$scheduler_port" --leader-elect=false \
    --kube-api-qps=100 --kube-api-burst=200
  local stages=() f
  for f in "$BIN"/kwok-stages/*.yaml "$HERE"/control-plane/stages/*.yaml; do stages+=(--config="$f"); done
  launch kwok --kubeconfig="$RUN/kubeconfig" --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --server-address="127.0.0.1:$(free_port)" "${stages[@]}"

  local kubectl=("$BIN/kubectl" --kubeconfig="$RUN/kubeconfig")
  wait_for kube-controller-manager "$TIMEOUT" curl -fsSk "https://127.0.0.1:$kcm_port/healthz"
  wait_for kube-scheduler "$TIMEOUT" curl -fsSk "https://127.0.0.1:$scheduler_port/healthz"
  # The controllers work once the service account controller has made `default`.
  wait_for "service accounts" "$TIMEOUT" "${kubectl[@]}" get serviceaccount default -n default
  trap - ERR
  set +E
  echo "$RUN/kubeconfig"
}

case "$1" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac

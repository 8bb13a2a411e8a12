#!/usr/bin/env bash
# A real etcd + kube-apiserver on loopback for tests and `make run`.
#
#   cluster.sh up DIR     start them (binaries from provision.sh), wait for /readyz, write DIR/kubeconfig
#                         and DIR/env (KUBECONFIG, APISERVER_URL, ...). Idempotent: a running cluster in
#                         DIR is reused.
#   cluster.sh down DIR   stop them by PID and remove their state.
#   cluster.sh status DIR exit 0 if the apiserver in DIR answers /readyz.
#   cluster.sh stop DIR   stop etcd and kube-apiserver, keeping their data, ports and credentials
#   cluster.sh start DIR  start a stopped cluster again as it was (for apiserver-outage tests)
#
# Environment: APISERVER_PORT / ETCD_PORT to pin ports (else free ones are picked);
# WATCH_PID=<pid> makes the cluster stop by itself once that process is gone (used by test
# binaries that start their own cluster, so nothing outlives them).
# REAL_NODE=1 (set by realnode.sh) starts the control plane of a real one-node cluster instead:
# the apiserver listens on the node's bridge address NODE_IP (10.88.0.1; the bridge must exist),
# where pods reach it directly and through the `kubernetes` Service, whose endpoints it keeps; and
# the ServiceAccount admission plugin mounts tokens into pods. Its certificate is valid for NODE_IP,
# not 127.0.0.1, so the kubeconfig names NODE_IP.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 up|down|status|stop|start DIR" >&2; exit 2; }
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)

say() { echo "cluster: $*" >&2; }
fail() { echo "cluster: FAILED: $*" >&2; exit 1; }
alive() { [ -f "$dir/$1.pid" ] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { # a port not listening now, in a range away from ephemeral ports
  local p
  for _ in $(seq 200); do
    p=$(( 20000 + RANDOM % 12000 ))
    port_free "$p" && port_free $((p + 1)) && { echo "$p"; return; }
  done
  fail "no free loopback port found"
}
api_host() { cat "$dir/apiserver.host" 2>/dev/null || echo 127.0.0.1; }
readyz() { curl -sk --max-time 2 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(cat "$dir/admin.token")" "https://$(api_host):$(cat "$dir/apiserver.port")/readyz" 2>/dev/null || true; }

stop() {
  for p in watchdog apiserver etcd; do
    if alive $p; then kill "$(cat "$dir/$p.pid")" 2>/dev/null || true; fi
  done
  for p in apiserver etcd; do
    for _ in $(seq 50); do alive $p || break; sleep 0.1; done
    alive $p && kill -9 "$(cat "$dir/$p.pid")" 2>/dev/null || true
    rm -f "$dir/$p.pid"
  done
  rm -f "$dir/watchdog.pid"
}

case $cmd in
stop)
  for p in apiserver etcd; do
    alive $p && kill "$(cat "$dir/$p.pid")" 2>/dev/null || true
    for _ in $(seq 50); do alive $p || break; sleep 0.1; done
    alive $p && kill -9 "$(cat "$dir/$p.pid")" 2>/dev/null || true
  done
  say "stopped, data kept ($dir)" ;;
start)
  [ -f "$dir/etcd.port" ] && [ -f "$dir/apiserver.port" ] || fail "no stopped cluster in $dir"
  ETCD_PORT=$(cat "$dir/etcd.port") APISERVER_PORT=$(cat "$dir/apiserver.port") KEEP_ETCD_DATA=1 \
    exec "$0" up "$dir" ;;
status)
  [ -f "$dir/apiserver.port" ] && [ "$(readyz)" = 200 ] ;;
down)
  stop
  rm -rf "$dir/etcd" "$dir/env" "$dir/kubeconfig"
  say "stopped ($dir)" ;;
up)
  # Concurrent callers (parallel test processes) wait here and then find the cluster running.
  exec 9>"$dir/.lock"; flock 9
  if alive apiserver && alive etcd && [ "$(readyz)" = 200 ]; then
    say "already running ($dir)"; cat "$dir/env"; exit 0
  fi
  stop
  bin=$("$here/provision.sh")
  started=$(date +%s%N)
  eport=${ETCD_PORT:-$(free_port)}
  aport=${APISERVER_PORT:-$(free_port)}
  # etcd's peer port: never used (single member), but it must not clash.
  [ -n "${KEEP_ETCD_DATA:-}" ] || rm -rf "$dir/etcd"
  echo "$eport" > "$dir/etcd.port"
  [ -f "$dir/sa.key" ] || { openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null && openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null; } \
    || fail "creating the service-account signing key with openssl"
  [ -f "$dir/admin.token" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/admin.token"
  # Static tokens: the admin (system:masters). Later users are appended by tests through tokens.extra.
  {
    echo "$(cat "$dir/admin.token"),admin,admin-uid,\"system:masters\""
    [ -f "$dir/tokens.extra" ] && cat "$dir/tokens.extra"
  } > "$dir/tokens.csv"
  "$bin/etcd" --name local --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$eport" --advertise-client-urls "http://127.0.0.1:$eport" \
    --listen-peer-urls "http://127.0.0.1:$((eport + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((eport + 1))" \
    --initial-cluster "local=http://127.0.0.1:$((eport + 1))" \
    --quota-backend-bytes=4294967296 --log-level=warn > "$dir/etcd.log" 2>&1 9>&- &
  echo $! > "$dir/etcd.pid"
  if [ "${REAL_NODE:-0}" = 1 ]; then
    host=${NODE_IP:-10.88.0.1}
    mode=(--kubelet-preferred-address-types=InternalIP)
  else
    host=127.0.0.1
    mode=(--endpoint-reconciler-type=none --disable-admission-plugins=ServiceAccount)
  fi
  echo "$host" > "$dir/apiserver.host"
  "$bin/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$eport" \
    --bind-address="$host" --advertise-address="$host" --secure-port="$aport" \
    "${mode[@]}" \
    --cert-dir="$dir/pki" --token-auth-file="$dir/tokens.csv" \
    --authorization-mode=RBAC \
    --service-account-key-file="$dir/sa.pub" --service-account-signing-key-file="$dir/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-cluster-ip-range=10.96.0.0/16 \
    --enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
    --enable-priority-and-fairness=false \
    > "$dir/apiserver.log" 2>&1 9>&- &
  echo $! > "$dir/apiserver.pid"
  echo "$aport" > "$dir/apiserver.port"
  ok=0
  for _ in $(seq 600); do
    alive etcd || { tail -n 5 "$dir/etcd.log" >&2; fail "etcd exited (log: $dir/etcd.log)"; }
    alive apiserver || { tail -n 5 "$dir/apiserver.log" >&2; fail "kube-apiserver exited (log: $dir/apiserver.log)"; }
    [ "$(readyz)" = 200 ] && { ok=1; break; }
    sleep 0.1
  done
  [ $ok = 1 ] || fail "kube-apiserver not ready after 60 s (log: $dir/apiserver.log)"
  cat > "$dir/kubeconfig" <<K
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://$host:$aport
    certificate-authority: $dir/pki/apiserver.crt
users:
- name: admin
  user:
    token: $(cat "$dir/admin.token")
contexts:
- name: local
  context: {cluster: local, user: admin}
current-context: local
K
  cat > "$dir/env" <<E
export KUBECONFIG=$dir/kubeconfig
export APISERVER_URL=https://$host:$aport
export SPARK_WEBHOOK_CLUSTER_DIR=$dir
export PATH=$bin:\$PATH
E
  if [ -n "${WATCH_PID:-}" ]; then
    # Stop the cluster once the process that asked for it is gone.
    ( trap '' HUP; while kill -0 "$WATCH_PID" 2>/dev/null; do sleep 0.5; done; "$0" down "$dir" >/dev/null 2>&1 ) \
      </dev/null >/dev/null 2>&1 9>&- &
    echo $! > "$dir/watchdog.pid"
  fi
  say "kube-apiserver ready on https://$host:$aport in $(( ($(date +%s%N) - started) / 1000000 )) ms"
  cat "$dir/env" ;;
*) echo "usage: $0 up|down|status|stop|start DIR" >&2; exit 2 ;;
esac

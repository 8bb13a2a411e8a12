#!/usr/bin/env bash
# `make run`: the whole product on this machine. Builds spark-webhook, starts a cluster, creates
# certificates, installs the CRD, starts `spark-webhook serve` registered through a url
# clientConfig on 127.0.0.1, and keeps serving until Ctrl-C; then tears it all down.
#
# The cluster is a real one-node cluster (tests/cluster/realnode.sh: kubelet, containerd, the
# local spark:3.5.3 image) where SparkApplications really run, when run as root; REALNODE=0 (or
# not root) gives the light control plane alone (etcd + kube-apiserver, no node: pods stay
# Pending, the webhook's work is shown on a hand-made executor pod).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
dir=$root/.local/cluster
webhook_port=${WEBHOOK_PORT:-9443}
admin_port=${ADMIN_PORT:-8080}
step() { echo "==> $*" >&2; }

# The `quick` profile (Cargo.toml): optimised, no LTO; minutes instead of the shipped build's ~13.
step "building spark-webhook (profile quick)"
cargo build --profile quick --locked
bin=${CARGO_TARGET_DIR:-$root/target}/quick/spark-webhook

realnode=${REALNODE:-$([ "$(id -u)" = 0 ] && echo 1 || echo 0)}
if [ "$realnode" = 1 ]; then
  dir=$root/.local/node
  step "starting a real one-node cluster (first run provisions it: ~20-30 min; then ~1 min)"
  tests/cluster/realnode.sh up "$dir" >/dev/null
else
  step "starting the local control plane (first run builds kube-apiserver: several minutes)"
  tests/cluster/cluster.sh up "$dir" >/dev/null
fi
# shellcheck disable=SC1091
source "$dir/env"

serve_pid=
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then
    # Ctrl-C already reached serve (same process group): let it finish its graceful shutdown
    # (a second signal would make it exit at once), then make sure it is gone.
    if [ "${1:-}" = interrupted ]; then
      for _ in $(seq 100); do kill -0 "$serve_pid" 2>/dev/null || break; sleep 0.1; done
    fi
    kill -TERM "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
  fi
  if [ "$realnode" = 1 ]; then
    step "stopping the real node"
    tests/cluster/realnode.sh down "$dir" >/dev/null 2>&1 || true
  else
    step "stopping the control plane"
    tests/cluster/cluster.sh down "$dir" >/dev/null 2>&1 || true
  fi
  step "stopped"
}
trap cleanup EXIT TERM
trap 'cleanup interrupted' INT

step "certificates in certs/ (CA kept, serving certificate rotated)"
"$bin" certs --dir certs >/dev/null

step "installing the SparkApplication CRD"
kubectl apply -f manifests/crd/sparkoperator.k8s.io_sparkapplications.yaml >/dev/null
# Polled: `kubectl wait --for=condition=Established` fails at once on a CRD without conditions yet.
established() {
  [ "$(kubectl get crd/sparkapplications.sparkoperator.k8s.io \
        -o 'jsonpath={.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" = True ]
}
for _ in $(seq 600); do established && break; sleep 0.1; done
established || { echo "run: the SparkApplication CRD is not Established after 60 s" >&2; exit 1; }

step "starting spark-webhook serve (webhook https://127.0.0.1:$webhook_port, admin http://127.0.0.1:$admin_port)"
"$bin" serve --cert-dir certs \
  --webhook-addr "127.0.0.1:$webhook_port" --admin-addr "127.0.0.1:$admin_port" \
  --register-webhook=true --webhook-url "https://127.0.0.1:$webhook_port" \
  2> >(tee "$root/.local/spark-webhook.log" >&2) &
serve_pid=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && break
  kill -0 "$serve_pid" 2>/dev/null || { echo "spark-webhook exited; see .local/spark-webhook.log" >&2; exit 1; }
  sleep 0.2
done

if [ "$realnode" = 1 ]; then
  step "job namespace spark-jobs with the driver's ServiceAccount spark (manifests/namespaces, manifests/rbac/job-namespace.yaml)"
  kubectl apply -f manifests/namespaces/namespaces.yaml -f manifests/rbac/job-namespace.yaml >/dev/null
  for _ in $(seq 100); do
    [ -n "$(kubectl -n spark-jobs get serviceaccount spark -o jsonpath='{.secrets[0].name}' 2>/dev/null)" ] && break
    sleep 0.2
  done
  step "running the PySpark pi example (manifests/examples/spark-pi-python.yaml) on the node"
  kubectl apply -f manifests/examples/spark-pi-python.yaml >/dev/null
  cat >&2 <<MSG

spark-webhook is serving (webhook + reconciler) for a real one-node cluster: Spark really runs.
  export KUBECONFIG=$KUBECONFIG
  kubectl get sparkapp -n spark-jobs -w                  # SUBMITTED, RUNNING, COMPLETED (~1 min)
  kubectl logs -n spark-jobs spark-pi-python-driver | grep 'Pi is roughly'
  kubectl get pods -n spark-jobs -o wide
  kubectl apply -f manifests/examples/...                # more examples (image spark:3.5.3)
  curl http://127.0.0.1:$admin_port/metrics
Logs: .local/spark-webhook.log (also below), node components in $dir/node/*.log.
Ctrl-C stops everything.

MSG
  wait "$serve_pid"
  exit 0
fi

step "applying an example SparkApplication (tests/fixtures/sparkapplication-pi.yaml)"
kubectl apply -f tests/fixtures/sparkapplication-pi.yaml >/dev/null
for _ in $(seq 50); do
  state=$(kubectl get sparkapp spark-pi -o jsonpath='{.status.applicationState.state}' 2>/dev/null || true)
  [ -n "$state" ] && break
  sleep 0.2
done
kubectl get sparkapp spark-pi >&2
driver=$(kubectl get sparkapp spark-pi -o jsonpath='{.status.driverInfo.podName}')
if [ -n "$driver" ]; then
  echo >&2
  echo "driver pod $driver, as submitted (no node runs it here, so it stays Pending):" >&2
  kubectl get pod "$driver" -o jsonpath='{"  container: "}{.spec.containers[0].name}{"  image: "}{.spec.containers[0].image}{"\n  seccomp: "}{.spec.securityContext.seccompProfile.type}{"  memory: "}{.spec.containers[0].resources.limits.memory}{"\n  owner: "}{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}{"\n"}' >&2
fi

# The driver is created already complete; executors come from Spark's driver and are completed
# by the webhook. Create one as the driver would (tests/fixtures/executor-pod.json, Spark 3.3's
# executor pod, which sets none of these) and show what the webhook added.
step "creating an executor pod as the driver would: the webhook mutates it"
exec_pod=$(kubectl create -f tests/fixtures/executor-pod.json -o jsonpath='{.metadata.name}')
echo "executor pod $exec_pod, as stored after the webhook:" >&2
kubectl get pod "$exec_pod" -o jsonpath='{"  seccomp: "}{.spec.securityContext.seccompProfile.type}{"\n  preStop: "}{.spec.containers[0].lifecycle.preStop.exec.command}{"\n  labels: version="}{.metadata.labels.version}{" (from the app'"'"'s executor.labels)\n"}' >&2

cat >&2 <<MSG

spark-webhook is serving against a local kube-apiserver (webhook + reconciler).
  export KUBECONFIG=$KUBECONFIG
  kubectl get sparkapp
  kubectl describe sparkapp spark-pi          # events
  curl http://127.0.0.1:$admin_port/metrics
  curl http://127.0.0.1:$admin_port/readyz
  ${bin#"$root"/} render tests/fixtures/sparkapplication-pi.yaml   # what a submission creates, offline
Logs: .local/spark-webhook.log (also below). Ctrl-C stops everything.

MSG
wait "$serve_pid"

#!/usr/bin/env bash
# A real one-node Kubernetes 1.20 cluster on this machine, where Spark pods really run:
# etcd + kube-apiserver (cluster.sh with REAL_NODE=1), kube-controller-manager, kube-scheduler,
# kubelet, kube-proxy (iptables), containerd + runc, a CNI bridge, and cluster DNS (dnsmasq fed
# by clusterdns.py). No Docker and no image registry: images are imported from cached tars.
#
#   realnode.sh provision   install and build everything (cached; see below); prints nothing
#   realnode.sh images      build only the Spark images (cached; as root), all versions at once
#   realnode.sh up DIR      provision, then start it all, wait until node `node1` is Ready, write
#                           DIR/kubeconfig and DIR/env. Idempotent: a running node in DIR is reused.
#   realnode.sh down DIR    stop it all and undo every change to the machine: processes, containers,
#                           mounts, network namespaces, iptables rules, the bridge, sysctls.
#   realnode.sh status DIR  exit 0 if node1 in DIR is Ready.
#
# Provisioning (as root; each step only when its result is missing):
#   - Debian packages containerd, runc, containernetworking-plugins, dnsmasq-base, iptables,
#     debootstrap (kubectl: the one on PATH; never Debian's kubernetes-client over it);
#   - kubelet, kube-proxy, kube-scheduler, kube-controller-manager (and kube-apiserver) 1.20.2
#     built in one pass by k8s-build.sh, and the pause binary from the same source;
#   - images: the pause image, and spark:VERSION for each of SPARK_VERSIONS (spark-image/build.sh,
#     sharing one Debian + Java 17 base layer), as docker-archive tars.
# Cache: ${SPARK_WEBHOOK_CACHE:-~/.cache/spark-webhook}/{k8s,images}.
#
# Network: everything stays on this machine. The bridge $BRIDGE (10.88.0.1/24) holds the pods
# (each in its own network namespace, created by containerd); Services are 10.96.0.0/16, served
# by kube-proxy's iptables rules; the apiserver, the kubelet and DNS listen on 10.88.0.1 only.
# Pods get no route out: a FORWARD rule drops whatever would leave the bridge for elsewhere, and
# DNS answers cluster names only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${SPARK_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spark-webhook}
BRIDGE=spark-node0
NODE_IP=10.88.0.1
POD_CIDR=10.88.0.0/24
SERVICE_CIDR=10.96.0.0/16 # cluster.sh: --service-cluster-ip-range
NODE_NAME=node1
PAUSE_IMAGE=localhost/spark-webhook/pause:3.2
# The Spark images on the node: 3.5.3, the newest 4.0.x (the line kubeflow's examples use) and
# the newest 4.x on PyPI. tests/e2e_realnode.rs names the same versions.
SPARK_VERSIONS=(3.5.3 4.0.5 4.3.0)
K8S_BINARIES=(kube-apiserver kubelet kube-proxy kube-scheduler kube-controller-manager pause)
# Kernel settings the node changes (kubelet's kernel tunables, kube-proxy, the bridge plugin):
# saved at `up`, restored at `down`.
SYSCTLS=(net.ipv4.ip_forward net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables
  vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# Machine-wide: one real node per machine (the bridge, iptables and ports are global).
OWNER=/run/spark-webhook-realnode

say() { echo "realnode: $*" >&2; }
fail() {
  echo "realnode: FAILED: $*" >&2
  exit 1
}
k8s_bin() { echo "$cache/k8s/$1-1.20.2-p2"; }
pause_tar() { echo "$cache/images/pause-3.2-p2.tar"; }

# shellcheck source=tests/cluster/apt.sh
. "$here/apt.sh"

# All Spark images at once: the first build makes the shared base layer, the others download
# their pyspark meanwhile. A build already under way (tests/run.sh starts them early) is waited for.
images() {
  local pids=() v pid
  for v in "${SPARK_VERSIONS[@]}"; do
    "$here/spark-image/build.sh" "$v" >/dev/null &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do
    wait "$pid" || fail "building a Spark image (spark-image/build.sh; logs: $cache/images/spark-build-*.log)"
  done
}

provision() {
  [ "$(id -u)" = 0 ] || fail "a real node needs root (containerd, kubelet, iptables, mounts)"
  mkdir -p "$cache/images"
  local need=()
  command -v containerd >/dev/null || need+=(containerd)
  command -v runc >/dev/null || need+=(runc)
  [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] || need+=(containernetworking-plugins)
  command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
  command -v iptables >/dev/null || need+=(iptables)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v gcc >/dev/null || need+=(gcc libc6-dev)
  command -v etcd >/dev/null || need+=(etcd-server)
  command -v kubectl >/dev/null || need+=(kubernetes-client)
  [ ${#need[@]} = 0 ] || apt_install "${need[@]}"

  # The Spark images (mostly downloads, then gzip) build beside the Kubernetes binaries (mostly
  # CPU).
  images &
  local images_pid=$!
  "$here/k8s-build.sh" "${K8S_BINARIES[@]}" || fail "building the Kubernetes binaries (k8s-build.sh)"
  wait "$images_pid" || fail "building the Spark images (spark-image/build.sh)"

  if [ ! -f "$(pause_tar)" ]; then
    say "pause image ($PAUSE_IMAGE) from the pause binary built from source"
    local t
    t=$(mktemp -d)
    install -m 755 "$(k8s_bin pause)" "$t/pause"
    python3 "$here/mkimage.py" --name "$PAUSE_IMAGE" --rootfs "$t" --out "$(pause_tar)" --entrypoint /pause >/dev/null \
      || {
        rm -rf "$t"
        fail "writing the pause image (mkimage.py)"
      }
    rm -rf "$t"
  fi
}

# --- processes ------------------------------------------------------------------------------
n= # DIR/node, set by main
alive() { [ -f "$n/$1.pid" ] && kill -0 "$(cat "$n/$1.pid")" 2>/dev/null; }
# start NAME CMD...: run CMD in the background, logging to $n/NAME.log; its pid in $n/NAME.pid.
# In a session of its own: a Ctrl-C meant for the caller (`make run`) must not kill the node
# under `down`'s feet. (setsid execs in place here: a background job of a script leads no group.)
start() {
  local name=$1
  shift
  setsid "$@" >"$n/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$n/$name.pid"
}
# Close every descriptor this script inherited beyond stdin/out/err (but our own fd 9), before it
# starts the node's daemons: they would keep them open as long as the node runs. The one that
# matters: `flock /work/realnode.lock tests/run-realnode.sh` hands its lock's descriptor down, and
# a node left up would hold the lock until `down`. Bash's own descriptors are close-on-exec.
close_inherited_fds() {
  local pid=$BASHPID f fd flags
  for f in /proc/"$pid"/fd/*; do
    fd=${f##*/}
    case $fd in 0 | 1 | 2 | 9 | *[!0-9]*) continue ;; esac
    flags=$(awk '/^flags:/ {print $2}' "/proc/$pid/fdinfo/$fd" 2>/dev/null) || continue
    [ -n "$flags" ] || continue                 # gone meanwhile (the glob's own descriptor)
    (((8#$flags & 8#2000000) == 0)) || continue # O_CLOEXEC: never reaches a daemon
    exec {fd}>&-
  done
}
# stop NAME...: SIGTERM, then SIGKILL after 5 s.
stop() {
  local p
  for p in "$@"; do alive "$p" && kill "$(cat "$n/$p.pid")" 2>/dev/null || true; done
  for p in "$@"; do
    for _ in $(seq 50); do alive "$p" || break; sleep 0.1; done
    alive "$p" && kill -9 "$(cat "$n/$p.pid")" 2>/dev/null || true
    rm -f "$n/$p.pid"
  done
}
# The runc shims of this node's containerd (they outlive it): their pids.
shim_pids() {
  local f pid
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    case "$(tr '\0' ' ' 2>/dev/null <"$f")" in
    *containerd-shim*"-address $n/containerd.sock"*) echo "$pid" ;;
    esac
  done
  return 0
}

ctr_() { ctr --address "$n/containerd.sock" -n k8s.io "$@"; }
running_tasks() { ctr_ tasks ls 2>/dev/null | awk 'NR > 1 && $3 == "RUNNING" {print $1}'; }
kc() { kubectl --kubeconfig "$dir/kubeconfig" "$@"; }

node_ready() {
  [ -f "$dir/kubeconfig" ] \
    && [ "$(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

# --- down -----------------------------------------------------------------------------------
iptables_cleanup() {
  [ -x "$(k8s_bin kube-proxy)" ] && "$(k8s_bin kube-proxy)" --cleanup >/dev/null 2>&1 || true
  local ipt t r c
  # What kube-proxy's cleanup leaves: the kubelet's own chains (KUBE-FIREWALL, KUBE-MARK-*...),
  # for IPv4 and IPv6.
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for t in filter nat mangle; do
      $ipt -t "$t" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -vE '^-A KUBE-' | sed 's/^-A //' \
        | while read -r r; do eval "$ipt -t $t -D $r" 2>/dev/null || true; done || true
      for c in $($ipt -t "$t" -S 2>/dev/null | awk '/^-N KUBE-/ {print $2}'); do $ipt -t "$t" -F "$c" 2>/dev/null || true; done
      for c in $($ipt -t "$t" -S 2>/dev/null | awk '/^-N KUBE-/ {print $2}'); do $ipt -t "$t" -X "$c" 2>/dev/null || true; done
    done
  done
  while iptables -D FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -m comment --comment spark-webhook-realnode -j DROP 2>/dev/null; do :; done
}

down() {
  # 1. Let the kubelet tear pods down the regular way (CNI DEL, volumes) while it still runs.
  if alive kubelet && node_ready; then
    kc delete pods --all --all-namespaces --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
    for _ in $(seq 60); do
      [ -z "$(running_tasks)" ] && break
      sleep 0.5
    done
  fi
  stop kubelet kube-scheduler kube-controller-manager kube-proxy clusterdns dnsmasq
  # 2. Whatever still runs in containerd: kill and delete it (this also unmounts root filesystems).
  if alive containerd; then
    local c
    for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$c" >/dev/null 2>&1 || true; done
    sleep 0.5
    for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$c" >/dev/null 2>&1 || true; done
    for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$c" >/dev/null 2>&1 || true; done
  fi
  stop containerd
  # 3. Leftover shims (containerd was gone before its containers): their containers, then them.
  local shim child
  for shim in $(shim_pids); do
    say "killing leftover shim $shim and its containers"
    for child in $(cat "/proc/$shim/task/"*/children 2>/dev/null); do kill -9 "$child" 2>/dev/null || true; done
    kill -9 "$shim" 2>/dev/null || true
  done
  # 4. Mounts under the node folder (container root filesystems, shm, secret/configmap volumes,
  #    network namespaces: netns_mounts_under_state_dir puts them here too), deepest first.
  local m
  for _ in 1 2 3; do
    m=$(awk -v n="$n/" 'index($2, n) == 1 {print $2}' /proc/self/mounts | sort -r)
    [ -z "$m" ] && break
    echo "$m" | while read -r p; do umount "$p" 2>/dev/null || umount -l "$p" 2>/dev/null || true; done
  done
  # 5. Network: kube-proxy's and the kubelet's iptables rules, our FORWARD guard, the bridge.
  iptables_cleanup
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE" 2>/dev/null || true
  # 6. Kernel settings back as they were; the kubelet's pod log folders if it created them.
  if [ -f "$n/sysctl.saved" ]; then
    local kv
    while read -r kv; do sysctl -qw "$kv" >/dev/null 2>&1 || true; done <"$n/sysctl.saved"
    rm -f "$n/sysctl.saved"
  fi
  for d in pods containers; do
    if [ -f "$n/created-var-log-$d" ]; then
      rm -rf "/var/log/$d"
      rm -f "$n/created-var-log-$d"
    fi
  done
  # 7. Containers' cgroups (runc's cgroupfs driver: /sys/fs/cgroup/*/k8s.io/...), now empty.
  local cg
  for cg in /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/k8s.io; do
    [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  rm -rf "$n/containerd-root" "$n/containerd-state" "$n/kubelet" "$n/ipam"
  "$here/cluster.sh" down "$dir" >/dev/null 2>&1 || true
  [ "$(cat "$OWNER" 2>/dev/null)" = "$dir" ] && rm -f "$OWNER"
  return 0
}

# --- up -------------------------------------------------------------------------------------
up() {
  provision
  local started
  started=$(date +%s%N)
  down
  close_inherited_fds
  local other
  other=$(cat "$OWNER" 2>/dev/null || true)
  if [ -n "$other" ] && [ "$other" != "$dir" ] && [ -d "$other/node" ]; then
    fail "a real node already runs from $other (one per machine): $0 down $other"
  fi
  echo "$dir" >"$OWNER"
  mkdir -p "$n/cni" "$n/kubelet" "$n/ipam"

  local s
  : >"$n/sysctl.saved"
  for s in "${SYSCTLS[@]}"; do
    sysctl -n "$s" >/dev/null 2>&1 && echo "$s=$(sysctl -n "$s")" >>"$n/sysctl.saved"
  done
  for d in pods containers; do
    [ -e "/var/log/$d" ] || { mkdir -p "/var/log/$d" && touch "$n/created-var-log-$d"; }
  done

  say "bridge $BRIDGE ($NODE_IP/24)"
  ip link add "$BRIDGE" type bridge || fail "creating bridge $BRIDGE"
  ip addr add "$NODE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Service IPs from the host (the apiserver calling a webhook's Service, as for the operator
  # deployed in-cluster): kube-proxy's OUTPUT rules rewrite them to pod addresses, but the kernel
  # first needs a route to pick a source address, and this machine may have no default route.
  # Through the bridge, from the node's address. Goes away with the bridge.
  ip route add "$SERVICE_CIDR" dev "$BRIDGE" src "$NODE_IP" || fail "route to Services $SERVICE_CIDR via $BRIDGE"
  # The bridge plugin turns on IP forwarding for pods; nothing from the bridge may go elsewhere.
  iptables -I FORWARD 1 -i "$BRIDGE" ! -o "$BRIDGE" -m comment --comment spark-webhook-realnode -j DROP \
    || fail "adding the iptables FORWARD guard"
  # Pod-to-Service traffic between pods on the bridge needs bridged packets to see iptables.
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 || fail "sysctl net.bridge.bridge-nf-call-iptables=1 (br_netfilter loaded?)"

  say "control plane"
  REAL_NODE=1 NODE_IP=$NODE_IP setsid "$here/cluster.sh" up "$dir" >/dev/null </dev/null || fail "control plane (cluster.sh up $dir)"
  local kcfg=$dir/kubeconfig server
  server=$(awk '/server:/ {print $2}' "$kcfg")

  say "containerd"
  cat >"$n/cni/10-spark-node.conflist" <<J
{"cniVersion": "0.4.0", "name": "spark-node", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$n/ipam",
            "ranges": [[{"subnet": "$POD_CIDR", "rangeStart": "10.88.0.10"}]], "routes": [{"dst": "0.0.0.0/0"}]}}]}
J
  containerd config default >"$n/containerd.toml" || fail "containerd config default"
  # Our CNI folders; no OOM score changes (this sandbox lacks CAP_SYS_RESOURCE: runc fails with
  # "can't get final child's PID from pipe: EOF" otherwise); network namespaces under the state
  # folder (so `down` finds them); our pause image, never pulled.
  local edits=(
    "s|bin_dir = \"/opt/cni/bin\"|bin_dir = \"/usr/lib/cni\"|"
    "s|conf_dir = \"/etc/cni/net.d\"|conf_dir = \"$n/cni\"|"
    "s|restrict_oom_score_adj = false|restrict_oom_score_adj = true|"
    "s|netns_mounts_under_state_dir = false|netns_mounts_under_state_dir = true|"
    "s|sandbox_image = \".*\"|sandbox_image = \"$PAUSE_IMAGE\"|"
  )
  local e
  for e in "${edits[@]}"; do sed -i "$e" "$n/containerd.toml"; done
  for e in 'bin_dir = "/usr/lib/cni"' "conf_dir = \"$n/cni\"" 'restrict_oom_score_adj = true' \
    'netns_mounts_under_state_dir = true' "sandbox_image = \"$PAUSE_IMAGE\""; do
    grep -qF "$e" "$n/containerd.toml" || fail "containerd's default config has no setting for: $e ($(containerd --version))"
  done
  start containerd containerd --config "$n/containerd.toml" --root "$n/containerd-root" \
    --state "$n/containerd-state" --address "$n/containerd.sock"
  for _ in $(seq 100); do ctr_ version >/dev/null 2>&1 && break; alive containerd || break; sleep 0.1; done
  ctr_ version >/dev/null 2>&1 || { tail -n 5 "$n/containerd.log" >&2; fail "containerd did not start (log: $n/containerd.log)"; }

  say "importing images (pause, spark:${SPARK_VERSIONS[*]})"
  local img t0 v
  t0=$(date +%s)
  for img in "$(pause_tar)" $(for v in "${SPARK_VERSIONS[@]}"; do "$here/spark-image/build.sh" "$v"; done); do
    ctr_ images import "$img" >>"$n/import.log" 2>&1 || fail "importing $img into containerd (log: $n/import.log)"
  done
  for v in "${SPARK_VERSIONS[@]}"; do
    ctr_ images ls -q | grep -xF "docker.io/library/spark:$v" >/dev/null || fail "spark:$v not in containerd after import"
  done
  say "images imported in $(($(date +%s) - t0))s"

  say "kube-controller-manager, kube-scheduler, kube-proxy, cluster DNS, kubelet"
  start kube-controller-manager "$(k8s_bin kube-controller-manager)" --kubeconfig="$kcfg" --leader-elect=false \
    --bind-address=127.0.0.1 --port=0 --secure-port=0 --use-service-account-credentials=false \
    --service-account-private-key-file="$dir/sa.key" --root-ca-file="$dir/pki/apiserver.crt" \
    --controllers='*,-tokencleaner,-bootstrapsigner,-csrsigning,-nodeipam,-cloud-node-lifecycle,-route,-service'
  start kube-scheduler "$(k8s_bin kube-scheduler)" --kubeconfig="$kcfg" --leader-elect=false \
    --bind-address=127.0.0.1 --port=0 --secure-port=0
  # It may not write the conntrack sysctls here: zero means "leave as is".
  start kube-proxy "$(k8s_bin kube-proxy)" --kubeconfig="$kcfg" --hostname-override="$NODE_NAME" \
    --proxy-mode=iptables --cluster-cidr="$POD_CIDR" --bind-address=127.0.0.1 \
    --metrics-bind-address=127.0.0.1:10249 --healthz-bind-address=127.0.0.1:10256 \
    --conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0
  : >"$n/hosts"
  start dnsmasq dnsmasq --keep-in-foreground --conf-file=/dev/null --listen-address="$NODE_IP" --bind-interfaces \
    --no-resolv --no-hosts --addn-hosts="$n/hosts" --local=/cluster.local/ --user=root --log-facility=-
  start clusterdns python3 "$here/clusterdns.py" "$server" "$dir/admin.token" "$dir/pki/apiserver.crt" \
    "$n/hosts" "$n/dnsmasq.pid"
  : >"$n/resolv.conf" # pods resolve cluster names only
  start kubelet "$(k8s_bin kubelet)" --kubeconfig="$kcfg" --container-runtime=remote \
    --container-runtime-endpoint="unix://$n/containerd.sock" --runtime-request-timeout=5m \
    --root-dir="$n/kubelet" --cert-dir="$n/kubelet/pki" --volume-plugin-dir="$n/kubelet/volume-plugins" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --address="$NODE_IP" --healthz-bind-address=127.0.0.1 \
    --read-only-port=0 --anonymous-auth=true --authorization-mode=AlwaysAllow \
    --fail-swap-on=false --cgroup-driver=cgroupfs --cgroups-per-qos=false --enforce-node-allocatable= \
    --eviction-hard= --image-gc-high-threshold=100 --image-gc-low-threshold=99 \
    --pod-infra-container-image="$PAUSE_IMAGE" --resolv-conf="$n/resolv.conf" \
    --cluster-dns="$NODE_IP" --cluster-domain=cluster.local

  local ok=0 p
  for _ in $(seq 120); do
    for p in containerd kube-controller-manager kube-scheduler kube-proxy dnsmasq clusterdns kubelet; do
      alive "$p" || { tail -n 5 "$n/$p.log" >&2; fail "$p exited (log: $n/$p.log)"; }
    done
    node_ready && { ok=1; break; }
    sleep 0.5
  done
  [ $ok = 1 ] || fail "node $NODE_NAME not Ready after 60 s (log: $n/kubelet.log)"
  # Pods need their ServiceAccount's token: wait for the token controller's first one.
  for _ in $(seq 60); do
    [ -n "$(kc -n default get serviceaccount default -o jsonpath='{.secrets[0].name}' 2>/dev/null)" ] && break
    sleep 0.5
  done
  [ -n "$(kc -n default get serviceaccount default -o jsonpath='{.secrets[0].name}' 2>/dev/null)" ] \
    || fail "no ServiceAccount token in namespace default after 30 s (log: $n/kube-controller-manager.log)"
  echo "export SPARK_WEBHOOK_REALNODE_DIR=$dir" >>"$dir/env"
  say "node $NODE_NAME Ready in $((($(date +%s%N) - started) / 1000000)) ms"
  cat "$dir/env"
}

cmd=${1:-}
case $cmd in
provision)
  provision
  exit 0
  ;;
images)
  [ "$(id -u)" = 0 ] || fail "building the Spark images needs root (debootstrap)"
  images
  exit 0
  ;;
up | down | status) ;;
*)
  echo "usage: $0 provision | images | up DIR | down DIR | status DIR" >&2
  exit 2
  ;;
esac
dir=${2:-}
[ -n "$dir" ] || {
  echo "usage: $0 $cmd DIR" >&2
  exit 2
}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
n=$dir/node
mkdir -p "$n"
case $cmd in
status) alive kubelet && node_ready ;;
down)
  [ "$(id -u)" = 0 ] || fail "down needs root"
  exec 9>"$dir/.node.lock"
  flock 9
  down
  say "stopped ($dir)"
  ;;
up)
  exec 9>"$dir/.node.lock"
  flock 9
  if alive kubelet && alive containerd && node_ready && "$here/cluster.sh" status "$dir"; then
    say "already running ($dir)"
    cat "$dir/env"
    exit 0
  fi
  up
  ;;
esac

#!/usr/bin/env bash
# Provision the binaries of the local control plane: etcd, kube-apiserver, kubectl.
# Idempotent and cached. Prints one line per step on stderr; on stdout, the folder that holds
# (links to) `etcd`, `kube-apiserver` and `kubectl`, so callers can use it like KUBEBUILDER_ASSETS.
#
# Order of preference, like envtest: $KUBEBUILDER_ASSETS, then binaries on PATH, then a build:
# etcd from Debian's etcd-server, kube-apiserver from Debian's Kubernetes 1.20.2 source (the only
# apiserver these machines can get), kubectl from PATH or Debian's kubernetes-client.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

cache=${SPARK_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spark-webhook}
bin=$cache/bin
mkdir -p "$bin"

say() { echo "provision: $*" >&2; }
fail() { echo "provision: FAILED: $*" >&2; exit 1; }

# shellcheck source=tests/cluster/apt.sh
. "$here/apt.sh"
apt_root_hint="install them or set KUBEBUILDER_ASSETS"

# link NAME PATH: make $bin/NAME point at PATH.
link() { ln -sfn "$2" "$bin/$1"; }

find_tool() { # NAME -> path or empty
  local name=$1
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/$name" ]; then echo "$KUBEBUILDER_ASSETS/$name"; return; fi
  local p; p=$(PATH=$(echo "$PATH" | tr ':' '\n' | grep -vxF "$bin" | paste -sd:) command -v "$name" 2>/dev/null || true)
  [ -n "$p" ] && echo "$p"
}

# --- etcd -------------------------------------------------------------------------------------
p=$(find_tool etcd || true)
if [ -z "$p" ]; then
  [ -x /usr/bin/etcd ] || apt_install etcd-server
  # Debian starts an etcd service on install; we never use it (our etcd runs on other ports).
  p=/usr/bin/etcd
fi
link etcd "$p"

# --- kubectl ----------------------------------------------------------------------------------
p=$(find_tool kubectl || true)
if [ -z "$p" ]; then
  # Only where none exists: Debian's kubernetes-client fails to install over a shipped kubectl.
  apt_install kubernetes-client
  p=$(command -v kubectl) || fail "kubernetes-client installed no kubectl"
fi
link kubectl "$p"

# --- kube-apiserver ---------------------------------------------------------------------------
p=$(find_tool kube-apiserver || true)
if [ -z "$p" ]; then
  # Built from Debian's source with our patches by k8s-build.sh, which names the cache file
  # after them (kube-apiserver-1.20.2-pN) and also builds the real node's binaries (realnode.sh).
  p=$cache/k8s/kube-apiserver-1.20.2-p2
  if [ ! -x "$p" ]; then
    say "building kube-apiserver 1.20.2 from Debian's source (first run only, ~5-10 min on 2 cores)"
    SPARK_WEBHOOK_CACHE=$cache "$here/k8s-build.sh" kube-apiserver || fail "building kube-apiserver (k8s-build.sh)"
    [ -x "$p" ] || fail "k8s-build.sh left no $p"
  fi
fi
link kube-apiserver "$p"

command -v openssl >/dev/null || apt_install openssl
command -v curl >/dev/null || apt_install curl

echo "$bin"

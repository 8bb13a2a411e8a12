#!/usr/bin/env bash
# Provision the binaries of the local control plane: etcd, kube-apiserver, kubectl.
# Idempotent and cached. Prints one line per step on stderr; on stdout, the folder that holds
# (links to) `etcd`, `kube-apiserver` and `kubectl`, so callers can use it like KUBEBUILDER_ASSETS.
#
# Order of preference, like envtest: $KUBEBUILDER_ASSETS, then binaries on PATH, then a build:
# etcd from Debian's etcd-server, kube-apiserver from Debian's Kubernetes 1.20.2 source (the only
# apiserver these machines can get), kubectl from PATH or Debian's kubernetes-client.
set -euo pipefail

cache=${SPARK_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spark-webhook}
bin=$cache/bin
mkdir -p "$bin"

say() { echo "provision: $*" >&2; }
fail() { echo "provision: FAILED: $*" >&2; exit 1; }

apt_updated=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then fail "need Debian packages ($*) but not root; install them or set KUBEBUILDER_ASSETS"; fi
  if [ $apt_updated = 0 ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$cache/apt.log" 2>&1 || fail "apt-get update (see $cache/apt.log)"
    apt_updated=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >>"$cache/apt.log" 2>&1 </dev/null \
    || fail "apt-get install $* (see $cache/apt.log)"
}

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
  # The suffix names our source patches: bump it when they change so caches rebuild.
  p=$cache/k8s/kube-apiserver-1.20.2-p2
  if [ ! -x "$p" ]; then
    started=$(date +%s)
    say "building kube-apiserver 1.20.2 from Debian's source (first run only, ~5-10 min on 2 cores)"
    src_list=/etc/apt/sources.list.d/spark-webhook-bookworm-src.sources
    if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
      [ "$(id -u)" = 0 ] || fail "need a deb-src entry for bookworm; run as root or set KUBEBUILDER_ASSETS"
      say "adding a deb-src entry for bookworm ($src_list)"
      cat > "$src_list" <<'S'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
S
      apt_updated=0
    fi
    need=()
    command -v go >/dev/null || need+=(golang-go)
    command -v rsync >/dev/null || need+=(rsync)
    command -v dpkg-source >/dev/null || need+=(dpkg-dev)
    [ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || need+=(golang-github-modern-go-reflect2-dev)
    if [ ${#need[@]} -gt 0 ] || [ $apt_updated = 0 ]; then apt_install "${need[@]:-golang-go}"; fi
    work=$cache/k8s/src
    rm -rf "$work"; mkdir -p "$work"
    say "apt-get source kubernetes"
    (cd "$work" && apt-get source -qq --download-only kubernetes >>"$cache/apt.log" 2>&1) || fail "apt-get source kubernetes (is a bookworm deb-src entry reachable?)"
    orig=$(find "$work" -maxdepth 1 -name 'kubernetes_*.orig.tar.*' | head -n1)
    [ -n "$orig" ] || fail "apt-get source gave no kubernetes 1.20.2 orig tarball: $(ls "$work")"
    say "unpacking $(basename "$orig")"
    tar -C "$work" -xf "$orig" || fail "unpacking $orig"
    tree=$(find "$work" -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
    [ -n "$tree" ] || fail "no kubernetes-* folder in $orig"
    # The vendored reflect2 (1.0.1) breaks on Go >= 1.18: the server panics on the first pod.
    # Debian's 1.0.2 fixes it; 1.0.2 no longer has the go_above_17/go_below_* files.
    r=$tree/vendor/github.com/modern-go/reflect2
    cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go "$r/"
    rm -f "$r/go_above_17.go" "$r/go_below_17.go" "$r/go_below_19.go"
    # The OpenAPI type check compares two reflect.Values with DeepEqual; on Go >= 1.18 that is
    # true for "" and 0, so CRD validation refuses every empty string in a custom resource
    # ('Invalid value: "null": must be of type string'). Released 1.20 binaries (Go 1.15) only
    # treated nil as null: restore that.
    for f in "$tree/vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go" \
             "$tree/vendor/github.com/go-openapi/validate/type.go"; do
      grep -q 'reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data))' "$f" \
        || fail "expected OpenAPI null check not found in $f (source changed?)"
      sed -i 's/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil {/' "$f"
    done
    # Build under a GOPATH symlink, as Debian's own debian/rules does.
    mkdir -p "$tree/.go/src/k8s.io" && ln -sfn ../../.. "$tree/.go/src/k8s.io/kubernetes"
    say "make WHAT=cmd/kube-apiserver (log: $cache/k8s/build.log)"
    # A progress line a minute, so a first `make run` never looks stuck.
    ( while sleep 60; do say "still building kube-apiserver ($(( $(date +%s) - started ))s so far)"; done ) >/dev/null &
    ticker=$!
    (cd "$tree" && GOPATH=$tree/.go CGO_ENABLED=0 make WHAT=cmd/kube-apiserver >"$cache/k8s/build.log" 2>&1) \
      || { kill "$ticker" 2>/dev/null; tail -n 20 "$cache/k8s/build.log" >&2; fail "building kube-apiserver (see $cache/k8s/build.log)"; }
    kill "$ticker" 2>/dev/null || true
    cp "$tree/_output/bin/kube-apiserver" "$p.tmp" && mv "$p.tmp" "$p"
    rm -rf "$work"
    say "kube-apiserver built in $(( $(date +%s) - started ))s, cached at $p"
  fi
fi
link kube-apiserver "$p"

command -v openssl >/dev/null || apt_install openssl
command -v curl >/dev/null || apt_install curl

echo "$bin"

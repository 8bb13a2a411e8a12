#!/usr/bin/env bash
# Build Kubernetes 1.20.2 binaries from Debian bookworm's `kubernetes` source package, patched
# (see below), in ONE `make WHAT=...` pass, and cache each as $cache/k8s/NAME-1.20.2-p2.
#
#   k8s-build.sh NAME...   NAME is a cmd/ of the source (kube-apiserver, kubelet, kube-scheduler,
#                          kube-controller-manager, kube-proxy) or `pause` (the pod sandbox's
#                          build/pause/linux/pause.c, a static gcc build).
#
# Only the names not cached yet are built; the source tree is deleted afterwards (it is ~1.5 GB
# once built). Prints one line per step on stderr. Needs root for apt when tools are missing.
set -euo pipefail

cache=${SPARK_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spark-webhook}
# The suffix names our source patches: bump it when they change so caches rebuild.
patches=p2
mkdir -p "$cache/k8s"

say() { echo "k8s-build: $*" >&2; }
fail() { echo "k8s-build: FAILED: $*" >&2; exit 1; }

cached() { echo "$cache/k8s/$1-1.20.2-$patches"; }

todo=()
for name in "$@"; do
  case $name in
  kube-apiserver | kubelet | kube-scheduler | kube-controller-manager | kube-proxy | pause) ;;
  *) fail "unknown binary '$name'" ;;
  esac
  [ -x "$(cached "$name")" ] || todo+=("$name")
done
[ ${#todo[@]} -gt 0 ] || exit 0

exec 9>"$cache/k8s/.build.lock"
flock 9 # two callers at once: the second waits, then finds the binaries cached
todo2=()
for name in "${todo[@]}"; do [ -x "$(cached "$name")" ] || todo2+=("$name"); done
[ ${#todo2[@]} -gt 0 ] || exit 0
todo=("${todo2[@]}")

# shellcheck source=tests/cluster/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"
apt_root_hint="install them first"

started=$(date +%s)
src_list=/etc/apt/sources.list.d/spark-webhook-bookworm-src.sources
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
  [ "$(id -u)" = 0 ] || fail "need a deb-src entry for bookworm; run as root"
  say "adding a deb-src entry for bookworm ($src_list)"
  cat >"$src_list" <<'S'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
S
fi
need=()
command -v go >/dev/null || need+=(golang-go)
command -v rsync >/dev/null || need+=(rsync)
command -v dpkg-source >/dev/null || need+=(dpkg-dev)
command -v gcc >/dev/null || need+=(gcc libc6-dev)
[ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || need+=(golang-github-modern-go-reflect2-dev)
# apt-get source needs fresh deb-src lists: update at least once when the tree is fetched.
apt_install "${need[@]:-golang-go}"

work=$cache/k8s/src
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
say "apt-get source kubernetes"
(cd "$work" && apt-get source -qq --download-only kubernetes >>"$cache/apt.log" 2>&1) \
  || fail "apt-get source kubernetes (is a bookworm deb-src entry reachable?)"
orig=$(find "$work" -maxdepth 1 -name 'kubernetes_*.orig.tar.*' | head -n1)
[ -n "$orig" ] || fail "apt-get source gave no kubernetes 1.20.2 orig tarball: $(ls "$work")"
say "unpacking $(basename "$orig")"
tar -C "$work" -xf "$orig" || fail "unpacking $orig"
tree=$(find "$work" -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
[ -n "$tree" ] || fail "no kubernetes-* folder in $orig"

# Patch p1: the vendored reflect2 (1.0.1) breaks on Go >= 1.18: the apiserver panics on the first
# pod. Debian's 1.0.2 fixes it; 1.0.2 no longer has the go_above_17/go_below_* files.
r=$tree/vendor/github.com/modern-go/reflect2
cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go "$r/"
rm -f "$r/go_above_17.go" "$r/go_below_17.go" "$r/go_below_19.go"
# Patch p2: the OpenAPI type check compares two reflect.Values with DeepEqual; on Go >= 1.18 that
# is true for "" and 0, so CRD validation refuses every empty string in a custom resource
# ('Invalid value: "null": must be of type string'). Released 1.20 binaries (Go 1.15) only
# treated nil as null: restore that.
for f in "$tree/vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go" \
  "$tree/vendor/github.com/go-openapi/validate/type.go"; do
  grep -q 'reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data))' "$f" \
    || fail "expected OpenAPI null check not found in $f (source changed?)"
  sed -i 's/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil {/' "$f"
done

what=()
for name in "${todo[@]}"; do [ "$name" = pause ] || what+=("cmd/$name"); done
if [ ${#what[@]} -gt 0 ]; then
  # Build under a GOPATH symlink, as Debian's own debian/rules does.
  mkdir -p "$tree/.go/src/k8s.io" && ln -sfn ../../.. "$tree/.go/src/k8s.io/kubernetes"
  log=$cache/k8s/build.log
  say "make WHAT=\"${what[*]}\" (first run only, ~5 min per binary on 2 cores; log: $log)"
  # A progress line a minute, so a first run never looks stuck.
  (while sleep 60; do say "still building ($(($(date +%s) - started))s so far)"; done) >/dev/null &
  ticker=$!
  (cd "$tree" && GOPATH=$tree/.go CGO_ENABLED=0 make WHAT="${what[*]}" >"$log" 2>&1) \
    || {
      kill "$ticker" 2>/dev/null
      tail -n 20 "$log" >&2
      fail "building ${what[*]} (see $log)"
    }
  kill "$ticker" 2>/dev/null || true
fi
for name in "${todo[@]}"; do
  p=$(cached "$name")
  if [ "$name" = pause ]; then
    gcc -Os -static -DVERSION=3.2-spark-webhook -o "$p.tmp" "$tree/build/pause/linux/pause.c" 2>>"$cache/k8s/build.log" \
      || fail "gcc -static pause.c (is libc6-dev installed? see $cache/k8s/build.log)"
    strip "$p.tmp" 2>/dev/null || true
  else
    cp "$tree/_output/bin/$name" "$p.tmp"
  fi
  mv "$p.tmp" "$p"
done
say "built ${todo[*]} in $(($(date +%s) - started))s, cached under $cache/k8s"

#!/usr/bin/env bash
# The operator's own runtime image, built without Docker: the local twin of the Dockerfile.
#
# The Dockerfile is the image for real registries (`docker build`, push, set the Deployment's
# image). This script makes the same contents for the real node of realnode.sh, which has no
# registry: a static release binary as /spark-webhook, USER 65532:65532, ENTRYPOINT
# ["/spark-webhook"], CMD ["serve"], ports 9443 and 8080 exposed, nothing else. The Dockerfile
# links statically against musl; musl targets cannot be fetched here, so this links glibc
# statically instead (-C target-feature=+crt-static). One difference: a static glibc cannot load
# its NSS modules in an empty image, so it resolves numeric addresses only. In the cluster that is
# all it is given (KUBERNETES_SERVICE_HOST is an IP; the apiserver calls the webhook, not the
# other way round), which the real-node test shows. It is also built with thin LTO, for build time
# (see build()): same code, a larger binary.
#
#   operator-image.sh            build (cached) and print the image tar's path
#   operator-image.sh import DIR build, then import it into the containerd of the real node in
#                                DIR (tests/cluster/realnode.sh up DIR), namespace k8s.io
#
# The tag is the one manifests/operator/deployment.yaml names (spark-webhook:0.1.0, i.e.
# docker.io/library/spark-webhook:0.1.0), and its imagePullPolicy IfNotPresent makes the kubelet
# use the imported image without asking a registry.
#
# The binary is built in target/static (so it never invalidates the normal target/ build); the
# tar is cached by the binary's hash in ${SPARK_WEBHOOK_CACHE:-~/.cache/spark-webhook}/images.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${SPARK_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spark-webhook}
say() { echo "operator-image: $*" >&2; }
fail() {
  echo "operator-image: FAILED: $*" >&2
  exit 1
}
TARGET=x86_64-unknown-linux-gnu

# The image the Deployment runs, as containerd names it.
image_ref() {
  local image
  image=$(awk '$1 == "image:" {print $2; exit}' "$root/manifests/operator/deployment.yaml")
  [ -n "$image" ] || fail "no image: in manifests/operator/deployment.yaml"
  case $image in
  */*/*) echo "$image" ;;
  */*) echo "docker.io/$image" ;;
  *) echo "docker.io/library/$image" ;;
  esac
}

build() {
  local bin=$root/target/static/$TARGET/quick/spark-webhook t
  t=$(date +%s)
  say "static release build (target/static; cargo's output: $root/target/static/build.log)"
  mkdir -p "$root/target/static"
  # Called from a test (tests/e2e_realnode.rs), this inherits the package variables cargo and
  # nextest give a test process (CARGO_MANIFEST_DIR, CARGO_PKG_NAME...). Build scripts such as
  # ring's rerun when those change, so the same sources would be rebuilt (minutes) each time
  # the caller changes: build with them unset, whoever calls.
  local v
  for v in $(compgen -e); do
    case $v in
    CARGO_MANIFEST_* | CARGO_PKG_* | CARGO_CRATE_* | CARGO_BIN_* | CARGO_PRIMARY_PACKAGE | CARGO_TARGET_TMPDIR | OUT_DIR) unset "$v" ;;
    esac
  done
  # The `quick` profile (Cargo.toml) instead of the shipped one's fat LTO in one unit: the same
  # code, many minutes faster to build on a 2-core CI machine; only its size (and RSS) differs.
  (cd "$root" && RUSTFLAGS='-C target-feature=+crt-static' cargo build --profile quick --locked \
    --target "$TARGET" --target-dir target/static) >"$root/target/static/build.log" 2>&1 \
    || {
      tail -n 20 "$root/target/static/build.log" >&2
      fail "cargo build (log: $root/target/static/build.log)"
    }
  say "built in $(($(date +%s) - t))s"
  # Static: no program interpreter, no shared libraries (it must run in an empty image). (grep
  # without -q reads all: with pipefail, -q quitting early could fail the pipeline by SIGPIPE.)
  if readelf -lW "$bin" | grep 'Requesting program interpreter' >/dev/null || readelf -dW "$bin" | grep '(NEEDED)' >/dev/null; then
    fail "$bin is not static: $(file -b "$bin")"
  fi
  local hash out ref
  hash=$(sha256sum "$bin" | cut -c1-16)
  ref=$(image_ref)
  out=$cache/images/spark-webhook-${ref##*:}-$hash.tar
  if [ ! -f "$out" ]; then
    mkdir -p "$cache/images"
    local rootfs
    rootfs=$(mktemp -d "$cache/images/spark-webhook-rootfs.XXXXXX")
    install -m 755 "$bin" "$rootfs/spark-webhook"
    # As in the Dockerfile's runtime stage (FROM scratch): the binary, a numeric non-root user,
    # the entrypoint and its default command, the exposed ports.
    python3 "$here/mkimage.py" --name "$ref" --rootfs "$rootfs" --out "$out.part" \
      --user 65532:65532 --entrypoint /spark-webhook --cmd serve \
      --expose 9443/tcp --expose 8080/tcp >/dev/null || {
      rm -rf "$rootfs" "$out.part"
      fail "writing the image (mkimage.py)"
    }
    rm -rf "$rootfs"
    mv "$out.part" "$out"
    # Older builds' tars are of no further use.
    find "$cache/images" -maxdepth 1 -name 'spark-webhook-*.tar' ! -name "${out##*/}" -delete
    say "$ref: $out ($(du -h "$out" | cut -f1))"
  fi
  echo "$out"
}

case ${1:-} in
"")
  build
  ;;
import)
  dir=${2:-}
  [ -n "$dir" ] || {
    echo "usage: $0 [import DIR]" >&2
    exit 2
  }
  sock=$dir/node/containerd.sock
  [ -S "$sock" ] || fail "no real node in $dir (tests/cluster/realnode.sh up $dir)"
  tar=$(build)
  ref=$(image_ref)
  ctr --address "$sock" -n k8s.io images import "$tar" >/dev/null || fail "importing $tar into containerd"
  ctr --address "$sock" -n k8s.io images ls -q | grep -xF "$ref" >/dev/null || fail "$ref not in containerd after import"
  say "$ref imported into the node in $dir"
  ;;
*)
  echo "usage: $0 [import DIR]" >&2
  exit 2
  ;;
esac

#!/usr/bin/env bash
# Build the container image `spark:VERSION` (default 3.5.3) for the real-node cluster, without
# Docker, from Debian's packages and PyPI's pyspark, and cache it as a docker-archive tar that
# realnode.sh imports into containerd. Two layers, so that every Spark version shares the first:
#   1. base (built once, cached as a layer): a bookworm root filesystem (debootstrap
#      --variant=minbase) with OpenJDK 17 (headless JRE; Spark 3.5 and 4.x both run on 17, and
#      17 is Spark 4's minimum), Python 3.11, tini and procps; Spark's image contract:
#      /opt/entrypoint.sh (driver|executor), /opt/decom.sh (executor preStop), user spark (185);
#   2. per version: pyspark VERSION from PyPI as /opt/spark (bin/, jars/,
#      examples/src/main/python/; no Scala examples jar: PyPI's pyspark does not ship it), work
#      dir /opt/spark/work-dir. Refused if its jars need a newer Java than the base's.
# Prints the tar's path on stdout. Idempotent: an existing tar (or base layer) is kept (delete it
# to rebuild); builds of different versions may run at once (the first builds the base, the
# others wait for it while their pyspark downloads).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=${1:-3.5.3}
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "usage: $0 [VERSION, e.g. 4.0.5]" >&2; exit 2; }
cache=${SPARK_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spark-webhook}
# The suffixes name the recipes: bump BASE when the base's part of this script, entrypoint.sh or
# decom.sh change, REV when the version layer's part (or mkimage.py's image format) does.
BASE=b1
REV=r2
base=$cache/images/spark-base-bookworm-jdk17-$BASE.layer.tar.gz
out=$cache/images/spark-$version-$REV.tar
say() { echo "spark-image $version: $*" >&2; }
fail() { echo "spark-image $version: FAILED: $*" >&2; exit 1; }

if [ -f "$out" ]; then echo "$out"; exit 0; fi
mkdir -p "$cache/images"
# One build per version at a time (tests/run.sh starts them early; realnode.sh waits here).
exec 8>"$cache/images/.spark-$version.lock"
flock 8
if [ -f "$out" ]; then echo "$out"; exit 0; fi
[ "$(id -u)" = 0 ] || fail "building the image needs root (debootstrap)"
started=$(date +%s)
log=$cache/images/spark-build-$version.log
: >"$log"
work=$(mktemp -d "$cache/images/spark-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- the version's pyspark (downloads; needs no base, so it runs while another build makes it) ---
(
  say "pip install pyspark==$version (~1-2 min)"
  python3 -m venv "$work/venv" >>"$log" 2>&1 || fail "python3 -m venv (install python3-venv?)"
  "$work/venv/bin/pip" install -q --no-compile --no-cache-dir "pyspark==$version" >>"$log" 2>&1 \
    || fail "pip install pyspark==$version (see $log)"
) &
pip_pid=$!

# --- the base layer, once for all versions ---
exec 9>"$cache/images/.spark-base.lock"
flock 9
if [ ! -f "$base" ]; then
  blog=$cache/images/spark-build-base.log
  : >"$blog"
  if ! command -v debootstrap >/dev/null; then
    say "apt-get install debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >>"$blog" 2>&1 </dev/null \
      || fail "apt-get install debootstrap (see $blog)"
  fi
  root=$work/base
  mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
  say "base layer: debootstrap bookworm + openjdk-17-jre-headless python3 tini (~3 min; log: $blog)"
  t0=$(date +%s)
  debootstrap --variant=minbase --include=openjdk-17-jre-headless,python3,tini,procps \
    bookworm "$root" "$mirror" >>"$blog" 2>&1 || fail "debootstrap (see $blog)"
  install -m 755 "$here/entrypoint.sh" "$root/opt/entrypoint.sh"
  install -m 755 "$here/decom.sh" "$root/opt/decom.sh"
  echo 'spark:x:185:185:spark:/opt/spark/work-dir:/bin/bash' >>"$root/etc/passwd"
  echo 'spark:x:185:' >>"$root/etc/group"
  chmod 1777 "$root/tmp"
  # Smaller image: no package cache, docs or apt lists (nothing installs into it later).
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc \
    "$root"/usr/share/man "$root"/usr/share/locale
  # (No `chroot java -version` here: without /proc in the chroot the JVM cannot find its libjli.so.)
  for f in usr/lib/jvm/java-17-openjdk-amd64/bin/java usr/lib/jvm/java-17-openjdk-amd64/lib/libjli.so \
    usr/bin/python3 usr/bin/tini opt/entrypoint.sh opt/decom.sh usr/lib/python3/dist-packages; do
    [ -e "$root/$f" ] || fail "the base has no /$f"
  done
  python3 "$here/../mkimage.py" --layer-only --rootfs "$root" --out "$base" >>"$blog" 2>&1 \
    || fail "mkimage.py --layer-only (see $blog)"
  rm -rf "$root"
  say "base layer built in $(($(date +%s) - t0))s: $base ($(du -h "$base" | cut -f1))"
fi
exec 9>&-

wait "$pip_pid" || exit 1
site=$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
[ -x "$site/pyspark/bin/spark-submit" ] && [ -f "$site/pyspark/examples/src/main/python/pi.py" ] \
  || fail "pyspark $version has no bin/spark-submit or examples/src/main/python/pi.py"
# Spark's own classes say which Java they need (class file major version: 61 = Java 17).
core=$(ls "$site"/pyspark/jars/spark-core_*.jar 2>/dev/null | head -n1)
[ -n "$core" ] || fail "pyspark $version has no jars/spark-core_*.jar"
major=$(python3 - "$core" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
name = next(n for n in z.namelist() if n.startswith("org/apache/spark/") and n.endswith(".class"))
print(int.from_bytes(z.read(name)[6:8], "big"))
PY
) || fail "reading the class file version of $core"
[ "$major" -le 61 ] || fail "pyspark $version's classes need Java $((major - 44)); the base has Java 17"
say "$(basename "$core"): class files for Java $((major - 44))"

top=$work/top
dist=$top/usr/lib/python3/dist-packages
mkdir -p "$dist" "$top/opt"
cp -a "$site/pyspark" "$dist/"
[ -d "$site/py4j" ] && cp -a "$site/py4j" "$dist/"
ln -s ../usr/lib/python3/dist-packages/pyspark "$top/opt/spark"
mkdir -p "$dist/pyspark/work-dir" "$dist/pyspark/conf"
chmod 1777 "$dist/pyspark/work-dir"
chmod 755 "$top" "$top/usr" "$top/usr/lib" "$top/usr/lib/python3" "$dist" "$top/opt"
say "writing the image tar"
python3 "$here/../mkimage.py" --name "docker.io/library/spark:$version" --layer "$base" --rootfs "$top" \
  --out "$out" --workdir /opt/spark/work-dir --user 185 --env SPARK_HOME=/opt/spark \
  --env JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 --entrypoint /opt/entrypoint.sh >>"$log" 2>&1 \
  || fail "mkimage.py (see $log)"
say "built in $(($(date +%s) - started))s: $out ($(du -h "$out" | cut -f1))"
echo "$out"

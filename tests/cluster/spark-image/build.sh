#!/usr/bin/env bash
# Build the container image `spark:3.5.3` for the real-node cluster, without Docker, from Debian's
# packages and PyPI's pyspark, and cache it as a docker-archive tar that realnode.sh imports into
# containerd:
#   - a bookworm root filesystem (debootstrap --variant=minbase) with OpenJDK 17 (headless JRE),
#     Python 3.11, tini and procps;
#   - pyspark 3.5.3 from PyPI as /opt/spark (bin/, jars/, examples/src/main/python/; no Scala
#     examples jar: PyPI's pyspark does not ship it);
#   - Spark's image contract: /opt/entrypoint.sh (driver|executor), /opt/decom.sh (executor preStop),
#     user spark (185), work dir /opt/spark/work-dir.
# Prints the tar's path on stdout. Idempotent: an existing tar is kept (delete it to rebuild).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${SPARK_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spark-webhook}
# The suffix names the recipe: bump it when this script, entrypoint.sh or decom.sh change.
out=$cache/images/spark-3.5.3-r1.tar
say() { echo "spark-image: $*" >&2; }
fail() { echo "spark-image: FAILED: $*" >&2; exit 1; }

if [ -f "$out" ]; then echo "$out"; exit 0; fi
mkdir -p "$cache/images"
exec 9>"$cache/images/.spark.lock"
flock 9
if [ -f "$out" ]; then echo "$out"; exit 0; fi
[ "$(id -u)" = 0 ] || fail "building the image needs root (debootstrap)"
started=$(date +%s)
log=$cache/images/spark-build.log
: >"$log"
if ! command -v debootstrap >/dev/null; then
  say "apt-get install debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >>"$log" 2>&1 </dev/null \
    || fail "apt-get install debootstrap (see $log)"
fi
work=$(mktemp -d "$cache/images/spark-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
say "debootstrap bookworm + openjdk-17-jre-headless python3 tini (~3 min; log: $log)"
debootstrap --variant=minbase --include=openjdk-17-jre-headless,python3,tini,procps \
  bookworm "$root" "$mirror" >>"$log" 2>&1 || fail "debootstrap (see $log)"
say "pip install pyspark==3.5.3 (~1-2 min)"
python3 -m venv "$work/venv" >>"$log" 2>&1 || fail "python3 -m venv (install python3-venv?)"
"$work/venv/bin/pip" install -q --no-compile --no-cache-dir pyspark==3.5.3 >>"$log" 2>&1 || fail "pip install pyspark==3.5.3 (see $log)"
site=$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
[ -x "$site/pyspark/bin/spark-submit" ] && [ -f "$site/pyspark/examples/src/main/python/pi.py" ] \
  || fail "pyspark 3.5.3 has no bin/spark-submit or examples/src/main/python/pi.py"
dist=$root/usr/lib/python3/dist-packages
cp -a "$site/pyspark" "$site/py4j" "$dist/"
ln -s ../usr/lib/python3/dist-packages/pyspark "$root/opt/spark"
mkdir -p "$dist/pyspark/work-dir" "$dist/pyspark/conf"
chmod 1777 "$dist/pyspark/work-dir" "$root/tmp"
install -m 755 "$here/entrypoint.sh" "$root/opt/entrypoint.sh"
install -m 755 "$here/decom.sh" "$root/opt/decom.sh"
echo 'spark:x:185:185:spark:/opt/spark/work-dir:/bin/bash' >>"$root/etc/passwd"
echo 'spark:x:185:' >>"$root/etc/group"
# Smaller image: no package cache, docs or apt lists (nothing installs into it later).
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc \
  "$root"/usr/share/man "$root"/usr/share/locale
# (No `chroot java -version` here: without /proc in the chroot the JVM cannot find its libjli.so.)
for f in usr/lib/jvm/java-17-openjdk-amd64/bin/java usr/lib/jvm/java-17-openjdk-amd64/lib/libjli.so \
  usr/bin/python3 usr/bin/tini opt/spark/bin/spark-submit opt/spark/examples/src/main/python/pi.py; do
  [ -e "$root/$f" ] || fail "the image has no /$f"
done
say "writing the image tar"
python3 "$here/../mkimage.py" --name docker.io/library/spark:3.5.3 --rootfs "$root" --out "$out" \
  --workdir /opt/spark/work-dir --user 185 --env SPARK_HOME=/opt/spark \
  --env JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 --entrypoint /opt/entrypoint.sh >>"$log" 2>&1 \
  || fail "mkimage.py (see $log)"
say "built in $(($(date +%s) - started))s: $out ($(du -h "$out" | cut -f1))"
echo "$out"

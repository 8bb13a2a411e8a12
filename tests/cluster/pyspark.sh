#!/usr/bin/env bash
# Installs Apache Spark's spark-submit (from PyPI's pyspark==VERSION, default 3.3.4) and prints
# SPARK_HOME on stdout: the installed `pyspark` package folder, which holds bin/spark-submit and
# jars/. 3.3.4 is for the e2e tests that compare native submission with the real thing; others
# (4.x) for recording what spark-submit creates (tests/cluster/capture-submit.py).
#
# Why 3.3.4: Spark >= 3.4 creates the driver Service with server-side apply and no port
# protocol, which a 1.20 kube-apiserver (tests/cluster/cluster.sh) refuses.
#
# Idempotent and cached in ${XDG_CACHE_HOME:-~/.cache}/spark-webhook/pyspark-VERSION (a venv); a
# second run only checks it. Progress goes to stderr; a failed step says which one failed.
# Needs python3 with venv and a Java runtime (Java 17 works with Spark 3.3.4); as root, Debian's
# openjdk-17-jre-headless is installed when there is no `java` at all, python3-venv when venv
# cannot work.
set -euo pipefail

version=${1:-3.3.4}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/spark-webhook
venv=$cache/pyspark-$version

say() { echo "pyspark.sh: $*" >&2; }
fail() { echo "pyspark.sh: FAILED: $*" >&2; exit 1; }

apt_install() { # as root only; says which package failed
  [ "$(id -u)" = 0 ] || fail "$1 is missing and we are not root: install $*"
  say "installing $* (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || fail "apt-get update"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" </dev/null >&2 \
    || fail "apt-get install $*"
}

# --- Java ---
if ! command -v java >/dev/null 2>&1 && [ -z "${JAVA_HOME:-}" ]; then
  say "no java found"
  apt_install openjdk-17-jre-headless
fi
java=${JAVA_HOME:+$JAVA_HOME/bin/}java
"$java" -version >/dev/null 2>&1 || fail "'$java -version' does not run"

# --- Python with venv (Debian splits ensurepip into python3-venv) ---
python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3 python3-venv
python3 -c 'import ensurepip, venv' 2>/dev/null || fail "python3 cannot create a venv (no ensurepip)"

# --- pyspark in a venv, done once ---
# shellcheck source=tests/cluster/venv.sh
. "$(dirname "$0")/venv.sh"
spark_home() { "$venv/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))' 2>/dev/null; }
# Sets home: the installed package folder, with bin/spark-submit and jars/.
has_spark_submit() {
  home=$(spark_home) && [ -x "$home/bin/spark-submit" ] && [ -d "$home/jars" ]
}
venv_install "$venv" "pyspark==$version" has_spark_submit "about 280 MB"
echo "$home"

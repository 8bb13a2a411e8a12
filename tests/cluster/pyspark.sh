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
spark_home() { "$venv/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))' 2>/dev/null; }
ready() {
  [ -f "$venv/.complete" ] || return 1
  local home; home=$(spark_home) || return 1
  [ -x "$home/bin/spark-submit" ] && [ -d "$home/jars" ] && echo "$home"
}

mkdir -p "$cache"
# Parallel test processes wait here and then find the install done.
exec 9>"$cache/.pyspark-$version.lock"
flock 9 || fail "locking $cache/.pyspark-$version.lock"

if home=$(ready); then
  echo "$home"
  exit 0
fi

rm -rf "$venv"
say "creating venv $venv"
python3 -m venv "$venv" >&2 || fail "python3 -m venv $venv (is python3-venv installed?)"
say "pip install pyspark==$version (about 280 MB, once)"
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off \
  "pyspark==$version" >&2 || fail "pip install pyspark==$version"
home=$(spark_home) || fail "import pyspark from $venv"
[ -x "$home/bin/spark-submit" ] || fail "$home/bin/spark-submit is missing or not executable"
[ -d "$home/jars" ] || fail "$home/jars is missing"
touch "$venv/.complete"
say "installed: SPARK_HOME=$home"
echo "$home"

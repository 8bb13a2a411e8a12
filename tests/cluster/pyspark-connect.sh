#!/usr/bin/env bash
# Installs a Spark Connect client, PyPI's `pyspark[connect]` at VERSION (default 4.0.5, the
# server image's), in a venv for tests/e2e_realnode.rs, and prints the venv's python on stdout.
#
# Idempotent and cached in ${XDG_CACHE_HOME:-~/.cache}/spark-webhook/pyspark-connect-VERSION; a
# second run only checks it. Progress goes to stderr; a failed step says which one failed. The
# client needs no Java: it talks gRPC to the server.
set -euo pipefail

version=${1:-4.0.5}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/spark-webhook
venv=$cache/pyspark-connect-$version

say() { echo "pyspark-connect.sh: $*" >&2; }
fail() { echo "pyspark-connect.sh: FAILED: $*" >&2; exit 1; }

python3 -c 'import ensurepip, venv' 2>/dev/null || fail "python3 cannot create a venv (install python3-venv)"
imports() { "$venv/bin/python" -c 'import pyspark.sql.connect.session' 2>/dev/null; }
ready() { [ -f "$venv/.complete" ] && imports; }

mkdir -p "$cache"
# Parallel test processes wait here and then find the install done.
exec 9>"$cache/.pyspark-connect-$version.lock"
flock 9 || fail "locking $cache/.pyspark-connect-$version.lock"

if ready; then
  echo "$venv/bin/python"
  exit 0
fi

rm -rf "$venv"
say "creating venv $venv"
python3 -m venv "$venv" >&2 || fail "python3 -m venv $venv"
say "pip install pyspark[connect]==$version (pyspark, pandas, pyarrow, grpcio: about 500 MB, once)"
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off \
  "pyspark[connect]==$version" >&2 || fail "pip install pyspark[connect]==$version"
imports || fail "import pyspark.sql.connect from $venv"
touch "$venv/.complete"
say "installed: $venv"
echo "$venv/bin/python"

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
# shellcheck source=tests/cluster/venv.sh
. "$(dirname "$0")/venv.sh"
venv_install "$venv" "pyspark[connect]==$version" imports "pyspark, pandas, pyarrow, grpcio: about 500 MB"
echo "$venv/bin/python"

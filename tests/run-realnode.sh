#!/usr/bin/env bash
# Real Spark on a real node: builds the operator's image (tests/cluster/operator-image.sh), brings
# up the one-node cluster of tests/cluster/realnode.sh (reused if it already runs), runs the
# e2e_realnode tests against it, and prints how long each step took.
# The node stays up afterwards unless REALNODE_DOWN=1 (then it is torn down, also on failure).
# Extra arguments go to cargo nextest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dir=${SPARK_WEBHOOK_REALNODE_DIR:-$root/.local/node}
secs() { echo "$(( ($(date +%s%N) - $1) / 1000000 ))" | sed -E 's/([0-9]{3})$/.\1/; s/^\./0./'; }

if [ "${REALNODE_DOWN:-0}" = 1 ]; then
  trap 't=$(date +%s%N); tests/cluster/realnode.sh down "$dir" >/dev/null; echo "realnode down: $(secs "$t") s" >&2' EXIT
fi
# The operator's image for the in-cluster test (a static release build, cached by the binary's
# hash): built here, outside the test's time limit; the test imports it into the node.
t=$(date +%s%N)
tests/cluster/operator-image.sh >/dev/null
echo "operator image: $(secs "$t") s" >&2
t=$(date +%s%N)
tests/cluster/realnode.sh up "$dir" >/dev/null
echo "realnode up: $(secs "$t") s" >&2
t=$(date +%s%N)
# Built as tests/run.sh builds the suite (with fail points), so `make test` compiles it once.
SPARK_WEBHOOK_REALNODE_DIR=$dir cargo nextest run --locked --features failpoints --ignore-default-filter --test e2e_realnode "$@"
echo "e2e_realnode: $(secs "$t") s" >&2

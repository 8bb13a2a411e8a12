#!/usr/bin/env bash
# Runs the whole test suite (unit, router, TLS, end-to-end against a fresh local control plane
# that lives exactly as long as this script, then real Spark on a real node, then a fuzz smoke).
# Extra arguments (or NEXTEST_TARGETS) narrow it to the first part and go to cargo nextest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dir=$root/target/test-cluster
"$root/tests/cluster/cluster.sh" down "$dir" >/dev/null 2>&1 || true
trap '"$root/tests/cluster/cluster.sh" down "$dir" >/dev/null 2>&1 || true' EXIT
WATCH_PID=$$ "$root/tests/cluster/cluster.sh" up "$dir" >/dev/null
export SPARK_WEBHOOK_CLUSTER_DIR=$dir
# The spark-submit tests need pyspark 3.3.4 (a cold install takes a minute): provision it here,
# cached, so no test spends its time budget on a download.
"$root/tests/cluster/pyspark.sh" >/dev/null
# The metrics test pipes /metrics through promtool (Debian's prometheus package; cached).
"$root/tests/cluster/promtool.sh" >/dev/null
# The real node's Spark images (downloads, then gzip; several minutes cold, cached after) build in
# the background while the suite compiles and runs; the real-node part below waits for them.
if [ $# -eq 0 ] && [ -z "${NEXTEST_TARGETS:-}" ] && [ "${REALNODE:-1}" != 0 ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$root/target"
  "$root/tests/cluster/realnode.sh" images >"$root/target/spark-images.log" 2>&1 &
fi
profile=${NEXTEST_PROFILE:-default}
[ "${CI:-}" = true ] && profile=ci
# NEXTEST_TARGETS narrows the run (e.g. `--test e2e_faults` for `make chaos`). The suite is built
# with the fail points (src/failpoint.rs) the fault tests arm; a release build has none.
# shellcheck disable=SC2086
cargo nextest run --locked --features failpoints ${NEXTEST_TARGETS:---all-targets} --profile "$profile" "$@"
# Only for the whole suite (a narrowed run, with arguments or targets given, stops here):
[ $# -eq 0 ] && [ -z "${NEXTEST_TARGETS:-}" ] || exit 0
# The build check: the fail-point tests once more, built without the feature as a release is,
# where SPARK_WEBHOOK_FAIL_POINT must do nothing (the library's unit tests only: ~40 s to build).
cargo nextest run --locked --lib --profile "$profile" -E 'test(/^failpoint::/)'
"$root/tests/cluster/cluster.sh" down "$dir" >/dev/null 2>&1 || true
# Real Spark on a real node (tests/e2e_realnode.rs): the node is provisioned (cached; ~20 min on
# a fresh machine), brought up, used and torn down again. It needs root; REALNODE=0 leaves these
# tests out, and says so.
if [ "${REALNODE:-1}" = 0 ]; then
  echo "run.sh: REALNODE=0: the real-node tests (tests/e2e_realnode.rs) were NOT run" >&2
else
  REALNODE_DOWN=1 SPARK_WEBHOOK_REALNODE_DIR=$root/target/test-node \
    "$root/tests/run-realnode.sh" --profile "$profile"
fi
# The fuzz smoke: both cargo-fuzz targets, coverage-guided, briefly, from a dev build (`make fuzz`
# is the long run).
FUZZ_BUILD=${FUZZ_BUILD:-dev} "$root/fuzz/run.sh" "${FUZZ_SMOKE_SECONDS:-15}"

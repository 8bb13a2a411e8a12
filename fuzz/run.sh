#!/usr/bin/env bash
# Runs every fuzz target for a bounded time and prints executions per target.
#   fuzz/run.sh [SECONDS_PER_TARGET]       (default 300; `make fuzz`, FUZZ_SECONDS; 0 skips)
# Environment: FUZZ_SANITIZER (default none: the code under test is safe Rust, and an ASan
# build of every dependency costs another from-scratch build; `address` for ASan),
# FUZZ_TARGETS (default: all), FUZZ_JOBS (parallel fuzzing processes per target, default 1),
# FUZZ_BUILD (release, the default, or dev: unoptimised, builds in about a third of the time and
# fuzzes ~10x slower; what `make test`'s smoke uses: from the committed seeds only).
# Each target starts from its committed seeds (fuzz/corpus/<target>/seed-*) plus what earlier
# runs found (target/fuzz-corpus/<target>, kept between runs, never committed). A crash leaves
# its input in fuzz/artifacts/<target>/ and fails the run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-${FUZZ_SECONDS:-300}}
sanitizer=${FUZZ_SANITIZER:-none}
targets=${FUZZ_TARGETS:-review_bytes structured}
jobs=${FUZZ_JOBS:-1}
if [ "$seconds" -le 0 ]; then
  echo "fuzz: skipped (0 seconds)"
  exit 0
fi

# cargo-fuzz from crates.io (cached in ~/.cargo/bin) and the nightly toolchain it needs.
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked </dev/null
rustup run nightly rustc --version >/dev/null 2>&1 ||
  rustup toolchain install nightly --profile minimal </dev/null

cd "$root/fuzz"
flags=(--sanitizer "$sanitizer")
case ${FUZZ_BUILD:-release} in
  release) ;;
  dev) flags+=(--dev) ;;
  *) echo "fuzz: FUZZ_BUILD=${FUZZ_BUILD} (expected release or dev)" >&2; exit 2 ;;
esac
cargo +nightly fuzz build "${flags[@]}" </dev/null

summary=()
for target in $targets; do
  work=$root/target/fuzz-corpus/$target
  # A dev build replays a long run's grown corpus at a few hundred inputs a second: minutes
  # before fuzzing starts. The smoke starts from the committed seeds alone.
  if [ "${FUZZ_BUILD:-release}" = dev ]; then work=$root/target/fuzz-smoke-corpus/$target; rm -rf "$work"; fi
  mkdir -p "$work" "artifacts/$target"
  log=$root/target/fuzz-$target.log
  echo "fuzz: $target for ${seconds}s (sanitizer $sanitizer, $jobs job(s))"
  parallel=()
  if [ "$jobs" -gt 1 ]; then parallel=(-jobs="$jobs" -workers="$jobs"); fi
  status=0
  cargo +nightly fuzz run "${flags[@]}" "$target" "$work" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    "${parallel[@]}" </dev/null >"$log" 2>&1 || status=$?
  # Executions: libFuzzer's final stats (one block per job; jobs log to fuzz-<n>.log).
  runs=$(cat "$log" fuzz-*.log 2>/dev/null | grep -o 'stat::number_of_executed_units: *[0-9]*' |
    awk '{s += $2} END {print s + 0}' || true)
  rm -f fuzz-*.log
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log"
    echo "fuzz: $target FAILED after $runs executions (log: $log; input in fuzz/artifacts/$target/)"
    exit 1
  fi
  corpus=$(find "$work" "corpus/$target" -type f | wc -l)
  rate=$((runs / (seconds > 0 ? seconds : 1)))
  summary+=("$target: $runs executions in ${seconds}s ($rate exec/s), corpus $corpus files, 0 crashes")
done
printf 'fuzz: %s\n' "${summary[@]}"

#!/usr/bin/env bash
# Provision promtool (Prometheus' own checker of /metrics expositions) for the metrics test.
# Idempotent: an installed promtool is used as it is; else Debian's `prometheus` package, which
# ships it, is installed (as root). Prints the path of promtool on stdout, one line per step on
# stderr.
set -euo pipefail
say() { echo "promtool: $*" >&2; }
fail() { echo "promtool: FAILED: $*" >&2; exit 1; }
log=${TMPDIR:-/tmp}/spark-webhook-promtool-apt.log

if p=$(command -v promtool 2>/dev/null); then echo "$p"; exit 0; fi
[ "$(id -u)" = 0 ] || fail "promtool is missing and we are not root: install Debian's prometheus package"
# Parallel callers (test processes) install once: the others wait here, then find it.
exec 9>"${TMPDIR:-/tmp}/spark-webhook-promtool.lock"; flock 9
if p=$(command -v promtool 2>/dev/null); then echo "$p"; exit 0; fi
say "apt-get update"
DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$log" 2>&1 || fail "apt-get update (see $log)"
say "apt-get install prometheus (for promtool)"
# No service is started: nothing here runs an init system, and policy-rc.d-less containers
# only print a warning.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >>"$log" 2>&1 </dev/null \
  || fail "apt-get install prometheus (see $log)"
command -v promtool || fail "the prometheus package installed no promtool"

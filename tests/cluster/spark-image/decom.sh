#!/bin/bash
# Executor preStop hook (the webhook's default): ask the executor JVM to decommission (SIGPWR, as
# Spark's own decom.sh does), then wait until it has exited.
pid=$(pgrep -f KubernetesExecutorBackend | head -n1) || exit 0
echo "decom.sh: decommissioning executor JVM $pid" >/proc/1/fd/1 2>/dev/null || true
kill -PWR "$pid" 2>/dev/null || exit 0
while kill -0 "$pid" 2>/dev/null; do sleep 1; done

#!/bin/bash
# Entrypoint of the local spark:3.5.3 image: Spark's image contract for Kubernetes, as in Spark's
# own kubernetes/dockerfiles/spark/entrypoint.sh, trimmed to what this image holds.
#   driver ARGS...    spark-submit in client mode inside the driver pod (what cluster mode runs)
#   executor          the executor JVM, configured by the SPARK_* variables the driver sets
#   anything else     run as is
set -euo pipefail
export SPARK_HOME=/opt/spark
export JAVA_HOME=${JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64}
cd /opt/spark/work-dir
# Executors get their JVM options as SPARK_JAVA_OPT_0, SPARK_JAVA_OPT_1, ... in that order.
mapfile -t java_opts < <(env | grep '^SPARK_JAVA_OPT_' | sort -t_ -k4 -n | sed 's/[^=]*=\(.*\)/\1/g')
classpath="$SPARK_HOME/conf:$SPARK_HOME/jars/*${SPARK_EXTRA_CLASSPATH:+:$SPARK_EXTRA_CLASSPATH}"
case "${1:-}" in
driver)
  shift
  exec /usr/bin/tini -s -- "$SPARK_HOME/bin/spark-submit" \
    --conf "spark.driver.bindAddress=$SPARK_DRIVER_BIND_ADDRESS" \
    --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=$SPARK_DRIVER_BIND_ADDRESS" \
    --deploy-mode client "$@"
  ;;
executor)
  shift
  exec /usr/bin/tini -s -- "$JAVA_HOME/bin/java" "${java_opts[@]}" \
    -Xms"$SPARK_EXECUTOR_MEMORY" -Xmx"$SPARK_EXECUTOR_MEMORY" -cp "$classpath" \
    org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
    --driver-url "$SPARK_DRIVER_URL" --executor-id "$SPARK_EXECUTOR_ID" --cores "$SPARK_EXECUTOR_CORES" \
    --app-id "$SPARK_APPLICATION_ID" --hostname "$SPARK_EXECUTOR_POD_IP" \
    --resourceProfileId "$SPARK_RESOURCE_PROFILE_ID" --podName "$SPARK_EXECUTOR_POD_NAME"
  ;;
*) exec "$@" ;;
esac

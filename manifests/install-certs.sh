#!/usr/bin/env bash
# `make install-certs`: puts the webhook's certificate (as `make certs` writes it) where the
# manifests expect it, in the cluster kubectl points at:
#   - Secret spark-webhook-certs in spark-operator (type kubernetes.io/tls) with ca.crt, tls.crt and
#     tls.key; created, or replaced when it exists. The base's self-managed operator serves it as
#     it is while it is valid (then renews it, with a new CA: ca.key is not in it); with the
#     own-certs Component it is mounted as the --cert-dir (running pods pick the new files up
#     within a minute, without a restart);
#   - the caBundle (base64 of ca.crt) of both webhook configurations.
# ca.key stays on this machine. Environment: CERT_DIR (certs), NAMESPACE (spark-operator),
# SECRET (spark-webhook-certs), WEBHOOK_CONFIG (spark-webhook), KUBECTL (kubectl).
set -euo pipefail
cert_dir=${CERT_DIR:-certs}
ns=${NAMESPACE:-spark-operator}
secret=${SECRET:-spark-webhook-certs}
config=${WEBHOOK_CONFIG:-spark-webhook}
read -r -a kubectl <<<"${KUBECTL:-kubectl}"

for f in ca.crt tls.crt tls.key; do
  [ -s "$cert_dir/$f" ] || { echo "install-certs: $cert_dir/$f missing: run \`make certs\` first" >&2; exit 1; }
done

# create, or replace: never `apply`, which would copy the private key into an annotation.
manifest=$("${kubectl[@]}" create secret generic "$secret" --namespace "$ns" --type kubernetes.io/tls \
  --from-file=ca.crt="$cert_dir/ca.crt" --from-file=tls.crt="$cert_dir/tls.crt" \
  --from-file=tls.key="$cert_dir/tls.key" --dry-run=client -o json)
if "${kubectl[@]}" get secret "$secret" --namespace "$ns" >/dev/null 2>&1; then
  "${kubectl[@]}" replace -f - <<<"$manifest"
else
  "${kubectl[@]}" create -f - <<<"$manifest"
fi

ca=$(base64 < "$cert_dir/ca.crt" | tr -d '\n')
for kind in mutatingwebhookconfiguration validatingwebhookconfiguration; do
  "${kubectl[@]}" patch "$kind" "$config" --type=json \
    -p "[{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"$ca\"}]"
done

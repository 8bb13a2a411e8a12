# spark-webhook: the two commands are `make run` and `make test`; the rest are their parts.
SHELL := /bin/bash
CARGO ?= cargo
LOCAL := $(CURDIR)/.local
BIN := target/release/spark-webhook

.PHONY: run test build lint fmt manifests certs install-certs cluster-up cluster-down provision bench chaos fuzz fuzz-smoke clean \
	node-provision node-up node-down node-operator test-realnode

## run: build, start a local control plane, install the CRD and webhooks, serve (Ctrl-C stops all)
run:
	tests/cluster/run-local.sh

## test: format check, clippy, unit + end-to-end + property tests on a real kube-apiserver,
## then real Spark apps on a real one-node cluster (as root; REALNODE=0 leaves them out), then a
## fuzz smoke (FUZZ_SMOKE_SECONDS per target, default 15, from a dev build)
test: lint
	tests/run.sh

build:
	$(CARGO) build --release --locked

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --all-targets --features failpoints -- -D warnings

fmt:
	$(CARGO) fmt

## manifests: regenerate the committed YAML under manifests/ from the code
manifests:
	UPDATE_MANIFESTS=1 $(CARGO) nextest run --locked --features failpoints --test crd --test manifests

## certs: create or rotate the webhook CA and serving certificate in certs/
certs:
	$(CARGO) run --locked --quiet -- certs --dir certs

## install-certs: in the cluster kubectl points at, create/update Secret spark-operator/spark-webhook-certs
## from certs/ (ca.crt, tls.crt, tls.key) and set the caBundle of both webhook configurations
## (after `kubectl apply -k manifests/` and `make certs`)
install-certs:
	manifests/install-certs.sh

## bench: criterion micro-benchmarks of the mutation, then a TLS load run of the webhook against
## a no-op floor (prints a table; BENCH_SECONDS sets the measured seconds per run, default 5)
## then submission at scale, and 100 ScheduledSparkApplications at @every 10s for 5 minutes
## (schedule_scale: BENCH_SCHEDULES, BENCH_EVERY_SECS, BENCH_SCHEDULE_SECS)
bench:
	$(CARGO) bench --locked --bench mutation -- --noplot
	$(CARGO) bench --locked --bench webhook_load
	$(CARGO) bench --locked --bench submit_scale
	$(CARGO) bench --locked --bench schedule_scale

## chaos: the fault tests (tests/e2e_faults.rs) at full size: 200 apps crashed at every step of
## submission and SIGKILLed, a 30 s apiserver outage, 1000 apps queued ahead of a finishing one
## (tests/run.sh builds them with `--features failpoints`)
chaos:
	FAULTS_APPS=200 FAULTS_QUEUE=1000 FAULTS_OUTAGE_SECS=30 FAULTS_LEADER_APPS=200 \
	  NEXTEST_TARGETS="--test e2e_faults" NEXTEST_PROFILE=chaos tests/run.sh --no-capture

## fuzz: every fuzz target (fuzz/, cargo-fuzz on nightly) for FUZZ_SECONDS each (default 300);
## prints executions per target. FUZZ_SANITIZER=address adds ASan, FUZZ_JOBS runs more processes
## per target.
fuzz:
	fuzz/run.sh $${FUZZ_SECONDS:-300}

## fuzz-smoke: the fuzz targets for FUZZ_SMOKE_SECONDS each (default 15), as `make test` ends
fuzz-smoke:
	FUZZ_BUILD=$${FUZZ_BUILD:-dev} fuzz/run.sh $${FUZZ_SMOKE_SECONDS:-15}

## provision: build/install etcd, kube-apiserver and kubectl (cached)
provision:
	tests/cluster/provision.sh

cluster-up:
	tests/cluster/cluster.sh up $(LOCAL)/cluster

## node-provision: everything a real one-node cluster needs (Debian packages, kubelet & co. built
## from source, the pause and spark:3.5.3/4.0.5/4.3.0 images; cached, ~20 min the first time)
node-provision:
	tests/cluster/realnode.sh provision

## node-up / node-down: a real one-node cluster in .local/node (kubelet, containerd, kube-proxy,
## DNS; Spark pods really run). `source .local/node/env` points kubectl at it.
node-up:
	tests/cluster/realnode.sh up $(LOCAL)/node

node-down:
	tests/cluster/realnode.sh down $(LOCAL)/node

## node-operator: the operator deployed in-cluster on the real node in .local/node (brought up if
## needed), as a user installs it: its image from the release binary (tests/cluster/operator-image.sh,
## the Dockerfile's local twin, cached) imported into the node's containerd, then
## `kubectl apply -k manifests/k8s-1.20` and a wait for both replicas. `kubectl delete -k
## manifests/k8s-1.20` removes it.
node-operator:
	tests/cluster/operator-image.sh >/dev/null
	tests/cluster/realnode.sh up $(LOCAL)/node >/dev/null
	tests/cluster/operator-image.sh import $(LOCAL)/node
	source $(LOCAL)/node/env && kubectl apply -k manifests/k8s-1.20 \
	  && kubectl -n spark-operator rollout status deployment/spark-webhook --timeout=240s

## test-realnode: only the real Spark apps on the real node (brought up if needed and left
## running; REALNODE_DOWN=1 tears it down afterwards). `make test` runs them too.
test-realnode:
	tests/run-realnode.sh --no-capture

cluster-down:
	tests/cluster/cluster.sh down $(LOCAL)/cluster
	-tests/cluster/cluster.sh down target/e2e-cluster

clean: cluster-down
	$(CARGO) clean

#!/usr/bin/env python3
"""Writes the committed seed corpora under fuzz/corpus/ from the recorded fixtures (run once;
needs PyYAML). review_bytes: `10s` + newline + AdmissionReview bodies shaped like the
kube-apiserver's (as tests/bench/common.rs builds them) for the driver and executor pods and
the SparkApplications. structured: a few byte strings (the target turns bytes into pods)."""
import json, os, yaml

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
fixtures = os.path.join(root, "tests", "fixtures")
out = os.path.join(root, "fuzz", "corpus")


def review(obj, group, version, kind, resource, uid, operation="CREATE"):
    gvk = {"group": group, "version": version, "kind": kind}
    gvr = {"group": group, "version": version, "resource": resource}
    return {
        "kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": uid, "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": obj.get("metadata", {}).get("name"), "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:spark-operator:spark-operator-controller",
                         "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": obj, "oldObject": None, "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }


def write(target, name, data):
    os.makedirs(os.path.join(out, target), exist_ok=True)
    with open(os.path.join(out, target, "seed-" + name), "wb") as f:
        f.write(data)


def body(r, timeout=b"10s"):
    return timeout + b"\n" + json.dumps(r, separators=(",", ":")).encode()


driver = json.load(open(os.path.join(fixtures, "spark-submit-3.3.4", "driver-pod.json")))
executor = json.load(open(os.path.join(fixtures, "executor-pod.json")))
write("review_bytes", "driver", body(review(driver, "", "v1", "Pod", "pods", "u-driver")))
write("review_bytes", "executor", body(review(executor, "", "v1", "Pod", "pods", "u-exec")))
write("review_bytes", "driver-update",
      body(review(driver, "", "v1", "Pod", "pods", "u-upd", "UPDATE"), b"1m30s"))
for name in ["sparkapplication.yaml", "sparkapplication-pi.yaml", "sparkapplication-full.yaml"]:
    app = yaml.safe_load(open(os.path.join(fixtures, name)))
    r = review(app, "sparkoperator.k8s.io", "v1beta2", "SparkApplication", "sparkapplications", "u-app")
    write("review_bytes", name.replace(".yaml", ""), body(r))
bench_app = yaml.safe_load(open(os.path.join(root, "tests", "bench", "sparkapplication.yaml")))
r = review(bench_app, "sparkoperator.k8s.io", "v1beta2", "SparkApplication", "sparkapplications", "u-b")
write("review_bytes", "bench-app", body(r, b"500ms"))

for i, data in enumerate([b"", bytes(range(256)), b"\xff" * 512, b"\x01\x00" * 256]):
    write("structured", str(i), data)

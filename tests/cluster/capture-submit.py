#!/usr/bin/env python3
"""Record what Apache Spark's own spark-submit creates, as it arrives at a kube-apiserver.

usage: capture-submit.py CLUSTER_DIR SPARK_HOME IMAGE OUT_DIR

CLUSTER_DIR is a control plane of tests/cluster/cluster.sh (its kubeconfig, admin.token,
apiserver.port, pki/apiserver.crt). Runs, against it, the SparkPi submission of
tests/fixtures/spark-submit-3.3.4/README.md (namespace `default`, driver pod `spark-pi-driver3`),
with a validating webhook (this script, on 127.0.0.1, failurePolicy Ignore, allowing all) that
writes each pod, Service and ConfigMap of the namespace as admission sees it (after the
apiserver's defaulting, before it is stored) into OUT_DIR as driver-pod.json, driver-service.json
and driver-configmap.json, with `managedFields` removed, and from the ConfigMap's spark.properties
the lines of the submission credentials (`spark.kubernetes.authenticate.submission.*`: this
script's temporary token and CA file paths, which spark-submit passes on to the driver).

Spark >= 3.4 creates the driver Service and the ConfigMap by server-side apply after the pod, and
leaves the Service ports' `protocol` out; a 1.20 apiserver refuses that apply (the ports list is
keyed by port and protocol there), before admission, and Spark then deletes its driver pod and
never sends the ConfigMap. So spark-submit talks to the apiserver through a recording proxy
(this script, TLS on 127.0.0.1): it forwards every request unchanged but one: an apply patch of a
Service whose ports lack `protocol` gets `"protocol": "TCP"` (what newer apiservers default) on
each of them. Every request's method, path and body as spark-submit sent them go to
OUT_DIR/requests.json, so the Service's original body stays on record.
"""
import base64
import http.client
import http.server
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time

cluster, spark_home, image, out = sys.argv[1:5]
os.makedirs(out, exist_ok=True)
read = lambda f: open(os.path.join(cluster, f)).read().strip()
token, api_port = read("admin.token"), int(read("apiserver.port"))
api_host = read("apiserver.host") if os.path.exists(os.path.join(cluster, "apiserver.host")) else "127.0.0.1"
api_ca = os.path.join(cluster, "pki/apiserver.crt")
kubeconfig = os.path.join(cluster, "kubeconfig")
tmp = tempfile.mkdtemp()
cert, key = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
               check=True, capture_output=True)
tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain(cert, key)
captured, requests, lock = {}, [], threading.Lock()


class Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def body(self):
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def reply(self, code, body, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Webhook(Quiet):
    def do_POST(self):
        review = json.loads(self.body())
        req = review["request"]
        obj = req.get("object") or {}
        obj.get("metadata", {}).pop("managedFields", None)
        if obj.get("kind") == "ConfigMap" and "spark.properties" in obj.get("data", {}):
            lines = obj["data"]["spark.properties"].splitlines(keepends=True)
            drop = "spark.kubernetes.authenticate.submission."
            obj["data"]["spark.properties"] = "".join(l for l in lines if not l.startswith(drop))
        name = {"Pod": "driver-pod", "Service": "driver-service", "ConfigMap": "driver-configmap"}.get(obj.get("kind"))
        if name and req.get("namespace") == "default" and not obj["metadata"].get("name", "").startswith("kube-"):
            with lock:
                captured.setdefault(name, obj)
        resp = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": {"uid": req["uid"], "allowed": True}}
        self.reply(200, json.dumps(resp).encode())


class Proxy(Quiet):
    def forward(self):
        body = self.body()
        sent = body
        ctype = self.headers.get("Content-Type", "")
        if self.command == "PATCH" and "apply-patch" in ctype and "/services/" in self.path:
            svc = json.loads(body)
            for p in svc.get("spec", {}).get("ports", []):
                p.setdefault("protocol", "TCP")
            sent = json.dumps(svc).encode()
        with lock:
            requests.append({"method": self.command, "path": self.path, "contentType": ctype,
                             "body": json.loads(body) if body else None,
                             **({"forwardedBody": json.loads(sent)} if sent != body else {})})
        up = http.client.HTTPSConnection(api_host, api_port, context=ssl.create_default_context(cafile=api_ca))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
        headers["Content-Length"] = str(len(sent))
        up.request(self.command, self.path, body=sent, headers=headers)
        r = up.getresponse()
        data = r.read()
        self.reply(r.status, data, r.getheader("Content-Type", "application/json"))

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = forward


def serve(handler):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.socket = tls.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]


hook_port, proxy_port = serve(Webhook), serve(Proxy)
kubectl = lambda *a, stdin=None: subprocess.run(["kubectl", "--kubeconfig", kubeconfig, *a], input=stdin,
                                                 check=True, capture_output=True, text=True)
hook = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "capture-submit"},
        "webhooks": [{"name": "capture.spark-webhook.test", "admissionReviewVersions": ["v1"],
                      "sideEffects": "None", "failurePolicy": "Ignore", "timeoutSeconds": 5,
                      "clientConfig": {"url": f"https://127.0.0.1:{hook_port}/",
                                       "caBundle": base64.b64encode(open(cert, "rb").read()).decode()},
                      "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                                 "resources": ["pods", "services", "configmaps"], "scope": "Namespaced"}]}]}


def clean():
    """Removes what a submission left in `default` (this control plane runs no garbage collector)."""
    kubectl("-n", "default", "delete", "pod", "spark-pi-driver3", "--ignore-not-found", "--wait=true")
    for kind in ("services", "configmaps"):
        names = kubectl("-n", "default", "get", kind, "-o", "name").stdout.split()
        spark = [n for n in names if n.endswith("-driver-svc") or "/spark-drv-" in n]
        if spark:
            kubectl("-n", "default", "delete", *spark)


clean()
kubectl("apply", "-f", "-", stdin=json.dumps(hook))
# The webhook configuration takes effect asynchronously: wait until a probe ConfigMap is seen.
deadline = time.time() + 30
while "driver-configmap" not in captured:
    kubectl("-n", "default", "create", "configmap", "capture-probe", "--dry-run=server")
    assert time.time() < deadline, "the capture webhook never saw a probe"
    time.sleep(0.5)
captured.clear()

token_file = os.path.join(tmp, "token")
open(token_file, "w").write(token)
conf = {
    "spark.kubernetes.namespace": "default",
    "spark.kubernetes.container.image": image,
    "spark.kubernetes.driver.pod.name": "spark-pi-driver3",
    "spark.kubernetes.driver.label.sparkoperator.k8s.io/app-name": "spark-pi",
    "spark.kubernetes.driver.label.sparkoperator.k8s.io/launched-by-spark-operator": "true",
    "spark.kubernetes.driver.label.sparkoperator.k8s.io/submission-id": "abc-123",
    "spark.kubernetes.executor.label.sparkoperator.k8s.io/app-name": "spark-pi",
    "spark.driver.cores": "1", "spark.kubernetes.driver.limit.cores": "1200m", "spark.driver.memory": "512m",
    "spark.executor.instances": "2", "spark.executor.cores": "1", "spark.executor.memory": "512m",
    "spark.kubernetes.submission.waitAppCompletion": "false",
    "spark.kubernetes.authenticate.submission.oauthTokenFile": token_file,
    "spark.kubernetes.authenticate.submission.caCertFile": cert,
}
cmd = [os.path.join(spark_home, "bin/spark-submit"), "--master", f"k8s://https://127.0.0.1:{proxy_port}",
       "--deploy-mode", "cluster", "--name", "spark-pi", "--class", "org.apache.spark.examples.SparkPi"]
for k, v in conf.items():
    cmd += ["--conf", f"{k}={v}"]
cmd += ["local:///opt/spark/examples/jars/spark-examples.jar", "10"]
run = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "SPARK_HOME": spark_home})
if run.returncode != 0:
    sys.stderr.write(run.stdout + run.stderr)
kubectl("delete", "validatingwebhookconfiguration", "capture-submit")
clean()
with lock:
    for name, obj in captured.items():
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True)
            f.write("\n")
    with open(os.path.join(out, "requests.json"), "w") as f:
        json.dump(requests, f, indent=1)
        f.write("\n")
print(f"spark-submit exited {run.returncode}; captured {sorted(captured)} into {out}")
sys.exit(0 if run.returncode == 0 and len(captured) == 3 else 1)

#!/usr/bin/env python3
"""Cluster DNS of the real-node cluster (realnode.sh), for want of a packaged CoreDNS.

Keeps a hosts file for dnsmasq equal to the A records CoreDNS's kubernetes plugin would serve:
NAME.NS.svc.cluster.local (and NAME.NS.svc) -> the Service's ClusterIP, or for a headless Service
the ready addresses of its Endpoints. Polls the apiserver once a second; on a change rewrites the
file atomically and sends dnsmasq SIGHUP (which re-reads it). Runs until killed.

usage: clusterdns.py SERVER TOKEN_FILE CA_FILE HOSTS_FILE DNSMASQ_PID_FILE
"""
import json
import os
import signal
import ssl
import sys
import time
import urllib.request

server, token_file, ca_file, hosts, pid_file = sys.argv[1:6]
token = open(token_file).read().strip()
ctx = ssl.create_default_context(cafile=ca_file)


def get(path):
    req = urllib.request.Request(server + path, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        return json.load(r)["items"]


def records():
    endpoints = {}
    for e in get("/api/v1/endpoints"):
        m = e["metadata"]
        endpoints[(m["namespace"], m["name"])] = sorted(
            a["ip"] for s in e.get("subsets") or [] for a in s.get("addresses") or []
        )
    lines = []
    for s in get("/api/v1/services"):
        m = s["metadata"]
        ns, name = m["namespace"], m["name"]
        ip = s["spec"].get("clusterIP")
        ips = [ip] if ip and ip != "None" else endpoints.get((ns, name), [])
        lines += [f"{a} {name}.{ns}.svc.cluster.local {name}.{ns}.svc" for a in ips]
    return "\n".join(sorted(lines)) + "\n"


last = None
while True:
    try:
        text = records()
        if text != last:
            with open(hosts + ".tmp", "w") as f:
                f.write(text)
            os.replace(hosts + ".tmp", hosts)
            last = text
            try:
                with open(pid_file) as f:
                    os.kill(int(f.read().strip()), signal.SIGHUP)
            except (OSError, ValueError) as e:
                print(f"clusterdns: could not signal dnsmasq: {e}", file=sys.stderr, flush=True)
    except Exception as e:  # keep serving through apiserver restarts and hiccups
        print(f"clusterdns: {e}", file=sys.stderr, flush=True)
    time.sleep(1)

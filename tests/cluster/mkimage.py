#!/usr/bin/env python3
"""Write a container image as a docker-archive tar (what `docker save` makes, and what
`ctr images import` reads) from a root filesystem folder: one gzip'd layer, no Docker needed.

usage: mkimage.py --name REF --rootfs DIR --out FILE.tar [--workdir DIR] [--user UID]
                  [--env K=V]... [--entrypoint ARG]... [--cmd ARG]... [--expose PORT/tcp]...
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile

p = argparse.ArgumentParser()
p.add_argument("--name", required=True, help="image reference, e.g. docker.io/library/spark:3.5.3")
p.add_argument("--rootfs", required=True)
p.add_argument("--out", required=True)
p.add_argument("--workdir", default="/")
p.add_argument("--user", default="")
p.add_argument("--env", action="append", default=[])
p.add_argument("--entrypoint", action="append", default=[])
p.add_argument("--cmd", action="append", default=[], help="the image's CMD (Dockerfile CMD)")
p.add_argument("--expose", action="append", default=[], help="an exposed port, e.g. 9443/tcp")
a = p.parse_args()


class Hashing:
    """A write-only file object that hashes what passes through it."""

    def __init__(self, f):
        self.f, self.h = f, hashlib.sha256()

    def write(self, b):
        self.h.update(b)
        return self.f.write(b)

    def flush(self):
        self.f.flush()


out_dir = os.path.dirname(os.path.abspath(a.out))
with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
    layer_path = os.path.join(tmp, "layer.tar.gz")
    # The layer: tar of the rootfs (diff_id = sha256 of the uncompressed tar), stored gzip'd.
    with open(layer_path, "wb") as raw:
        blob = Hashing(raw)
        with gzip.GzipFile(fileobj=blob, mode="wb", compresslevel=1, mtime=0) as gz:
            tar_hash = Hashing(gz)
            with tarfile.open(fileobj=tar_hash, mode="w|", format=tarfile.PAX_FORMAT) as t:
                for e in sorted(os.listdir(a.rootfs)):
                    t.add(os.path.join(a.rootfs, e), arcname=e)
    diff_id = "sha256:" + tar_hash.h.hexdigest()
    env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + a.env
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": a.entrypoint or None,
            "Cmd": a.cmd or None,
            "WorkingDir": a.workdir,
            "Env": env,
            "User": a.user,
            "ExposedPorts": {port: {} for port in a.expose} or None,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    cfg = json.dumps(config).encode()
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    manifest = json.dumps([{"Config": cfg_name, "RepoTags": [a.name], "Layers": ["layer.tar.gz"]}]).encode()
    part = a.out + ".part"
    with tarfile.open(part, "w") as t:
        for name, data in ((cfg_name, cfg), ("manifest.json", manifest)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        t.add(layer_path, arcname="layer.tar.gz")
    size = os.path.getsize(layer_path)
    shutil.move(part, a.out)
print(f"{a.out}: {a.name}, one layer of {size} bytes (gzip)")

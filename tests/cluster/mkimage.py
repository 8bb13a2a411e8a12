#!/usr/bin/env python3
"""Write a container image as a docker-archive tar (what `docker save` makes, and what
`ctr images import` reads) from root filesystem folders, no Docker needed.

usage: mkimage.py --name REF --out FILE.tar [--layer LAYER.tar.gz]... [--rootfs DIR]
                  [--workdir DIR] [--user UID] [--env K=V]... [--entrypoint ARG]... [--cmd ARG]...
                  [--expose PORT/tcp]...
       mkimage.py --layer-only --rootfs DIR --out LAYER.tar.gz

--layer-only writes one gzip'd layer and its diff_id (LAYER.tar.gz.diffid) for later images to
reuse: images that share a lower layer (the Spark images' Debian + Java base) are built once and
unpacked once by containerd, which keys layers by digest. The image's layers are the --layer
files in order, then the --rootfs folder (if given) on top.
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
p.add_argument("--name", help="image reference, e.g. docker.io/library/spark:3.5.3")
p.add_argument("--rootfs")
p.add_argument("--out", required=True)
p.add_argument("--layer", action="append", default=[], help="a layer written by --layer-only")
p.add_argument("--layer-only", action="store_true")
p.add_argument("--workdir", default="/")
p.add_argument("--user", default="")
p.add_argument("--env", action="append", default=[])
p.add_argument("--entrypoint", action="append", default=[])
p.add_argument("--cmd", action="append", default=[], help="the image's CMD (Dockerfile CMD)")
p.add_argument("--expose", action="append", default=[], help="an exposed port, e.g. 9443/tcp")
a = p.parse_args()
if a.layer_only and not a.rootfs:
    p.error("--layer-only needs --rootfs")
if not a.layer_only and not a.name:
    p.error("--name is required")
if not a.layer_only and not (a.rootfs or a.layer):
    p.error("an image needs --rootfs or --layer")


class Hashing:
    """A write-only file object that hashes what passes through it."""

    def __init__(self, f):
        self.f, self.h = f, hashlib.sha256()

    def write(self, b):
        self.h.update(b)
        return self.f.write(b)

    def flush(self):
        self.f.flush()


def write_layer(rootfs, path):
    """Tar `rootfs` gzip'd into `path`; returns the diff_id (sha256 of the uncompressed tar)."""
    with open(path, "wb") as raw:
        blob = Hashing(raw)
        with gzip.GzipFile(fileobj=blob, mode="wb", compresslevel=1, mtime=0) as gz:
            tar_hash = Hashing(gz)
            with tarfile.open(fileobj=tar_hash, mode="w|", format=tarfile.PAX_FORMAT) as t:
                for e in sorted(os.listdir(rootfs)):
                    t.add(os.path.join(rootfs, e), arcname=e)
    return "sha256:" + tar_hash.h.hexdigest()


out_dir = os.path.dirname(os.path.abspath(a.out))
if a.layer_only:
    part = a.out + ".part"
    diff_id = write_layer(a.rootfs, part)
    with open(a.out + ".diffid", "w") as f:
        f.write(diff_id + "\n")
    shutil.move(part, a.out)
    print(f"{a.out}: layer {diff_id}, {os.path.getsize(a.out)} bytes (gzip)")
    raise SystemExit(0)

with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
    # (archive name, file, diff_id) per layer, lowest first.
    layers = []
    for i, path in enumerate(a.layer):
        with open(path + ".diffid") as f:
            layers.append((f"layer{i}.tar.gz", path, f.read().strip()))
    if a.rootfs:
        top = os.path.join(tmp, "top.tar.gz")
        layers.append((f"layer{len(layers)}.tar.gz", top, write_layer(a.rootfs, top)))
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
        "rootfs": {"type": "layers", "diff_ids": [d for _, _, d in layers]},
    }
    cfg = json.dumps(config).encode()
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    manifest = [{"Config": cfg_name, "RepoTags": [a.name], "Layers": [n for n, _, _ in layers]}]
    manifest = json.dumps(manifest).encode()
    part = a.out + ".part"
    with tarfile.open(part, "w") as t:
        for name, data in ((cfg_name, cfg), ("manifest.json", manifest)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        for name, path, _ in layers:
            t.add(path, arcname=name)
    sizes = [os.path.getsize(path) for _, path, _ in layers]
    shutil.move(part, a.out)
print(f"{a.out}: {a.name}, {len(sizes)} layer(s) of {sizes} bytes (gzip)")

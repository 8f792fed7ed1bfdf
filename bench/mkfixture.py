#!/usr/bin/env python3
"""Deterministic benchmark upstream of realistic shape and size, generated fast.

  mkfixture.py --out DIR [--scale N] [--jobs J]

writes
  DIR/images/                 one OCI image layout: 25*N multi-arch images
                              (linux/amd64 + linux/arm64), gzip tar layers,
                              shared base layers, index.json names each image
                              by its full reference (skopeo copy oci:DIR:REF)
  DIR/files/                  upstream file tree: 5*N binaries per arch at
                              dl.k8s.io/release/v1.29.6/bin/linux/<arch>/<name>
                              with <name>.sha256 (bare hex, as dl.k8s.io does)
  DIR/catalog-sS/1.29.6.toml  for every scale S <= N: a release catalog naming
  DIR/catalog-sS/bench.toml   exactly the binaries and images of scale S, and
                              a profile carrying all of them (`ferry bundle
                              build --k8s 1.29.6 --catalog-dir DIR/catalog-sS
                              --profile DIR/catalog-sS/bench.toml`)
  DIR/images-sS.txt           scale S's image references, one a line
  DIR/binaries-sS.txt         scale S's binary upstream paths, one a line

Scale 1 is about 1.5 GB (about 1 GB of layers, about 0.5 GB of binaries,
layers from 1 KB to about 150 MB); scale 3 is three times that (every image
and binary again under another tag or name, with its own content; base layers
stay shared). Copy 1 of every scale is the same bytes, so the fixture of
scale 3 contains the one of scale 1 and is generated and served once.

Content is as compressible as real layers and binaries (about 2.6x with
zstd -3): 64 KiB chunks of "text" (8-byte tokens drawn from a skewed
vocabulary, built with bytes.translate and strided bytearray assignment, so
it runs at C speed) mixed with chunks of random bytes. Everything comes from
seeded random.Random streams: same arguments, same bytes, same digests.
Layers are gzip level 1 (the compression level does not change what is
measured; level 6 is 3x slower to generate).
"""

import argparse
import gzip
import hashlib
import io
import json
import multiprocessing
import os
import random
import struct
import sys
import tarfile

K8S = "1.29.6"
ARCHES = ["amd64", "arm64"]
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MB = 1 << 20

# Shared base layers (raw MB) and the images: (reference, base, own layers in
# raw MB, times OWN). Raw sizes compress about 2.5x with gzip -1, so the
# largest (cilium) layer is about 150 MB.
OWN = 0.8
BASES = {"static": 2.0, "debian": 75.0, "alpine": 7.0}
IMAGES = [
    ("registry.k8s.io/pause:3.9", None, [0.001]),
    ("registry.k8s.io/kube-apiserver:v1.29.6", "static", [75]),
    ("registry.k8s.io/kube-controller-manager:v1.29.6", "static", [68]),
    ("registry.k8s.io/kube-scheduler:v1.29.6", "static", [34]),
    ("registry.k8s.io/kube-proxy:v1.29.6", "debian", [45]),
    ("registry.k8s.io/etcd:3.5.12-0", "static", [41]),
    ("registry.k8s.io/coredns/coredns:v1.11.1", "static", [30]),
    ("registry.k8s.io/dns/k8s-dns-node-cache:1.22.28", "debian", [22, 0.4]),
    ("registry.k8s.io/metrics-server/metrics-server:v0.7.1", "static", [37]),
    ("registry.k8s.io/ingress-nginx/controller:v1.10.1", "alpine", [30, 19, 0.01]),
    ("registry.k8s.io/sig-storage/csi-provisioner:v4.0.1", "static", [26]),
    ("registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.10.1", "static", [11]),
    ("registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.12.0", "static", [26]),
    ("quay.io/cilium/cilium:v1.15.6", "debian", [360 / OWN, 30, 0.002]),
    ("quay.io/cilium/operator-generic:v1.15.6", "static", [52]),
    ("quay.io/cilium/hubble-relay:v1.15.6", "static", [22]),
    ("quay.io/cilium/hubble-ui:v0.13.1", "alpine", [4, 0.05]),
    ("quay.io/cilium/hubble-ui-backend:v0.13.1", "static", [19]),
    ("quay.io/jetstack/cert-manager-controller:v1.14.5", "static", [34]),
    ("quay.io/jetstack/cert-manager-webhook:v1.14.5", "static", [22]),
    ("quay.io/jetstack/cert-manager-cainjector:v1.14.5", "static", [21]),
    ("quay.io/prometheus/prometheus:v2.52.0", "debian", [90, 6]),
    ("quay.io/prometheus/alertmanager:v0.27.0", "static", [30]),
    ("quay.io/prometheus/node-exporter:v1.8.1", "static", [15]),
    ("quay.io/calico/node:v3.27.3", "debian", [110, 15]),
]
# Binaries per arch (raw MB): 10 to 120 MB, about 2.6x compressible like real Go binaries.
BINARIES = [("kube-apiserver", 120), ("kubelet", 64), ("kubectl", 32), ("kube-scheduler", 20), ("etcdctl", 10)]

P_TEXT = 0.82  # share of text-like chunks (the rest is random bytes)
CHUNK = 64 * 1024


# ---------------------------------------------------------------- content


class Gen:
    """Fast deterministic content: text-like token chunks mixed with random chunks."""

    def __init__(self, seed):
        self.rnd = random.Random(seed)
        tables = random.Random("ferry-bench-vocabulary")  # same vocabulary everywhere
        w = [1.0 / (i + 1) ** 1.5 for i in range(256)]
        tot = sum(w)
        skew = []
        for i, x in enumerate(w):
            skew += [i] * max(1, round(x / tot * 256))
        skew = (skew + [0] * 256)[:256]
        tables.shuffle(skew)
        self.skew = bytes(skew)
        letters = b"etaoinshrdlcumwfgypbvkjxqz_-./0123456789ETAOINSHRDLU"
        self.pre = [bytes(tables.choice(letters) for _ in range(256)) for _ in range(4)]
        self.suf = [bytes(tables.choice(letters) for _ in range(256)) for _ in range(3)]
        self.suf.append(bytes(tables.choice(b"   \n\t=:,") for _ in range(256)))

    def text(self, n):
        m = (n + 7) // 8
        r1 = self.rnd.randbytes(m).translate(self.skew)
        r2 = self.rnd.randbytes(m).translate(self.skew)
        out = bytearray(8 * m)
        for k in range(4):
            out[k::8] = r1.translate(self.pre[k])
            out[4 + k :: 8] = r2.translate(self.suf[k])
        return bytes(out[:n])

    def chunks(self, n):
        """Yields n bytes in chunks of up to CHUNK."""
        left = n
        while left > 0:
            c = min(CHUNK, left)
            yield self.text(c) if self.rnd.random() < P_TEXT else self.rnd.randbytes(c)
            left -= c


# ---------------------------------------------------------------- writers


class HashWriter:
    """File-like: writes to f and hashes what passes through."""

    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        if self.f is not None:
            self.f.write(b)
        return len(b)

    def flush(self):
        pass


class ChunkReader:
    """File-like over a generator of chunks (for tarfile.addfile)."""

    def __init__(self, it):
        self.it = it
        self.buf = b""

    def read(self, n=-1):
        while n < 0 or len(self.buf) < n:
            try:
                self.buf += next(self.it)
            except StopIteration:
                break
        if n < 0:
            out, self.buf = self.buf, b""
        else:
            out, self.buf = self.buf[:n], self.buf[n:]
        return out


def file_sizes(rnd, total):
    """Splits total bytes into file sizes, log-uniform between 1 KiB and 16 MiB."""
    sizes = []
    left = total
    while left > 0:
        s = min(left, int(2 ** rnd.uniform(10, 24)))
        sizes.append(s)
        left -= s
    return sizes


def make_layer(job):
    """job: (layout root, seed, raw bytes, path prefix). Writes a gzip tar blob; returns digests."""
    root, seed, raw, prefix = job
    g = Gen(seed)
    blobs = os.path.join(root, "blobs", "sha256")
    tmp = os.path.join(blobs, ".tmp-%s" % hashlib.sha256(seed.encode()).hexdigest()[:16])
    with open(tmp, "wb") as f:
        outer = HashWriter(f)
        gz = gzip.GzipFile(fileobj=outer, mode="wb", compresslevel=1, mtime=0, filename="")
        inner = HashWriter(gz)
        with tarfile.open(fileobj=inner, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            dirs = set()
            for i, size in enumerate(file_sizes(g.rnd, raw)):
                d = "%s/%02d" % (prefix, i // 16)
                parts = d.split("/")
                for j in range(1, len(parts) + 1):
                    p = "/".join(parts[:j])
                    if p not in dirs:
                        dirs.add(p)
                        ti = tarfile.TarInfo(p)
                        ti.type, ti.mode, ti.mtime, ti.uname, ti.gname = tarfile.DIRTYPE, 0o755, 0, "root", "root"
                        tar.addfile(ti)
                ti = tarfile.TarInfo("%s/f%04d" % (d, i))
                ti.size, ti.mode, ti.mtime, ti.uname, ti.gname = size, 0o644, 0, "root", "root"
                tar.addfile(ti, ChunkReader(g.chunks(size)))
        gz.close()
    digest = outer.h.hexdigest()
    os.replace(tmp, os.path.join(blobs, digest))
    return seed, "sha256:" + digest, outer.n, "sha256:" + inner.h.hexdigest()


def make_binary(job):
    """job: (path, seed, raw bytes). Writes the binary and its bare-hex .sha256."""
    path, seed, raw = job
    g = Gen(seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    h = hashlib.sha256()
    # A 64-bit little-endian ELF header prefix with the e_machine of the
    # binary's architecture (the directory it sits in), so the builder's
    # architecture check accepts it exactly as it would a real binary.
    machine = {"amd64": 62, "arm64": 183}[os.path.basename(os.path.dirname(path))]
    head = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8) + struct.pack("<HH", 2, machine)
    with open(path + ".tmp", "wb") as f:
        f.write(head)
        h.update(head)
        for c in g.chunks(raw - len(head)):
            h.update(c)
            f.write(c)
    os.chmod(path + ".tmp", 0o755)
    os.replace(path + ".tmp", path)
    with open(path + ".sha256", "w") as f:
        f.write(h.hexdigest() + "\n")
    return seed, path, raw


# ---------------------------------------------------------------- layout


def put_json(root, obj):
    data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(root, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def variant(ref, r):
    """The r-th copy of an image reference (r=0: itself)."""
    return ref if r == 0 else "%s-x%d" % (ref, r + 1)


def catalog_key(ref):
    name, tag = ref.rsplit(":", 1)
    return (name.split("/", 1)[1].replace("/", "-") + "-" + tag).replace(".", "-").replace("_", "-")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()

    root = os.path.join(a.out, "images")
    files = os.path.join(a.out, "files")
    os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(root, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)

    # Every layer and binary to make, keyed by its seed.
    layer_jobs = {}
    for arch in ARCHES:
        for base, mb in BASES.items():
            seed = "base/%s/%s" % (base, arch)
            layer_jobs[seed] = (root, seed, int(mb * MB), "usr/share/base-%s" % base)
    images = []  # (ref, arch, base seed or None, [layer seeds])
    for r in range(a.scale):
        for ref, base, own in IMAGES:
            vref = variant(ref, r)
            app = vref.rsplit("/", 1)[1].split(":")[0]
            for arch in ARCHES:
                seeds = []
                for i, mb in enumerate(own):
                    seed = "layer/%s/%s/%d" % (vref, arch, i)
                    layer_jobs[seed] = (root, seed, max(1000, int(mb * OWN * MB)), "opt/%s/l%d" % (app, i))
                    seeds.append(seed)
                images.append((vref, arch, base and "base/%s/%s" % (base, arch), seeds))
    bin_dir = os.path.join(files, "dl.k8s.io", "release", "v" + K8S, "bin", "linux")
    bin_jobs = []
    binaries = []
    for r in range(a.scale):
        for name, mb in BINARIES:
            vname = name if r == 0 else "%s-x%d" % (name, r + 1)
            binaries.append(vname)
            for arch in ARCHES:
                bin_jobs.append((os.path.join(bin_dir, arch, vname), "bin/%s/%s" % (vname, arch), mb * MB))

    # Largest first so the pool ends together.
    jobs = [(j[2], make_layer, j) for j in layer_jobs.values()] + [(j[2], make_binary, j) for j in bin_jobs]
    jobs.sort(key=lambda j: -j[0])
    layers = {}
    done = 0
    total = sum(j[0] for j in jobs)
    with multiprocessing.Pool(a.jobs) as pool:
        results = [pool.apply_async(fn, (job,)) for _, fn, job in jobs]
        for (size, fn, _), res in zip(jobs, results):
            out = res.get()
            if fn is make_layer:
                layers[out[0]] = {"digest": out[1], "size": out[2], "diff_id": out[3]}
            done += size
            print("mkfixture: %5.1f%% of %.1f GB raw" % (100.0 * done / total, total / 1e9), file=sys.stderr, flush=True)

    # Configs, manifests, an index per image, the layout's index.json.
    per_ref = {}
    for vref, arch, base, seeds in images:
        ls = ([base] if base else []) + seeds
        config = {
            "architecture": arch,
            "os": "linux",
            "created": "2024-06-01T00:00:00Z",
            "config": {"Entrypoint": ["/opt/%s" % vref.rsplit("/", 1)[1].split(":")[0]], "Env": ["PATH=/usr/bin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [layers[s]["diff_id"] for s in ls]},
        }
        cfg = dict(put_json(root, config), mediaType=MT_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": cfg,
            "layers": [{"mediaType": MT_LAYER, "digest": layers[s]["digest"], "size": layers[s]["size"]} for s in ls],
        }
        m = dict(put_json(root, manifest), mediaType=MT_MANIFEST, platform={"architecture": arch, "os": "linux"})
        per_ref.setdefault(vref, []).append(m)
    entries = []
    for vref, manifests in per_ref.items():
        idx = dict(put_json(root, {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests}), mediaType=MT_INDEX)
        idx["annotations"] = {"org.opencontainers.image.ref.name": vref}
        entries.append(idx)
    with open(os.path.join(root, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": entries}, f, indent=2, sort_keys=True)

    # Catalog, profile and lists for ferry and the anchor, for every scale s <= N:
    # scale s is the first s copies (the fixture of scale N contains that of scale s).
    for s in range(1, a.scale + 1):
        refs = [variant(ref, r) for r in range(s) for ref, _, _ in IMAGES]
        bins = binaries[: s * len(BINARIES)]
        cat = os.path.join(a.out, "catalog-s%d" % s)
        os.makedirs(cat, exist_ok=True)
        with open(os.path.join(cat, K8S + ".toml"), "w") as f:
            f.write("# Benchmark catalog written by bench/mkfixture.py (scale %d).\n" % s)
            f.write('kubernetes = "%s"\nplatforms = ["linux/amd64", "linux/arm64"]\n\n' % K8S)
            for b in bins:
                f.write('[[components]]\nname = "%s"\nversion = "%s"\nkind = "binary"\n' % (b, K8S))
                f.write('url = "https://dl.k8s.io/release/v{version}/bin/{os}/{arch}/%s"\n' % b)
                f.write('checksum_url = "{url}.sha256"\nchecksum_format = "bare"\n\n')
            f.write("[images]\n")
            for vref in refs:
                f.write('%s = "%s"\n' % (catalog_key(vref), vref))
        with open(os.path.join(cat, "bench.toml"), "w") as f:
            f.write('name = "bench"\ndescription = "benchmark fixture: every image of the bench catalog"\n')
            f.write('sandbox_image = "%s"\ncni = "cilium"\ncomponents = "all"\n\n' % catalog_key(IMAGES[0][0]))
            f.write('[[addons]]\nname = "everything"\nimages = [%s]\n' % ", ".join('"%s"' % catalog_key(v) for v in refs))
        with open(os.path.join(a.out, "images-s%d.txt" % s), "w") as f:
            f.write("".join(v + "\n" for v in refs))
        with open(os.path.join(a.out, "binaries-s%d.txt" % s), "w") as f:
            f.write("".join("dl.k8s.io/release/v%s/bin/linux/%s/%s\n" % (K8S, arch, b) for b in bins for arch in ARCHES))
    blob_bytes = sum(v["size"] for v in layers.values())
    bin_bytes = sum(j[2] for j in bin_jobs)
    print(
        "mkfixture: %d images, %d layers (%.2f GB), %d binaries (%.2f GB) in %s"
        % (len(per_ref), len(layers), blob_bytes / 1e9, len(bin_jobs), bin_bytes / 1e9, a.out),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Helpers for bench/run.sh.

  tools.py urls LAYOUT IMAGES_TXT OUTDIR    request lists for bench/pull.lua:
                                            OUTDIR/manifests.list (every index by tag,
                                            every platform manifest by digest),
                                            OUTDIR/blobs.list (every config and layer,
                                            per image, as a puller fetches them) and
                                            OUTDIR/large.list (every distinct layer of
                                            LARGE_MIN bytes or more, once)
  tools.py cpu PID                          CPU seconds (user + system) of PID and its
                                            descendants (nginx: master and workers)
  tools.py rss PID                          peak RSS (kB, VmHWM) of PID plus its descendants
  tools.py pids PID                         PID and its descendants, comma-separated (perf -p)
  tools.py sums BUNDLE_JSON OUT             sha256sum -c list of every file in bundle.json
  tools.py report RESULTS_TSV OUT_MD        the table (stdout) and bench/RESULTS.md
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import time

ACCEPT_INDEX = ",".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
# Layers this large or larger make the large-blob list: the fixture's 20-150 MB
# layers, the size class pulls spend their bytes on (a 48 MB layer is typical).
LARGE_MIN = 20 * 1000 * 1000
ACCEPT_MANIFEST = ",".join(["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"])


def blob(layout, digest):
    with open(os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1]), "rb") as f:
        return json.load(f)


def urls(layout, images_txt, outdir):
    with open(os.path.join(layout, "index.json")) as f:
        by_ref = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in json.load(f)["manifests"]}
    manifests, blobs, large, seen = [], [], [], set()
    for ref in open(images_txt).read().split():
        name, tag = ref.rsplit(":", 1)
        idx = by_ref[ref]
        manifests.append("%s /v2/%s/manifests/%s" % (ACCEPT_INDEX, name, tag))
        for m in blob(layout, idx["digest"])["manifests"]:
            manifests.append("%s /v2/%s/manifests/%s" % (ACCEPT_MANIFEST, name, m["digest"]))
            man = blob(layout, m["digest"])
            for d in [man["config"]] + man["layers"]:
                blobs.append("- /v2/%s/blobs/%s" % (name, d["digest"]))
                if d["size"] >= LARGE_MIN and d["digest"] not in seen:
                    seen.add(d["digest"])
                    large.append(("- /v2/%s/blobs/%s" % (name, d["digest"]), d["size"]))
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "manifests.list"), "w") as f:
        f.write("\n".join(manifests) + "\n")
    with open(os.path.join(outdir, "blobs.list"), "w") as f:
        f.write("\n".join(blobs) + "\n")
    with open(os.path.join(outdir, "large.list"), "w") as f:
        f.write("\n".join(u for u, _ in large) + "\n")
    sizes = sorted(n for _, n in large)
    print("Large blobs: every distinct layer of %d MB or more of the 1.5 GB images, %d layers of %.0f to %.0f MB "
          "(median %.0f MB, %.2f GB in all), walked round robin by wrk -t2 -c16 for every server." % (
              LARGE_MIN / 1e6, len(sizes), sizes[0] / 1e6, sizes[-1] / 1e6, statistics.median(sizes) / 1e6,
              sum(sizes) / 1e9))


def tree(pid):
    """PID and its descendants (live ones)."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = open("/proc/%s/stat" % d).read()
            except OSError:
                continue
            ppid = int(st[st.rindex(")") + 2:].split()[1])
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [int(pid)]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def cpu(pid):
    """utime + stime (+ reaped children's) of the process tree, in seconds."""
    ticks = 0
    for p in tree(pid):
        try:
            st = open("/proc/%d/stat" % p).read()
        except OSError:
            continue
        f = st[st.rindex(")") + 2:].split()
        ticks += sum(int(x) for x in f[11:15])  # utime stime cutime cstime
    print("%.2f" % (ticks / os.sysconf("SC_CLK_TCK")))


def rss(pid):
    kb = 0
    for p in tree(pid):
        try:
            for line in open("/proc/%d/status" % p):
                if line.startswith("VmHWM:"):
                    kb += int(line.split()[1])
        except OSError:
            pass
    print(kb)


def sums(bundle_json, out):
    with open(bundle_json) as f:
        files = json.load(f)["files"]
    with open(out, "w") as f:
        for e in files:
            if not e.get("in_base"):
                f.write("%s  %s\n" % (e["sha256"], e["path"]))


# ---------------------------------------------------------------- report

MIB = 1 << 20


def load(path):
    """results.tsv lines: KIND KEY FIELD=VALUE..."""
    runs = {}
    for line in open(path):
        parts = line.split()
        if len(parts) < 2:
            continue
        rec = dict(p.split("=", 1) for p in parts[2:])
        runs.setdefault((parts[0], parts[1]), []).append({k: float(v) for k, v in rec.items()})
    return runs


def med(xs):
    return statistics.median(xs) if xs else None


def spread(xs, fmt):
    if not xs:
        return "n/a"
    if len(xs) == 1:
        return fmt(xs[0])
    return "%s [%s–%s]" % (fmt(med(xs)), fmt(min(xs)), fmt(max(xs)))


def secs(x):
    return "%.1f s" % x


def mib(kb):
    return "%.0f MiB" % (kb / 1024.0)


def machine():
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return "?"

    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo")
    return [
        ("date", os.environ.get("BENCH_DATE") or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())),
        ("cpu", "%s, nproc %s" % (cpu, os.cpu_count())),
        ("memory", mem),
        ("kernel", platform.release()),
        ("os", sh(". /etc/os-release && echo $PRETTY_NAME")),
        ("load average at start / end", "%s / %s" % (os.environ.get("BENCH_LOAD_START", "?"),
                                                      os.environ.get("BENCH_LOAD_END") or sh("cut -d' ' -f1-3 /proc/loadavg"))),
        ("tools", sh("skopeo --version; zstd --version | cut -d, -f1 | tr -d '*'; wrk -v 2>&1 | head -1 | cut -d' ' -f1-2; "
                     "dpkg-query -W -f='docker-registry ${Version}\\n' docker-registry; dpkg-query -W -f='nginx-light ${Version}\\n' nginx-light; "
                     "openssl version | cut -d' ' -f1-2") .replace("\n", "; ")),
    ]


EARLIER = " *(earlier run)*"
EARLIER_NOTE = "Rows marked *(earlier run)* were not measured in this run"


def earlier(out_md):
    """The table rows of the RESULTS.md about to be replaced, by (benchmark, target),
    each with where it was measured: "prior" when that file had already carried
    it from an older run, "last" when that file's own run measured it; and a
    sentence for each of the two."""
    rows, when, load, note, cpu = {}, None, None, None, None
    if not os.path.exists(out_md):
        return rows, {}
    for line in open(out_md):
        if line.startswith("| ") and not line.startswith("| benchmark "):
            cells = [c.strip().replace("\\|", "|") for c in line.strip().strip("|").replace("\\|", "\0").split("|")]
            cells = [c.replace("\0", "|") for c in cells]
            if len(cells) == 8:
                name = cells[0].replace(EARLIER, "")
                source = "prior" if EARLIER in cells[0] else "last"
                rows.setdefault((name, cells[6]), []).append((source, cells))
        elif line.startswith(EARLIER_NOTE):
            note = line.strip()
        elif line.startswith("- date: "):
            when = line[len("- date: "):].strip()
        elif line.startswith("- cpu: "):
            cpu = line[len("- cpu: "):].strip()
        elif line.startswith("- load average at start / end: "):
            load = line[len("- load average at start / end: "):].strip()
    notes = {}
    if note:
        notes["prior"] = note[len(EARLIER_NOTE):].lstrip(";. ").rstrip(".").replace("they are from ", "", 1)
    if when:
        notes["last"] = "the run of %s on %s (load average at start / end %s)" % (when, cpu, load)
    return rows, notes


def report(path, out_md):
    r = load(path)
    T = lambda kind, key, f="s": [x[f] for x in r.get((kind, key), []) if f in x]  # noqa: E731
    rows = []
    old_rows, old_notes = earlier(out_md)
    carried = []

    def row(name, ferry, anchor, ratio, rss, target, ok, cpu="", have=True):
        if not have:
            # Not measured in this run (BENCH_ONLY): keep the earlier run's row, marked.
            old = old_rows.get((name, target))
            if old:
                source, cells = old.pop(0)
                rows.append(tuple([name + EARLIER] + cells[1:]))
                carried.append((source, name))
                return
        rows.append((name, ferry, anchor, "n/a" if ratio is None else "%.2fx" % ratio, rss, cpu, target,
                     "" if ok is None else ("PASS" if ok else "MISS")))

    def cpu(kind, a, b):
        fa, fb = T(kind, a, "cpu"), T(kind, b, "cpu")
        if not fa or not fb:
            return ""
        return "%.1f / %.1f s (%.2fx)" % (med(fa), med(fb), med(fa) / med(fb) if med(fb) else 0)

    def ratio(a, b):
        return None if a is None or not b else a / b

    fb, ab = T("build", "ferry"), T("build", "anchor")
    rb = ratio(med(fb), med(ab))
    row("build, cold cache (1.5 GB)", spread(fb, secs), spread(ab, secs) + " skopeo + curl + tar | zstd -T0", rb,
        "%s / %s" % (mib(max(T("build", "ferry", "rss") or [0])), mib(max(T("build", "anchor", "rss") or [0]))),
        "≤ 0.50x", None if rb is None else rb <= 0.5, cpu("build", "ferry", "anchor"), have=bool(fb))
    fs, as_ = T("size", "ferry", "bytes"), T("size", "anchor", "bytes")
    rs = ratio(med(fs), med(as_))
    row("build output size", "%.0f MB" % (med(fs) / 1e6) if fs else "n/a", "%.0f MB" % (med(as_) / 1e6) if as_ else "n/a",
        rs, "", "≤ 1.00x", None if rs is None else rs <= 1.0, have=bool(fs))
    fu, u1, u2 = T("unpack", "ferry"), T("unpack", "untar"), T("unpack", "untar+sha256sum")
    r1, r2 = ratio(med(fu), med(u1)), ratio(med(fu), med(u2))
    urss = "%s / %s" % (mib(max(T("unpack", "ferry", "rss") or [0])), mib(max(T("unpack", "untar", "rss") or [0])))
    row("unpack, signature + every hash", spread(fu, secs), spread(u1, secs) + " zstd -dc | tar -x", r1, urss,
        "≤ 1.10x", None if r1 is None else r1 <= 1.1, cpu("unpack", "ferry", "untar"), have=bool(fu))
    row("unpack, signature + every hash", spread(fu, secs), spread(u2, secs) + " + sha256sum -c", r2, urss,
        "≤ 0.50x", None if r2 is None else r2 <= 0.5, cpu("unpack", "ferry", "untar+sha256sum"), have=bool(fu))
    us = T("unpack", "untar+sync")
    row("unpack (info: anchor durable too)", spread(fu, secs), spread(us, secs) + " zstd -dc | tar -x; sync -f",
        ratio(med(fu), med(us)), urss, "", None, cpu("unpack", "ferry", "untar+sync"), have=bool(fu))

    def reg(server, kind, f):
        return [x[f] for x in r.get(("registry-" + kind, server), []) if f in x]

    mbps = lambda x: "%.0f MB/s" % x  # noqa: E731
    sgb = lambda x: "%.2f s/GB" % x  # noqa: E731

    def regrss(kind, a, b):
        return "%s / %s" % (mib(max(reg(a, kind, "rss") or [0])), mib(max(reg(b, kind, "rss") or [0])))

    def regcpu(kind, a, b, f="cpugb", unit="s/GB"):
        ca, cb = reg(a, kind, f), reg(b, kind, f)
        if not ca or not cb:
            return ""
        return "%.2f / %.2f %s (%.2fx)" % (med(ca), med(cb), unit, ratio(med(ca), med(cb)) or 0)

    fr, dr = reg("ferry", "blobs", "mbps"), reg("docker-registry", "blobs", "mbps")
    rr = ratio(med(fr), med(dr))
    row("registry blob throughput, 16 conns", spread(fr, mbps), spread(dr, mbps) + " docker-registry", rr,
        regrss("blobs", "ferry", "docker-registry"), "≥ 4.00x", None if rr is None else rr >= 4.0,
        regcpu("blobs", "ferry", "docker-registry"), have=bool(fr))
    # Large blobs, five servers: nginx is the limit anchor (sendfile on plain HTTP,
    # OpenSSL on TLS); CPU is the server's user + system seconds per GB served.
    for label, f, n, tt, tc, ok_t, ok_c in (
            ("plain HTTP", "ferry", "nginx", "≥ 1.00x", "≤ 1.50x", lambda x: x >= 1.0, lambda x: x <= 1.5),
            ("TLS 1.3", "ferry-tls", "nginx-tls", "> 1.00x", "< 1.00x", lambda x: x > 1.0, lambda x: x < 1.0)):
        lf, ln = reg(f, "large", "mbps"), reg(n, "large", "mbps")
        rt = ratio(med(lf), med(ln))
        row("registry large blobs, %s: throughput" % label, spread(lf, mbps), spread(ln, mbps) + " nginx", rt,
            regrss("large", f, n), tt, None if rt is None else ok_t(rt), regcpu("large", f, n), have=bool(lf))
        cf, cn = reg(f, "large", "cpugb"), reg(n, "large", "cpugb")
        rc = ratio(med(cf), med(cn))
        row("registry large blobs, %s: server CPU per GB" % label, spread(cf, sgb), spread(cn, sgb) + " nginx", rc,
            regrss("large", f, n), tc, None if rc is None else ok_c(rc), have=bool(cf))
    lf, ld = reg("ferry", "large", "mbps"), reg("docker-registry", "large", "mbps")
    row("registry large blobs, plain HTTP (info)", spread(lf, mbps), spread(ld, mbps) + " docker-registry",
        ratio(med(lf), med(ld)), regrss("large", "ferry", "docker-registry"), "", None,
        regcpu("large", "ferry", "docker-registry"), have=bool(lf))
    ms = lambda x: "%.1f ms" % x  # noqa: E731
    fp99, dp99 = reg("ferry", "manifests", "p99"), reg("docker-registry", "manifests", "p99")
    rp = ratio(med(fp99), med(dp99))
    row("registry manifest p99, 16 conns", spread(fp99, ms), spread(dp99, ms) + " docker-registry", rp, "",
        "≤ 0.25x", None if rp is None else rp <= 0.25, have=bool(fp99))
    fp50, dp50 = reg("ferry", "manifests", "p50"), reg("docker-registry", "manifests", "p50")
    row("registry manifest p50 (info)", spread(fp50, ms), spread(dp50, ms) + " docker-registry", ratio(med(fp50), med(dp50)),
        "", "", None, have=bool(fp50))
    fm, dm = reg("ferry", "manifests", "rps"), reg("docker-registry", "manifests", "rps")
    row("registry manifests/s (info)", spread(fm, lambda x: "%.0f/s" % x), spread(dm, lambda x: "%.0f/s" % x) + " docker-registry",
        ratio(med(fm), med(dm)), "", "", None, regcpu("manifests", "ferry", "docker-registry", "cpukreq", "s per 1000 requests"),
        have=bool(fm))
    errs = sum(sum(x.get("errors", 0) for x in v) for k, v in r.items() if k[0].startswith("registry-"))

    for what in ("build", "unpack"):
        small = T(what, "ferry", "rss")
        big = T(what + "-x3", "ferry", "rss")
        s, b = (max(small) if small else None), (max(big) if big else None)
        gr = ratio(b, s)
        ok = None if s is None or b is None else (s <= 256 * 1024 and b <= 256 * 1024 and gr <= 1.25)
        bt = T(what + "-x3", "ferry")
        row("peak RSS, %s: 4.5 GB vs 1.5 GB" % what, "%s (4.5 GB%s)" % (mib(b) if b else "n/a", ", " + secs(bt[0]) if bt else ""),
            "%s (1.5 GB)" % (mib(s) if s else "n/a"), gr, "", "≤ 256 MiB, ≤ 1.25x", ok, have=bool(big))

    # Install (bench/install.sh): the deploy host's ferry against a target in
    # seconds, or against itself (no-op vs --verify-hosts, 20 hosts vs 5).
    def inst(kind, key):
        xs = T(kind, key)
        if not xs:
            return xs, "", ""
        c, b = T(kind, key, "cpu"), T(kind, key, "busy")
        use = "ferry %.1f s CPU, machine %.0f%% busy" % (med(c), med(b)) if c and b else ""
        return xs, use, mib(max(T(kind, key, "rss") or [0]))

    full, fload, frss = inst("install-full", "7")
    row("install, 7 bare hosts, OS packages from the bundle", spread(full, secs), "", None, frss, "≤ 60 s",
        None if not full else med(full) <= 60, fload, have=bool(full))
    noop, nload, nrss = inst("install-noop", "7")
    ver, _, _ = inst("install-verify", "7")
    rn = ratio(med(noop), med(ver))
    row("install, 7 hosts, no-op re-run", spread(noop, secs), spread(ver, secs) + " the same with --verify-hosts",
        rn, nrss, "≤ 5 s", None if not noop else med(noop) <= 5, nload, have=bool(noop))
    f5, _, _ = inst("fanout", "5")
    for n in (10, 20):
        fn, use, rss = inst("fanout", str(n))
        rf = ratio(med(fn), med(f5))
        row("fan-out: install to %d bare hosts" % n, spread(fn, secs), spread(f5, secs) + " 5 hosts", rf, rss,
            "≤ 1.50x" if n == 20 else "", (None if rf is None else rf <= 1.5) if n == 20 else None, use, have=bool(fn))

    head = ("benchmark", "ferry", "anchor", "ratio", "RSS ferry / anchor", "CPU ferry / anchor", "target", "result")
    widths = [max(len(str(x[i])) for x in rows + [head]) for i in range(len(head))]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    print(line(head))
    print(line(["-" * w for w in widths]))
    for x in rows:
        print(line(x))

    # The five servers on the large blobs, side by side.
    servers = [("ferry", "ferry, plain HTTP (sendfile)"), ("ferry-tls", "ferry, TLS 1.3 (rustls)"),
               ("docker-registry", "docker-registry, plain HTTP"), ("nginx", "nginx, plain HTTP (sendfile)"),
               ("nginx-tls", "nginx, TLS 1.3 (OpenSSL)")]
    head5 = ("server", "throughput", "server CPU per GB", "server CPU per run", "peak RSS", "wrk CPU per GB")
    rows5 = []
    for key, label in servers:
        if not reg(key, "large", "mbps"):
            continue
        rows5.append((label, spread(reg(key, "large", "mbps"), mbps), spread(reg(key, "large", "cpugb"), sgb),
                      spread(reg(key, "large", "cpu"), secs), mib(max(reg(key, "large", "rss") or [0])),
                      spread(reg(key, "large", "wrkcpugb"), sgb)))
    if rows5:
        print()
        widths = [max(len(str(x[i])) for x in rows5 + [head5]) for i in range(len(head5))]
        print(line(head5))
        for x in rows5:
            print(line(x))
    if errs:
        print("WARNING: %d failed registry requests (see the run log)" % errs)

    md = ["# ferry benchmarks", "",
          "Written by `make bench` (bench/run.sh); medians of %s runs with [min–max], ratios against the anchor "
          "measured in the same run, side by side. RSS is peak resident memory (`/usr/bin/time -v`; servers: VmHWM). "
          "CPU is user + system seconds of the command and its children (median), for reading the wall-clock "
          "ratios on a loaded machine; for the servers it is the server process's (nginx: master and workers) "
          "user + system seconds during the wrk run (/proc/PID/stat before and after) divided by the GB served."
          % os.environ.get("BENCH_RUNS", "3"), "",
          "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(str(c).replace("|", "\\|") for c in x) + " |" for x in rows]
    if carried:
        parts = []
        for source in ("last", "prior"):
            names = [n for s_, n in carried if s_ == source]
            if names and source in old_notes:
                parts.append("%s: %s" % ("; ".join(names), old_notes[source]))
        md += ["", "%s. They come from %s." % (EARLIER_NOTE, " — and ".join(parts))]
    if errs:
        md += ["", "**%d registry requests failed** during the load runs (see the run log)." % errs]
    if rows5:
        md += ["", "## Registry: large blobs, five servers", "",
               os.environ.get("BENCH_LARGE_INFO", ""), "",
               "| " + " | ".join(head5) + " |", "|" + "---|" * len(head5)]
        md += ["| " + " | ".join(x) + " |" for x in rows5]
        tls = os.environ.get("BENCH_TLS_INFO")
        if tls:
            md += ["", tls]
    md += ["", "## Machine", ""] + ["- %s: %s" % kv for kv in machine()]
    fx = os.environ.get("BENCH_FIXTURE_INFO")
    if fx:
        md += ["", "## Fixture", "", fx]
    notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "NOTES.md")
    if os.path.exists(notes):
        md += ["", open(notes).read().strip()]
    with open(out_md, "w") as f:
        f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "urls" and len(sys.argv) == 5:
        urls(*sys.argv[2:])
    elif cmd in ("cpu", "rss") and len(sys.argv) == 3:
        {"cpu": cpu, "rss": rss}[cmd](sys.argv[2])
    elif cmd == "pids" and len(sys.argv) == 3:
        print(",".join(str(p) for p in tree(sys.argv[2])))
    elif cmd == "sums" and len(sys.argv) == 4:
        sums(*sys.argv[2:])
    elif cmd == "report" and len(sys.argv) == 4:
        report(*sys.argv[2:])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)

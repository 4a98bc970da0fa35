#!/usr/bin/env python3
"""Turns criterion's results (target/criterion/**/new/estimates.json) into the tables
and SVG bar charts of docs/benchmarks.md. Standard library only.

    cargo bench -p dynadax --bench switch --bench ops_lock
    python3 scripts/bench-report.py          # prints Markdown tables, writes docs/img/*.svg
"""
import json
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from svgbars import bars_svg  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRIT = ROOT / "target" / "criterion"
IMG = ROOT / "docs" / "img"


def median_ns(*parts):
    p = CRIT.joinpath(*parts, "new", "estimates.json")
    if not p.exists():
        return None
    return json.loads(p.read_text())["median"]["point_estimate"]


def main():
    if not CRIT.exists():
        print("no criterion results (run cargo bench -p dynadax): switch and ops_lock skipped", file=sys.stderr)
        return
    IMG.mkdir(parents=True, exist_ok=True)
    sizes = ["1MiB", "64MiB", "1GiB"]
    print("### Switch time (median, µs)\n")
    print("| file system | case | 1 MiB | 64 MiB | 1 GiB | 1 GiB / 1 MiB |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    sw = {}
    for fs in ["work-fs", "tmpfs"]:
        for case in ["fresh", "populated", "range-tail-mapped"]:
            v = [median_ns(f"switch_{fs}", case, s) for s in sizes]
            if None in v:
                continue
            us = [x / 1e3 for x in v]
            for s, u in zip(sizes, us):
                sw[(s, f"{fs} {case}")] = u
            print(f"| {fs} | {case} | {us[0]:.1f} | {us[1]:.1f} | {us[2]:.1f} | {v[2]/v[0]:.2f} |")
    if sw:
        bars_svg(IMG / "switch.svg", "Mode switch time vs file size (median)", "µs", sizes,
                 [f"{fs} {case}" for fs in ["work-fs", "tmpfs"] for case in ["fresh", "populated", "range-tail-mapped"]
                  if (sizes[0], f"{fs} {case}") in sw], sw, log=True)
    print("\n### 4 KiB reads (median ns per read, per thread)\n")
    print("| threads | mode | raw baseline | dynadax, lock compiled out | dynadax | lock cost | whole overhead vs raw |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    rd = {}
    for t in [1, 2]:
        for mode, base in [("cached", "unlocked-pread"), ("direct", "unlocked-memcpy")]:
            g = f"read4k_{t}-thread"
            b = median_ns(g, f"{mode}_{base}", str(t))
            n = median_ns(g, f"{mode}_dynadax-no-lock", str(t))
            d = median_ns(g, f"{mode}_dynadax", str(t))
            if None in (b, n, d):
                continue
            label = f"{mode}, {t} thread{'s' if t > 1 else ''}"
            rd[(label, "raw " + base.split("-")[1])] = b
            rd[(label, "dynadax, no lock")] = n
            rd[(label, "dynadax")] = d
            print(f"| {t} | {mode} | {b:.1f} ({base.split('-')[1]}) | {n:.1f} | {d:.1f} | {100*(d-n)/n:+.1f} % | {100*(d-b)/b:+.1f} % |")
    if rd:
        groups, series = [], ["raw", "dynadax, no lock", "dynadax"]
        vals = {}
        for (g, s), v in rd.items():
            if g not in groups:
                groups.append(g)
            vals[(g, "raw" if s.startswith("raw") else s)] = v
        bars_svg(IMG / "ops_lock.svg", "4 KiB read, cache-resident file (median per read)", "ns per read",
                 groups, series, vals, log=True)


def log_bench():
    """Seal vs copy, reads and recovery from `dynadax log bench --json` outputs."""
    files = {"tmpfs": ROOT / "bench/results/log-bench-tmpfs-forced-flush.jsonl", "ext4": ROOT / "bench/results/log-bench-ext4.jsonl"}
    rows = {}
    for fs, p in files.items():
        if p.exists():
            for line in p.read_text().splitlines():
                r = json.loads(line)
                rows[(fs, r["bench"], r["case"])] = r
    if not rows:
        return
    sizes = ["1MiB", "64MiB", "1GiB"]
    print("\n### Log: sealing vs copying, reads, recovery (dynadax log bench)\n")
    print("| file system | segment | seal (µs) | copy + fsync (µs) | copy / seal | seq read (GB/s) | random reads/s | recovery scan (GB/s) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    vals = {}
    for fs in files:
        for sz in sizes:
            g = lambda b: rows.get((fs, b, sz), {}).get("value")
            seal, copy = g("seal"), g("seal-by-copy")
            if seal is None:
                continue
            vals[(sz, f"{fs} seal")] = seal
            vals[(sz, f"{fs} copy")] = copy
            print(f"| {fs} | {sz} | {seal:.0f} | {copy:.0f} | {copy/seal:.0f}x | {g('read-seq'):.2f} | {g('read-random'):.0f} | {g('recover'):.2f} |")
    bars_svg(IMG / "seal.svg", "Sealing a full segment vs copying it out (median of 3)", "µs", sizes,
             ["tmpfs seal", "tmpfs copy", "ext4 seal", "ext4 copy"], vals, log=True)
    print("\n### Log appends (dynadax log bench)\n")
    print("| file system | case | appends/s |")
    print("| --- | --- | ---: |")
    for (fs, b, case), r in rows.items():
        if b == "append":
            print(f"| {fs} | {case} | {r['value']:.0f} |")


def layout_bench():
    """The two log layouts side by side, from `dynadax log bench --layout L --json`."""
    rows = {}
    for fs in ["tmpfs-forced-flush", "ext4"]:
        for layout in ["files", "single-file"]:
            p = ROOT / f"bench/results/log-bench-layout-{fs}-{layout}.jsonl"
            if p.exists():
                for line in p.read_text().splitlines():
                    r = json.loads(line)
                    rows[(fs, layout, r["bench"], r["case"])] = r["value"]
    if not rows:
        return
    print("\n### Log layouts: appends per second (dynadax log bench --layout)\n")
    print("| file system | case | files | single-file | single-file / files |")
    print("| --- | --- | ---: | ---: | ---: |")
    def order(c):  # "256b group x8": by size, then durability, then writers
        size, durability, writers = c.split()
        return int(size[:-1]), durability, int(writers[1:])
    cases = sorted({c for (_, _, b, c) in rows if b == "append"}, key=order)
    for fs in ["tmpfs-forced-flush", "ext4"]:
        for c in cases:
            f, s1 = rows.get((fs, "files", "append", c)), rows.get((fs, "single-file", "append", c))
            if f and s1:
                print(f"| {fs} | {c} | {f:.0f} | {s1:.0f} | {s1 / f:.2f} |")
    sizes = ["1MiB", "64MiB", "1GiB"]
    print("\n### Log layouts: seal time and sealed reads\n")
    print("| file system | layout | seal 1MiB (µs) | seal 64MiB | seal 1GiB | 1GiB / 1MiB | seq read 1GiB (GB/s) | second pass (GB/s) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    vals = {}
    for fs in ["tmpfs-forced-flush", "ext4"]:
        for layout in ["files", "single-file"]:
            seal = [rows.get((fs, layout, "seal", sz)) for sz in sizes]
            if None in seal:
                continue
            for sz, v in zip(sizes, seal):
                vals[(sz, f"{fs} {layout}")] = v
            warm = rows.get((fs, layout, "read-seq-warm", "1GiB"))
            print(f"| {fs} | {layout} | {seal[0]:.0f} | {seal[1]:.0f} | {seal[2]:.0f} | {seal[2] / seal[0]:.2f} | "
                  f"{rows.get((fs, layout, 'read-seq', '1GiB')):.2f} | {'-' if warm is None else f'{warm:.2f}'} |")
    bars_svg(IMG / "layout-seal.svg", "Seal time vs segment size, both layouts (median of 3)", "µs", sizes,
             [f"{fs} {l}" for fs in ["tmpfs-forced-flush", "ext4"] for l in ["files", "single-file"]], vals)


def java_bench():
    """The Java binding against the same loops in Rust, from `bash scripts/java-bench
    --out bench/results/java-bench.jsonl` (rounds alternate Rust and Java)."""
    p = ROOT / "bench/results/java-bench.jsonl"
    if not p.exists():
        return
    runs = {}
    for line in p.read_text().splitlines():
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        key = (r["bench"], r["impl"], r["api"], r["record"], r["threads"], r.get("fs", ""))
        runs.setdefault(key, []).append(r)
    med = lambda rs, f: statistics.median(x[f] for x in rs)
    def get(bench, impl, api, record, threads, fs=None, field="ops_per_s"):
        for (b, i, a, rec, t, f), rs in runs.items():
            if (b, i, a, rec, t) == (bench, impl, api, record, threads) and (fs is None or f == fs):
                return med(rs, field), len(rs)
        return None, 0
    rel = {}
    print("\n### Java binding: appends persisted each (tmpfs, forced cache-line flush)\n")
    print("| record | Rust ns/append | Java byte[] ns | Java direct ns | byte[] cost | direct cost |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    n = 0
    for rec in [256, 4096]:
        # The three ways ran in turns on one log in one JVM (JavaBench append): each run's
        # Java figures are paired with its own Rust figure, and the median taken of the
        # per-run costs.
        by = lambda i, a: [x["ns_per_op"] for x in runs.get(("append", i, a, rec, 1, "") , [])]
        rust, arr, dirc = by("rust", "&[u8]"), by("dynadax-java", "byte[]"), by("dynadax-java", "direct")
        if not (rust and len(rust) == len(arr) == len(dirc)):
            continue
        n = len(rust)
        ca = statistics.median(j / r - 1 for j, r in zip(arr, rust))
        cd = statistics.median(j / r - 1 for j, r in zip(dirc, rust))
        print(f"| {rec} B | {statistics.median(rust):.0f} | {statistics.median(arr):.0f} | "
              f"{statistics.median(dirc):.0f} | {ca * 100:+.1f} % | {cd * 100:+.1f} % |")
        rel[(f"append {rec} B", "Java byte[]")] = 100 / (1 + ca)
        rel[(f"append {rec} B", "Java direct ByteBuffer")] = 100 / (1 + cd)
    print(f"\n{n} runs; each run's three loops took turns of 100 ms on one log in one JVM; cost = the "
          "median over runs of Java's time per append over the same run's Rust time.")
    cr, _ = get("crossing", "rust", "&[u8]", 0, 1, field="ns_per_op")
    cj, _ = get("crossing", "dynadax-java", "nextLsn", 0, 1, field="ns_per_op")
    nr, _ = get("append-none", "rust", "&[u8]", 256, 1, field="ns_per_op")
    na, _ = get("append-none", "dynadax-java", "byte[]", 256, 1, field="ns_per_op")
    nd, _ = get("append-none", "dynadax-java", "direct", 256, 1, field="ns_per_op")
    if None not in (cr, cj, nr, na, nd):
        print("\n### Java binding: the crossing itself (tmpfs)\n")
        print("| call | Rust ns | Java ns | Java - Rust |")
        print("| --- | ---: | ---: | ---: |")
        print(f"| `nextLsn()` (an atomic load) | {cr:.1f} | {cj:.1f} | {cj - cr:+.1f} |")
        print(f"| 256 B append, not persisted, byte[] | {nr:.0f} | {na:.0f} | {na - nr:+.0f} |")
        print(f"| 256 B append, not persisted, direct buffer | {nr:.0f} | {nd:.0f} | {nd - nr:+.0f} |")
    print("\n### Java binding: durable appends on ext4, 256 B\n")
    print("| threads | dynadax from Java (group commit) | JDK FileChannel.write + force | ratio | dynadax from Rust |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for t in sorted({k[4] for k in runs if k[0] == "durable"}):
        j, _ = get("durable", "dynadax-java-group", "byte[]", 256, t)
        fc, _ = get("durable", "jdk-filechannel-force", "direct", 256, t)
        r, _ = get("durable", "rust", "&[u8]", 256, t)
        if None in (j, fc, r):
            continue
        print(f"| {t} | {j:.0f}/s | {fc:.0f}/s | {j / fc:.2f}x | {r:.0f}/s |")
        rel[(f"durable x{t}", "Java byte[]")] = j / r * 100
    print("\n### Java binding: iterating a sealed 256 MiB segment of 4,000 B records\n")
    print("| file system | Rust GB/s | Java GB/s | Java / Rust |")
    print("| --- | ---: | ---: | ---: |")
    for fs in sorted({k[5] for k in runs if k[0] == "iterate"}):
        r, _ = get("iterate", "rust", "&[u8]", 4000, 1, fs, field="mb_per_s")
        j, _ = get("iterate", "dynadax-java", "iterator", 4000, 1, fs, field="mb_per_s")
        if None in (r, j):
            continue
        print(f"| {fs} | {r / 1000:.2f} | {j / 1000:.2f} | {j / r:.2f} |")
        rel[(f"iterate {fs}", "Java byte[]")] = j / r * 100
    if rel:
        groups = list(dict.fromkeys(g for g, _ in rel))
        bars_svg(IMG / "java-vs-rust.svg", "The Java binding's throughput, Rust = 100 (medians, one run)", "%",
                 groups, ["Java byte[]", "Java direct ByteBuffer"], rel)


def reads_bench():
    """Sequential and random reads per method, beside the bare loops, from
    `dynadax log bench --json` runs in bench/results/log-bench-reads-{fs}-{record}.jsonl."""
    runs = {}
    for fs in ["shm", "ext4"]:
        for rec in ["4000", "256"]:
            p = ROOT / f"bench/results/log-bench-reads-{fs}-{rec}.jsonl"
            if p.exists():
                runs[(fs, rec)] = {json.loads(l)["bench"]: json.loads(l) for l in p.read_text().splitlines() if l}
    if not runs:
        return
    seq = [("read-seq", "Log::range (copy)"), ("read-seq-zero-copy", "cursor, cold"),
           ("read-seq-zero-copy-warm", "cursor, warm"), ("bare-pread-crc", "bare pread + CRC"),
           ("bare-mmap-crc", "bare CRC in place")]
    print("\n### Reads of a sealed segment, per method (GB/s; dynadax log bench)\n")
    print("| fs | record | " + " | ".join(n for _, n in seq) + " | 2 readers | bare, 2 threads |")
    print("| --- | ---: |" + " ---: |" * (len(seq) + 2))
    vals = {}
    for (fs, rec), r in runs.items():
        v = lambda b: r.get(b, {}).get("value")
        cells = [v(b) for b, _ in seq] + [v("read-seq-zero-copy-2-readers"), v("bare-mmap-crc-2-threads")]
        print(f"| {fs} | {rec} B | " + " | ".join("-" if c is None else f"{c:.2f}" for c in cells) + " |")
        for (b, n) in seq:
            if v(b):
                vals[(f"{fs} {rec} B", n)] = v(b)
    bars_svg(IMG / "reads.svg", "Sequential reads of a sealed 256 MiB segment, CRC checked (one run each)", "GB/s",
             list(dict.fromkeys(g for g, _ in vals)), [n for _, n in seq], vals)
    print("\n### Random reads (reads/s)\n")
    print("| fs | record | Log::read (copy) | read_with (zero-copy) | bare random pread | bare random CRC in place |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for (fs, rec), r in runs.items():
        v = lambda b: r.get(b, {}).get("value")
        cells = [v(b) for b in ["read-random", "read-random-zero-copy", "bare-pread-random", "bare-mmap-random-crc"]]
        print(f"| {fs} | {rec} B | " + " | ".join("-" if c is None else f"{c/1e3:.0f} k" for c in cells) + " |")


if __name__ == "__main__":
    main()
    log_bench()
    layout_bench()
    java_bench()
    reads_bench()

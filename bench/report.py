#!/usr/bin/env python3
"""Turns bench/results/log-compare.jsonl (and diag.jsonl, if present) into Markdown
tables and SVG bar charts. Standard library only.

    python3 bench/report.py            # prints Markdown, writes bench/results/*.svg and log-compare.md
"""
import json
import math
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "scripts"))
from svgbars import COLORS, bars_svg, fmt_ops  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
RES = HERE / "results"

# The baseline each benchmark's ratios are taken against.
BASELINE = {"append-pmem": "libpmemlog", "append-durable": "fsync-each", "append-pipelined": "fsync-each"}
ORDER = ["dynadax", "libpmemlog", "libpmemlog-prefault", "raw-nt-crc-fresh", "raw-nt", "fsync-each", "raft-engine", "okaywal", "odirect"]
# What the floor of a persisted-each append is, in the pmem runs: the same frames
# stored non-temporally by a bare loop (see bench/README.md).
FLOOR = "raw-nt-crc-fresh"
# Columns of the median rep shown per benchmark, beyond appends/s: (field, heading, format).
EXTRA = {
    "append-durable": [("p50_us", "p50 µs", "{:.0f}"), ("p99_us", "p99 µs", "{:.0f}"), ("appends_per_flush", "appends per fdatasync", "{:.2f}")],
    "append-pipelined": [("mb_per_sec", "MB/s", "{:.1f}"), ("appends_per_flush", "appends per fdatasync", "{:.0f}")],
}
def load(path):
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def workload(r):
    return (r["bench"], r["fs"], r["record"], r["writers"])


def wl_label(w):
    bench, fs, record, writers = w
    return f"{record} B, {writers} writer{'s' if writers > 1 else ''}"


def order_key(name):
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)


def collect(rows):
    """{workload: {impl: {"median", "reps": [...], "ok", "tried", "persist"}}} from the
    per-rep lines (the median is recomputed, so a partial file still reports)."""
    by = {}
    errors = {}
    redone = {}
    for r in rows:
        key = (workload(r), r["impl"])
        if r.get("stat") == "rep":
            by.setdefault(key, []).append(r)
        elif r.get("stat") == "error":
            errors[key] = errors.get(key, 0) + 1
        elif r.get("stat") == "disturbed":
            redone[key] = redone.get(key, 0) + 1
    out = {}
    for (w, imp), reps in by.items():
        vals = [x["ops_per_sec"] for x in reps]
        mid = sorted(reps, key=lambda x: x["ops_per_sec"])[(len(reps) - 1) // 2]
        out.setdefault(w, {})[imp] = {
            "median": statistics.median_low(vals) if len(vals) % 2 == 0 else statistics.median(vals),
            "reps": vals,
            "ok": len(vals),
            "failed": errors.get((w, imp), 0),
            "redone": redone.get((w, imp), 0),
            "persist": reps[0].get("persist", ""),
            "others": max((x.get("others_cpu_pct") or 0) for x in reps),
            "latency": next((x["latency_writer0"] for x in reps if "latency_writer0" in x), None),
            "mid": mid,
        }
    for (w, imp), n in errors.items():
        if imp not in out.get(w, {}):
            out.setdefault(w, {})[imp] = {"median": None, "reps": [], "ok": 0, "failed": n, "persist": "", "latency": None, "others": 0, "redone": 0}
    return out



def main_tables(res, lines):
    benches = sorted({w[0] for w in res}, key=lambda b: list(BASELINE).index(b) if b in BASELINE else 9)
    for bench in benches:
        base = BASELINE.get(bench)
        wls = sorted([w for w in res if w[0] == bench], key=lambda w: (w[2], w[3]))
        fs = ", ".join(sorted({w[1] for w in wls}))
        extra = EXTRA.get(bench, [])
        lines.append(f"### {bench} ({fs}): median appends/s, ratio vs {base}\n")
        if extra:
            lines.append("Extra columns are those of the median rep.\n")
        lines.append("| workload | implementation | median appends/s | min .. max of reps | vs " + base
                     + "".join(f" | {h}" for _, h, _ in extra) + " | reps ok | others' CPU, max |")
        lines.append("| --- | --- | ---: | ---: | ---:" + " | ---:" * len(extra) + " | ---: | ---: |")
        groups, series, values, ranges = [], [], {}, {}
        for w in wls:
            g = wl_label(w)
            groups.append(g)
            b = res[w].get(base, {}).get("median")
            for imp in sorted(res[w], key=order_key):
                r = res[w][imp]
                m = r["median"]
                ratio = f"{m / b:.2f}x" if m and b else "-"
                span = f"{fmt_ops(min(r['reps']))} .. {fmt_ops(max(r['reps']))}" if r["reps"] else "-"
                redone = f" ({r['redone']} redone)" if r["redone"] else ""
                mid = r.get("mid") or {}
                cells = "".join(" | " + (f.format(mid[k]) if mid.get(k) is not None else "-") for k, _, f in extra)
                lines.append(f"| {g} | {imp} | {fmt_ops(m)} | {span} | {ratio}{cells} | {r['ok']}/{r['ok'] + r['failed']}{redone} | {r['others']:.0f} % |")
                if imp not in series:
                    series.append(imp)
                if m:
                    values[(g, imp)] = m
                    ranges[(g, imp)] = (min(r["reps"]), max(r["reps"]))
        lines.append("")
        series.sort(key=order_key)
        if bench == "append-pmem":
            title = "Appends/s, each persisted before the next, tmpfs (median, bars = min..max)"
            note = "1 appender; dynadax Durability::Each + DYNADAX_FORCE_CACHE_FLUSH=1; libpmemlog PMEM_IS_PMEM_FORCE=1"
        elif bench == "append-pipelined":
            title = f"Appends/s made durable, 1 writer, pipelined, {fs} (median, bars = min..max)"
            note = "dynadax Log::append_nowait, up to 65,536 in flight; fsync-each and O_DIRECT writes for scale"
        else:
            title = f"Durable appends/s, 256 B records, {fs} (median, bars = min..max)"
            note = "each append durable before it returns; dynadax Durability::Group"
        bars_svg(RES / f"{bench}.svg", title, "appends/s", groups, series, values, ranges, log=False, note=note)
        # How dynadax compares.
        for w in wls:
            d = res[w].get("dynadax", {}).get("median")
            # Peers a user would pick instead; the bare loops and O_DIRECT writes are floors.
            others = [(imp, r["median"]) for imp, r in res[w].items()
                      if imp != "dynadax" and r["median"] and not imp.startswith("raw-") and imp != "odirect"]
            if d and others:
                best = max(others, key=lambda t: t[1])
                lines.append(
                    f"- {wl_label(w)}: dynadax {fmt_ops(d)}/s = {d / res[w][base]['median']:.2f}x {base}"
                    if res[w].get(base, {}).get("median") else f"- {wl_label(w)}: dynadax {fmt_ops(d)}/s"
                )
                lines[-1] += f"; best other: {best[0]} {fmt_ops(best[1])}/s ({d / best[1]:.2f}x)"
                floor = res[w].get(FLOOR, {}).get("median")
                if bench == "append-pmem" and floor:
                    lines[-1] += f"; {d / floor * 100:.0f} % of {FLOOR} ({1e9 / d:.0f} ns vs {1e9 / floor:.0f} ns)"
        lines.append("")


def diag_tables(diag, lines):
    if not diag:
        return
    lines.append("### Where the time of a flushed append goes (diagnostics, tmpfs, 1 appender)\n")
    lines.append("ns per append = 1e9 / median appends/s. `+lat` runs time every append (adds ~40 ns each).\n")
    wls = sorted(diag, key=lambda w: (w[2], w[3]))
    imps = []
    for w in wls:
        for imp in diag[w]:
            if imp not in imps and not imp.endswith("+lat"):
                imps.append(imp)
    lines.append("| implementation | " + " | ".join(f"{w[2]} B: appends/s | ns/append" for w in wls) + " |")
    lines.append("| --- | " + " | ".join("---: | ---:" for _ in wls) + " |")
    for imp in imps:
        cells = []
        for w in wls:
            m = diag[w].get(imp, {}).get("median")
            cells.append(f"{fmt_ops(m)} | {1e9 / m:.0f}" if m else "- | -")
        lines.append(f"| {imp} | " + " | ".join(cells) + " |")
    lines.append("")
    lat = [(w, imp, r) for w in wls for imp, r in diag[w].items() if imp.endswith("+lat") and r.get("latency")]
    if lat:
        buckets = [b["bucket"] for b in lat[0][2]["latency"]]
        lines.append("Appends by latency (median-throughput rep, writer 0): count / total ms in each bucket\n")
        lines.append("| record | implementation | " + " | ".join(buckets) + " |")
        lines.append("| ---: | --- | " + " | ".join("---:" for _ in buckets) + " |")
        for w, imp, r in lat:
            cells = [f"{b['appends']} / {b['ms']:.0f}" if b["appends"] else "-" for b in r["latency"]]
            lines.append(f"| {w[2]} B | {imp.removesuffix('+lat')} | " + " | ".join(cells) + " |")
        lines.append("")


def main():
    rows = load(RES / "log-compare.jsonl")
    diag_rows = load(RES / "diag.jsonl")
    if not rows and not diag_rows:
        raise SystemExit("no results: run bench/run.sh first")
    RES.mkdir(parents=True, exist_ok=True)
    lines = []
    res = collect(rows)
    main_tables(res, lines)
    diag = collect(diag_rows)
    # The latency histograms: keep the median rep's (collect keeps the first); redo here.
    for w in diag:
        for imp, r in diag[w].items():
            if imp.endswith("+lat"):
                reps = [x for x in diag_rows if workload(x) == w and x["impl"] == imp and x.get("stat") == "rep"]
                if reps:
                    reps.sort(key=lambda x: x["ops_per_sec"])
                    r["latency"] = reps[len(reps) // 2].get("latency_writer0")
    diag_tables(diag, lines)
    text = "\n".join(lines)
    (RES / "log-compare.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

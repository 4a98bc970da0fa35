"""Report of bench/service.sh: the median rep of each (implementation, clients), as
"median" lines appended to bench/results/service.jsonl (earlier median lines are
replaced), a Markdown table (bench/results/service.md) and a bar chart
(docs/img/service.svg). Standard library only."""
import json
import pathlib
import statistics
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "scripts"))
from svgbars import bars_svg, fmt_ops  # noqa: E402

RES = HERE / "results"
IMG = HERE.parent / "docs" / "img"
ORDER = ["dynadax", "etcd", "dynadax-memory"]


def main(path):
    path = pathlib.Path(path)
    lines = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    lines = [r for r in lines if r.get("stat") != "median"]
    runs = [r for r in lines if r.get("stat") == "rep"]
    errors = [r for r in lines if r.get("stat") == "error"]
    by = {}
    for r in runs:
        by.setdefault((r["impl"], r["clients"]), []).append(r)
    clients = sorted({c for (_, c) in by} | {r["clients"] for r in errors})
    impls = [i for i in ORDER if any((i, c) in by for c in clients)]
    medians = []
    rows = ["| clients | implementation | committed appends/s (median) | slowest..fastest | p50 µs | p99 µs "
            "| vs etcd | reps | leader CPU µs/append | follower CPU µs/append | client CPU µs/append | others' CPU, max |",
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    values, ranges = {}, {}
    for c in clients:
        med = {}
        for i in impls:
            rs = by.get((i, c))
            if rs:
                med[i] = statistics.median(r["ops_per_sec"] for r in rs)
        for i in impls:
            rs = by.get((i, c))
            nerr = sum(1 for r in errors if r["impl"] == i and r["clients"] == c)
            if not rs:
                rows.append(f"| {c} | {i} | failed | | | | | 0/{nerr} | | | | |")
                continue
            ops = sorted(r["ops_per_sec"] for r in rs)
            m = med[i]
            mid = min(rs, key=lambda r: abs(r["ops_per_sec"] - m))
            vs = f"{m / med['etcd']:.2f}x" if "etcd" in med else "-"
            g = f"{c} client{'s' if c > 1 else ''}"
            values[(g, i)] = m
            ranges[(g, i)] = (ops[0], ops[-1])
            others = max(r.get("others_cpu_pct", 0) for r in rs)
            rows.append(f"| {c} | {i} | {fmt_ops(m)} | {fmt_ops(ops[0])}..{fmt_ops(ops[-1])} | {mid['p50_us']:.0f} | "
                        f"{mid['p99_us']:.0f} | {vs} | {len(rs)}/{len(rs) + nerr} | {mid.get('leader_cpu_us_per_op', 0):.0f} | "
                        f"{mid.get('follower_cpu_us_per_op', 0):.0f} | {mid.get('client_cpu_us_per_op', 0):.0f} | {others:.0f} % |")
            med_line = {k: mid[k] for k in mid if k not in ("stat", "rep", "check")}
            med_line.update({"stat": "median", "ops_per_sec": m, "reps": len(rs), "min_ops_per_sec": ops[0],
                             "max_ops_per_sec": ops[-1], "median_rep": mid["rep"]})
            medians.append(med_line)
    table = "\n".join(rows)
    notes = []
    for c in clients:
        g = f"{c} client{'s' if c > 1 else ''}"
        d, e = values.get((g, "dynadax")), values.get((g, "etcd"))
        if d and e:
            notes.append(f"- {g}: dynadax {fmt_ops(d)}/s = {d / e:.2f}x etcd ({fmt_ops(e)}/s)")
    if errors:
        notes.append(f"- {len(errors)} failed run(s): " + "; ".join(f"{r['impl']} {r['clients']} clients rep {r['rep']}: "
                                                                  f"{r['error']}" for r in errors))
    text = table + "\n\n" + "\n".join(notes) + "\n"
    (RES / "service.md").write_text(text)
    with path.open("w") as f:
        for r in lines + medians:
            f.write(json.dumps(r) + "\n")
    groups = [f"{c} client{'s' if c > 1 else ''}" for c in clients]
    nreps = max((len(v) for v in by.values()), default=0)
    IMG.mkdir(parents=True, exist_ok=True)
    bars_svg(IMG / "service.svg", "Committed 256 B appends, 3 nodes on loopback, closed-loop clients",
             "committed appends/s", groups, impls, values, ranges,
             note=f"median of {nreps} reps; whiskers: slowest..fastest; dynadax and etcd durable on every node, "
                  f"dynadax-memory not durable")
    print(text)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else RES / "service.jsonl")

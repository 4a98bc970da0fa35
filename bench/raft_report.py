"""Report of bench/raft.sh: the median of each (store, writers) over the reps, as a
Markdown table (bench/results/raft.md) and a bar chart (bench/results/raft-replicate.svg)."""
import json
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "scripts"))
from svgbars import bars_svg, fmt_ops  # noqa: E402

RES = pathlib.Path(__file__).resolve().parent / "results"
ORDER = ["memstore", "dynadax-flush", "dynadax-msync", "dynadax-ext4"]


def main(path):
    runs = [json.loads(l) for l in open(path) if l.strip()]
    by = {}
    for r in runs:
        by.setdefault((r["label"], r["writers"]), []).append(r)
    writers = sorted({w for (_, w) in by})
    labels = [l for l in ORDER if any((l, w) in by for w in writers)]
    lines = ["| store | fs | persisted by | writers | writes/s (median) | range | p50 µs | p99 µs |",
             "| --- | --- | --- | ---: | ---: | --- | ---: | ---: |"]
    values, ranges = {}, {}
    for w in writers:
        for l in labels:
            rs = by.get((l, w))
            if not rs:
                continue
            ops = sorted(r["writes_per_sec"] for r in rs)
            med = statistics.median(ops)
            mid = min(rs, key=lambda r: abs(r["writes_per_sec"] - med))
            values[(f"{w} writer(s)", l)] = med
            ranges[(f"{w} writer(s)", l)] = (ops[0], ops[-1])
            lines.append(f"| {l} | {mid['fs']} | {mid['persist']} | {w} | {fmt_ops(med)} | "
                         f"{fmt_ops(ops[0])}..{fmt_ops(ops[-1])} | {mid['p50_us']:.0f} | {mid['p99_us']:.0f} |")
    table = "\n".join(lines)
    (RES / "raft.md").write_text(table + "\n")
    groups = [f"{w} writer(s)" for w in writers]
    bars_svg(RES / "raft-replicate.svg", "Replicated 256 B writes, 3 openraft nodes in one process", "writes/s",
             groups, labels, values, ranges, note=f"median of {len(runs) // max(1, len(by))} reps; whiskers: slowest..fastest")
    print(table)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else RES / "raft.jsonl")

#!/usr/bin/env bash
# The read-side benchmarks of issue 14 in one go: sequential, random and two-reader
# reads of a sealed 256 MiB segment beside the bare loops, tail latency, and the open
# time of 1 and 10 GiB logs, on tmpfs (cache-line flush forced) and on the work tree's
# file system; then the report (docs/img/reads.svg).
#
#   bash bench/reads.sh            # OPEN_SIZES=1G,10G by default
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OPEN_SIZES="${OPEN_SIZES:-1G,10G}"
cargo build --release -q -p dynadax-cli
BIN=target/release/dynadax
RES=bench/results
DISK=bench/target/tmp
mkdir -p "$RES" "$DISK"
for rec in 4000 256; do
    open=1G
    [ $rec = 4000 ] && open="$OPEN_SIZES"
    DYNADAX_FORCE_CACHE_FLUSH=1 "$BIN" log bench /dev/shm --seal-sizes 256M --fill-record $rec --secs 0.5 \
        --open-sizes "$open" --json > "$RES/log-bench-reads-shm-$rec.jsonl"
    "$BIN" log bench "$DISK" --seal-sizes 256M --fill-record $rec --secs 0.5 \
        --open-sizes "$open" --json > "$RES/log-bench-reads-ext4-$rec.jsonl"
done
python3 scripts/bench-report.py

#!/usr/bin/env bash
# Replicated writes through openraft (crates/dynadax-raft/benches/replicate.rs): three
# in-process nodes, 1 and 16 clients, 256-byte writes, with the log stores:
#
#   memstore        openraft-memstore's in-memory log store (persists nothing: the ceiling)
#   dynadax-flush   dynadax on tmpfs, cache-line flush forced (persists as on kernel DAX)
#   dynadax-msync   dynadax on tmpfs, direct tail emulated (msync by the flusher thread)
#   dynadax-ext4    dynadax on the work tree's disk (cached tail, fdatasync by the flusher)
#
#   bench/raft.sh            # REPS=3 SECS=3; implementations alternate within each rep
#
# Writes bench/results/raft.jsonl (one line per run), bench/results/raft.md and
# bench/results/raft-replicate.svg; prints the table.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$HERE/.."
RES="$HERE/results"
REPS="${REPS:-3}"
SECS="${SECS:-3}"
DISK="${DISK:-$ROOT/target/tmp/raft-bench}"
mkdir -p "$RES" "$(dirname "$DISK")"
[[ "$(stat -f -c %T /dev/shm)" == tmpfs ]] || { echo "error: /dev/shm is not a tmpfs" >&2; exit 1; }
[[ "$(stat -f -c %T "$(dirname "$DISK")")" != tmpfs ]] || { echo "error: $DISK is on a tmpfs; the disk runs need a disk" >&2; exit 1; }

(cd "$ROOT" && nice -n 10 cargo bench -p dynadax-raft --bench replicate --no-run --quiet 2>/dev/null)
BIN=$(cd "$ROOT" && cargo bench -p dynadax-raft --bench replicate --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))/\1/p')
[[ -x "$ROOT/$BIN" ]] && BIN="$ROOT/$BIN"

run() { # label, then the bench's arguments; extra environment before the label
    local label=$1; shift
    "$BIN" "$@" --secs "$SECS" | sed "s/^{/{\"label\":\"$label\",\"commit\":\"$(git -C "$ROOT" rev-parse --short HEAD)\",/"
}

OUT="$RES/raft.jsonl"
: >"$OUT"
for rep in $(seq "$REPS"); do
    for w in 1 16; do
        run memstore --store memstore --dir /dev/shm/raft-bench --writers "$w" >>"$OUT"
        DYNADAX_FORCE_CACHE_FLUSH=1 run dynadax-flush --store dynadax --dir /dev/shm/raft-bench --writers "$w" >>"$OUT"
        run dynadax-msync --store dynadax --dir /dev/shm/raft-bench --writers "$w" >>"$OUT"
        run dynadax-ext4 --store dynadax --dir "$DISK" --writers "$w" >>"$OUT"
    done
    echo "rep $rep of $REPS done" >&2
done
python3 "$HERE/raft_report.py" "$OUT"

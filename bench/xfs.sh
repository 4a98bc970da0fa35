#!/usr/bin/env bash
# The durable comparison (`log-compare durable`) on xfs, the other DAX file system.
# There is no xfs disk here, so it runs on a loop-mounted xfs image: a file on the
# work tree's file system, attached with direct I/O (so the loop device's writes and
# flushes reach the disk without a second page cache in between). Every flush then
# goes xfs -> loop -> ext4 file -> disk, one layer more than on a real xfs disk.
#
#   bench/xfs.sh                # REPS=3 SECS=2 by default
#   REPS=5 bench/xfs.sh
#
# Writes bench/results/durable-xfs.jsonl; prints the medians.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPS="${REPS:-3}"
SECS="${SECS:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HERE/target}"
command -v mkfs.xfs >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xfsprogs >/dev/null; }
(cd "$HERE/compare" && nice -n 10 cargo build --release --quiet)
IMG="$HERE/target/xfs.img"
MNT="$HERE/target/xfs-mnt"
mkdir -p "$MNT"
cleanup() {
    umount "$MNT" 2>/dev/null || true
    [[ -n "${DEV:-}" ]] && losetup -d "$DEV" 2>/dev/null || true
    rm -f "$IMG"
}
trap cleanup EXIT
rm -f "$IMG"
truncate -s 4G "$IMG"
DEV=$(losetup --find --show --direct-io=on "$IMG")
mkfs.xfs -q -f "$DEV"
mount "$DEV" "$MNT"
echo "xfs on $DEV (loop, direct I/O) backed by $IMG on $(stat -f -c %T "$HERE/target")" >&2
"$CARGO_TARGET_DIR/release/log-compare" durable --reps "$REPS" --secs "$SECS" --disk "$MNT" \
    --out "$HERE/results/durable-xfs.jsonl.new" >/dev/null
mv "$HERE/results/durable-xfs.jsonl.new" "$HERE/results/durable-xfs.jsonl"
python3 - "$HERE/results/durable-xfs.jsonl" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    if d.get("stat") == "median":
        print(f'{d["fs"]:5} {d["writers"]} writer(s) {d["impl"]:12} {d["ops_per_sec"]:>9.0f}/s  reps {d["reps_ops_per_sec"]}  appends/flush {d.get("appends_per_flush")}')
PY

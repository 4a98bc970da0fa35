#!/usr/bin/env bash
# Runs the log comparison benchmarks in one go and reports them.
#
#   bench/run.sh                 # install what is missing, build, run, report
#   REPS=3 SECS=1 bench/run.sh   # quicker, noisier
#   DIAG=0 bench/run.sh          # skip the diagnostic runs (where the time goes)
#
# Writes bench/results/log-compare.jsonl (one JSON line per run, plus a median line per
# implementation and workload), bench/results/diag.jsonl, bench/results/*.svg,
# bench/results/log-compare.md and bench/results/env.txt; prints the Markdown tables.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RES="$HERE/results"
REPS="${REPS:-5}"
SECS="${SECS:-2}"
DIAG="${DIAG:-1}"
SHM="${SHM:-/dev/shm}"
# Durable runs go to the work tree's file system (ext4 here), never to a tmpfs.
DISK="${DISK:-$HERE/target/tmp}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HERE/target}"

# --- what the build and the runs need (idempotent) --------------------------------
need=()
dpkg -s libpmemlog-dev >/dev/null 2>&1 || need+=(libpmemlog-dev)
command -v cc >/dev/null 2>&1 || need+=(build-essential) # raft-engine builds lz4 from C
command -v python3 >/dev/null 2>&1 || need+=(python3)
if ((${#need[@]})); then
    echo "installing: ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# --- where the runs go -----------------------------------------------------------
mkdir -p "$DISK" "$RES"
fstype() { stat -f -c %T "$1"; }
if [[ "$(fstype "$SHM")" != "tmpfs" ]]; then
    echo "error: $SHM is $(fstype "$SHM"), not tmpfs" >&2
    exit 1
fi
if [[ "$(fstype "$DISK")" == "tmpfs" ]]; then
    echo "error: $DISK is a tmpfs: durable runs need a disk file system" >&2
    exit 1
fi

# --- a quiet machine ----------------------------------------------------------------
# The runs need both cores: dynadax prepares and faults in segments on a background
# thread, and the group-commit runs have 8 threads. Another busy process (a build, a
# VM) skews the figures, unevenly. Wait up to QUIET_WAIT seconds for the machine to be
# idle (below 10% of one core used by others over 3 s), then go on with a warning.
busy_pct() { # CPU time used by everything over 3 s, in % of one core
    local a b
    a=($(head -1 /proc/stat)); sleep 3; b=($(head -1 /proc/stat))
    local busy=$(((b[1] + b[2] + b[3] + b[6] + b[7] + b[8]) - (a[1] + a[2] + a[3] + a[6] + a[7] + a[8])))
    echo $((busy * 100 / (3 * $(getconf CLK_TCK))))
}
QUIET_WAIT="${QUIET_WAIT:-900}"
waited=0
while :; do
    b=$(busy_pct)
    ((b < 10)) && break
    if ((waited >= QUIET_WAIT)); then
        echo "warning: the machine is busy (${b}% of a core used by other processes); figures will be skewed" >&2
        break
    fi
    ((waited == 0)) && echo "waiting for the machine to be idle (${b}% of a core busy; up to ${QUIET_WAIT}s)..." >&2
    waited=$((waited + 3))
done
BUSY_BEFORE=$(busy_pct)

# --- build -------------------------------------------------------------------------
(cd "$HERE/compare" && nice -n 10 cargo build --release --quiet)
BIN="$CARGO_TARGET_DIR/release/log-compare"

# --- the machine, for the record ---------------------------------------------------
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "kernel: $(uname -r)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
    echo "flush: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(clwb|clflushopt)$' | tr '\n' ' ')"
    echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
    echo "shm: $SHM ($(fstype "$SHM"))"
    echo "disk: $DISK ($(df -T "$DISK" | awk 'NR==2 {print $2 " on " $1}'))"
    echo "libpmemlog: $(dpkg-query -W -f='${Version}' libpmemlog1 2>/dev/null || echo '?')"
    echo "dynadax: commit $(git -C "$HERE/.." rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$HERE/.." diff --quiet HEAD -- crates/dynadax 2>/dev/null || echo " + uncommitted changes in crates/dynadax (diff sha1 $(git -C "$HERE/.." diff HEAD -- crates/dynadax | sha1sum | cut -c1-12))")"
    echo "rustc: $(rustc --version)"
    echo "crates: $(cd "$HERE/compare" && cargo tree --depth 1 --prefix none 2>/dev/null | grep -E '^(raft-engine|okaywal|dynadax) ' | tr '\n' ';')"
    echo "reps: $REPS, secs per run: $SECS"
    echo "cpu busy before the runs: ${BUSY_BEFORE}% of one core"
} >"$RES/env.txt"
cat "$RES/env.txt" >&2

# --- run (fresh result files) -------------------------------------------------------
rm -f "$RES/log-compare.jsonl" "$RES/diag.jsonl"
status=0
# Each run waits (up to 30 s) for the machine to be idle, and a run that other
# processes disturbed (over 25% of a core) is recorded as "disturbed" and redone (up to
# twice), within QUIET_BUDGET seconds in all.
QUIET_BUDGET="${QUIET_BUDGET:-900}"
"$BIN" all --reps "$REPS" --secs "$SECS" --shm "$SHM" --disk "$DISK" \
    --quiet-wait 30 --retries 2 --quiet-budget "$QUIET_BUDGET" \
    --out "$RES/log-compare.jsonl" >/dev/null || status=$?
if [[ "$DIAG" != "0" ]]; then
    "$BIN" diag --reps 3 --secs "$SECS" --shm "$SHM" --disk "$DISK" \
        --quiet-wait 30 --retries 1 --quiet-budget "$((QUIET_BUDGET / 2))" \
        --out "$RES/diag.jsonl" >/dev/null || status=$?
fi
rm -rf "$DISK"
echo "load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RES/env.txt"

# --- report ------------------------------------------------------------------------
python3 "$HERE/report.py"
if [[ $status -ne 0 ]]; then
    echo "some runs failed (see the \"stat\":\"error\" lines in $RES/*.jsonl)" >&2
fi
exit $status

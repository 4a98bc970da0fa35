#!/usr/bin/env bash
# Issue 16's benchmark: a 3-node replicated log service on loopback, committed appends/s
# and p50/p99 latency with 1, 8 and 64 closed-loop clients, 256 B records, side by side:
#
#   dynadax         three `dynadax serve` processes (release build), Raft log and applied
#                   log on the work tree's disk (ext4): durable on every node
#   etcd            Debian's etcd-server 3.4, three members on loopback, data dirs on the
#                   same disk (its defaults: fdatasync of its WAL on every member), `put`
#                   of 256 B values, a distinct key per put
#   dynadax-memory  the same dynadax cluster with `serve --raft-store memory` (the Raft
#                   log in memory: nothing durable; the cost of durability)
#
#   bench/service.sh                       # REPS=3 SECS=5 WARMUP=1 CLIENTS=1,8,64; ~6 min
#   IMPLS="dynadax etcd" REPS=1 bench/service.sh
#
# Every run: a fresh cluster per implementation and rep (the implementations alternate
# within each rep), the load generator bench/service (service-compare) drives it and
# checks afterwards that every acknowledged append is there, on every node. Writes
# bench/results/service.jsonl (one line per run, then a "median" line per
# implementation and client count), bench/results/service.md, bench/results/service-env.txt
# and docs/img/service.svg; prints the table.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
RES="$HERE/results"
REPS="${REPS:-3}"
SECS="${SECS:-5}"
WARMUP="${WARMUP:-1}"
CLIENTS="${CLIENTS:-1,8,64}"
IMPLS="${IMPLS:-dynadax etcd dynadax-memory}"
DISK="${DISK:-$HERE/target/tmp/service}"
QUIET_WAIT="${QUIET_WAIT:-600}"
export CARGO_TARGET_DIR_BENCH="${CARGO_TARGET_DIR_BENCH:-$HERE/target}"

# --- what the build and the runs need (idempotent) ----------------------------------
need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler) # etcd-client builds its protos
command -v python3 >/dev/null 2>&1 || need+=(python3)
if ((${#need[@]})); then
    echo "installing: ${need[*]}" >&2
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
fi
export PROTOC="${PROTOC:-$(command -v protoc)}"

mkdir -p "$RES" "$DISK"
if [[ "$(stat -f -c %T "$DISK")" == tmpfs ]]; then
    echo "error: $DISK is a tmpfs: the durable runs need a disk file system" >&2
    exit 1
fi

# --- build (one cargo at a time on this machine: flock) ------------------------------
(cd "$ROOT" && flock /tmp/cargo.lock nice -n 10 cargo build --release --quiet -p dynadax-cli)
(cd "$HERE/service" && CARGO_TARGET_DIR="$CARGO_TARGET_DIR_BENCH" flock /tmp/cargo.lock nice -n 10 cargo build --release --quiet)
DYNADAX="$ROOT/target/release/dynadax"
BIN="$CARGO_TARGET_DIR_BENCH/release/service-compare"

# --- clusters ---------------------------------------------------------------------
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
trap 'cleanup; rm -rf "$DISK/data"' EXIT
trap 'exit 130' INT TERM

DX=(127.0.0.1:7101 127.0.0.1:7102 127.0.0.1:7103)
ETCD_C=(http://127.0.0.1:23791 http://127.0.0.1:23792 http://127.0.0.1:23793)
ETCD_P=(http://127.0.0.1:23801 http://127.0.0.1:23802 http://127.0.0.1:23803)
LOGS="$DISK/logs"

start_dynadax() { # store: disk | memory
    local store=$1 i peers
    rm -rf "$DISK/data"
    mkdir -p "$DISK/data" "$LOGS"
    for i in 1 2 3; do
        peers="1=${DX[0]},2=${DX[1]},3=${DX[2]}"
        local extra=()
        [[ $store == memory ]] && extra=(--raft-store memory)
        nice -n 10 "$DYNADAX" serve --id $i --dir "$DISK/data/n$i" --listen "${DX[$((i - 1))]}" --peers "$peers" \
            "${extra[@]}" 2>"$LOGS/dynadax-$store-n$i.log" &
        PIDS+=($!)
    done
    ENDPOINTS="$(IFS=,; echo "${DX[*]}")"
}

start_etcd() {
    local i cluster="" token="bench-$$-$RANDOM" # one token for the three members
    rm -rf "$DISK/data"
    mkdir -p "$DISK/data" "$LOGS"
    for i in 1 2 3; do cluster+="${cluster:+,}e$i=${ETCD_P[$((i - 1))]}"; done
    for i in 1 2 3; do
        nice -n 10 etcd --name "e$i" --data-dir "$DISK/data/e$i" \
            --listen-client-urls "${ETCD_C[$((i - 1))]}" --advertise-client-urls "${ETCD_C[$((i - 1))]}" \
            --listen-peer-urls "${ETCD_P[$((i - 1))]}" --initial-advertise-peer-urls "${ETCD_P[$((i - 1))]}" \
            --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "$token" \
            2>"$LOGS/etcd-e$i.log" &
        PIDS+=($!)
    done
    ENDPOINTS="$(IFS=,; echo "${ETCD_C[*]}")"
}

# --- a quiet machine (other work skews the figures) ----------------------------------
busy_pct() { # CPU time used by everything over 3 s, in % of one core
    local a b
    a=($(head -1 /proc/stat)); sleep 3; b=($(head -1 /proc/stat))
    local busy=$(((b[1] + b[2] + b[3] + b[6] + b[7] + b[8]) - (a[1] + a[2] + a[3] + a[6] + a[7] + a[8])))
    echo $((busy * 100 / (3 * $(getconf CLK_TCK))))
}
waited=0
while :; do
    b=$(busy_pct)
    ((b < 10)) && break
    if ((waited >= QUIET_WAIT)); then
        echo "warning: the machine is busy (${b}% of a core); figures will be skewed" >&2
        break
    fi
    ((waited == 0)) && echo "waiting for the machine to be idle (${b}% of a core busy; up to ${QUIET_WAIT}s)..." >&2
    waited=$((waited + 3))
done

# --- the machine, for the record ------------------------------------------------------
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD)"
DIRTY=""
if ! git -C "$ROOT" diff --quiet HEAD -- crates 2>/dev/null; then
    DIRTY=" + uncommitted changes in crates/ ($(git -C "$ROOT" diff --stat HEAD -- crates | tail -1 | sed 's/^ *//'); diff sha1 $(git -C "$ROOT" diff HEAD -- crates | sha1sum | cut -c1-12))"
fi
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "kernel: $(uname -r)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
    echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
    echo "disk: $DISK ($(df -T "$DISK" | awk 'NR==2 {print $2 " on " $1}'))"
    echo "dynadax: commit $COMMIT$DIRTY, $("$DYNADAX" --version 2>/dev/null | head -1)"
    echo "dynadax-memory: serve --raft-store memory"
    echo "etcd: $(etcd --version | tr '\n' ' ' | sed 's/ *$//'); package etcd-server $(dpkg-query -W -f='${Version}' etcd-server 2>/dev/null || echo '?')"
    echo "rustc: $(rustc --version)"
    echo "load generator crates: $(grep -A1 -E '^name = "(etcd-client|tonic|reqwest|openraft|tokio)"$' "$HERE/service/Cargo.lock" | grep -v '^--' | paste - - | sed 's/name = "\([^"]*\)"\tversion = "\([^"]*\)"/\1 \2/' | tr '\n' ';')"
    echo "reps: $REPS, secs per run: $SECS after a ${WARMUP}s warm-up, clients: $CLIENTS, record: 256 B"
    echo "cpu busy before the runs: $(busy_pct)% of one core"
} >"$RES/service-env.txt"
cat "$RES/service-env.txt" >&2

# --- run --------------------------------------------------------------------------------
OUT="$RES/service.jsonl"
: >"$OUT"
status=0
for rep in $(seq "$REPS"); do
    for impl in $IMPLS; do
        case $impl in
            dynadax) start_dynadax disk ;;
            dynadax-memory) start_dynadax memory ;;
            etcd) start_etcd ;;
            *) echo "unknown implementation $impl" >&2; exit 2 ;;
        esac
        pids="$(IFS=,; echo "${PIDS[*]}")"
        nice -n 10 "$BIN" --impl "$impl" --endpoints "$ENDPOINTS" --pids "$pids" --clients "$CLIENTS" \
            --secs "$SECS" --warmup-secs "$WARMUP" --record 256 --rep "$rep" --commit "$COMMIT" \
            --retries 2 --quiet-wait 30 --max-others 25 >>"$OUT" || status=1
        cleanup
    done
    echo "rep $rep of $REPS done" >&2
done
rm -rf "$DISK/data"
echo "load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RES/service-env.txt"

python3 "$HERE/service_report.py" "$OUT"
if [[ $status -ne 0 ]]; then
    echo "some runs failed (see the \"stat\":\"error\" lines in $OUT; node logs in $LOGS)" >&2
fi
exit $status

# lab/powercut.sh - the power-cut test of the log's durable disk path (host side);
# with --durability raft, of the openraft log store built on it.
#
# Sourced by `lab/run --powercut` once the initramfs is built (it uses lab/run's
# variables: LAB_DIR WORK KERNEL BIN_DIR TIMEOUT PC_CYCLES PC_SEED
# PC_DURABILITY, and its helpers say/die/now/elapsed) and sets PC_RC.
#
# Cycle c (1..N) is one boot of the guest with a virtio disk (a raw image on the
# host): lab/guest/powercut.sh mounts it, checks the log left by cycle c-1 (a
# CHECK line), then appends the records of cycle c and prints "ACK <lsn>" for
# each LSN `dynadax log append` acknowledges.  1-4 s (random) after the first
# ACK, the host kills qemu with SIGKILL: the power cut.  The ACK lines the host
# received whole are what was promised.  Boot c+1 checks them: every record of
# cycle c from its first LSN up to its last ACK must be there, with the exact
# content, and the earlier cycles' records must be as the previous check saw
# them.  Boot N+1 only checks, unmounts and powers off; then the host checks
# the image itself (e2fsck, and the log copied out with debugfs, read with the
# host's dynadax and checked with the host's awk).  See lab/README.md.

set +e +o pipefail     # every failure is handled here, none is fatal by itself
trap - ERR

LOG=$WORK/powercut-console.log
LOG_KEEP=$LAB_DIR/.work/last-powercut-console.log
: > "$LOG"
PC_DISK=${LAB_POWERCUT_DISK:-512M}
PC_SEGMENT=${LAB_POWERCUT_SEGMENT:-256K}
PC_MAXREC=8K                        # records are at most 4.5 KB (powercut.awk)
PC_INJECT=${LAB_POWERCUT_INJECT:-}
PC_LAYOUT=${LAB_POWERCUT_LAYOUT:-files}     # files | single-file: the new log's layout
PC_ACK_WAIT=${LAB_POWERCUT_ACK_WAIT:-180}   # seconds from qemu start to the first ACK
PC_MEM=${LAB_POWERCUT_MEM:-1G}
IMG=$LAB_DIR/.work/powercut.img
AWKF=$LAB_DIR/guest/powercut.awk
HOST_DYNADAX=$BIN_DIR/dynadax
case "$PC_LAYOUT" in files|single-file) ;; *) die "LAB_POWERCUT_LAYOUT must be files or single-file, got '$PC_LAYOUT'" ;; esac
[ "$PC_DURABILITY" != raft ] || [ "$PC_LAYOUT" = files ] || die "LAB_POWERCUT_LAYOUT is for the log, not --durability raft"
[ "$PC_DURABILITY" != raft ] || [ -z "$PC_INJECT" ] || die "LAB_POWERCUT_INJECT is for the log, not --durability raft"
[ "$PC_DURABILITY" != raft ] || [ -x "$BIN_DIR/dynadax-raft-crash" ] || die "--durability raft needs dynadax-raft-crash in $BIN_DIR (scripts/lab-bins builds it)"
case "$PC_INJECT" in
    ''|lying-acks) ;;
    flip-byte) [ "$PC_CYCLES" -ge 2 ] || die "LAB_POWERCUT_INJECT=flip-byte needs --cycles 2 or more" ;;
    *) die "LAB_POWERCUT_INJECT must be lying-acks or flip-byte, got '$PC_INJECT'" ;;
esac
command -v debugfs > /dev/null && command -v e2fsck > /dev/null || die "debugfs and e2fsck (e2fsprogs) are needed"
[ -n "$PC_SEED" ] || PC_SEED=$(( $(date +%s%N) / 1000 % 1000000 ))
RANDOM=$PC_SEED

# The disk: a sparse raw image, fresh for every run.  cache=none opens it with
# O_DIRECT and shows the guest a volatile write cache, so the guest's fsync
# sends a FLUSH that qemu turns into fdatasync of the image (README: why a
# SIGKILL of qemu is then a faithful power cut).  Where O_DIRECT is not
# supported (tmpfs), cache=writeback behaves the same for this test.
rm -f "$IMG"
truncate -s "$PC_DISK" "$IMG" || die "cannot create $IMG"
if dd if=/dev/zero of="$IMG" bs=4096 count=1 oflag=direct conv=notrunc status=none 2>/dev/null; then
    PC_CACHE=none
else
    PC_CACHE=writeback
    say "O_DIRECT is not supported on $(dirname "$IMG"): cache=writeback instead of cache=none"
fi

# durability_of CYCLE
durability_of() {
    if [ "$PC_DURABILITY" = rotate ]; then
        case $(( ($1 - 1) % 3 )) in 0) echo group ;; 1) echo each ;; 2) echo none ;; esac
    else
        echo "$PC_DURABILITY"
    fi
}

# pc_boot CYCLE APPEND(0|1) DURABILITY CONSOLE_FILE: start qemu in the background (QPID).
pc_boot() {
    local cmdline="console=ttyS0 quiet panic=-1 labpc_cycle=$1 labpc_append=$2 labpc_dur=$3"
    cmdline="$cmdline labpc_seg=$PC_SEGMENT labpc_maxrec=$PC_MAXREC labpc_layout=$PC_LAYOUT${PC_INJECT:+ labpc_inject=$PC_INJECT}"
    : > "$4"
    qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m "$PC_MEM" -smp 2 \
        -display none -monitor none -serial "file:$4" -no-reboot -nic none \
        -kernel "$KERNEL" -initrd "$WORK/initrd.img" -append "$cmdline" \
        -drive "file=$IMG,format=raw,if=virtio,cache=$PC_CACHE" \
        < /dev/null > "$4.qemu" 2>&1 &
    QPID=$!
}

# wait_exit PID SECONDS: wait for qemu to power off; 1 (and kill it) on timeout.
wait_exit() {
    local t0=$SECONDS
    while kill -0 "$1" 2>/dev/null; do
        if [ $((SECONDS - t0)) -ge "$2" ]; then kill -9 "$1" 2>/dev/null; wait "$1" 2>/dev/null; return 1; fi
        sleep 0.2
    done
    wait "$1" 2>/dev/null
    return 0
}

# complete FILE: the lines of FILE that were received whole (a last line
# without its newline was cut by the power cut and does not count), no CRs.
complete() {
    if [ -s "$1" ] && [ -n "$(tail -c 1 "$1")" ]; then head -n -1 "$1"; else cat "$1"; fi | tr -d '\r'
}

# show FILE: the guest's lines for the host (not the ACKs, not firmware noise).
show() {
    grep -a -E '^(PC-|CHECK )' "$1" | grep -av '^PC-DMESG .*Unknown kernel command line' | sed 's/^/  | /'
    local n; n=$(grep -ac '^ACK ' "$1")
    [ "$n" = 0 ] || echo "  | ($n ACK lines)"
}

declare -A START=() PRE=() MAXACK=() NACK=() LAST=() DELAY=() DUR=() CUTAT=()
FAILS=() CYCLE_LINES=() FINAL_N=
pc_fail() { FAILS+=("$*"); echo "POWERCUT FAIL: $*"; }

# check_boot TXT UPTO: validate the CHECK line of a boot against cycles 1..UPTO.
# Prints the per-cycle line of cycle UPTO.  Returns 1 on a failure.
check_boot() {
    local txt=$1 upto=$2 line n cycles ok=1 k part f l want_n
    line=$(grep -a '^CHECK ' "$txt" | tail -n 1)
    if [ -z "$line" ]; then pc_fail "boot $((upto + 1)): no CHECK line"; return 1; fi
    case "$line" in
        "CHECK OK "*) ;;
        *) pc_fail "boot $((upto + 1)), check of cycles 1..$upto: $line"; return 1 ;;
    esac
    n=$(sed -n 's/^CHECK OK n=\([0-9]*\) .*/\1/p' <<<"$line")
    cycles=$(sed -n 's/^CHECK OK n=[0-9]* cycles=\(.*\)$/\1/p' <<<"$line")
    IFS=, read -r -a parts <<<"$cycles"
    if [ "${#parts[@]}" != "$upto" ]; then
        pc_fail "boot $((upto + 1)): the log has records of ${#parts[@]} cycles ($cycles), want $upto"; return 1
    fi
    for ((k = 1; k <= upto; k++)); do
        part=${parts[$((k - 1))]}
        if ! [[ "$part" =~ ^([0-9]+):([0-9]+)-([0-9]+)$ ]] || [ "${BASH_REMATCH[1]}" != "$k" ]; then
            pc_fail "boot $((upto + 1)): cycle $k: unexpected range '$part' in $cycles"; ok=0; continue
        fi
        f=${BASH_REMATCH[2]} l=${BASH_REMATCH[3]}
        if [ "$f" != "${START[$k]}" ]; then
            pc_fail "cycle $k: its records start at LSN $f, but it appended from LSN ${START[$k]}"; ok=0
        fi
        if [ "$l" -lt "${MAXACK[$k]}" ]; then
            pc_fail "cycle $k: acknowledged LSNs up to ${MAXACK[$k]}, but only ${START[$k]}..$l survived ($(( MAXACK[$k] - l )) acknowledged records lost)"; ok=0
        fi
        if [ -n "${LAST[$k]:-}" ] && [ "$l" != "${LAST[$k]}" ]; then
            pc_fail "cycle $k: its last record was LSN ${LAST[$k]} after the power cut, now LSN $l"; ok=0
        fi
        LAST[$k]=$l
    done
    want_n=$(( ${LAST[$upto]:-0} + 1 ))
    [ "$n" = "$want_n" ] || { pc_fail "boot $((upto + 1)): n=$n but the last record is LSN $((want_n - 1))"; ok=0; }
    local rep; rep=$(sed -n 's/^PC-RECOVERY rc=[0-9]* repairs=\([0-9]*\)/\1/p' "$txt" | tail -n 1)
    local vb; vb=$(sed -n 's/^PC-VERIFY-BEFORE rc=\([0-9]*\).*/\1/p' "$txt" | tail -n 1)
    k=$upto
    local out
    local extra=$(( ${LAST[$k]:-0} - MAXACK[$k] ))
    if [ "$extra" -ge 0 ]; then extra="$extra durable beyond the last ACK"; else extra="$(( -extra )) ACKED RECORDS MISSING"; fi
    FINAL_N=$n
    out=$(printf 'POWERCUT cycle %d (%s): %d unpersisted records of a killed writer, then acked %d..%d (%d ACKs), cut %.1f s after the first ACK; recovered %d..%d (%s), log %d records, %s repair(s), verify before recovery rc=%s: %s\n' \
        "$k" "${DUR[$k]}" "${PRE[$k]:-0}" "$(( START[$k] + ${PRE[$k]:-0} ))" "${MAXACK[$k]}" "${NACK[$k]}" "${DELAY[$k]}" \
        "${START[$k]}" "${LAST[$k]:-0}" "$extra" "$n" "${rep:-?}" "${vb:-?}" \
        "$([ $ok = 1 ] && echo OK || echo FAIL)")
    echo "$out"; CYCLE_LINES+=("$out")
    [ $ok = 1 ]
}

# flip_byte: corrupt one byte of LSN 0 (acknowledged in cycle 1) in the image.
flip_byte() {
    local blk off old new
    blk=$(debugfs -R "bmap /log/00000000000000000000.dlog 0" "$IMG" 2>/dev/null | tail -n 1)
    case "$blk" in ''|*[!0-9]*|0) pc_fail "inject flip-byte: no block for segment 0 ('$blk')"; return ;; esac
    off=$((blk * 4096 + 1000))
    old=$(dd if="$IMG" bs=1 skip="$off" count=1 status=none | od -An -tu1 | tr -d ' ')
    new=$(( old ^ 1 ))
    printf "\\$(printf %03o "$new")" | dd of="$IMG" bs=1 seek="$off" count=1 conv=notrunc status=none
    say "inject flip-byte: image byte $off (segment 0, file offset 1000, inside LSN 0): $old -> $new"
}

say "power-cut test: $PC_CYCLES cycle(s), durability $PC_DURABILITY, layout $PC_LAYOUT, seed $PC_SEED, disk $IMG ($PC_DISK raw, virtio, cache=$PC_CACHE), segment $PC_SEGMENT${PC_INJECT:+, INJECT $PC_INJECT (this run must fail)}"
T_PC0=$(now)
BOOT_TIMES=()
for ((c = 1; c <= PC_CYCLES + 1; c++)); do
    bl=$WORK/boot-$c.log
    if [ "$c" -le "$PC_CYCLES" ]; then append=1; dur=$(durability_of "$c"); else append=0; dur=-; fi
    DUR[$c]=$dur
    tb=$(now)
    if [ $append = 1 ]; then
        say "boot $c/$((PC_CYCLES + 1)): check cycles 1..$((c - 1)), append cycle $c (durability $dur), power cut"
    else
        say "boot $c/$((PC_CYCLES + 1)): check cycles 1..$((c - 1)), power off"
    fi
    # The last boot only checks: as the log (group is any mode), or as the raft store.
    pc_boot "$c" "$append" "${dur/-/$([ "$PC_DURABILITY" = raft ] && echo raft || echo group)}" "$bl"
    cut=0 got=0
    if [ $append = 1 ]; then
        t0=$SECONDS
        while kill -0 "$QPID" 2>/dev/null; do
            if grep -aq '^ACK [0-9]' "$bl"; then got=1; break; fi
            [ $((SECONDS - t0)) -ge "$PC_ACK_WAIT" ] && break
            sleep 0.1
        done
        t_ack=$(now)
        if [ $got = 1 ]; then
            ms=$((1000 + RANDOM % 3001))
            sleep "$(awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }')"
        fi
        if kill -9 "$QPID" 2>/dev/null; then cut=1; fi
        t_cut=$(now)
        wait "$QPID" 2>/dev/null
        DELAY[$c]=$(elapsed "$t_ack" "$t_cut")
        CUTAT[$c]=$(elapsed "$tb" "$t_cut")
    else
        wait_exit "$QPID" "$TIMEOUT" || pc_fail "boot $c: qemu did not power off within ${TIMEOUT}s"
    fi
    BOOT_TIMES+=("$(elapsed "$tb" "$(now)")")
    complete "$bl" > "$bl.txt"
    {
        echo "===== boot $c: cycle $c, append=$append durability=$dur$([ $cut = 1 ] && echo ", power cut ${DELAY[$c]} s after the first ACK")"
        cat "$bl.txt"
        [ -s "$bl.qemu" ] && sed 's/^/qemu: /' "$bl.qemu"
    } >> "$LOG"
    show "$bl.txt"
    [ -s "$bl.qemu" ] && sed 's/^/  qemu: /' "$bl.qemu"
    if grep -aq '^PC-FAIL' "$bl.txt"; then
        pc_fail "boot $c: $(grep -a '^PC-FAIL' "$bl.txt" | head -n 1 | cut -d' ' -f2-)"
    fi

    # The check of the previous cycles, done by this boot.
    if [ "$c" = 1 ]; then
        grep -aq '^PC-NEWLOG' "$bl.txt" || pc_fail "boot 1: the log was not new"
    else
        check_boot "$bl.txt" $((c - 1))
    fi
    [ ${#FAILS[@]} = 0 ] || break

    if [ $append = 1 ]; then
        # What this cycle was promised: the ACK lines received whole.
        START[$c]=$(sed -n 's/^PC-START cycle=[0-9]* lsn=\([0-9]*\) .*/\1/p' "$bl.txt" | head -n 1)
        [ -n "${START[$c]}" ] || { pc_fail "boot $c: no PC-START line"; break; }
        # The ACKs start after the records of the writer killed first (PC-PREWRITER).
        ackfrom=$(sed -n 's/^PC-ACKS-FROM lsn=\([0-9]*\).*/\1/p' "$bl.txt" | head -n 1)
        PRE[$c]=$(( ${ackfrom:-${START[$c]}} - START[$c] ))
        read -r nack first maxack bad gaps < <(awk -v start="${ackfrom:-${START[$c]}}" '
            /^ACK / {
                if ($0 !~ /^ACK [0-9]+$/) { bad++; next }
                v = $2 + 0
                if (n == 0) { first = v; if (v != start) gaps++ } else if (v != prev + 1) gaps++
                prev = v; n++
            }
            END { printf "%d %d %d %d %d\n", n, (n ? first : -1), (n ? prev : -1), bad, gaps }' "$bl.txt")
        NACK[$c]=$nack MAXACK[$c]=$maxack
        if [ $got = 0 ]; then
            pc_fail "cycle $c: no ACK within ${PC_ACK_WAIT}s (qemu $([ $cut = 1 ] && echo killed || echo 'exited by itself'))"; break
        fi
        [ $cut = 1 ] || { pc_fail "cycle $c: qemu exited before the power cut"; break; }
        [ "$nack" -gt 0 ] || { pc_fail "cycle $c: no complete ACK line"; break; }
        [ "$bad" = 0 ] || { pc_fail "cycle $c: $bad malformed ACK line(s)"; break; }
        [ "$gaps" = 0 ] || { pc_fail "cycle $c: the ACKs are not the LSNs ${ackfrom:-${START[$c]}}, +1, ... ($gaps gap(s))"; break; }
        say "cycle $c: ${PRE[$c]} records written by a writer killed -9, then $nack ACKs (LSN $first..$maxack), power cut ${DELAY[$c]} s after the first ACK (${CUTAT[$c]} s after qemu started)"
        if [ "$PC_INJECT" = flip-byte ] && [ "$c" = "$PC_CYCLES" ]; then flip_byte; fi
    fi
done
PC_TIME=$(elapsed "$T_PC0" "$(now)")

# The image itself, after the last (clean) boot: e2fsck, then the log copied
# out and checked with the host's dynadax and the host's awk.
HOST_CHECK=skipped
if [ ${#FAILS[@]} = 0 ]; then
    last_txt=$WORK/boot-$((PC_CYCLES + 1)).log.txt
    grep -aq '^PC-UNMOUNTED' "$last_txt" || pc_fail "the last boot did not unmount the disk"
    if e2fsck -fn "$IMG" > "$WORK/e2fsck.out" 2>&1; then
        fsck="e2fsck clean"
    else
        pc_fail "e2fsck -fn of the image: $(tail -n 3 "$WORK/e2fsck.out" | tr '\n' ' ')"; fsck="e2fsck FAILED"
    fi
    mkdir -p "$WORK/image"
    if [ "$PC_DURABILITY" = raft ]; then
        # The openraft store: copied out and checked by the host's build of the
        # same checker the guest ran.
        debugfs -R "rdump /raft $WORK/image" "$IMG" > "$WORK/debugfs.out" 2>&1
        if [ ! -d "$WORK/image/raft" ]; then
            pc_fail "debugfs rdump /raft: $(head -n 3 "$WORK/debugfs.out" | tr '\n' ' ')"
        else
            hc=$("$BIN_DIR/dynadax-raft-crash" powercut-check "$WORK/image/raft" $((PC_CYCLES + 1)) 2>&1 | grep -a '^CHECK ')
            gc=$(grep -a '^CHECK ' "$last_txt" | tail -n 1)
            [ "$hc" = "$gc" ] || pc_fail "host check of the copied store differs from the guest's: host '$hc', guest '$gc'"
            HOST_CHECK="$fsck; host check: $hc"
        fi
    else
    debugfs -R "rdump /log $WORK/image" "$IMG" > "$WORK/debugfs.out" 2>&1
    if [ ! -d "$WORK/image/log" ]; then
        pc_fail "debugfs rdump /log: $(head -n 3 "$WORK/debugfs.out" | tr '\n' ' ')"
    else
        hv=$("$HOST_DYNADAX" log verify "$WORK/image/log" 2>&1); hv_rc=$?
        [ $hv_rc = 0 ] || pc_fail "host: dynadax log verify of the copied log exited $hv_rc: $(tail -n 2 <<<"$hv" | tr '\n' ' ')"
        hc=$("$HOST_DYNADAX" log read "$WORK/image/log" | awk -v mode=check -v maxcycle="$PC_CYCLES" -f "$AWKF")
        gc=$(grep -a '^CHECK ' "$last_txt" | tail -n 1)
        if [ "$hc" != "$gc" ]; then
            pc_fail "host check of the copied log differs from the guest's: host '$hc', guest '$gc'"
        fi
        HOST_CHECK="$fsck; host dynadax verify: $(tail -n 1 <<<"$hv" | sed 's|^.*/image/log: ||'); host awk: $hc"
    fi
    fi
fi

total_acks=0
for ((k = 1; k <= PC_CYCLES; k++)); do total_acks=$(( total_acks + ${NACK[$k]:-0} )); done
echo
echo "============================= power-cut summary ============================="
for l in "${CYCLE_LINES[@]}"; do echo "$l"; done
echo "cycles: $PC_CYCLES, seed $PC_SEED, durability $PC_DURABILITY, cache=$PC_CACHE, segment $PC_SEGMENT${PC_INJECT:+, inject $PC_INJECT}"
echo "acknowledged records: $total_acks; the last check found ${FINAL_N:-no} records"
echo "image check: $HOST_CHECK"
echo "timings: initramfs ${INITRD_TIME}s, boots ${BOOT_TIMES[*]} s, power-cut test ${PC_TIME}s, total $(elapsed "$T_START" "$(now)")s"
if [ ${#FAILS[@]} = 0 ]; then
    PC_RC=0
    echo "lab: powercut OK: $PC_CYCLES power cut(s), every acknowledged record recovered (console log: $LOG_KEEP)"
else
    PC_RC=1
    echo "failures:"
    for f in "${FAILS[@]}"; do echo "  $f"; done
    echo "lab: powercut FAILED (console log: $LOG_KEEP)"
fi

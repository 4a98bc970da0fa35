#!/bin/sh
# lab/guest/powercut.sh - one boot of the power-cut test (busybox sh).
#
# Run by /init instead of the suite when lab/run --powercut boots the guest
# with a virtio disk (/dev/vda) and "labpc_cycle=C" on the kernel command line.
# Each boot:
#   1. mounts the disk (mkfs.ext4 first only if it has no ext4 superblock), so
#      ext4 replays its journal after the previous power cut;
#   2. if the log exists: checks it as it was left ("verify before", for
#      information), recovers it by opening it as a writer with empty input
#      (the torn tail is cut), verifies it (must be clean), reads every record
#      and checks each against powercut.awk -> one "CHECK OK|FAIL ..." line;
#   3. with labpc_append=1: a first writer that never persists appends records of
#      cycle C from the next LSN and is killed with kill -9; then the appends of
#      cycle C go on from where it stopped with `dynadax log append`, printing
#      "ACK <lsn>" on the console for every LSN dynadax acknowledges, until the host
#      kills qemu (the power cut). The killed writer's records must survive too.
#      With labpc_dur=raft, the same with the openraft log store (raft_boot).
#      With labpc_append=0 (the last boot) it unmounts and powers off.
# Every line for the host starts with PC- or is a CHECK/ACK line.

DEV=/dev/vda
MNT=/mnt/disk
LOGDIR=$MNT/log
AWKF=/lab/powercut.awk

# Parameters from the kernel command line (lab/run sets them).
labpc_cycle=0 labpc_append=0 labpc_dur=group labpc_seg=256K labpc_maxrec=8K labpc_inject= labpc_layout=files
for kv in $(cat /proc/cmdline); do
    case "$kv" in
        labpc_cycle=*|labpc_append=*|labpc_dur=*|labpc_seg=*|labpc_maxrec=*|labpc_inject=*|labpc_layout=*)
            eval "${kv%%=*}=\${kv#*=}" ;;
    esac
done
CYCLE=$labpc_cycle
WOPTS="--segment-size $labpc_seg --max-record $labpc_maxrec"
# The single-file layout: every segment a slot of one 256 MiB data file (ring).
[ "$labpc_layout" = single-file ] && WOPTS="$WOPTS --layout single-file --capacity 256M"

# Keep kernel messages off the console while ACK lines stream (they could
# interleave with them); they are shown from dmesg instead.
echo 1 > /proc/sys/kernel/printk

up() { cut -d' ' -f1 /proc/uptime; }
pcfail() { echo "PC-FAIL $*"; }
show_dmesg() {
    dmesg | grep -iE 'ext4|jbd2|vda|blk_update|I/O error|EXT4|virtio' | grep -v 'Unknown kernel command line' \
        | tail -n 20 | sed 's/^/PC-DMESG /'
}

echo "PC-BOOT cycle=$CYCLE append=$labpc_append durability=$labpc_dur segment=$labpc_seg max_record=$labpc_maxrec uptime=$(up)s${labpc_inject:+ inject=$labpc_inject}"

i=0
while [ ! -b $DEV ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if [ ! -b $DEV ]; then
    pcfail "$DEV did not appear (virtio_blk not loaded, or no -drive if=virtio?)"; show_dmesg; exit 1
fi
command -v dynadax > /dev/null || { pcfail "no dynadax binary in the guest"; exit 1; }

# ext4 superblock magic 0xEF53 at byte 1024 + 56, little-endian.
magic=$(dd if=$DEV bs=1 skip=1080 count=2 2>/dev/null | od -An -tx1 | tr -d ' \n')
if [ "$magic" != 53ef ]; then
    if [ "$CYCLE" != 1 ]; then pcfail "no ext4 on $DEV in cycle $CYCLE (magic '$magic')"; exit 1; fi
    t0=$(up)
    mkfs.ext4 -q -F -b 4096 $DEV > /tmp/mkfs.out 2>&1 || { pcfail "mkfs.ext4 $DEV: $(head -n 3 /tmp/mkfs.out)"; exit 1; }
    echo "PC-MKFS ext4 on $DEV ($(($(cat /sys/block/vda/size) / 2048)) MiB) in $(awk -v a="$t0" -v b="$(up)" 'BEGIN{printf "%.1f", b - a}')s"
fi
mkdir -p $MNT
t0=$(up)
dmesg -c > /dev/null
if ! mount -t ext4 $DEV $MNT 2>/tmp/mount.err; then
    pcfail "mount $DEV: $(cat /tmp/mount.err)"; show_dmesg; exit 1
fi
echo "PC-MOUNT $(grep " $MNT " /proc/mounts | cut -d' ' -f3,4) in $(awk -v a="$t0" -v b="$(up)" 'BEGIN{printf "%.1f", b - a}')s; write cache: $(cat /sys/block/vda/queue/write_cache 2>/dev/null)"
show_dmesg

# The openraft log store (labpc_dur=raft): dynadax-raft-crash (the raft crate's
# crash test binary) checks the store as a boot after a power cut must find it,
# and appends one entry at a time, printing "ACK <index>" once openraft's flush
# callback says it is durable. The CHECK, PC-START and ACK lines have the log's
# format, so the host checks both alike.
raft_boot() {
    RAFTDIR=$MNT/raft
    command -v dynadax-raft-crash > /dev/null || { pcfail "no dynadax-raft-crash binary in the guest"; exit 1; }
    if [ -d $RAFTDIR ]; then
        t0=$(up)
        dynadax-raft-crash powercut-check $RAFTDIR "$CYCLE" > /tmp/check.out 2> /tmp/check.err
        grep -q '^CHECK ' /tmp/check.out || echo "CHECK FAIL the checker printed no verdict: $(grep -v '^ ' /tmp/check.err | head -n 2 | tr '\n' ' ')"
        cat /tmp/check.out
        echo "PC-CHECKED in $(awk -v a="$t0" -v b="$(up)" 'BEGIN{printf "%.1f", b - a}')s"
        NEXT=$(sed -n 's/^CHECK OK n=\([0-9]*\) .*/\1/p' /tmp/check.out)
    else
        [ "$CYCLE" = 1 ] || pcfail "cycle $CYCLE: no store at $RAFTDIR"
        echo "PC-NEWLOG $RAFTDIR"
        NEXT=0
    fi
    [ "$labpc_append" = 1 ] || return 0
    if [ -z "$NEXT" ]; then pcfail "not appending: the check did not pass"; return 0; fi
    sync
    echo 10 > /proc/sys/vm/dirty_writeback_centisecs
    echo 10 > /proc/sys/vm/dirty_expire_centisecs
    dynadax-raft-crash powercut-append $RAFTDIR "$CYCLE" 2> /tmp/append.err \
        | awk '/^ACK / && !seen { seen = 1; getline up < "/proc/uptime"; split(up, u, " "); print "PC-FIRST-ACK uptime=" u[1] "s" }
               { print; fflush() }'
    grep -v '^ ' /tmp/append.err | head -n 5 | sed 's/^/PC-APPEND | /'
    pcfail "the appender stopped before the power cut"
    show_dmesg
}

log_boot() {
    if [ -d $LOGDIR ]; then
        t0=$(up)
        # As the power cut left it (a torn tail is expected to be reported here).
        dynadax log verify $LOGDIR > /tmp/verify0.out 2>&1
        rc=$?
        echo "PC-VERIFY-BEFORE rc=$rc $(tail -n 1 /tmp/verify0.out)"
        [ $rc = 0 ] || grep -v '^$' /tmp/verify0.out | head -n 5 | sed 's/^/PC-VERIFY-BEFORE | /'
        # Recover: open as a writer with no input (cuts a torn tail, reports it).
        dynadax log append $LOGDIR $WOPTS < /dev/null > /tmp/recover.out 2>&1
        rc=$?
        sed 's/^/PC-RECOVERY | /' /tmp/recover.out
        echo "PC-RECOVERY rc=$rc repairs=$(grep -c 'recovery:' /tmp/recover.out)"
        [ $rc = 0 ] || pcfail "dynadax log append (recovery open) exited $rc"
        dynadax log verify $LOGDIR > /tmp/verify1.out 2>&1
        rc=$?
        echo "PC-VERIFY rc=$rc $(tail -n 1 /tmp/verify1.out)"
        [ $rc = 0 ] || { pcfail "dynadax log verify after recovery exited $rc"; head -n 5 /tmp/verify1.out | sed 's/^/PC-VERIFY | /'; }
        dynadax log stat $LOGDIR 2>&1 | head -n 1 | sed 's/^/PC-STAT /'
        # Check every record (LSNs from 0, content from cycle and LSN).
        rm -f /tmp/read.rc
        { dynadax log read $LOGDIR 2>/tmp/read.err; echo $? > /tmp/read.rc; } \
            | awk -v mode=check -v maxcycle=$((CYCLE - 1)) -f $AWKF > /tmp/check.out
        rc=$(cat /tmp/read.rc)
        if [ "$rc" != 0 ]; then
            echo "CHECK FAIL dynadax log read exited $rc: $(head -n 1 /tmp/read.err)"
        elif [ ! -s /tmp/check.out ]; then
            echo "CHECK FAIL the checker printed nothing"
        else
            cat /tmp/check.out
        fi
        echo "PC-CHECKED in $(awk -v a="$t0" -v b="$(up)" 'BEGIN{printf "%.1f", b - a}')s"
        NEXT=$(sed -n 's/^CHECK OK n=\([0-9]*\) .*/\1/p' /tmp/check.out)
    else
        [ "$CYCLE" = 1 ] || pcfail "cycle $CYCLE: no log at $LOGDIR"
        echo "PC-NEWLOG $LOGDIR"
        NEXT=0
    fi

    if [ "$labpc_append" = 1 ]; then
        if [ -z "$NEXT" ]; then
            pcfail "not appending: the check did not pass"
        else
            lie=0
            case "$labpc_inject" in lying-acks) lie=1 ;; esac
            sync   # nothing of the check left to write back: the power cut hits the appends only
            # Odd cycles write dirty pages back early and often (every 0.1 s, once
            # 0.1 s old), as a busy machine would: what is not yet acknowledged is
            # then partly on the disk when the power goes (torn records, for
            # recovery to cut), instead of only in the page cache. Even cycles keep
            # write-back slow and write the tail through its mapping (msync of each
            # append's own range), so that what the killed writer below left stays
            # in the page cache only, up to the power cut.
            if [ $((CYCLE % 2)) = 0 ]; then TM="--tail-mode direct" WB=3000; else TM="" WB=10; fi
            echo 3000 > /proc/sys/vm/dirty_writeback_centisecs
            echo 3000 > /proc/sys/vm/dirty_expire_centisecs
            echo "PC-START cycle=$CYCLE lsn=$NEXT durability=$labpc_dur uptime=$(up)s"
            # First a writer that never persists, killed with kill -9 after a moment:
            # its records are written but not durable. The next writer adopts them, and
            # must persist them before it acknowledges anything of its own (review
            # defect 2): the check after the power cut wants them all, then its ACKs.
            awk -v mode=gen -v cycle="$CYCLE" -v start="$NEXT" -f $AWKF \
                | dynadax log append $LOGDIR --durability none $WOPTS $TM > /dev/null 2>/tmp/pre.err &
            APID=$!
            # Killed once it has made the log (on the first cycle, the log is new: a
            # slow emulated machine may take longer than the pause to create it) and
            # written for a moment.
            _w=0
            while [ ! -e $LOGDIR/log.meta ] && [ $_w -lt 200 ]; do sleep 0.05; _w=$((_w + 1)); done
            sleep 0.5
            kill -9 $APID 2>/dev/null
            wait $APID 2>/dev/null
            PRE=$(dynadax log stat $LOGDIR --json | sed -n 's/.*"durable_lsn":\([0-9]*\).*/\1/p')
            [ -n "$PRE" ] || { pcfail "log stat after the killed writer printed no durable_lsn"; PRE=$NEXT; }
            echo "PC-PREWRITER killed -9 after writing LSNs $NEXT..$((PRE - 1)) ($((PRE - NEXT)) records, not persisted)"
            echo "PC-ACKS-FROM lsn=$PRE"
            echo $WB > /proc/sys/vm/dirty_writeback_centisecs
            echo $WB > /proc/sys/vm/dirty_expire_centisecs
            # The appends run until the host pulls the plug.  dynadax prints each
            # LSN once it is durable; the last awk turns that into an ACK line.
            awk -v mode=gen -v cycle="$CYCLE" -v start="$PRE" -v lie=$lie -f $AWKF \
                | dynadax log append $LOGDIR --durability "$labpc_dur" $WOPTS $TM 2>/tmp/append.err \
                | if [ $lie = 1 ]; then cat > /dev/null; else
                    awk 'NR == 1 { getline up < "/proc/uptime"; split(up, u, " "); print "PC-FIRST-ACK uptime=" u[1] "s" }
                         { print "ACK " $0; fflush() }'; fi
            # Only reached if the appender stopped by itself: a failure.
            sed 's/^/PC-APPEND | /' /tmp/append.err
            pcfail "the appender stopped before the power cut"
            show_dmesg
        fi
    fi
}

if [ "$labpc_dur" = raft ]; then raft_boot; else log_boot; fi

cd /
sync
if umount $MNT 2>/tmp/umount.err; then echo "PC-UNMOUNTED"; else pcfail "umount: $(cat /tmp/umount.err)"; fi
echo "PC-END cycle=$CYCLE uptime=$(up)s"

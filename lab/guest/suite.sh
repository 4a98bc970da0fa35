#!/bin/sh
# lab/guest/suite.sh - the DAX lab's guest-side suite (busybox sh).
#
# Runs inside the qemu guest booted by lab/run, as /lab/suite.sh.  For each
# configuration (file system x dax mount option, on /dev/pmem0; plus a
# block device without DAX and two mounts side by side) it formats the
# device, mounts it and runs the scenario functions sc_*.  Each scenario
# prints one line
#     SCENARIO <name> <config> PASS|FAIL|SKIP [detail]
# and the counts go to /tmp/lab-counts ("failed passed skipped") for /init.
#
# Ground truth is the kernel itself, seen through xfs_io:
#   FS_XFLAG_DAX (persistent hint)  xfs_io -c 'lsattr -v'   -> "[dax] file"
#   S_DAX (effective)               xfs_io -c 'statx -r'    -> stat.attributes & 0x200000
#   MAP_SYNC                        xfs_io -c 'mmap -S -rw' -> mapping listed with "S",
#                                                              or "Operation not supported"

PMEM=/dev/pmem0
PMEM2=/dev/pmem1
NODAX=/dev/ram0                  # brd: a block device without DAX support
MNT=/mnt/lab
MNT2=/mnt/lab2
STATX_ATTR_DAX=0x200000          # include/uapi/linux/stat.h (since 5.10; 0x2000 before)
STATX_ATTR_MOUNT_ROOT=0x2000

DYNADAX=$(command -v dynadax || true)
LABTESTS=$(command -v dynadax-labtests || true)
: "${LAB_REQUIRE_DYNADAX:=0}"
[ -r /etc/lab.conf ] && . /etc/lab.conf

N_PASS=0 N_FAIL=0 N_SKIP=0
CFG=-            # config name shown in the SCENARIO lines, e.g. ext4-dax=inode
FS=              # ext4 | xfs
MODE=            # inode | always | never: the mount option asked for
EMODE=           # the mode in force (xfs degrades always -> never without DAX)
DEVDAX=1         # 1 if the device under $MNT supports DAX
HOLDER=
FAILF=/tmp/scenario.fail
SKIPF=/tmp/scenario.skip
DONEF=/tmp/scenario.done

# ------------------------------------------------------------ helpers

log()  { echo "    $*"; }
fail() { echo "$*" >> "$FAILF"; echo "    FAIL: $*"; }
skip() { echo "$*" > "$SKIPF"; echo "    skip: $*"; }

# expect WHAT GOT WANT
expect() {
    if [ "$2" = "$3" ]; then
        echo "    ok: $1 = $2"
    else
        fail "$1: got '$2', want '$3'"
    fi
}

# hint PATH: 1 if the persistent FS_XFLAG_DAX is set, 0 if not.
hint() {
    _o=$(xfs_io -r -c 'lsattr -v' "$1" 2>&1) || { echo "ERR($_o)"; return; }
    case "$_o" in
        \[*\]*) _o=${_o%%]*}; case "$_o" in *dax*) echo 1 ;; *) echo 0 ;; esac ;;
        *) echo "ERR($_o)" ;;
    esac
}

# setx PATH +x|-x: set/clear FS_XFLAG_DAX with xfs_io.
setx() {
    _o=$(xfs_io -r -c "chattr $2" "$1" 2>&1)
    [ -z "$_o" ] || fail "xfs_io chattr $2 $1: $_o"
}

# sattr PATH FIELD: a raw statx field (attributes, attributes_mask).
sattr() { xfs_io -r -c 'statx -r' "$1" 2>&1 | sed -n "s/^stat\.$2 = //p"; }

# edax PATH: 1 if STATX_ATTR_DAX (S_DAX, the effective state) is set.
edax() {
    _a=$(sattr "$1" attributes)
    case "$_a" in 0x*) bit "$_a" $STATX_ATTR_DAX ;; *) echo "ERR(statx: $_a)" ;; esac
}

# mapsync PATH: 1 if mmap(MAP_SHARED_VALIDATE|MAP_SYNC) succeeds, 0 if it
# fails with EOPNOTSUPP.
mapsync() {
    _o=$(xfs_io -c 'mmap -S -rw 0 4k' -c 'mmap' "$1" 2>&1)
    case "$_o" in
        *"rw- S"*) echo 1 ;;
        *"mmap: Operation not supported"*) echo 0 ;;
        *) echo "ERR($_o)" ;;
    esac
}

# want_e HINT: the S_DAX the kernel should give a regular file that has
# FS_XFLAG_DAX = HINT when its inode is instantiated (rules R4/R5/R8).
want_e() {
    if [ "$DEVDAX" != 1 ]; then echo 0; return; fi
    case "$EMODE" in never) echo 0 ;; always) echo 1 ;; *) echo "$1" ;; esac
}

# mkfile PATH [BYTE]: a 64 KiB file written through the page cache (or DAX).
mkfile() { xfs_io -f -c "pwrite -q -S ${2:-0xab} 0 64k" "$1"; }

md5() { md5sum < "$1" | cut -d' ' -f1; }

drop_caches() { sync; echo 2 > /proc/sys/vm/drop_caches; }

# hold PATH: keep PATH open in another process (a reader) until release.
hold() {
    sleep 600 < "$1" > /dev/null 2>&1 &
    HOLDER=$!
    _want=$(realpath "$1"); _i=0
    while [ "$(readlink "/proc/$HOLDER/fd/0" 2>/dev/null)" != "$_want" ]; do
        _i=$((_i + 1)); [ $_i -gt 200 ] && { fail "holder of $1 never opened it"; break; }
        sleep 0.05
    done
}
release() {
    [ -n "$HOLDER" ] || return 0
    kill "$HOLDER" 2>/dev/null; wait "$HOLDER" 2>/dev/null; HOLDER=
}

# bit VALUE MASK: 1 if the hex VALUE has a bit of MASK set (ERR if VALUE is not hex).
bit() { case "$1" in 0x*) echo $(( ($1 & $2) != 0 )) ;; *) echo "ERR($1)" ;; esac; }

bool() { [ "$1" = 1 ] && echo true || echo false; }

# jget KEY: the value of KEY in the one-line JSON object on stdin (strings
# without quotes; true/false/null/numbers as they are).
jget() {
    sed -n -E "s/.*\"$1\"[[:space:]]*:[[:space:]]*(\"([^\"]*)\"|([^,}[:space:]]*)).*/\2\3/p" | head -n 1
}

# dd ARGS...: run dynadax with a time limit; output on stdout, errors shown.
dd_run() { timeout 60 "$DYNADAX" "$@"; }

need_dynadax() {
    if [ -z "$DYNADAX" ]; then
        if [ "$LAB_REQUIRE_DYNADAX" = 1 ]; then fail "dynadax binary missing in the guest"
        else skip "no dynadax binary in the initramfs (build it, or pass --bin-dir)"; fi
        return 1
    fi
}

# scenario NAME: run sc_NAME in a fresh directory $MNT/NAME and print its
# SCENARIO line.
scenario() {
    _name=$1
    : > "$FAILF"; rm -f "$SKIPF" "$DONEF"
    echo "--- $_name [$CFG]"
    _dir=$MNT/$_name
    rm -rf "$_dir"; mkdir -p "$_dir"
    _st0=$(uptime_s)
    ( cd "$_dir" || { fail "cannot cd to $_dir"; exit; }
      "sc_$_name"; release; echo done > "$DONEF" )
    # a scenario whose shell died half-way (e.g. bad arithmetic) fails
    [ -s "$DONEF" ] || fail "scenario $_name stopped before its end"
    echo "    ($_name took $(awk -v a="$_st0" -v b="$(uptime_s)" 'BEGIN{printf "%.1f", b - a}')s)"
    if [ -s "$SKIPF" ]; then
        _res=SKIP; _detail=$(head -n 1 "$SKIPF"); N_SKIP=$((N_SKIP + 1))
    elif [ -s "$FAILF" ]; then
        _res=FAIL; _detail=$(head -n 1 "$FAILF")
        _n=$(wc -l < "$FAILF"); [ "$_n" -gt 1 ] && _detail="$_detail (+$((_n - 1)) more)"
        N_FAIL=$((N_FAIL + 1))
    else
        _res=PASS; _detail=; N_PASS=$((N_PASS + 1))
    fi
    echo "SCENARIO $_name $CFG $_res${_detail:+ $_detail}"
}

# record NAME RESULT DETAIL: a SCENARIO line for a check done outside sc_*.
record() {
    case "$2" in PASS) N_PASS=$((N_PASS + 1)) ;; FAIL) N_FAIL=$((N_FAIL + 1)) ;; *) N_SKIP=$((N_SKIP + 1)) ;; esac
    echo "SCENARIO $1 $CFG $2${3:+ $3}"
}

# mkfs_dev FS DEV: format with 4096-byte blocks (= PAGE_SIZE, needed for DAX).
mkfs_dev() {
    case "$1" in
        ext4) mkfs.ext4 -q -F -b 4096 "$2" ;;
        xfs)  mkfs.xfs -q -f -b size=4096 "$2" ;;
    esac
}

# unmount DIR: umount, retrying for a while (busybox `timeout` leaves its
# watcher process, whose cwd is on the mount, for up to a second after the
# command ends).  After 2 s, processes still using DIR are named and killed.
unmount() {
    _i=0
    while ! umount "$1" 2>/tmp/umount.err; do
        _i=$((_i + 1))
        if [ $_i = 20 ]; then
            for _p in /proc/[0-9]*; do
                _pid=${_p#/proc/}
                [ "$_pid" = $$ ] && continue
                if readlink "$_p/cwd" 2>/dev/null | grep -q "^$1" \
                    || ls -l "$_p/fd" 2>/dev/null | grep -q " $1/"; then
                    echo "    WARN: leftover process $_pid ($(tr '\0' ' ' < "$_p/cmdline")) still uses $1: killed"
                    kill -9 "$_pid" 2>/dev/null
                fi
            done
        fi
        if [ $_i -gt 50 ]; then echo "    $(cat /tmp/umount.err)"; return 1; fi
        sleep 0.1
    done
}

uptime_s() { cut -d' ' -f1 /proc/uptime; }
# cfg_time T0: how long the configuration that started at T0 took.
cfg_time() { echo "=== configuration $CFG took $(awk -v a="$1" -v b="$(uptime_s)" 'BEGIN{printf "%.1f", b - a}')s"; }

mount_opts() { grep "^$1 " /proc/mounts | cut -d' ' -f4; }

# ------------------------------------------------------------ scenarios
# Each runs in its own empty directory under the mount; the mount's root
# directory has no FS_XFLAG_DAX, so new entries start with hint 0.

# What the kernel reports for the mount (rules R5/R8).
sc_mount_reports() {
    _opts=$(mount_opts "$DEV")
    log "/proc/mounts: $DEV $FS $_opts"
    log "/sys/block/${DEV#/dev/}/queue/dax = $(cat /sys/block/${DEV#/dev/}/queue/dax)"
    expect "queue/dax of $DEV" "$(cat /sys/block/${DEV#/dev/}/queue/dax)" "$DEVDAX"
    case "$FS:$EMODE" in
        # XFS does not print the default dax=inode, prints always/never.
        xfs:inode) case ",$_opts," in *,dax=*) fail "xfs shows a dax option for dax=inode: $_opts" ;; *) log "ok: no dax= shown (xfs default)" ;; esac ;;
        # ext4 prints the option that was given.
        *) case ",$_opts," in *",dax=$EMODE,"*) log "ok: dax=$EMODE shown" ;; *) fail "expected dax=$EMODE in '$_opts'" ;; esac ;;
    esac
}

# R2: the persistent flag can be set and cleared on a regular file, in any
# mount mode and on any device.
sc_flag_file() {
    mkfile f
    expect "hint of new file" "$(hint f)" 0
    setx f +x; expect "hint after chattr +x" "$(hint f)" 1
    setx f -x; expect "hint after chattr -x" "$(hint f)" 0
    setx f +x; expect "hint after chattr +x again" "$(hint f)" 1
    drop_caches
    expect "hint after drop_caches (persisted)" "$(hint f)" 1
}

# R2 on a directory; directories are never S_DAX (R4).
sc_flag_dir() {
    mkdir d
    expect "hint of new dir" "$(hint d)" 0
    setx d +x; expect "hint after chattr +x" "$(hint d)" 1
    expect "statx DAX of a dax dir" "$(edax d)" 0
    setx d -x; expect "hint after chattr -x" "$(hint d)" 0
}

# R3: dax.rst examples A, B and C, verbatim.
sc_inherit_examples() {
    mkdir A B C
    ( cd A && mkdir -p a/b/c && setx a +x && mkdir a/b/c/d && mkdir a/e )
    for p in a a/e; do expect "A: hint $p" "$(hint A/$p)" 1; done
    for p in a/b a/b/c a/b/c/d; do expect "A: hint $p" "$(hint A/$p)" 0; done
    ( cd B && mkdir a && setx a +x && mkdir -p a/b/c/d )
    for p in a a/b a/b/c a/b/c/d; do expect "B: hint $p" "$(hint B/$p)" 1; done
    ( cd C && mkdir -p a/b/c && setx a/b/c +x && mkdir a/b/c/d )
    for p in a/b/c a/b/c/d; do expect "C: hint $p" "$(hint C/$p)" 1; done
    for p in a a/b; do expect "C: hint $p" "$(hint C/$p)" 0; done
}

# R3: new files copy the parent's hint at creation; rename keeps the
# inode's own hint; a copy is a new file and takes its new parent's hint;
# changing a directory's hint leaves existing children alone.
sc_inherit_files() {
    mkdir dax plain
    mkfile dax/old
    setx dax +x
    expect "file created before the dir got +x" "$(hint dax/old)" 0
    mkfile dax/f; expect "new file in dax dir" "$(hint dax/f)" 1
    mkfile plain/g; expect "new file in plain dir" "$(hint plain/g)" 0
    mv dax/f plain/f; expect "dax file renamed into plain dir" "$(hint plain/f)" 1
    mv plain/g dax/g; expect "plain file renamed into dax dir" "$(hint dax/g)" 0
    cp plain/f plain/f.copy; expect "copy of dax file in plain dir" "$(hint plain/f.copy)" 0
    cp dax/g dax/g.copy; expect "copy of plain file in dax dir" "$(hint dax/g.copy)" 1
    setx dax -x
    expect "existing child after parent -x" "$(hint dax/g.copy)" 1
    mkfile dax/h; expect "new file after parent -x" "$(hint dax/h)" 0
}

# R4/R5/R8/R10: S_DAX of new files by hint and mount option; never on
# directories; the same after the inodes are evicted and read back.
sc_effective_policy() {
    mkdir dax plain
    setx dax +x
    mkfile plain/f; mkfile dax/f
    expect "statx DAX, hint 0 file" "$(edax plain/f)" "$(want_e 0)"
    expect "statx DAX, hint 1 file" "$(edax dax/f)" "$(want_e 1)"
    expect "statx DAX, hint 1 dir" "$(edax dax)" 0
    expect "statx DAX, hint 0 dir" "$(edax plain)" 0
    drop_caches
    expect "after eviction, hint 0 file" "$(edax plain/f)" "$(want_e 0)"
    expect "after eviction, hint 1 file" "$(edax dax/f)" "$(want_e 1)"
    _m=$(sattr dax/f attributes_mask)
    expect "STATX_ATTR_DAX in attributes_mask ($_m)" "$(bit "$_m" $STATX_ATTR_DAX)" 1
    _a=$(sattr dax/f attributes)
    expect "0x2000 (MOUNT_ROOT, old DAX value) not set on a file ($_a)" "$(bit "$_a" $STATX_ATTR_MOUNT_ROOT)" 0
}

# R9: MAP_SHARED_VALIDATE|MAP_SYNC works iff the file is S_DAX on a
# synchronous device, else EOPNOTSUPP; a store through the MAP_SYNC mapping
# lands in the file.
sc_map_sync() {
    mkdir dax plain
    setx dax +x
    mkfile plain/f; mkfile dax/f
    for f in plain/f dax/f; do
        _e=$(edax $f)
        expect "MAP_SYNC on $f (statx DAX $_e)" "$(mapsync $f)" "$_e"
    done
    expect "MAP_SYNC on hint 0 file is as policy" "$(mapsync plain/f)" "$(want_e 0)"
    expect "MAP_SYNC on hint 1 file is as policy" "$(mapsync dax/f)" "$(want_e 1)"
    _o=$(xfs_io -c 'mmap -rw 0 4k' -c 'mmap' plain/f 2>&1)
    case "$_o" in *"rw- "*) log "ok: plain MAP_SHARED mapping works" ;; *) fail "plain MAP_SHARED mmap failed: $_o" ;; esac
    if [ "$(want_e 1)" = 1 ]; then
        xfs_io -c 'mmap -S -rw 0 4k' -c 'mwrite -S 0x5a 0 4k' -c 'munmap' dax/f > /dev/null
        drop_caches
        _b=$(xfs_io -r -c 'pread -v 0 4' dax/f | sed -n 's/^00000000: *\(.. .. .. ..\).*/\1/p')
        expect "bytes stored through MAP_SYNC mapping" "$_b" "5a 5a 5a 5a"
    fi
}

# R6/R7: toggling the hint on an open file does not change S_DAX while any
# reference exists (not even with drop_caches); after the last close the
# next lookup gets the new S_DAX (dax=inode only; under always/never the
# mount option keeps winning).  Data written through the page cache before
# the switch survives it (generic/608).
sc_switch_on_close() {
    mkfile f 0xab
    mkfile /tmp/ref 0xab; _ref=$(md5 /tmp/ref); rm -f /tmp/ref
    expect "before: hint" "$(hint f)" 0
    expect "before: statx DAX" "$(edax f)" "$(want_e 0)"
    hold f
    setx f +x
    expect "held, +x: hint" "$(hint f)" 1
    expect "held, +x: statx DAX unchanged" "$(edax f)" "$(want_e 0)"
    drop_caches
    expect "held, +x, drop_caches: statx DAX unchanged" "$(edax f)" "$(want_e 0)"
    release
    expect "after last close: statx DAX" "$(edax f)" "$(want_e 1)"
    expect "after last close: MAP_SYNC" "$(mapsync f)" "$(want_e 1)"
    expect "data survived the switch" "$(md5 f)" "$_ref"
    hold f
    setx f -x
    expect "held, -x: statx DAX unchanged" "$(edax f)" "$(want_e 1)"
    release
    expect "after last close: statx DAX" "$(edax f)" "$(want_e 0)"
    expect "data survived the switch back" "$(md5 f)" "$_ref"
}

# R4/R5/R7: the same two files under each mount option, by remounting
# (hints persisted under any option; S_DAX decided at instantiation).
sc_remount_policy() {
    mkfile f0; mkfile f1; setx f1 +x
    _sub=$(basename "$PWD")
    cd /
    for _m in inode always never; do
        unmount "$MNT" || { fail "umount $MNT"; return; }
        if ! mount -t "$FS" -o "dax=$_m" "$DEV" "$MNT" 2>/tmp/mount.err; then
            if [ "$FS:$_m:$DEVDAX" = "ext4:always:0" ]; then
                log "ok: ext4 refuses dax=always on a device without DAX: $(cat /tmp/mount.err)"
                mount -t "$FS" -o "dax=$MODE" "$DEV" "$MNT" || { fail "remount dax=$MODE"; return; }
                continue
            fi
            fail "mount -o dax=$_m: $(cat /tmp/mount.err)"
            mount -t "$FS" -o "dax=$MODE" "$DEV" "$MNT"; return
        fi
        _w0=0; _w1=0
        if [ "$DEVDAX" = 1 ]; then
            case $_m in always) _w0=1; _w1=1 ;; inode) _w1=1 ;; esac
        fi
        expect "dax=$_m: hint f0/f1" "$(hint $MNT/$_sub/f0)/$(hint $MNT/$_sub/f1)" "0/1"
        expect "dax=$_m: statx DAX f0/f1" "$(edax $MNT/$_sub/f0)/$(edax $MNT/$_sub/f1)" "$_w0/$_w1"
    done
    unmount "$MNT" && mount -t "$FS" -o "dax=$MODE" "$DEV" "$MNT" || fail "remount dax=$MODE"
}

# ---- dynadax against the kernel (needs the dynadax binary) ----

# `dynadax mode` sets what xfs_io lsattr reads, and `dynadax stat` reads
# what xfs_io chattr set.
sc_dynadax_mode() {
    need_dynadax || return
    mkfile f; mkdir d
    for p in f d; do
        dd_run mode $p direct || fail "dynadax mode $p direct failed"
        expect "xfs_io hint after dynadax mode $p direct" "$(hint $p)" 1
        expect "dynadax stat $p physical" "$(dd_run stat $p --json | jget physical)" direct
        dd_run mode $p cached || fail "dynadax mode $p cached failed"
        expect "xfs_io hint after dynadax mode $p cached" "$(hint $p)" 0
        expect "dynadax stat $p physical" "$(dd_run stat $p --json | jget physical)" cached
        setx $p +x
        expect "dynadax stat $p physical after xfs_io +x" "$(dd_run stat $p --json | jget physical)" direct
        setx $p -x
        expect "dynadax stat $p physical after xfs_io -x" "$(dd_run stat $p --json | jget physical)" cached
    done
    expect "dynadax stat f flag_store" "$(dd_run stat f --json | jget flag_store)" fs-xflag
}

# dd_check_stat PATH WHAT: `dynadax stat PATH --json` must agree with the
# kernel: physical = FS_XFLAG_DAX; backing kernel-dax exactly when statx
# says DAX; on a DAX-capable device effective = statx (direct/cached) and
# pending exactly when the hint and S_DAX differ under dax=inode; without
# DAX, direct is emulated (effective = physical, backing emulated).
dd_check_stat() {
    _j=$(dd_run stat "$1" --json); log "dynadax stat $1: $_j"
    _h=$(hint "$1"); _e=$(edax "$1")
    _phys=cached; [ "$_h" = 1 ] && _phys=direct
    expect "$2: physical vs FS_XFLAG_DAX $_h" "$(echo "$_j" | jget physical)" "$_phys"
    if [ "$DEVDAX" = 1 ]; then
        _eff=cached; [ "$_e" = 1 ] && _eff=direct
    else
        _eff=$_phys
    fi
    expect "$2: effective vs statx DAX $_e" "$(echo "$_j" | jget effective)" "$_eff"
    if [ "$_e" = 1 ]; then _bk=kernel-dax; elif [ "$_eff" = direct ]; then _bk=emulated; else _bk=page-cache; fi
    expect "$2: backing" "$(echo "$_j" | jget backing)" "$_bk"
    _pend=false
    [ "$DEVDAX" = 1 ] && [ "$EMODE" = inode ] && [ "$_h" != "$_e" ] && _pend=true
    expect "$2: pending" "$(echo "$_j" | jget pending)" "$_pend"
    expect "$2: kind" "$(echo "$_j" | jget kind)" file
}

# `dynadax stat` agrees with the kernel, also across a pending switch.
sc_dynadax_stat() {
    need_dynadax || return
    mkdir dax plain; setx dax +x
    mkfile plain/f; mkfile dax/f
    dd_check_stat plain/f "hint 0 file"
    dd_check_stat dax/f "hint 1 file"
    _j=$(dd_run stat dax --json); log "dynadax stat dax: $_j"
    expect "dir: effective" "$(echo "$_j" | jget effective)" null
    expect "dir: physical" "$(echo "$_j" | jget physical)" direct
    expect "dir: kind" "$(echo "$_j" | jget kind)" directory
    # a pending switch: the hint changed while another process holds the file
    hold plain/f
    setx plain/f +x
    dd_check_stat plain/f "held after +x"
    release
    dd_check_stat plain/f "after last close"
    hold dax/f
    dd_run mode dax/f cached > /dev/null || fail "dynadax mode dax/f cached (held by another process) failed"
    dd_check_stat dax/f "held after dynadax mode cached"
    release
    dd_check_stat dax/f "after last close"
}

# A volume policy is dynadax's own: it changes neither FS_XFLAG_DAX nor
# S_DAX, and dynadax never claims kernel DAX that statx does not show.
sc_dynadax_volume() {
    need_dynadax || return
    for _p in always never inode; do
        dd_run volume init "vol-$_p" --policy "$_p" > /dev/null || { fail "dynadax volume init vol-$_p --policy $_p failed"; continue; }
        expect "vol-$_p: FS_XFLAG_DAX of the volume dir" "$(hint "vol-$_p")" 0
        mkfile "vol-$_p/f"
        expect "vol-$_p: statx DAX of a new file is the kernel's" "$(edax "vol-$_p/f")" "$(want_e 0)"
        _j=$(dd_run stat "vol-$_p/f" --json); log "dynadax stat vol-$_p/f: $_j"
        _bk=$(echo "$_j" | jget backing)
        if [ "$(edax "vol-$_p/f")" = 1 ]; then
            expect "vol-$_p: backing of a statx-DAX file" "$_bk" kernel-dax
        else
            [ "$_bk" != kernel-dax ] || fail "vol-$_p: dynadax claims kernel-dax, statx says not DAX"
        fi
    done
}

# `dynadax probe` says map_sync exactly where the kernel's MAP_SYNC works.
sc_dynadax_probe() {
    need_dynadax || return
    mkdir dax plain; setx dax +x
    mkfile plain/f; mkfile dax/f
    for f in plain/f dax/f; do
        _j=$(dd_run probe $f --json); log "dynadax probe $f: $_j"
        _ms=$(mapsync $f)
        expect "$f: probe map_sync vs xfs_io MAP_SYNC $_ms" "$(echo "$_j" | jget map_sync)" "$(bool "$_ms")"
        expect "$f: probe statx_dax" "$(echo "$_j" | jget statx_dax)" "$(bool "$(edax $f)")"
        _p=msync; [ "$_ms" = 1 ] && _p=cache-line-flush
        expect "$f: probe persistence" "$(echo "$_j" | jget persistence)" "$_p"
        expect "$f: probe fs_type" "$(echo "$_j" | jget fs_type)" "$FS"
        expect "$f: probe device_dax" "$(echo "$_j" | jget device_dax)" "$(bool "$DEVDAX")"
        expect "$f: probe flag_store" "$(echo "$_j" | jget flag_store)" fs-xflag
    done
    # for a path that does not exist yet the probe predicts what the kernel
    # will do for a file created there
    for d in plain dax; do
        _j=$(dd_run probe $d/new --json); log "dynadax probe $d/new (missing): $_j"
        mkfile $d/new
        expect "$d/new: predicted map_sync vs xfs_io after creation" "$(echo "$_j" | jget map_sync)" "$(bool "$(mapsync $d/new)")"
    done
}

# The Rust lab tests (a cargo test binary) on this mount.
# Issue 11: `dynadax mode` on the live tail of a log another process writes
# (through a MAP_SYNC mapping on kernel DAX) is refused with exit 3 naming the
# writer, and changes nothing; once the writer ends, it goes through.
sc_dynadax_live_tail() {
    need_dynadax || return
    mkfifo in
    "$DYNADAX" log append L --tail-mode direct --segment-size 1M --max-record 4K < in > out 2> err &
    _w=$!
    exec 3> in
    echo first >&3
    _i=0
    while [ "$(cat out)" != 0 ]; do
        _i=$((_i + 1)); [ $_i -gt 200 ] && { fail "the writer never acknowledged its append: $(cat err)"; break; }
        sleep 0.05
    done
    _t=L/00000000000000000000.dlog
    _sf=$(awk -v f="$PWD/$_t" '/^[0-9a-f]+-[0-9a-f]+ /{m = ($NF == f)} m && /^VmFlags:/ && / sf/{n++} END{print n+0}' "/proc/$_w/smaps")
    if [ "$(edax $_t)" = 1 ]; then
        [ "$_sf" -gt 0 ] || fail "the writer has no MAP_SYNC mapping of its kernel-DAX tail"
    fi
    log "writer $_w: $_sf MAP_SYNC mapping(s) of $_t"
    _phys=$(dd_run stat $_t --json | jget physical)
    _other=direct; [ "$_phys" = direct ] && _other=cached
    dd_run mode $_t $_other > /dev/null 2> /tmp/mode.err; _rc=$?
    log "dynadax mode $_t $_other: $(cat /tmp/mode.err)"
    expect "exit status of dynadax mode on the live tail" "$_rc" 3
    grep -q "process $_w" /tmp/mode.err || fail "the refusal does not name the writer's process $_w"
    grep -q "the writer of the log" /tmp/mode.err || fail "the refusal does not say it is the log's writer"
    expect "physical mode of the live tail after the refusal" "$(dd_run stat $_t --json | jget physical)" "$_phys"
    exec 3>&-
    wait $_w; _rc=$?
    expect "exit status of the writer" "$_rc" 0
    dd_run mode $_t $_other > /dev/null || fail "dynadax mode $_t $_other after the writer ended failed"
    expect "records after the switch" "$(dd_run log read L | wc -l)" 1
}

sc_dynadax_labtests() {
    if [ -z "$LABTESTS" ]; then skip "no dynadax-labtests binary in the initramfs"; return; fi
    mkdir -p work
    log "DYNADAX_LAB_DIR=$PWD/work dynadax-labtests --include-ignored --test-threads=1 --nocapture"
    rm -f /tmp/labtests.rc
    # --nocapture: the LAB-MEASURE lines some tests print are quoted in docs/benchmarks.md.
    ( DYNADAX_LAB_DIR=$PWD/work timeout 300 "$LABTESTS" --include-ignored --test-threads=1 --nocapture 2>&1
      echo $? > /tmp/labtests.rc ) | sed 's/^/    | /'
    _rc=$(cat /tmp/labtests.rc 2>/dev/null || echo missing)
    [ "$_rc" = 0 ] || fail "dynadax-labtests exited with status $_rc"
}

# ------------------------------------------------------------ configurations

# run_config FS MODE DEV: format DEV, mount it on $MNT and run the scenarios.
run_config() {
    FS=$1 MODE=$2 DEV=$3
    _t0=$(uptime_s)
    DEVDAX=$(cat "/sys/block/${DEV#/dev/}/queue/dax" 2>/dev/null || echo 0)
    EMODE=$MODE
    if [ "$DEV" = "$PMEM" ]; then CFG=$FS-dax=$MODE; else CFG=$FS-${DEV#/dev/}-dax=$MODE; fi
    [ "$DEVDAX" = 1 ] || [ "$MODE" = inode ] || EMODE=never
    echo "=== configuration $CFG: mkfs.$FS on $DEV (4096-byte blocks), mount -o dax=$MODE"
    mkdir -p "$MNT"
    if ! mkfs_dev "$FS" "$DEV" > /tmp/mkfs.out 2>&1; then
        record mount FAIL "mkfs.$FS $DEV: $(head -n 1 /tmp/mkfs.out)"; return
    fi
    dmesg -c > /dev/null
    if ! mount -t "$FS" -o "dax=$MODE" "$DEV" "$MNT" 2>/tmp/mount.err; then
        record mount FAIL "mount -o dax=$MODE $DEV: $(cat /tmp/mount.err)"; return
    fi
    dmesg | grep -i dax | sed 's/^/    dmesg: /'
    scenario mount_reports
    scenario flag_file
    scenario flag_dir
    scenario inherit_examples
    scenario inherit_files
    scenario effective_policy
    scenario map_sync
    scenario switch_on_close
    scenario remount_policy
    scenario dynadax_mode
    scenario dynadax_stat
    scenario dynadax_probe
    scenario dynadax_volume
    scenario dynadax_live_tail
    if [ "$MODE" = inode ] && [ "$DEVDAX" = 1 ]; then scenario dynadax_labtests; fi
    cd /
    unmount "$MNT" || record umount FAIL "umount $MNT: $(cat /tmp/umount.err)"
    cfg_time "$_t0"
}

# ext4 refuses dax=always on a device without DAX (R8, ext4 flavour).
config_ext4_always_nodax() {
    CFG=ext4-${NODAX#/dev/}-dax=always
    echo "=== configuration $CFG: ext4 dax=always on a device without DAX must not mount"
    mkfs_dev ext4 "$NODAX" > /dev/null 2>&1
    if mount -t ext4 -o dax=always "$NODAX" "$MNT" 2>/tmp/mount.err; then
        unmount "$MNT"; record mount_refused FAIL "ext4 mounted dax=always on $NODAX (no DAX)"
    else
        echo "    ok: refused: $(cat /tmp/mount.err); dmesg: $(dmesg | grep -i 'dax' | tail -n 1)"
        record mount_refused PASS
    fi
}

# Two mounts at once: a DAX one and a dax=never one (side by side).
config_side_by_side() {
    CFG=side-by-side
    _t0=$(uptime_s)
    echo "=== configuration $CFG: ext4 dax=inode on $PMEM at $MNT, xfs dax=never on $PMEM2 at $MNT2"
    mkfs_dev ext4 "$PMEM" > /dev/null 2>&1 && mkfs_dev xfs "$PMEM2" > /dev/null 2>&1 \
        || { record mount FAIL "mkfs failed"; return; }
    mkdir -p "$MNT" "$MNT2"
    mount -t ext4 -o dax=inode "$PMEM" "$MNT" && mount -t xfs -o dax=never "$PMEM2" "$MNT2" \
        || { record mount FAIL "mount failed"; umount "$MNT" 2>/dev/null; return; }
    FS=ext4 MODE=inode EMODE=inode DEV=$PMEM DEVDAX=1
    scenario side_by_side
    cd /; unmount "$MNT"; unmount "$MNT2"
    cfg_time "$_t0"
}

sc_side_by_side() {
    mkfile f; setx f +x
    mkfile "$MNT2/f"; setx "$MNT2/f" +x
    expect "hints dax-mount/never-mount" "$(hint f)/$(hint "$MNT2/f")" 1/1
    expect "statx DAX dax-mount/never-mount" "$(edax f)/$(edax "$MNT2/f")" 1/0
    expect "MAP_SYNC dax-mount/never-mount" "$(mapsync f)/$(mapsync "$MNT2/f")" 1/0
    [ -n "$DYNADAX" ] || { log "(no dynadax binary: xfs_io side only)"; return; }
    for f in "$PWD/f" "$MNT2/f"; do
        _j=$(dd_run probe "$f" --json); log "dynadax probe $f: $_j"
        expect "$f: probe map_sync vs xfs_io" "$(echo "$_j" | jget map_sync)" "$(bool "$(mapsync "$f")")"
        expect "$f: probe statx_dax vs xfs_io" "$(echo "$_j" | jget statx_dax)" "$(bool "$(edax "$f")")"
    done
}

# A log on a block device part of which reads as I/O errors: device-mapper's
# `error` target (Debian's dmsetup, the lab kernel's dm-mod) under one 4 KiB block
# inside a sealed segment. An I/O error is damage, never a torn write: `log
# verify`, `log read` and a writer's reopen each fail naming the segment and the
# byte offset, and nothing is cut: once the device reads again, every record is
# there and the log verifies clean.
config_io_errors() {
    CFG=ext4-dm-error
    _t0=$(uptime_s)
    echo "=== configuration $CFG: ext4 on a device-mapper device over $NODAX; one block of a sealed segment made an error target"
    : > "$FAILF"
    if ! command -v dmsetup > /dev/null; then record log_io_errors FAIL "no dmsetup in the guest"; return; fi
    if [ -z "$DYNADAX" ]; then
        if [ "$LAB_REQUIRE_DYNADAX" = 1 ]; then record log_io_errors FAIL "no dynadax binary"; else record log_io_errors SKIP "no dynadax binary"; fi
        return
    fi
    export DM_DISABLE_UDEV=1
    _sz=$(cat /sys/block/${NODAX#/dev/}/size)
    DMDEV=/dev/mapper/labdm
    if ! dmsetup create labdm --noudevsync --table "0 $_sz linear $NODAX 0" 2>/tmp/dm.err; then
        record log_io_errors FAIL "dmsetup create: $(cat /tmp/dm.err)"; return
    fi
    [ -b $DMDEV ] || dmsetup mknodes labdm 2>/dev/null
    mkfs_dev ext4 $DMDEV > /tmp/mkfs.out 2>&1 || fail "mkfs.ext4 $DMDEV: $(head -n 1 /tmp/mkfs.out)"
    mount -t ext4 $DMDEV "$MNT" 2>/tmp/mount.err || fail "mount $DMDEV: $(cat /tmp/mount.err)"
    _log=$MNT/log
    awk 'BEGIN { for (i = 0; i < 3000; i++) printf "record-%05d-%0100d\n", i, i }' \
        | dd_run log append "$_log" --segment-size 64K --max-record 1K > /dev/null 2>/tmp/append.err \
        || fail "log append: $(head -n 1 /tmp/append.err)"
    _seg=$_log/00000000000000000000.dlog
    _nseg=$(ls "$_log" | grep -c '\.dlog$')
    log "$_nseg segments; the first, sealed: $(ls -l "$_seg" | awk '{print $5}') bytes"
    [ "$_nseg" -ge 3 ] || fail "want at least 3 segments, got $_nseg"
    sync
    # Physical 512-byte sectors of the segment: "0: [0..127]: START..END".
    _p=$(xfs_io -r -c fiemap "$_seg" | awk 'NR == 2 { split($3, a, "."); print a[1] }')
    case "$_p" in ''|*[!0-9]*) fail "fiemap of $_seg: '$_p'"; _p=0 ;; esac
    # The segment's second 4 KiB block (file bytes 4096..8191) reads as errors.
    _a=$((_p + 8)); _b=$((_a + 8))
    cd /; unmount "$MNT"
    printf '0 %s linear %s 0\n%s 8 error\n%s %s linear %s %s\n' "$_a" "$NODAX" "$_a" "$_b" "$((_sz - _b))" "$NODAX" "$_b" > /tmp/dm.table
    { dmsetup suspend labdm && dmsetup reload labdm --noudevsync /tmp/dm.table && dmsetup resume labdm --noudevsync; } 2>/tmp/dm.err \
        || fail "dmsetup reload: $(cat /tmp/dm.err)"
    log "device-mapper table: $(dmsetup table labdm | tr '\n' ';')"
    mount -t ext4 $DMDEV "$MNT" 2>/tmp/mount.err || fail "remount: $(cat /tmp/mount.err)"
    # The default writer's open reads no sealed record (the index files): it opens.
    dd_run log append "$_log" < /dev/null > /tmp/io.out 2>&1; _rc=$?
    expect "log append over an I/O error in a sealed segment (not read by its open): exit status" "$_rc" 0
    for _cmd in verify read append; do
        if [ $_cmd = append ]; then
            # One that scans sealed segments reads the bad block.
            dd_run log append "$_log" --scan-sealed < /dev/null > /tmp/io.out 2>&1; _rc=$?
        else
            dd_run log $_cmd "$_log" > /tmp/io.out 2>&1; _rc=$?
        fi
        _msg=$(grep -m 1 'dynadax:' /tmp/io.out)
        log "log $_cmd: exit $_rc: $_msg"
        expect "log $_cmd over an I/O error: exit status" "$_rc" 1
        # The offset: where the read that failed began (the block itself, or the
        # start of a read-ahead that covered it).
        _off=$(echo "$_msg" | sed -n 's/.* at byte \([0-9]*\): Input\/output error.*/\1/p')
        case "$_msg" in
            *"$_seg"*"Input/output error"*) ;;
            *) fail "log $_cmd: the error does not name $_seg and the I/O error: '$_msg'" ;;
        esac
        if [ -n "$_off" ] && [ "$_off" -le 4096 ]; then
            echo "    ok: log $_cmd names the segment, the offset ($_off) and the I/O error"
        else
            fail "log $_cmd: no offset at or before the bad block (byte 4096) in '$_msg'"
        fi
    done
    # The device reads again: nothing was cut.
    cd /; unmount "$MNT"
    { dmsetup suspend labdm && dmsetup reload labdm --noudevsync --table "0 $_sz linear $NODAX 0" && dmsetup resume labdm --noudevsync; } 2>/tmp/dm.err \
        || fail "dmsetup restore: $(cat /tmp/dm.err)"
    mount -t ext4 $DMDEV "$MNT" 2>/tmp/mount.err || fail "remount: $(cat /tmp/mount.err)"
    dd_run log verify "$_log" > /tmp/io.out 2>&1 || fail "log verify after the device was restored: $(tail -n 1 /tmp/io.out)"
    expect "records after the device was restored" "$(dd_run log read "$_log" | wc -l)" 3000
    expect "record 40 after the device was restored" "$(dd_run log read "$_log" --from 40 --limit 1 | cut -f2 | cut -c1-12)" record-00040
    cd /; unmount "$MNT"
    dmsetup remove labdm --noudevsync 2>/dev/null
    if [ -s "$FAILF" ]; then record log_io_errors FAIL "$(head -n 1 "$FAILF")"; else record log_io_errors PASS; fi
    cfg_time "$_t0"
}

# ------------------------------------------------------------ main

echo "=== DAX lab suite: kernel $(uname -r), xfs_io $(xfs_io -V | sed 's/.*version //')"
echo "    pmem: $(grep -i 'persistent' /proc/iomem | tr -s ' ' | tr '\n' ';')"
for r in /sys/bus/nd/devices/region*; do
    if [ -e "$r/persistence_domain" ]; then
        echo "    $(basename "$r"): persistence_domain '$(cat "$r/persistence_domain")'"
    else
        echo "    $(basename "$r"): no persistence_domain attribute (legacy e820 pmem)"
    fi
done
echo "    dynadax: ${DYNADAX:-absent}${LABTESTS:+, dynadax-labtests: $LABTESTS}"
[ -n "$DYNADAX" ] && { "$DYNADAX" --version 2>&1 | sed 's/^/    /'; }

run_config ext4 inode  "$PMEM"
run_config xfs  inode  "$PMEM"
run_config ext4 always "$PMEM"
run_config xfs  never  "$PMEM"
run_config xfs  always "$PMEM"
run_config ext4 never  "$PMEM"
run_config ext4 inode  "$NODAX"
run_config xfs  always "$NODAX"
config_ext4_always_nodax
config_side_by_side
config_io_errors

echo "$N_FAIL $N_PASS $N_SKIP" > /tmp/lab-counts
echo "=== suite done: $N_PASS passed, $N_FAIL failed, $N_SKIP skipped"

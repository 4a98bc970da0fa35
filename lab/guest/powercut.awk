# lab/guest/powercut.awk - records of the power-cut test: generate and check.
#
# Used by lab/guest/powercut.sh in the guest (busybox awk) and by lab/run on
# the host (the host's awk, an independent implementation) after the last boot.
#
# A record is a pure function of the cycle that appended it and its LSN:
#     c<cycle> l<lsn> p<padding>
# The padding is a slice of a fixed alphabet pattern; its length is
# (lsn * 37) % 251 bytes, and 3000-4499 bytes for every 97th LSN, so that some
# records straddle 4 KiB blocks and pages.
#
#   awk -v mode=gen -v cycle=C -v start=S -f powercut.awk
#       prints the records of cycle C from LSN S on, forever.
#       With -v lie=1 it also prints "ACK <lsn>" to /dev/console for each record
#       as soon as it is generated (before it is durable): a self-test that the
#       host notices acknowledgements that do not survive (LAB_POWERCUT_INJECT).
#   dynadax log read DIR | awk -v mode=check -v maxcycle=K -f powercut.awk
#       checks that the LSNs are 0, 1, 2, ... without a gap (n counts from 0,
#       so after a gap it is the next expected LSN, not the number of lines), that every record
#       is exactly the one its cycle and LSN give, and that cycles never go back
#       and are 1..K.  Prints one line:
#         CHECK OK n=<records> cycles=<c>:<first>-<last>,...
#         CHECK FAIL n=<records> problems=<count> first: <what>

function reclen(l) { return (l % 97 == 0) ? 3000 + l % 1500 : (l * 37) % 251 }
function rec(c, l) { return "c" c " l" l " p" substr(FILL, l % 36 + 1, reclen(l)) }
function problem(what) {
    nprob++
    if (nprob == 1) firstprob = what
}

BEGIN {
    A = "abcdefghijklmnopqrstuvwxyz0123456789"
    FILL = A
    while (length(FILL) < 4600) FILL = FILL FILL
    if (mode == "gen") {
        for (l = start + 0; ; l++) {
            print rec(cycle, l)
            if (lie == 1) { print "ACK " l > "/dev/console"; fflush("/dev/console") }
        }
    }
    FS = "\t"
    n = 0; prevc = 0; nc = 0; nprob = 0
}

mode == "check" {
    if (NF != 2) { problem("line " NR ": " NF " tab-separated fields, want 2"); n++; next }
    if ($1 != n "") {
        problem("line " NR ": LSN " $1 ", want " n)
        if ($1 ~ /^[0-9]+$/) n = $1 + 0    # go on from there: one gap, one problem
    }
    sp = index($2, " ")
    c = (substr($2, 1, 1) == "c" && sp > 2) ? substr($2, 2, sp - 2) : ""
    if (c !~ /^[0-9]+$/) {
        problem("LSN " n ": no cycle in the record '" substr($2, 1, 40) "'")
    } else {
        c = c + 0
        if ($2 != rec(c, n))
            problem("LSN " n ": wrong content ('" substr($2, 1, 40) "...', " length($2) " bytes; want " length(rec(c, n)) ")")
        if (c < prevc) problem("LSN " n ": cycle " c " after cycle " prevc)
        if (c < 1 || (maxcycle != "" && c > maxcycle + 0)) problem("LSN " n ": cycle " c " is not in 1.." maxcycle)
        if (c != prevc) { nc++; cyc[nc] = c; first[nc] = n }
        last[nc] = n
        prevc = c
    }
    n++
}

END {
    if (mode != "check") exit
    s = ""
    for (i = 1; i <= nc; i++) s = s (i > 1 ? "," : "") cyc[i] ":" first[i] "-" last[i]
    if (nprob) print "CHECK FAIL n=" n " problems=" nprob " first: " firstprob
    else print "CHECK OK n=" n " cycles=" s
}

package io.dynadax.log;

/**
 * What opening a log does with what a scan finds. A <i>torn tail</i> is a bad record at
 * the very end that nothing proves was acknowledged (what a crash leaves); any other bad
 * record is <i>damage</i>.
 */
public enum RecoveryMode {
    /** Anything but a clean log is an error naming the file and offset; nothing changes. */
    STRICT,
    /**
     * A torn tail is cut (its bytes kept beside the segment); damage is an error, with
     * nothing changed (the default).
     */
    TOLERATE_TORN_TAIL,
    /** Keep what precedes the first damage and drop the rest (kept as evidence). */
    POINT_IN_TIME,
    /** Keep every intact record at its own LSN; damaged ones become holes. */
    SKIP_DAMAGED
}

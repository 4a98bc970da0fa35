package io.dynadax.log;

/** How the tail segment is written. */
public enum TailMode {
    /**
     * Direct where it pays (kernel DAX, memory file systems, forced cache-line
     * flushing), cached on block devices without DAX (the default).
     */
    AUTO,
    /** Always through a mapping of the tail. */
    DIRECT,
    /** Always {@code pwrite} and {@code fdatasync}. */
    CACHED
}

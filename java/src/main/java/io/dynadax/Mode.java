package io.dynadax;

/**
 * The persistent mode of a file or directory. A directory's mode is what files created
 * in it inherit.
 */
public enum Mode {
    /** Loads and stores through a mapping, no page cache (kernel DAX, or emulated). */
    DIRECT,
    /** Through the page cache. */
    CACHED;

    private static final Mode[] VALUES = values();

    /** The mode of a native ordinal, null for -1 (none). */
    static Mode of(int ordinal) {
        if (ordinal < 0) {
            return null;
        }
        if (ordinal >= VALUES.length) {
            throw new IllegalStateException("unknown mode ordinal from the native library: " + ordinal);
        }
        return VALUES[ordinal];
    }
}

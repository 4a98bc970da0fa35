package io.dynadax;

import io.dynadax.internal.Native;
import io.dynadax.internal.Util;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Objects;

/**
 * Probing paths and reading and setting the per-file mode.
 *
 * <pre>{@code
 * Probe p = Dax.probe(Path.of("/mnt/pmem"));
 * Dax.setMode(Path.of("/mnt/pmem/wal"), Mode.DIRECT);   // files created in it inherit direct
 * Status s = Dax.stat(Path.of("/mnt/pmem/wal/segment"));
 * }</pre>
 */
public final class Dax {
    private Dax() {}

    /**
     * Finds out whether {@code path} can do DAX and {@code MAP_SYNC} and how it would
     * persist, changing nothing. The path need not exist.
     *
     * @param path the path to probe
     * @return what was found
     * @throws IOException if the file system cannot be examined
     */
    public static Probe probe(Path path) throws IOException {
        return (Probe) Native.probe(Util.nativePath(path, "path"));
    }

    /**
     * Reads the physical and effective mode of a file or directory.
     *
     * @param path the file or directory
     * @return its status
     * @throws java.nio.file.NoSuchFileException if it does not exist
     * @throws IOException if it cannot be read
     */
    public static Status stat(Path path) throws IOException {
        return (Status) Native.stat(Util.nativePath(path, "path"));
    }

    /**
     * Sets the physical mode of a file (switching it safely under its ops lock) or of a
     * directory (what files created in it inherit), failing at once if the file is
     * mapped.
     *
     * @param path the file or directory
     * @param mode the new mode
     * @return the status afterwards
     * @throws DaxBusyException if the file is mapped, by this process or another
     * @throws IOException if the mode cannot be set
     */
    public static Status setMode(Path path, Mode mode) throws IOException {
        return setMode(path, mode, null);
    }

    /**
     * Sets the physical mode, waiting up to {@code wait} for the file's mappings to be
     * closed.
     *
     * @param path the file or directory
     * @param mode the new mode
     * @param wait how long to wait for mappings to go; null or zero fails at once
     * @return the status afterwards
     * @throws DaxBusyException if the file is still mapped when the wait ends
     * @throws IOException if the mode cannot be set
     * @throws IllegalArgumentException if {@code wait} is negative
     */
    public static Status setMode(Path path, Mode mode, Duration wait) throws IOException {
        String p = Util.nativePath(path, "path");
        Objects.requireNonNull(mode, "mode");
        return (Status) Native.setMode(p, mode.ordinal(), Util.waitNanos(wait, "wait"));
    }

    /**
     * The version of the native library in use.
     *
     * @return its crate version
     */
    public static String nativeVersion() {
        return Native.version();
    }
}

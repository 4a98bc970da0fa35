package io.dynadax.internal;

import java.nio.file.FileSystems;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Objects;

/** Argument conversions shared by the public classes. */
public final class Util {
    private Util() {}

    /**
     * The string the native side opens for {@code path}.
     *
     * @param path a path of the default file system
     * @param what the parameter's name, for the message
     * @return {@code path.toString()}
     * @throws NullPointerException if {@code path} is null
     * @throws IllegalArgumentException if it belongs to another file system (a zip file
     *     system's path names nothing the kernel can open)
     */
    public static String nativePath(Path path, String what) {
        Objects.requireNonNull(path, what);
        if (path.getFileSystem() != FileSystems.getDefault()) {
            throw new IllegalArgumentException(what + " is not a path of the default file system: " + path);
        }
        return path.toString();
    }

    /**
     * A wait as nanoseconds for the native side.
     *
     * @param wait how long; null for no wait at all
     * @param what the parameter's name, for the message
     * @return -1 for null, else the nanoseconds (saturated at {@code Long.MAX_VALUE})
     * @throws IllegalArgumentException if {@code wait} is negative
     */
    public static long waitNanos(Duration wait, String what) {
        if (wait == null) {
            return -1;
        }
        if (wait.isNegative()) {
            throw new IllegalArgumentException(what + " is negative: " + wait);
        }
        try {
            return wait.toNanos();
        } catch (ArithmeticException e) {
            return Long.MAX_VALUE;
        }
    }
}

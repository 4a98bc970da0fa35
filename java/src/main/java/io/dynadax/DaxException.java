package io.dynadax;

import java.io.IOException;
import java.nio.file.Path;

/**
 * An error of dynadax: an I/O error, an invalid request, an unsupported operation, a
 * locked or poisoned log. The message is the native library's own and names the path.
 */
public class DaxException extends IOException {
    private static final long serialVersionUID = 1L;

    /** The path the error is about, or null. */
    private final String path;

    /**
     * Creates an exception.
     *
     * @param message what went wrong (names the path)
     * @param path the path it is about, or null
     */
    public DaxException(String message, String path) {
        super(message);
        this.path = path;
    }

    /**
     * The path the error is about.
     *
     * @return the path, or null if none was given
     */
    public Path path() {
        return path == null ? null : Path.of(path);
    }
}

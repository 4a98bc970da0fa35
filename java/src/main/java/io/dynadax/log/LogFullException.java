package io.dynadax.log;

import io.dynadax.DaxException;

/**
 * A single-file log with no free segment for the next records: nothing was lost, and
 * appends resume once {@link Log#purgeBefore(long)} frees one.
 */
public class LogFullException extends DaxException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates an exception.
     *
     * @param message why (names the log and the segment in the way)
     * @param path the log's data file
     */
    public LogFullException(String message, String path) {
        super(message, path);
    }
}

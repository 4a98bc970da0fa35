package io.dynadax.log;

import io.dynadax.DaxException;

/**
 * A damaged log: a segment, a record or the log's metadata that fails its checks. The
 * log is left as it was; {@link RecoveryMode#POINT_IN_TIME} or
 * {@link RecoveryMode#SKIP_DAMAGED} can open it anyway.
 */
public class LogCorruptException extends DaxException {
    private static final long serialVersionUID = 1L;

    /** The byte offset of the damage in {@link #path()}, -1 if unknown. */
    private final long offset;

    /**
     * Creates an exception.
     *
     * @param message what is damaged (names the file, the offset and the LSN)
     * @param path the damaged file
     * @param offset where in it, -1 if unknown
     */
    public LogCorruptException(String message, String path, long offset) {
        super(message, path);
        this.offset = offset;
    }

    /**
     * Where the damage is in the file.
     *
     * @return the byte offset, or -1 if unknown
     */
    public long offset() {
        return offset;
    }
}

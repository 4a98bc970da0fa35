package io.dynadax;

/**
 * A mode switch or a shrink refused because the file is mapped (or its mode held), by
 * this process or another one; the message says by whom.
 */
public class DaxBusyException extends DaxException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates an exception.
     *
     * @param message what was refused and why (names the path)
     * @param path the busy file
     */
    public DaxBusyException(String message, String path) {
        super(message, path);
    }
}

package io.dynadax.log;

import io.dynadax.internal.Native;
import io.dynadax.internal.NativeHandle;
import io.dynadax.internal.Util;
import java.io.IOException;
import java.time.Duration;
import java.util.Objects;

/**
 * Follows a {@link Log}: returns its records in LSN order as they become durable, waiting
 * for new ones (woken by appends in this process, or through the log's shared state by
 * a writer in another). Made by {@link Log#tail(long)}; closed by {@link #close()} or
 * with its log.
 *
 * <p>One thread polls at a time; {@link #close()} may come from any thread, and makes a
 * poll blocked in another one end within about 100 ms with an
 * {@link IllegalStateException}.
 */
public final class Tailer implements AutoCloseable {
    /** The longest native wait: how soon a blocked poll notices a close. */
    private static final long SLICE_NANOS = 100_000_000L;

    private final Log log;
    private final Handle handle;

    private static final class Handle extends NativeHandle {
        Handle(long h, String what) {
            super(h, what);
        }

        @Override
        protected void dispose(long h) {
            Native.tailFree(h);
        }
    }

    Tailer(Log log, long h) {
        this.log = log;
        this.handle = new Handle(h, "tailer of " + log.dir());
    }

    /**
     * The next record, waiting up to {@code timeout} for it.
     *
     * @param timeout how long to wait; zero does not wait
     * @return the record, or null if the timeout passed first
     * @throws IOException if the log cannot be read
     * @throws IllegalStateException if this tailer (or its log) is closed, also while it
     *     waits
     * @throws IllegalArgumentException if {@code timeout} is negative
     */
    public Record poll(Duration timeout) throws IOException {
        Objects.requireNonNull(timeout, "timeout");
        return poll(Util.waitNanos(timeout, "timeout"), false);
    }

    /**
     * The next record, waiting as long as it takes.
     *
     * @return the record
     * @throws IOException if the log cannot be read
     * @throws IllegalStateException if this tailer (or its log) is closed, also while it
     *     waits
     */
    public Record poll() throws IOException {
        return poll(0, true);
    }

    private Record poll(long nanos, boolean forever) throws IOException {
        long deadline = System.nanoTime() + nanos;
        for (;;) {
            long slice = SLICE_NANOS;
            if (!forever) {
                slice = Math.max(0, Math.min(slice, deadline - System.nanoTime()));
            }
            long h = handle.enter();
            try {
                Record r = (Record) Native.tailPoll(h, slice);
                if (r != null) {
                    return r;
                }
            } finally {
                handle.exit();
            }
            if (!forever && deadline - System.nanoTime() <= 0) {
                return null;
            }
        }
    }

    /**
     * The LSN of the record the next poll returns.
     *
     * @return the position
     */
    public long position() {
        long h = handle.enter();
        try {
            return Native.tailPosition(h);
        } finally {
            handle.exit();
        }
    }

    /**
     * How far this tailer lags the writer: the durable records it has not returned yet
     * (for a log another process writes, as of the last look, which a poll at the end
     * takes).
     *
     * @return the number of records
     * @throws IllegalStateException if the tailer was closed
     */
    public long lag() {
        long h = handle.enter();
        try {
            return Native.tailLag(h);
        } finally {
            handle.exit();
        }
    }

    /**
     * Whether {@link #close()} was called (also by closing the log).
     *
     * @return true once closed
     */
    public boolean isClosed() {
        return handle.isClosed();
    }

    /** Closes this tailer; a second call does nothing. */
    @Override
    public void close() {
        handle.close();
        log.forget(this);
    }

    @Override
    public String toString() {
        return "Tailer[" + log.dir() + (handle.isClosed() ? ", closed]" : "]");
    }
}

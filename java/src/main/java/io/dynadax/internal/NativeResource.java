package io.dynadax.internal;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * A Rust object owned by a Java one, safe against use after close from any thread.
 *
 * <p>Every native call brackets itself with {@link #acquire()} and {@link #release()}.
 * The state word counts the calls in flight and has a closed bit: {@code acquire} fails
 * with {@link IllegalStateException} once the bit is set, and the Rust object is freed
 * exactly once, by whichever of {@link #close()} and the last {@code release} leaves
 * the word at "closed, no call in flight". So a call racing a close either runs on a
 * live object or throws; it never touches freed memory. This is the scheme of the
 * JDK's own shared memory sessions (acquire counts, then close), and costs one atomic
 * operation on entry and one on exit, on a word private to the object.
 */
public abstract class NativeResource implements AutoCloseable {
    private static final long CLOSED = Long.MIN_VALUE;
    private static final VarHandle STATE;

    static {
        try {
            STATE = MethodHandles.lookup().findVarHandle(NativeResource.class, "state", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    /** Bit 63: closed; bits 0..62: native calls in flight. */
    @SuppressWarnings("unused") // through STATE
    private volatile long state;

    private final long handle;
    private final String what;

    /**
     * Takes ownership of {@code handle}, freed by {@link #free(long)}.
     *
     * @param handle the Rust object (non-zero)
     * @param what what it is, for the message of a use after close ("log /data/wal")
     */
    protected NativeResource(long handle, String what) {
        if (handle == 0) {
            throw new IllegalArgumentException("null native handle for " + what);
        }
        this.handle = handle;
        this.what = what;
    }

    /**
     * Marks a native call in flight and returns the handle to pass it.
     *
     * @return the handle, valid until the matching {@link #release()}
     * @throws IllegalStateException if this object was closed
     */
    protected final long acquire() {
        for (;;) {
            long s = (long) STATE.getVolatile(this);
            if (s < 0) {
                throw new IllegalStateException(what + " is closed");
            }
            if (STATE.compareAndSet(this, s, s + 1)) {
                return handle;
            }
        }
    }

    /** Ends a native call begun by {@link #acquire()}. */
    protected final void release() {
        long after = (long) STATE.getAndAdd(this, -1L) - 1;
        if (after == CLOSED) {
            free(handle);
        }
    }

    /** Whether {@link #close()} was called. */
    public final boolean isClosed() {
        return (long) STATE.getVolatile(this) < 0;
    }

    /**
     * Closes this object; a second call does nothing. The Rust object is freed now, or,
     * if a call of another thread is still in flight, as that call returns.
     */
    @Override
    public void close() {
        for (;;) {
            long s = (long) STATE.getVolatile(this);
            if (s < 0) {
                return;
            }
            if (STATE.compareAndSet(this, s, s | CLOSED)) {
                if (s == 0) {
                    free(handle);
                }
                return;
            }
        }
    }

    /** Frees the Rust object; called exactly once. */
    protected abstract void free(long handle);
}

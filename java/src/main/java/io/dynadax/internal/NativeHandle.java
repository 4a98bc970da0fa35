package io.dynadax.internal;

/**
 * A {@link NativeResource} for the classes of the public packages: {@link #enter()} and
 * {@link #exit()} bracket a native call from outside the subclass, and {@link #close()}
 * returns only once the Rust object is freed.
 *
 * <p>Waiting in {@code close} matters because a freed Rust object may release more than
 * memory: a log's writer lock, a mapping's hold on its file's mode. A caller that closes
 * a log and reopens it, or unmaps and switches, must find them released, even when
 * another thread's call was still in flight at the close. No native call the binding
 * makes blocks for long (tailers poll in slices), so the wait is short.
 */
public abstract class NativeHandle extends NativeResource {
    private final Object lock = new Object();
    private boolean freed;

    /**
     * Takes ownership of {@code handle}.
     *
     * @param handle the Rust object (non-zero)
     * @param what what it is, for the message of a use after close
     */
    protected NativeHandle(long handle, String what) {
        super(handle, what);
    }

    /**
     * Begins a native call.
     *
     * @return the handle to pass it
     * @throws IllegalStateException if closed
     */
    public final long enter() {
        return acquire();
    }

    /** Ends a native call begun by {@link #enter()}. */
    public final void exit() {
        release();
    }

    @Override
    protected final void free(long handle) {
        try {
            dispose(handle);
        } finally {
            synchronized (lock) {
                freed = true;
                lock.notifyAll();
            }
        }
    }

    /**
     * Frees the Rust object; called exactly once.
     *
     * @param handle the handle given to the constructor
     */
    protected abstract void dispose(long handle);

    /** Closes (idempotent) and waits until the Rust object is freed. */
    @Override
    public void close() {
        super.close();
        boolean interrupted = false;
        synchronized (lock) {
            while (!freed) {
                try {
                    lock.wait();
                } catch (InterruptedException e) {
                    // Finish the close: the caller relies on the object being gone.
                    interrupted = true;
                }
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }

    /**
     * Whether the Rust object was freed (closed and no call in flight).
     *
     * @return true once freed
     */
    public final boolean isFreed() {
        synchronized (lock) {
            return freed;
        }
    }
}

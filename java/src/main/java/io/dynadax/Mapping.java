package io.dynadax;

import io.dynadax.internal.Native;
import io.dynadax.internal.NativeHandle;
import java.io.IOException;
import java.lang.ref.Cleaner;
import java.lang.ref.Reference;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A range of a {@link DaxFile} mapped into memory, read and written through a direct
 * {@link ByteBuffer} over dynadax's own mapping (zero copy), made durable by
 * {@link #persist(int, int)}. While it is open the file's mode cannot be switched.
 *
 * <p><b>After {@link #close()}</b> the mapping's hold on the file is released (switches
 * may go on) but the buffers handed out by {@link #buffer()} keep pointing at valid
 * memory: the file's pages are replaced by private zero pages at the same addresses,
 * so reads through a stale buffer see zeros and writes are discarded (they reach no
 * file); nothing crashes. The address range itself is released once every such buffer
 * has been garbage collected. {@link #buffer()} and {@link #persist(int, int)} after
 * close throw {@link IllegalStateException}.
 *
 * <p>A mapping that is never closed is closed when its buffers become unreachable; as
 * with any native resource, close it instead: only then may the file's mode change.
 *
 * <p>Thread safe; the buffers are not (each {@link #buffer()} call returns its own view
 * with its own position and limit over the same memory).
 */
public final class Mapping implements AutoCloseable {
    // One daemon thread for every mapping: it frees what the buffers kept alive.
    private static final Cleaner CLEANER = Cleaner.create();

    private final Handle handle;
    /** The buffer from the native library, or its read-only view. */
    private final ByteBuffer view;
    private final Path path;
    private final long offset;
    private final long length;
    private final boolean writable;

    /**
     * The native mapping. The Cleaner action references only this object, which
     * references no buffer, so it never keeps the buffer it watches reachable.
     */
    private static final class Handle extends NativeHandle {
        /** The placeholder {@code mapFree} returned, 0 until then or once freed. */
        private final AtomicLong placeholder = new AtomicLong();

        Handle(long m, String what) {
            super(m, what);
        }

        @Override
        protected void dispose(long m) {
            placeholder.set(Native.mapFree(m));
        }

        /**
         * Runs once the original buffer (and so every view of it) is unreachable: the
         * address range can go. Unmaps first if the mapping was never closed.
         */
        void bufferGone() {
            close(); // returns once dispose ran, so the placeholder is known
            long p = placeholder.getAndSet(0);
            if (p != 0) {
                Native.placeholderFree(p);
            }
        }
    }

    private Mapping(Handle handle, ByteBuffer view, Path path, long offset, long length, boolean writable) {
        this.handle = handle;
        this.view = view;
        this.path = path;
        this.offset = offset;
        this.length = length;
        this.writable = writable;
    }

    static Mapping of(long m, Path path, long offset, long length, boolean writable) throws IOException {
        Handle handle = new Handle(m, "mapping of " + path + " at " + offset + " (" + length + " bytes)");
        ByteBuffer original;
        try {
            long h = handle.enter();
            try {
                original = Native.mapBuffer(h);
            } finally {
                handle.exit();
            }
            if (original == null || !original.isDirect()) {
                throw new IllegalStateException("the native library returned no direct buffer for " + path);
            }
        } catch (RuntimeException | Error e) {
            handle.bufferGone(); // there is no buffer to wait for
            throw e;
        }
        // Views of a JNI buffer (duplicate, slice, asReadOnlyBuffer) reference it as their
        // attachment, so it stays reachable as long as any view is: watching it covers all.
        CLEANER.register(original, handle::bufferGone);
        ByteBuffer view = writable ? original : original.asReadOnlyBuffer();
        return new Mapping(handle, view, path, offset, length, writable);
    }

    /**
     * A direct buffer over the whole mapping: position 0, limit and capacity
     * {@link #length()}, big-endian; read-only unless the mapping is writable. Each call
     * returns a new view with its own position, limit and byte order.
     *
     * @return the buffer
     * @throws IllegalStateException if the mapping was closed
     */
    public ByteBuffer buffer() {
        if (handle.isClosed()) {
            throw new IllegalStateException("mapping of " + path + " is closed");
        }
        return view.duplicate();
    }

    /**
     * Makes {@code [offset, offset+length)} of the mapping (offsets in the buffer, not in
     * the file) durable: a cache-line flush on kernel DAX, {@code msync} when emulated.
     *
     * @param offset where the range starts in the buffer
     * @param length its length
     * @throws IOException if persisting fails
     * @throws IndexOutOfBoundsException if the range is not inside the buffer
     * @throws IllegalStateException if the mapping was closed
     */
    public void persist(int offset, int length) throws IOException {
        Objects.checkFromIndexSize(offset, length, view.capacity());
        long h = handle.enter();
        try {
            Native.mapPersist(h, offset, length);
        } finally {
            handle.exit();
            // Not collected (and so not unmapped by the Cleaner) in the middle of a call.
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Where the mapping starts in the file.
     *
     * @return the file offset
     */
    public long offset() {
        return offset;
    }

    /**
     * The mapping's length, also its buffer's capacity.
     *
     * @return the length in bytes
     */
    public long length() {
        return length;
    }

    /**
     * Whether the buffer may be written.
     *
     * @return true if writable
     */
    public boolean isWritable() {
        return writable;
    }

    /**
     * Whether {@link #close()} was called.
     *
     * @return true once closed
     */
    public boolean isClosed() {
        return handle.isClosed();
    }

    /**
     * Ends the mapping, so the file's mode may be switched again; a second call does
     * nothing. Buffers handed out stay safe to use (zeros, writes discarded).
     */
    @Override
    public void close() {
        handle.close();
        Reference.reachabilityFence(this);
    }

    @Override
    public String toString() {
        return "Mapping[" + path + ", offset=" + offset + ", length=" + length + ", writable=" + writable
                + (handle.isClosed() ? ", closed]" : "]");
    }
}

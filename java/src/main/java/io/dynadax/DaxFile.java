package io.dynadax;

import io.dynadax.internal.Native;
import io.dynadax.internal.NativeHandle;
import io.dynadax.internal.Util;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Objects;

/**
 * A file opened through dynadax: every operation runs under the file's ops lock, so a
 * mode switch never races it, and {@link #persist(long, long)} makes writes durable the
 * way the file's mode needs (a cache-line flush on kernel DAX, {@code msync} when
 * emulated, {@code fdatasync} when cached).
 *
 * <p>Thread safe. Any use after {@link #close()}, also racing a close in another thread,
 * throws {@link IllegalStateException}. Mappings made by {@link #map(long, long, boolean)}
 * stay valid after the file is closed.
 */
public final class DaxFile implements AutoCloseable {
    private final Handle handle;
    private final Path path;

    private static final class Handle extends NativeHandle {
        Handle(long h, String what) {
            super(h, what);
        }

        @Override
        protected void dispose(long h) {
            Native.fileFree(h);
        }
    }

    private DaxFile(long h, Path path) {
        this.path = path;
        this.handle = new Handle(h, "file " + path);
    }

    /**
     * Opens an existing file for reading and writing.
     *
     * @param path the file
     * @return the open file
     * @throws java.nio.file.NoSuchFileException if it does not exist
     * @throws IOException if it cannot be opened
     */
    public static DaxFile open(Path path) throws IOException {
        return open(path, false);
    }

    /**
     * Opens a file, creating it if it does not exist; a new file inherits its
     * directory's mode.
     *
     * @param path the file
     * @return the open file
     * @throws IOException if it cannot be created or opened
     */
    public static DaxFile create(Path path) throws IOException {
        return open(path, true);
    }

    private static DaxFile open(Path path, boolean create) throws IOException {
        long h = Native.fileOpen(Util.nativePath(path, "path"), create);
        try {
            return new DaxFile(h, path);
        } catch (RuntimeException | Error e) {
            Native.fileFree(h);
            throw e;
        }
    }

    /**
     * The path the file was opened with.
     *
     * @return the path
     */
    public Path path() {
        return path;
    }

    /**
     * The file's size.
     *
     * @return its size in bytes
     * @throws IOException if it cannot be read
     */
    public long size() throws IOException {
        long h = handle.enter();
        try {
            return Native.fileSize(h);
        } finally {
            handle.exit();
        }
    }

    /**
     * Sets the file's size, extending it with zeros or truncating it.
     *
     * @param length the new size
     * @throws DaxBusyException if a shrink would cut a range that is mapped
     * @throws IOException if it cannot be changed
     * @throws IllegalArgumentException if {@code length} is negative
     */
    public void setLength(long length) throws IOException {
        checkNonNegative(length, "length");
        long h = handle.enter();
        try {
            Native.fileSetLength(h, length);
        } finally {
            handle.exit();
        }
    }

    /**
     * Reads bytes at {@code position} into {@code dst}, as
     * {@link java.nio.channels.FileChannel#read(ByteBuffer, long)} does: up to
     * {@code dst.remaining()} bytes, the buffer's position advanced by the count. A
     * direct buffer is filled in place, a heap buffer through its array.
     *
     * @param dst where to read to
     * @param position the file offset
     * @return the number of bytes read, -1 if {@code position} is at or past the end of
     *     the file (0 if {@code dst} has no room)
     * @throws IOException if the read fails
     * @throws IllegalArgumentException if {@code position} is negative or {@code dst} is
     *     read-only
     */
    public int read(ByteBuffer dst, long position) throws IOException {
        Objects.requireNonNull(dst, "dst");
        checkNonNegative(position, "position");
        if (dst.isReadOnly()) {
            throw new IllegalArgumentException("read into a read-only buffer");
        }
        int pos = dst.position();
        int len = dst.limit() - pos;
        long h = handle.enter();
        int n;
        try {
            if (len == 0) {
                return 0;
            }
            if (dst.isDirect()) {
                n = Native.fileReadDirect(h, dst, pos, len, position);
            } else {
                // A writable heap buffer always has an accessible array.
                n = Native.fileRead(h, dst.array(), dst.arrayOffset() + pos, len, position);
            }
        } finally {
            handle.exit();
        }
        if (n == 0) {
            return -1;
        }
        dst.position(pos + n);
        return n;
    }

    /**
     * Writes all of {@code src}'s remaining bytes at {@code position}, as
     * {@link java.nio.channels.FileChannel#write(ByteBuffer, long)} does, the buffer's
     * position advanced to its limit. A direct buffer is read in place, a heap buffer
     * through its array (a read-only one through a copy). The bytes are durable after
     * {@link #persist(long, long)}.
     *
     * @param src the bytes to write
     * @param position the file offset
     * @return the number of bytes written
     * @throws IOException if the write fails
     * @throws IllegalArgumentException if {@code position} is negative
     */
    public int write(ByteBuffer src, long position) throws IOException {
        Objects.requireNonNull(src, "src");
        checkNonNegative(position, "position");
        int pos = src.position();
        int len = src.limit() - pos;
        long h = handle.enter();
        try {
            if (len == 0) {
                return 0;
            }
            if (src.isDirect()) {
                Native.fileWriteDirect(h, src, pos, len, position);
            } else if (src.hasArray()) {
                Native.fileWrite(h, src.array(), src.arrayOffset() + pos, len, position);
            } else {
                byte[] copy = new byte[len];
                src.duplicate().get(copy);
                Native.fileWrite(h, copy, 0, len, position);
            }
        } finally {
            handle.exit();
        }
        src.position(pos + len);
        return len;
    }

    /**
     * Makes {@code [offset, offset+length)} durable, as the file's mode needs.
     *
     * @param offset where the range starts
     * @param length its length
     * @throws IOException if persisting fails
     * @throws IllegalArgumentException if {@code offset} or {@code length} is negative
     */
    public void persist(long offset, long length) throws IOException {
        checkNonNegative(offset, "offset");
        checkNonNegative(length, "length");
        long h = handle.enter();
        try {
            Native.filePersist(h, offset, length);
        } finally {
            handle.exit();
        }
    }

    /**
     * The file's status, as {@link Dax#stat(Path)} would read it.
     *
     * @return its status
     * @throws IOException if it cannot be read
     */
    public Status status() throws IOException {
        long h = handle.enter();
        try {
            return (Status) Native.fileStatus(h);
        } finally {
            handle.exit();
        }
    }

    /**
     * Switches the file's mode, failing at once if it is mapped.
     *
     * @param mode the new mode
     * @return the status afterwards
     * @throws DaxBusyException if the file is mapped, by this process or another
     * @throws IOException if the switch fails
     */
    public Status setMode(Mode mode) throws IOException {
        return setMode(mode, null);
    }

    /**
     * Switches the file's mode, waiting up to {@code wait} for its mappings to go.
     *
     * @param mode the new mode
     * @param wait how long to wait; null or zero fails at once
     * @return the status afterwards
     * @throws DaxBusyException if it is still mapped when the wait ends
     * @throws IOException if the switch fails
     * @throws IllegalArgumentException if {@code wait} is negative
     */
    public Status setMode(Mode mode, Duration wait) throws IOException {
        Objects.requireNonNull(mode, "mode");
        long nanos = Util.waitNanos(wait, "wait");
        long h = handle.enter();
        try {
            return (Status) Native.fileSetMode(h, mode.ordinal(), nanos);
        } finally {
            handle.exit();
        }
    }

    /**
     * Maps {@code [offset, offset+length)} of the file, with a mapping of its own. While
     * the mapping is open, switches of the file's mode are refused
     * ({@link DaxBusyException}). See {@link Mapping} for its buffer's life.
     *
     * @param offset where the range starts in the file
     * @param length its length, at most {@code Integer.MAX_VALUE} (a buffer's capacity)
     * @param writable whether stores through the buffer are allowed
     * @return the mapping; close it to allow switches again
     * @throws IOException if the range cannot be mapped
     * @throws IllegalArgumentException if {@code offset} or {@code length} is negative or
     *     {@code length} exceeds {@code Integer.MAX_VALUE}
     */
    public Mapping map(long offset, long length, boolean writable) throws IOException {
        checkNonNegative(offset, "offset");
        checkNonNegative(length, "length");
        if (length > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("a mapping's length must fit a ByteBuffer (at most "
                    + Integer.MAX_VALUE + " bytes), not " + length);
        }
        long m;
        long h = handle.enter();
        try {
            m = Native.mapOpen(h, offset, length, writable);
        } finally {
            handle.exit();
        }
        return Mapping.of(m, path, offset, length, writable);
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
     * Closes the file; a second call does nothing. A call of another thread in flight
     * finishes first. Open mappings stay valid.
     */
    @Override
    public void close() {
        handle.close();
    }

    @Override
    public String toString() {
        return "DaxFile[" + path + (handle.isClosed() ? ", closed]" : "]");
    }

    static void checkNonNegative(long v, String what) {
        if (v < 0) {
            throw new IllegalArgumentException(what + " is negative: " + v);
        }
    }
}

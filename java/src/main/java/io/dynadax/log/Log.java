package io.dynadax.log;

import io.dynadax.internal.Native;
import io.dynadax.internal.NativeHandle;
import io.dynadax.internal.Util;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.ref.Reference;
import java.lang.ref.WeakReference;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * A dynadax log: records appended to the tail segment through a mapping (on kernel DAX
 * with a cache-line flush and no system call), full segments sealed to {@code cached}
 * in constant time, recovered by a scan when opened. Every record has a log sequence
 * number (LSN), consecutive from {@link #firstLsn()}.
 *
 * <p>One writer per log directory, in any process (a second writer fails with a
 * {@link io.dynadax.DaxException} saying who holds it); any number of read-only logs,
 * also in other processes, follow it ({@link #openReadOnly(Path)}, {@link #refresh()},
 * {@link #tail(long)}).
 *
 * <pre>{@code
 * try (Log log = Log.open(Path.of("/data/wal"))) {
 *     long lsn = log.append("event".getBytes(StandardCharsets.UTF_8));   // durable on return
 *     byte[] back = log.read(lsn);
 *     for (Iterator<Record> it = log.iterator(log.firstLsn()); it.hasNext(); ) {
 *         Record r = it.next();
 *     }
 * }
 * }</pre>
 *
 * <p>Thread safe: appends from many threads are ordered by the log (with
 * {@link Durability#GROUP} they share persists). Any use after {@link #close()}, also
 * racing a close in another thread, throws {@link IllegalStateException}.
 */
public final class Log implements AutoCloseable {
    /** Records per {@code logReadBatch} call of an iterator. */
    private static final int BATCH_RECORDS = 256;
    /** Bytes per {@code logReadBatch} call of an iterator (passed by the last record). */
    private static final long BATCH_BYTES = 4L << 20;

    private final Handle handle;
    private final Path dir;
    private final boolean readOnly;
    /** The open tailers, closed with the log (they keep the log's native state alive). */
    private final Set<Tailer> tailers = ConcurrentHashMap.newKeySet();

    private static final class Handle extends NativeHandle {
        Handle(long h, String what) {
            super(h, what);
        }

        @Override
        protected void dispose(long h) {
            Native.logFree(h);
        }
    }

    private Log(long h, Path dir, boolean readOnly) {
        this.dir = dir;
        this.readOnly = readOnly;
        this.handle = new Handle(h, (readOnly ? "read-only log " : "log ") + dir);
    }

    /**
     * Opens the log in {@code dir} as its writer with the default options, creating it
     * if needed, and recovers it.
     *
     * @param dir the log's directory
     * @return the open log
     * @throws LogCorruptException if recovery finds damage
     * @throws IOException if it cannot be opened (for instance another writer has it)
     */
    public static Log open(Path dir) throws IOException {
        return open(dir, LogOptions.defaults());
    }

    /**
     * Opens the log in {@code dir} as its writer, creating it if needed, and recovers it.
     *
     * @param dir the log's directory
     * @param options how
     * @return the open log
     * @throws LogCorruptException if recovery finds damage the recovery mode refuses
     * @throws IOException if it cannot be opened (for instance another writer has it,
     *     or the options are invalid)
     */
    public static Log open(Path dir, LogOptions options) throws IOException {
        return open(dir, options, false);
    }

    /**
     * Opens the log in {@code dir} for reading only: no lock, nothing written. It sees
     * the records durable when it was opened, more after {@link #refresh()}, and its
     * tailers follow the writer (in this process or another).
     *
     * @param dir the log's directory
     * @return the open log
     * @throws java.nio.file.NoSuchFileException if there is no such directory
     * @throws LogCorruptException if the log is damaged
     * @throws IOException if it cannot be opened
     */
    public static Log openReadOnly(Path dir) throws IOException {
        return openReadOnly(dir, LogOptions.defaults());
    }

    /**
     * Opens the log in {@code dir} for reading only, with {@code options}' recovery mode
     * (the others do not apply to a reader).
     *
     * @param dir the log's directory
     * @param options how (its recovery mode)
     * @return the open log
     * @throws java.nio.file.NoSuchFileException if there is no such directory
     * @throws LogCorruptException if the log is damaged
     * @throws IOException if it cannot be opened
     */
    public static Log openReadOnly(Path dir, LogOptions options) throws IOException {
        return open(dir, options, true);
    }

    private static Log open(Path dir, LogOptions o, boolean readOnly) throws IOException {
        String d = Util.nativePath(dir, "dir");
        Objects.requireNonNull(o, "options");
        long h = Native.logOpen(d, readOnly, o.durability().ordinal(), o.recovery().ordinal(),
                o.tailMode().ordinal(), o.segmentSize(), o.maxRecord(), o.firstLsn(), o.singleFileCapacity(),
                o.scanSealed());
        try {
            return new Log(h, dir, readOnly);
        } catch (RuntimeException | Error e) {
            Native.logFree(h);
            throw e;
        }
    }

    /**
     * The log's directory.
     *
     * @return the directory it was opened with
     */
    public Path dir() {
        return dir;
    }

    /**
     * Whether this log was opened read-only.
     *
     * @return true for a reader
     */
    public boolean isReadOnly() {
        return readOnly;
    }

    /**
     * Appends a record; with {@link Durability#EACH} or {@link Durability#GROUP} it is
     * durable when this returns.
     *
     * @param data the record's bytes (1 to the maximum record size)
     * @return its LSN
     * @throws IOException if the append fails
     */
    public long append(byte[] data) throws IOException {
        Objects.requireNonNull(data, "data");
        return append(data, 0, data.length);
    }

    /**
     * Appends {@code data[off..off+len)} as a record.
     *
     * @param data the array holding the record's bytes
     * @param off where they start
     * @param len how many
     * @return its LSN
     * @throws IOException if the append fails
     * @throws IndexOutOfBoundsException if the range is not inside {@code data}
     */
    public long append(byte[] data, int off, int len) throws IOException {
        Objects.checkFromIndexSize(off, len, data.length);
        long h = handle.enter();
        try {
            if (len <= STAGE_MAX) {
                // Copied into this thread's direct buffer by the JIT's own copy loop, then
                // appended from its address: no call back into the JVM, which costs a
                // state transition each (GetByteArrayRegion, GetDirectBufferAddress).
                Stage stage = STAGE.get();
                stage.buffer.put(0, data, off, len);
                long lsn = Native.logAppendAddress(h, stage.address, len);
                Reference.reachabilityFence(stage);
                return lsn;
            }
            return Native.logAppend(h, data, off, len);
        } finally {
            handle.exit();
        }
    }

    /**
     * Benchmarks only: the same appends as {@code append(ByteBuffer)} of {@code direct}'s
     * first {@code len} bytes, in a Rust loop for {@code nanos} ({@code JavaBench}'s Rust
     * turn, on this very log).
     */
    long benchRustAppends(ByteBuffer direct, int len, long nanos) {
        long h = handle.enter();
        try {
            return Native.benchAppendLoop(h, Native.bufferAddress(direct), len, nanos);
        } finally {
            handle.exit();
            Reference.reachabilityFence(direct);
        }
    }

    /** Records up to this size are staged through {@link #STAGE}. */
    private static final int STAGE_MAX = 64 << 10;

    /** Per thread: where a small {@code byte[]} record is copied to be appended in place. */
    private static final ThreadLocal<Stage> STAGE = ThreadLocal.withInitial(Stage::new);

    /**
     * A direct buffer and its address, looked up once; and the last direct buffer this
     * thread appended from, with its address, so that appending from the same buffer
     * again asks the JVM nothing (a middleware thread reuses its buffer).
     */
    private static final class Stage {
        final ByteBuffer buffer = ByteBuffer.allocateDirect(STAGE_MAX);
        final long address = Native.bufferAddress(buffer);
        /** Weak: the cache must not keep a caller's buffer (and its memory) alive. */
        private WeakReference<ByteBuffer> lastDirect;
        private long lastAddress;

        /**
         * The address of {@code direct}'s memory. Valid while {@code direct} is
         * reachable: the caller holds it, and fences it after the native call.
         */
        long addressOf(ByteBuffer direct) {
            WeakReference<ByteBuffer> last = lastDirect;
            if (last != null && last.get() == direct) {
                return lastAddress;
            }
            long a = Native.bufferAddress(direct);
            lastDirect = new WeakReference<>(direct);
            lastAddress = a;
            return a;
        }
    }

    /**
     * Appends {@code src}'s remaining bytes as a record, the buffer's position advanced to
     * its limit. A direct buffer is read in place (no copy in Java).
     *
     * @param src the record's bytes
     * @return its LSN
     * @throws IOException if the append fails
     */
    public long append(ByteBuffer src) throws IOException {
        Objects.requireNonNull(src, "src");
        int pos = src.position();
        int len = src.limit() - pos;
        long lsn;
        long h = handle.enter();
        try {
            if (src.isDirect()) {
                // `pos..pos+len` lies within the buffer (its own position and limit).
                lsn = Native.logAppendAddress(h, STAGE.get().addressOf(src) + pos, len);
                Reference.reachabilityFence(src);
            } else if (src.hasArray()) {
                lsn = Native.logAppend(h, src.array(), src.arrayOffset() + pos, len);
            } else {
                byte[] copy = new byte[len];
                src.duplicate().get(copy);
                lsn = Native.logAppend(h, copy, 0, len);
            }
        } finally {
            handle.exit();
        }
        src.position(pos + len);
        return lsn;
    }

    /**
     * Appends the records as one batch: all or nothing until it is durable, LSNs
     * consecutive.
     *
     * @param records the records' bytes
     * @return each record's LSN, in order
     * @throws IOException if the batch fails (none of it is appended)
     */
    public long[] appendBatch(List<byte[]> records) throws IOException {
        Objects.requireNonNull(records, "records");
        byte[][] arr = records.toArray(new byte[0][]);
        for (byte[] r : arr) {
            Objects.requireNonNull(r, "a record of the batch");
        }
        long first;
        long h = handle.enter();
        try {
            if (arr.length == 0) {
                return new long[0];
            }
            first = Native.logAppendBatch(h, arr);
        } finally {
            handle.exit();
        }
        long[] lsns = new long[arr.length];
        for (int i = 0; i < lsns.length; i++) {
            lsns[i] = first + i;
        }
        return lsns;
    }

    /**
     * Reads the record at {@code lsn}.
     *
     * @param lsn its LSN, from {@link #firstLsn()} to below {@link #durableLsn()}
     * @return its bytes
     * @throws LogCorruptException if it is damaged
     * @throws IOException if it is not in the log (purged, truncated, not yet written)
     *     or cannot be read
     */
    public byte[] read(long lsn) throws IOException {
        long h = handle.enter();
        try {
            return Native.logRead(h, lsn);
        } finally {
            handle.exit();
        }
    }

    /**
     * Iterates the records from {@code fromLsn} (or the first one, if that was purged) to
     * the durable end. Records are fetched in batches; when a batch runs out the next one
     * is read up to the durable end as it is then, so {@code hasNext()} returns false
     * once the iterator caught up (and may return true later, once more was appended).
     * Errors are thrown as {@link UncheckedIOException}; a log closed meanwhile as
     * {@link IllegalStateException}.
     *
     * @param fromLsn the LSN to start at
     * @return the iterator (not thread safe)
     */
    public Iterator<Record> iterator(long fromLsn) {
        handle.enter(); // fail now if closed
        handle.exit();
        return new RecordIterator(fromLsn);
    }

    private byte[][] readBatch(long from, long[] firstOut) throws IOException {
        long h = handle.enter();
        try {
            return Native.logReadBatch(h, from, BATCH_RECORDS, BATCH_BYTES, firstOut);
        } finally {
            handle.exit();
        }
    }

    private final class RecordIterator implements Iterator<Record> {
        private final long[] firstOut = new long[1];
        private long next;
        private byte[][] batch = new byte[0][];
        private long batchFirst;
        private int index;

        RecordIterator(long from) {
            this.next = from;
        }

        @Override
        public boolean hasNext() {
            if (index < batch.length) {
                return true;
            }
            byte[][] b;
            try {
                b = readBatch(next, firstOut);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            if (b == null || b.length == 0) {
                return false;
            }
            batch = b;
            batchFirst = firstOut[0];
            index = 0;
            next = batchFirst + b.length;
            return true;
        }

        @Override
        public Record next() {
            if (!hasNext()) {
                throw new NoSuchElementException("no record at or after LSN " + next + " in " + dir);
            }
            int i = index++;
            byte[] data = batch[i];
            batch[i] = null; // the caller owns it now; do not keep it alive with the batch
            return new Record(batchFirst + i, data);
        }
    }

    /**
     * A tailer from {@code fromLsn}: it returns the records as they are appended and
     * waits for new ones. Closed with this log.
     *
     * @param fromLsn the LSN of the first record it returns
     * @return the tailer
     * @throws IOException if it cannot be made
     */
    public Tailer tail(long fromLsn) throws IOException {
        long t;
        long h = handle.enter();
        try {
            t = Native.tailOpen(h, fromLsn);
        } finally {
            handle.exit();
        }
        Tailer tailer = new Tailer(this, t);
        tailers.add(tailer);
        // A close that ran meanwhile may have missed it: it is this one's to close then.
        if (handle.isClosed()) {
            tailer.close();
            throw new IllegalStateException("log " + dir + " is closed");
        }
        return tailer;
    }

    void forget(Tailer t) {
        tailers.remove(t);
    }

    /**
     * The LSN of the oldest record kept.
     *
     * @return the first LSN
     */
    public long firstLsn() {
        long h = handle.enter();
        try {
            return Native.logFirstLsn(h);
        } finally {
            handle.exit();
        }
    }

    /**
     * One past the last durable record: readers and tailers see the records below it.
     *
     * @return the durable LSN
     */
    public long durableLsn() {
        long h = handle.enter();
        try {
            return Native.logDurableLsn(h);
        } finally {
            handle.exit();
        }
    }

    /**
     * The LSN the next append gets.
     *
     * @return the next LSN
     */
    public long nextLsn() {
        long h = handle.enter();
        try {
            return Native.logNextLsn(h);
        } finally {
            handle.exit();
        }
    }

    /**
     * Makes every record appended so far durable (needed only with
     * {@link Durability#NONE}).
     *
     * @throws IOException if persisting fails
     */
    public void sync() throws IOException {
        long h = handle.enter();
        try {
            Native.logSync(h);
        } finally {
            handle.exit();
        }
    }

    /**
     * Seals the tail segment now: the next append starts a new segment.
     *
     * @throws IOException if sealing fails
     */
    public void seal() throws IOException {
        long h = handle.enter();
        try {
            Native.logSeal(h);
        } finally {
            handle.exit();
        }
    }

    /**
     * For a read-only log: picks up what the writer made durable since it was opened or
     * last refreshed.
     *
     * @throws IOException if the log cannot be read
     */
    public void refresh() throws IOException {
        long h = handle.enter();
        try {
            Native.logRefresh(h);
        } finally {
            handle.exit();
        }
    }

    /**
     * Drops the records below {@code lsn} (whole segments, so some may remain); past the
     * end, the log restarts empty at {@code lsn}.
     *
     * @param lsn the first LSN to keep
     * @throws IOException if the purge fails
     */
    public void purgeBefore(long lsn) throws IOException {
        long h = handle.enter();
        try {
            Native.logPurgeBefore(h, lsn);
        } finally {
            handle.exit();
        }
    }

    /**
     * Removes the records after {@code lsn}, crash-safely; the next append gets
     * {@code lsn + 1}.
     *
     * @param lsn the last LSN to keep
     * @throws IOException if the truncation fails
     */
    public void truncateAfter(long lsn) throws IOException {
        long h = handle.enter();
        try {
            Native.logTruncateAfter(h, lsn);
        } finally {
            handle.exit();
        }
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
     * Closes the log and its tailers; a second call does nothing. Calls of other threads
     * in flight finish first (a blocked {@link Tailer#poll} within about 100 ms, with an
     * {@link IllegalStateException}); when this returns the writer lock is released.
     */
    @Override
    public void close() {
        handle.close();
        // Each tailer holds the log's native state (and so its lock) until freed.
        for (Tailer t : new ArrayList<>(tailers)) {
            t.close();
        }
    }

    @Override
    public String toString() {
        return (readOnly ? "Log[read-only, " : "Log[") + dir + (handle.isClosed() ? ", closed]" : "]");
    }
}

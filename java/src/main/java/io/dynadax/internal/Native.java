package io.dynadax.internal;

import java.nio.ByteBuffer;

/**
 * The native methods of {@code libdynadax_jni.so} ({@code crates/dynadax-jni}): the one
 * place where Java calls Rust. Internal: use {@link io.dynadax.Dax}, {@link io.dynadax.DaxFile}
 * and {@link io.dynadax.log.Log}.
 *
 * <p>Handles are addresses of Rust objects, valid from the call that returns them to the
 * matching {@code *Free} call; callers make sure no call uses a handle after it is freed,
 * also when a thread closes an object another thread is using ({@link NativeResource}).
 * A Rust panic never crosses into the JVM: it becomes a {@code RuntimeException}.
 *
 * <p>The native side builds these Java objects (so their constructors are part of this
 * contract, looked up once at load):
 * <ul>
 * <li>{@code io.dynadax.Probe(boolean dax, boolean mapSync, String persistence, String reason,
 *     String fsType, String mountPoint, String flushInstruction, boolean exists,
 *     int physical, int effective)}</li>
 * <li>{@code io.dynadax.Status(String path, boolean directory, int physical, int effective,
 *     String backing, boolean pending, String reason, String persistence, int liveMappings,
 *     String policy)}; modes are {@link io.dynadax.Mode} ordinals (0 direct, 1 cached),
 *     {@code effective} -1 and {@code backing}/{@code persistence} null for a directory;
 *     backing is one of {@code kernel-dax}, {@code emulated}, {@code page-cache},
 *     {@code dram-cache}</li>
 * <li>{@code io.dynadax.log.Record(long lsn, byte[] data)}</li>
 * </ul>
 * and throws, from a dynadax error:
 * <ul>
 * <li>{@code io.dynadax.DaxBusyException(String message, String path)}: a switch or
 *     shrink refused by live mappings (in this process or another);</li>
 * <li>{@code io.dynadax.log.LogCorruptException(String message, String path, long offset)}:
 *     a damaged log segment, record or log metadata ({@code offset} -1 when unknown);</li>
 * <li>{@code io.dynadax.log.LogFullException(String message, String path)}: a single-file
 *     log with no free segment;</li>
 * <li>{@code java.nio.file.NoSuchFileException(String file, null, String message)};</li>
 * <li>{@code io.dynadax.DaxException(String message, String path)} for everything else
 *     (I/O errors, invalid requests, unsupported operations, a locked or poisoned log);</li>
 * <li>{@code IllegalArgumentException} for arguments out of range (negative lengths, a
 *     buffer region outside the buffer).</li>
 * </ul>
 * Every message is the Rust error's own text, which names the path.
 */
public final class Native {
    static {
        NativeLoader.load();
    }

    private Native() {}

    /** Loads the library (idempotent); the first use of this class does it anyway. */
    public static void ensureLoaded() {}

    /** The native library's crate version. */
    public static native String version();

    // ---- io.dynadax.Dax ---------------------------------------------------------------

    public static native Object probe(String path);

    public static native Object stat(String path);

    /** {@code waitNanos} &lt; 0: fail at once with DaxBusyException while mapped. */
    public static native Object setMode(String path, int mode, long waitNanos);

    // ---- io.dynadax.DaxFile -----------------------------------------------------------

    /** Opens (or with {@code create}, creates, inheriting its directory's mode) a file. */
    public static native long fileOpen(String path, boolean create);

    public static native void fileFree(long file);

    public static native long fileSize(long file);

    public static native void fileSetLength(long file, long length);

    /** Reads into {@code dst[off..off+len]}; returns the bytes read, 0 at end of file. */
    public static native int fileRead(long file, byte[] dst, int off, int len, long position);

    /** Reads into a direct buffer's bytes {@code [bufOff, bufOff+len)} in place. */
    public static native int fileReadDirect(long file, ByteBuffer dst, int bufOff, int len, long position);

    /** Writes all of {@code src[off..off+len]} at {@code position}. */
    public static native void fileWrite(long file, byte[] src, int off, int len, long position);

    public static native void fileWriteDirect(long file, ByteBuffer src, int bufOff, int len, long position);

    public static native void filePersist(long file, long offset, long length);

    public static native Object fileStatus(long file);

    public static native Object fileSetMode(long file, int mode, long waitNanos);

    /** Maps a range with its own mapping (never shared), for {@link #mapBuffer}. */
    public static native long mapOpen(long file, long offset, long length, boolean writable);

    /** A direct ByteBuffer over the whole mapping (call once per mapping). */
    public static native ByteBuffer mapBuffer(long map);

    /** Makes {@code [offset, offset+length)} of the mapping durable. */
    public static native void mapPersist(long map, long offset, long length);

    /**
     * Ends the mapping: the file's pages are replaced by private zero pages at the same
     * addresses and the mapping's hold on the file's mode is released (switches may go
     * on). Returns a placeholder handle that owns the address range until
     * {@link #placeholderFree}, called once the buffer is unreachable.
     */
    public static native long mapFree(long map);

    public static native void placeholderFree(long placeholder);

    // ---- io.dynadax.log.Log -----------------------------------------------------------

    /**
     * Opens a log. durability: 0 each, 1 group, 2 none; recovery: 0 strict,
     * 1 tolerate-torn-tail, 2 point-in-time, 3 skip-damaged; tailMode: 0 auto, 1 direct,
     * 2 cached; {@code segmentSize}, {@code maxRecord} 0: the defaults (or, for an
     * existing log, its own); {@code capacity} &gt; 0: a new log in the single-file layout.
     */
    public static native long logOpen(String dir, boolean readOnly, int durability, int recovery, int tailMode,
            long segmentSize, long maxRecord, long firstLsn, long capacity, boolean scanSealed);

    public static native void logFree(long log);

    public static native long logAppend(long log, byte[] src, int off, int len);

    /**
     * Appends the {@code len} bytes at {@code address}, which the caller keeps readable
     * for the call: the address of a direct buffer (from {@link #bufferAddress}) that it
     * keeps reachable, with {@code len} within its capacity. No JNI call back into the
     * JVM at all: the fast path of {@code Log.append(byte[])}, through a staging buffer,
     * and of {@code Log.append(ByteBuffer)} from a direct buffer (its address looked up
     * once per buffer and thread).
     */
    public static native long logAppendAddress(long log, long address, int len);

    /**
     * Benchmarks only: appends the {@code len} bytes at {@code address} (as
     * {@link #logAppendAddress}) in a Rust loop for {@code nanos}, and returns how many,
     * so a Java loop and the same loop in Rust run on one log in one process, in turns.
     */
    public static native long benchAppendLoop(long log, long address, int len, long nanos);

    /** The address of a direct buffer's first byte (its capacity is the caller's to respect). */
    public static native long bufferAddress(ByteBuffer direct);

    /** Appends every record as one batch; returns the first one's LSN. */
    public static native long logAppendBatch(long log, byte[][] records);

    public static native byte[] logRead(long log, long lsn);

    /**
     * Up to {@code maxRecords} records from {@code from} (fewer at the durable end, or
     * once {@code maxBytes} is passed); empty at the end. Consecutive LSNs from
     * {@code max(from, firstLsn)}: the first one is returned in {@code firstOut[0]}.
     */
    public static native byte[][] logReadBatch(long log, long from, int maxRecords, long maxBytes, long[] firstOut);

    public static native long logFirstLsn(long log);

    public static native long logDurableLsn(long log);

    public static native long logNextLsn(long log);

    /** Makes every append durable; returns the durable LSN. */
    public static native long logSync(long log);

    /** Seals the tail now (the next append starts a new segment). */
    public static native void logSeal(long log);

    /** For a read-only log: picks up what the writer made durable since. */
    public static native void logRefresh(long log);

    /** Returns how many segments were removed. */
    public static native long logPurgeBefore(long log, long lsn);

    public static native void logTruncateAfter(long log, long lsn);

    public static native long tailOpen(long log, long from);

    public static native void tailFree(long tailer);

    /** The next record, or null once {@code timeoutNanos} passed (&lt; 0: wait forever). */
    public static native Object tailPoll(long tailer, long timeoutNanos);

    public static native long tailPosition(long tailer);

    /** Durable records the tailer has not returned yet. */
    public static native long tailLag(long tailer);
}

package io.dynadax.log;

import java.util.Objects;

/**
 * How a {@link Log} is opened; immutable. A zero {@link #segmentSize()} or
 * {@link #maxRecord()} means the library's default for a new log (64 MiB segments,
 * 1 MiB records) and the log's own for an existing one. The segment size must hold a
 * record of the maximum size: smaller segments need a smaller {@code maxRecord}.
 *
 * <pre>{@code
 * LogOptions o = LogOptions.builder()
 *         .durability(Durability.EACH)
 *         .segmentSize(64 << 10)
 *         .maxRecord(4096)
 *         .build();
 * }</pre>
 */
public final class LogOptions {
    private static final LogOptions DEFAULTS = builder().build();

    private final Durability durability;
    private final long segmentSize;
    private final RecoveryMode recovery;
    private final TailMode tailMode;
    private final int maxRecord;
    private final long firstLsn;
    private final long singleFileCapacity;
    private final boolean scanSealed;

    private LogOptions(Builder b) {
        this.durability = b.durability;
        this.segmentSize = b.segmentSize;
        this.recovery = b.recovery;
        this.tailMode = b.tailMode;
        this.maxRecord = b.maxRecord;
        this.firstLsn = b.firstLsn;
        this.singleFileCapacity = b.singleFileCapacity;
        this.scanSealed = b.scanSealed;
    }

    /**
     * The defaults: group commit, 64 MiB segments, torn tails tolerated, tail mode auto,
     * the files layout.
     *
     * @return the default options
     */
    public static LogOptions defaults() {
        return DEFAULTS;
    }

    /**
     * A builder starting from the defaults.
     *
     * @return a new builder
     */
    public static Builder builder() {
        return new Builder();
    }

    /**
     * A builder starting from these options.
     *
     * @return a new builder
     */
    public Builder toBuilder() {
        Builder b = new Builder();
        b.durability = durability;
        b.segmentSize = segmentSize;
        b.recovery = recovery;
        b.tailMode = tailMode;
        b.maxRecord = maxRecord;
        b.firstLsn = firstLsn;
        b.singleFileCapacity = singleFileCapacity;
        b.scanSealed = scanSealed;
        return b;
    }

    /**
     * When appends are durable.
     *
     * @return the durability
     */
    public Durability durability() {
        return durability;
    }

    /**
     * Bytes preallocated for each segment, header included.
     *
     * @return the segment size, 0 for the default
     */
    public long segmentSize() {
        return segmentSize;
    }

    /**
     * What recovery does with damage.
     *
     * @return the recovery mode
     */
    public RecoveryMode recovery() {
        return recovery;
    }

    /**
     * How the tail is written.
     *
     * @return the tail mode
     */
    public TailMode tailMode() {
        return tailMode;
    }

    /**
     * The largest record payload.
     *
     * @return the maximum, 0 for the default
     */
    public int maxRecord() {
        return maxRecord;
    }

    /**
     * The LSN of a new log's first record (an existing log keeps its own).
     *
     * @return the first LSN
     */
    public long firstLsn() {
        return firstLsn;
    }

    /**
     * The capacity of a new log in the single-file layout.
     *
     * @return its capacity in bytes, 0 for the files layout
     */
    public long singleFileCapacity() {
        return singleFileCapacity;
    }

    /**
     * Whether an open scans every sealed segment (checking every record's CRC)
     * instead of opening it from its index file.
     *
     * @return true if sealed segments are scanned at open
     */
    public boolean scanSealed() {
        return scanSealed;
    }

    /**
     * Whether a new log uses the single-file layout.
     *
     * @return true if {@link #singleFileCapacity()} is set
     */
    public boolean isSingleFile() {
        return singleFileCapacity > 0;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof LogOptions)) {
            return false;
        }
        LogOptions x = (LogOptions) o;
        return durability == x.durability && segmentSize == x.segmentSize && recovery == x.recovery
                && tailMode == x.tailMode && maxRecord == x.maxRecord && firstLsn == x.firstLsn
                && singleFileCapacity == x.singleFileCapacity && scanSealed == x.scanSealed;
    }

    @Override
    public int hashCode() {
        return Objects.hash(durability, segmentSize, recovery, tailMode, maxRecord, firstLsn, singleFileCapacity,
                scanSealed);
    }

    @Override
    public String toString() {
        return "LogOptions[durability=" + durability + ", segmentSize=" + segmentSize + ", recovery=" + recovery
                + ", tailMode=" + tailMode + ", maxRecord=" + maxRecord + ", firstLsn=" + firstLsn
                + (singleFileCapacity > 0 ? ", singleFile=" + singleFileCapacity : "")
                + (scanSealed ? ", scanSealed" : "") + "]";
    }

    /** Builds {@link LogOptions}; not thread safe. */
    public static final class Builder {
        private Durability durability = Durability.GROUP;
        private long segmentSize;
        private RecoveryMode recovery = RecoveryMode.TOLERATE_TORN_TAIL;
        private TailMode tailMode = TailMode.AUTO;
        private int maxRecord;
        private long firstLsn;
        private long singleFileCapacity;
        private boolean scanSealed;

        private Builder() {}

        /**
         * Sets when appends are durable.
         *
         * @param durability the durability
         * @return this builder
         */
        public Builder durability(Durability durability) {
            this.durability = Objects.requireNonNull(durability, "durability");
            return this;
        }

        /**
         * Sets the bytes preallocated for each segment, header included (below 4 GiB; a
         * multiple of 4096 for the single-file layout).
         *
         * @param segmentSize the size, 0 for the default
         * @return this builder
         * @throws IllegalArgumentException if negative
         */
        public Builder segmentSize(long segmentSize) {
            this.segmentSize = nonNegative(segmentSize, "segmentSize");
            return this;
        }

        /**
         * Sets what recovery does with damage.
         *
         * @param recovery the recovery mode
         * @return this builder
         */
        public Builder recovery(RecoveryMode recovery) {
            this.recovery = Objects.requireNonNull(recovery, "recovery");
            return this;
        }

        /**
         * Sets how the tail is written.
         *
         * @param tailMode the tail mode
         * @return this builder
         */
        public Builder tailMode(TailMode tailMode) {
            this.tailMode = Objects.requireNonNull(tailMode, "tailMode");
            return this;
        }

        /**
         * Sets the largest record payload; it must fit in a segment.
         *
         * @param maxRecord the maximum in bytes, 0 for the default
         * @return this builder
         * @throws IllegalArgumentException if negative
         */
        public Builder maxRecord(int maxRecord) {
            this.maxRecord = (int) nonNegative(maxRecord, "maxRecord");
            return this;
        }

        /**
         * Sets the LSN of a new log's first record.
         *
         * @param firstLsn the first LSN
         * @return this builder
         * @throws IllegalArgumentException if negative
         */
        public Builder firstLsn(long firstLsn) {
            this.firstLsn = nonNegative(firstLsn, "firstLsn");
            return this;
        }

        /**
         * Makes a new log use the single-file layout: one preallocated data file of
         * {@code capacity} bytes whose fixed-size slots are the segments, reused as a
         * ring. An existing log keeps its own layout.
         *
         * @param capacity the data file's size in bytes
         * @return this builder
         * @throws IllegalArgumentException if not positive
         */
        public Builder singleFile(long capacity) {
            if (capacity <= 0) {
                throw new IllegalArgumentException("singleFile capacity must be positive, not " + capacity);
            }
            this.singleFileCapacity = capacity;
            return this;
        }

        /**
         * Makes an open scan every sealed segment, checking every record's CRC. By
         * default a sealed segment is opened from its index file (written after its
         * seal): the open reads headers and index heads, not records, whatever the
         * log's size, and damage in a sealed segment is found when a record is read.
         * {@link RecoveryMode#STRICT} and the salvage modes always scan.
         *
         * @param scanSealed true to scan sealed segments at open
         * @return this builder
         */
        public Builder scanSealed(boolean scanSealed) {
            this.scanSealed = scanSealed;
            return this;
        }

        /**
         * Makes a new log use the files layout (one file per segment, the default).
         *
         * @return this builder
         */
        public Builder files() {
            this.singleFileCapacity = 0;
            return this;
        }

        /**
         * Builds the options.
         *
         * @return the options
         */
        public LogOptions build() {
            return new LogOptions(this);
        }

        private static long nonNegative(long v, String what) {
            if (v < 0) {
                throw new IllegalArgumentException(what + " is negative: " + v);
            }
            return v;
        }
    }
}

package io.dynadax.log;

import java.util.Arrays;

/**
 * A record of a log: its LSN and its bytes.
 *
 * <p>Its simple name is also {@code java.lang.Record}'s, which every file imports
 * implicitly: with {@code import io.dynadax.log.*;} write {@code import
 * io.dynadax.log.Record;} too (a single-type import wins), or the name is ambiguous.
 */
public final class Record {
    private final long lsn;
    private final byte[] data;

    /**
     * Creates a record (the native library builds them; the array is not copied).
     *
     * @param lsn its log sequence number
     * @param data its bytes
     */
    public Record(long lsn, byte[] data) {
        this.lsn = lsn;
        this.data = data;
    }

    /**
     * The record's log sequence number.
     *
     * @return the LSN
     */
    public long lsn() {
        return lsn;
    }

    /**
     * The record's bytes: this record's own array, not a copy.
     *
     * @return the bytes
     */
    public byte[] data() {
        return data;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Record && ((Record) o).lsn == lsn && Arrays.equals(((Record) o).data, data);
    }

    @Override
    public int hashCode() {
        return Long.hashCode(lsn) * 31 + Arrays.hashCode(data);
    }

    @Override
    public String toString() {
        return "Record[lsn=" + lsn + ", " + (data == null ? "null" : data.length + " bytes") + "]";
    }
}

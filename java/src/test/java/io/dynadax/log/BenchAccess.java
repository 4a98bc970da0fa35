package io.dynadax.log;

import java.nio.ByteBuffer;

/** The benchmark's way to {@link Log}'s package-private Rust turn. */
public final class BenchAccess {
    private BenchAccess() {}

    /**
     * Appends {@code direct}'s first {@code len} bytes in a Rust loop for {@code nanos}.
     *
     * @return how many appends
     */
    public static long rustAppends(Log log, ByteBuffer direct, int len, long nanos) {
        return log.benchRustAppends(direct, len, nanos);
    }
}

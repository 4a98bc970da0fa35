package io.dynadax.log;

import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Records whose bytes follow from their LSN (and a salt), so that a reader can check any
 * record it finds without knowing what was written: 8 bytes of LSN, 8 of salt, then
 * pseudo-random bytes seeded by both, of a length seeded by both.
 */
final class Records {
    private Records() {}

    static byte[] of(long lsn, long salt, int maxLen) {
        SplittableRandom r = new SplittableRandom(lsn * 0x9E3779B97F4A7C15L ^ salt);
        int len = 16 + r.nextInt(Math.max(1, maxLen - 16));
        byte[] b = new byte[len];
        ByteBuffer.wrap(b).putLong(lsn).putLong(salt);
        for (int i = 16; i < len; i++) {
            b[i] = (byte) r.nextInt(256);
        }
        return b;
    }

    static boolean intact(long lsn, long salt, int maxLen, byte[] data) {
        return Arrays.equals(of(lsn, salt, maxLen), data);
    }
}

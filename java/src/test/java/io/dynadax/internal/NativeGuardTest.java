package io.dynadax.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/**
 * The native side's own guards, reached by calling {@link Native} directly (the public
 * classes never pass it a null handle or a bad ordinal).
 */
class NativeGuardTest {
    @Test
    void aRustPanicIsAJavaExceptionAndTheJvmGoesOn() {
        // A null handle trips an assertion in the library: a panic, caught at the boundary.
        RuntimeException e = assertThrows(RuntimeException.class, () -> Native.fileSize(0));
        assertTrue(e.getMessage().startsWith("dynadax: internal error: null handle"), e.getMessage());
        e = assertThrows(RuntimeException.class, () -> Native.logNextLsn(0));
        assertTrue(e.getMessage().contains("null handle"), e.getMessage());
        // And the library still works afterwards.
        assertEquals(Native.version(), Native.version());
    }

    @Test
    void badOrdinalsAndRangesAreIllegalArguments() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Native.setMode("/nonexistent-dynadax-path", 7, -1));
        assertTrue(e.getMessage().contains("no mode with ordinal 7"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class,
                () -> Native.logOpen("/nonexistent-dynadax-path", false, 9, 1, 0, 0, 0, 0, 0, false));
        assertTrue(e.getMessage().contains("durability"), e.getMessage());
    }
}

package io.dynadax.log;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** LogOptions and the enums, whose ordinals are the JNI contract's numbers. */
class LogOptionsTest {
    @Test
    void defaultsAreTheLibrarys() {
        LogOptions d = LogOptions.defaults();
        assertSame(d, LogOptions.defaults());
        assertEquals(Durability.GROUP, d.durability());
        assertEquals(RecoveryMode.TOLERATE_TORN_TAIL, d.recovery());
        assertEquals(TailMode.AUTO, d.tailMode());
        assertEquals(0, d.segmentSize());
        assertEquals(0, d.maxRecord());
        assertEquals(0, d.firstLsn());
        assertEquals(0, d.singleFileCapacity());
        assertFalse(d.isSingleFile());
        assertEquals(d, LogOptions.builder().build());
    }

    @Test
    void builderSetsEverythingAndIsChecked() {
        LogOptions o = LogOptions.builder().durability(Durability.EACH).segmentSize(1 << 20)
                .recovery(RecoveryMode.SKIP_DAMAGED).tailMode(TailMode.CACHED).maxRecord(1000).firstLsn(7)
                .singleFile(64 << 20).scanSealed(true).build();
        assertEquals(Durability.EACH, o.durability());
        assertTrue(o.scanSealed());
        assertFalse(LogOptions.defaults().scanSealed(), "sealed segments open from their index files by default");
        assertNotEquals(o, o.toBuilder().scanSealed(false).build());
        assertEquals(1 << 20, o.segmentSize());
        assertEquals(RecoveryMode.SKIP_DAMAGED, o.recovery());
        assertEquals(TailMode.CACHED, o.tailMode());
        assertEquals(1000, o.maxRecord());
        assertEquals(7, o.firstLsn());
        assertEquals(64 << 20, o.singleFileCapacity());
        assertTrue(o.isSingleFile());
        assertEquals(o, o.toBuilder().build());
        assertEquals(o.hashCode(), o.toBuilder().build().hashCode());
        assertNotEquals(o, o.toBuilder().files().build());
        assertTrue(o.toString().contains("singleFile=" + (64 << 20)), o.toString());
        LogOptions.Builder b = LogOptions.builder();
        assertThrows(IllegalArgumentException.class, () -> b.segmentSize(-1));
        assertThrows(IllegalArgumentException.class, () -> b.maxRecord(-1));
        assertThrows(IllegalArgumentException.class, () -> b.firstLsn(-1));
        assertThrows(IllegalArgumentException.class, () -> b.singleFile(0));
        assertThrows(NullPointerException.class, () -> b.durability(null));
    }

    @Test
    void ordinalsAreTheContracts() {
        assertEquals(0, Durability.EACH.ordinal());
        assertEquals(1, Durability.GROUP.ordinal());
        assertEquals(2, Durability.NONE.ordinal());
        assertEquals(0, RecoveryMode.STRICT.ordinal());
        assertEquals(1, RecoveryMode.TOLERATE_TORN_TAIL.ordinal());
        assertEquals(2, RecoveryMode.POINT_IN_TIME.ordinal());
        assertEquals(3, RecoveryMode.SKIP_DAMAGED.ordinal());
        assertEquals(0, TailMode.AUTO.ordinal());
        assertEquals(1, TailMode.DIRECT.ordinal());
        assertEquals(2, TailMode.CACHED.ordinal());
        assertEquals(0, io.dynadax.Mode.DIRECT.ordinal());
        assertEquals(1, io.dynadax.Mode.CACHED.ordinal());
    }

    @Test
    void exceptionsCarryPathAndOffset() {
        LogCorruptException c = new LogCorruptException("bad", "/x/1.dlog", 64);
        assertEquals(Path.of("/x/1.dlog"), c.path());
        assertEquals(64, c.offset());
        assertEquals("bad", c.getMessage());
        assertEquals(-1, new LogCorruptException("bad", null, -1).offset());
        assertEquals(null, new LogFullException("full", null).path());
        assertTrue(new LogFullException("full", "/x") instanceof io.dynadax.DaxException);
        assertTrue(new io.dynadax.DaxBusyException("busy", "/x") instanceof java.io.IOException);
    }
}

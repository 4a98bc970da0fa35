package io.dynadax.log;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.dynadax.DaxException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The log from one thread: append, read, iterate, seal, reopen, purge, truncate, damage. */
class LogTest {
    /** Small segments (the segment size must hold the largest record) so tests seal often. */
    static LogOptions.Builder small() {
        return LogOptions.builder().segmentSize(64 << 10).maxRecord(4096);
    }

    static List<Path> segments(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.filter(p -> p.getFileName().toString().endsWith(".dlog")).sorted().collect(Collectors.toList());
        }
    }

    static byte[] text(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    @TempDir
    Path tmp;

    @Test
    void appendsFromDirectBuffersReadEachBuffersOwnBytes() throws IOException {
        // The binding remembers the last direct buffer's address per thread: buffers
        // taking turns, a slice of one (another address), and one refilled in place
        // must each be appended from their own memory.
        try (Log log = Log.open(tmp.resolve("log"))) {
            ByteBuffer a = ByteBuffer.allocateDirect(32);
            ByteBuffer b = ByteBuffer.allocateDirect(32);
            List<String> want = new java.util.ArrayList<>();
            for (int i = 0; i < 20; i++) {
                ByteBuffer buf = i % 3 == 0 ? b : a;
                String s = "rec-" + i;
                buf.clear().put(text(s)).flip();
                if (i % 5 == 4) {
                    buf.position(2);
                    s = s.substring(2);
                    ByteBuffer slice = buf.slice();
                    assertEquals(i, log.append(slice));
                } else {
                    assertEquals(i, log.append(buf));
                }
                want.add(s);
            }
            for (int i = 0; i < want.size(); i++) {
                assertEquals(want.get(i), new String(log.read(i), StandardCharsets.UTF_8), "record " + i);
            }
        }
    }

    @Test
    void appendReadAndIterate() throws IOException {
        Path dir = tmp.resolve("log");
        try (Log log = Log.open(dir)) {
            assertEquals(dir, log.dir());
            assertFalse(log.isReadOnly());
            assertEquals(0, log.firstLsn());
            assertEquals(0, log.nextLsn());
            assertEquals(0, log.durableLsn());

            assertEquals(0, log.append(text("zero")));

            ByteBuffer direct = ByteBuffer.allocateDirect(64);
            direct.put(text("xxone")).flip();
            direct.position(2);
            assertEquals(1, log.append(direct));
            assertEquals(direct.limit(), direct.position(), "the buffer was consumed");

            ByteBuffer heap = ByteBuffer.wrap(text("__two__"), 2, 3).slice();
            assertEquals(2, log.append(heap));
            assertFalse(heap.hasRemaining());

            ByteBuffer ro = ByteBuffer.wrap(text("three")).asReadOnlyBuffer();
            assertEquals(3, log.append(ro));
            assertFalse(ro.hasRemaining());

            ByteBuffer roDirect = ByteBuffer.allocateDirect(8).put(text("ro")).flip().asReadOnlyBuffer();
            assertTrue(roDirect.isDirect() && roDirect.isReadOnly());
            try (Log other = Log.open(dir.resolveSibling("other"))) {
                assertEquals(0, other.append(roDirect), "a read-only direct buffer is read in place too");
                assertEquals("ro", new String(other.read(0), StandardCharsets.UTF_8));
            }

            byte[] arr = text("[four]");
            assertEquals(4, log.append(arr, 1, 4));

            long[] batch = log.appendBatch(List.of(text("five"), text("six"), text("seven")));
            assertArrayEquals(new long[] {5, 6, 7}, batch);
            assertArrayEquals(new long[0], log.appendBatch(List.of()));

            assertEquals(8, log.nextLsn());
            assertEquals(8, log.durableLsn(), "group commit: durable on return");
            String[] want = {"zero", "one", "two", "three", "four", "five", "six", "seven"};
            for (int i = 0; i < want.length; i++) {
                assertEquals(want[i], new String(log.read(i), StandardCharsets.UTF_8));
            }

            List<Record> all = new ArrayList<>();
            log.iterator(0).forEachRemaining(all::add);
            assertEquals(want.length, all.size());
            for (int i = 0; i < want.length; i++) {
                assertEquals(new Record(i, text(want[i])), all.get(i));
            }

            Iterator<Record> it = log.iterator(6);
            assertEquals(new Record(6, text("six")), it.next());
            assertEquals(new Record(7, text("seven")), it.next());
            assertFalse(it.hasNext());
            assertThrows(NoSuchElementException.class, it::next);
            log.append(text("eight"));
            assertTrue(it.hasNext(), "a drained iterator sees what was appended since");
            assertEquals(8, it.next().lsn());

            assertThrows(IOException.class, () -> log.read(9), "not written yet");
            DaxException empty = assertThrows(DaxException.class, () -> log.append(new byte[0]));
            assertTrue(empty.getMessage().contains(dir.toString()), empty.getMessage());
        }
    }

    @Test
    void recordValueSemantics() {
        Record a = new Record(3, text("x"));
        assertEquals(a, new Record(3, text("x")));
        assertEquals(a.hashCode(), new Record(3, text("x")).hashCode());
        assertFalse(a.equals(new Record(4, text("x"))));
        assertFalse(a.equals(new Record(3, text("y"))));
        assertTrue(a.toString().contains("lsn=3"));
    }

    @Test
    void smallSegmentsSealAndEverythingReadsBackAfterReopen() throws IOException {
        Path dir = tmp.resolve("log");
        int n = 3000;
        try (Log log = Log.open(dir, small().durability(Durability.NONE).build())) {
            for (int i = 0; i < n; i++) {
                assertEquals(i, log.append(Records.of(i, 1, 400)));
            }
            log.sync();
            assertEquals(n, log.durableLsn());
            int before = segments(dir).size();
            log.seal();
            log.append(Records.of(n, 1, 400));
            log.sync();
            assertEquals(before + 1, segments(dir).size(), "seal started a segment");
            n++;
        }
        List<Path> segs = segments(dir);
        assertTrue(segs.size() >= 10, "about 200 records a 64 KiB segment: " + segs);
        assertEquals(String.format("%020d.dlog", 0), segs.get(0).getFileName().toString());
        // Sealed segments are trimmed to their records.
        assertTrue(Files.size(segs.get(0)) < (64 << 10), "trimmed: " + Files.size(segs.get(0)));

        try (Log log = Log.open(dir)) {
            assertEquals(0, log.firstLsn());
            assertEquals(n, log.nextLsn());
            assertEquals(n, log.durableLsn());
            Iterator<Record> it = log.iterator(0);
            long want = 0;
            while (it.hasNext()) {
                Record r = it.next();
                assertEquals(want, r.lsn());
                assertTrue(Records.intact(r.lsn(), 1, 400, r.data()), "record " + r.lsn());
                want++;
            }
            assertEquals(n, want);
            assertTrue(Records.intact(1234, 1, 400, log.read(1234)));
            // The reopened log appends where it ended, with its own segment size.
            assertEquals(n, log.append(Records.of(n, 1, 400)));
        }
    }

    @Test
    void aSecondWriterIsRefused() throws IOException {
        Path dir = tmp.resolve("log");
        try (Log log = Log.open(dir)) {
            log.append(text("a"));
            DaxException e = assertThrows(DaxException.class, () -> Log.open(dir));
            assertTrue(e.getMessage().contains(dir.toString()), e.getMessage());
            // A reader is welcome meanwhile.
            try (Log r = Log.openReadOnly(dir)) {
                assertTrue(r.isReadOnly());
                assertEquals(1, r.durableLsn());
                assertArrayEquals(text("a"), r.read(0));
                assertThrows(IOException.class, () -> r.append(text("no")));
            }
        }
        // Closed: the lock is released at once.
        try (Log log = Log.open(dir)) {
            assertEquals(1, log.nextLsn());
        }
    }

    @Test
    void openReadOnlyOfNothingIsNoSuchFile() {
        assertThrows(NoSuchFileException.class, () -> Log.openReadOnly(tmp.resolve("none")));
    }

    @Test
    void firstLsnOfANewLog() throws IOException {
        try (Log log = Log.open(tmp.resolve("log"), LogOptions.builder().firstLsn(1000).build())) {
            assertEquals(1000, log.firstLsn());
            assertEquals(1000, log.append(text("x")));
        }
        try (Log log = Log.open(tmp.resolve("log"), LogOptions.builder().firstLsn(5).build())) {
            assertEquals(1000, log.firstLsn(), "an existing log keeps its own");
        }
    }

    @Test
    void purgeAndTruncate() throws IOException {
        Path dir = tmp.resolve("log");
        try (Log log = Log.open(dir, small().durability(Durability.NONE).build())) {
            for (int i = 0; i < 1000; i++) {
                log.append(Records.of(i, 2, 300));
            }
            log.sync();
            int segs = segments(dir).size();
            log.purgeBefore(500);
            long first = log.firstLsn();
            assertTrue(first > 0 && first <= 500, "whole segments below 500 went: first " + first);
            assertTrue(segments(dir).size() < segs, "segment files were removed");
            IOException gone = assertThrows(IOException.class, () -> log.read(first - 1));
            assertNotNull(gone.getMessage());
            assertThrows(IOException.class, () -> log.read(0));
            assertTrue(Records.intact(500, 2, 300, log.read(500)));
            Iterator<Record> it = log.iterator(0);
            assertEquals(first, it.next().lsn(), "an iterator from a purged LSN starts at the first");

            log.truncateAfter(800);
            assertEquals(801, log.nextLsn());
            assertEquals(801, log.durableLsn());
            assertTrue(Records.intact(800, 2, 300, log.read(800)));
            assertThrows(IOException.class, () -> log.read(801));
            assertEquals(801, log.append(text("after the cut")));
            log.sync();
        }
        try (Log log = Log.open(dir)) {
            assertTrue(log.firstLsn() > 0);
            assertEquals(802, log.nextLsn());
            assertEquals("after the cut", new String(log.read(801), StandardCharsets.UTF_8));
            assertThrows(IOException.class, () -> log.read(log.firstLsn() - 1));
            // Past the end: the log restarts empty there.
            log.purgeBefore(5000);
            assertEquals(5000, log.firstLsn());
            assertEquals(5000, log.nextLsn());
            assertEquals(5000, log.append(text("restart")));
        }
    }

    @Test
    void aDamagedSealedSegmentIsLogCorruptNamingTheFile() throws IOException {
        Path dir = tmp.resolve("log");
        try (Log log = Log.open(dir, small().durability(Durability.NONE).build())) {
            for (int i = 0; i < 1500; i++) {
                log.append(Records.of(i, 3, 300));
            }
            log.sync();
        }
        List<Path> segs = segments(dir);
        assertTrue(segs.size() >= 3, segs.toString());
        Path victim = segs.get(1); // sealed: not the last
        // Flip a byte of the first record's payload (64-byte header, 24-byte frame header).
        long at = 64 + 24 + 5;
        try (FileChannel ch = FileChannel.open(victim, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            ByteBuffer b = ByteBuffer.allocate(1);
            ch.read(b, at);
            b.put(0, (byte) (b.get(0) ^ 0x40)).position(0);
            ch.write(b, at);
            ch.force(true);
        }
        long hole = Long.parseLong(victim.getFileName().toString().replace(".dlog", ""));
        // The default open reads the sealed segments' index files, not their records:
        // the damaged record is LogCorruptException when it is read.
        try (Log log = Log.open(dir)) {
            assertTrue(Records.intact(hole + 1, 3, 300, log.read(hole + 1)));
            LogCorruptException r = assertThrows(LogCorruptException.class, () -> log.read(hole));
            assertEquals(victim.toRealPath(), r.path().toRealPath(), r.getMessage());
        }
        // An open that scans them refuses the log, naming the file and the offset.
        LogOptions scanning = LogOptions.builder().scanSealed(true).build();
        LogCorruptException e = assertThrows(LogCorruptException.class, () -> Log.open(dir, scanning));
        assertEquals(victim.toRealPath(), e.path().toRealPath(), e.getMessage());
        assertTrue(e.offset() >= 0, "offset " + e.offset());
        assertTrue(e.offset() <= at, "offset " + e.offset() + " at or before the flipped byte");
        assertTrue(e.getMessage().contains(victim.getFileName().toString()), e.getMessage());
        // Nothing was changed: the same damage is found again, also by a reader.
        assertThrows(LogCorruptException.class, () -> Log.open(dir, scanning));
        assertThrows(LogCorruptException.class, () -> Log.openReadOnly(dir, scanning));
        // Salvage keeps every other record; the damaged one is a hole.
        try (Log log = Log.open(dir, LogOptions.builder().recovery(RecoveryMode.SKIP_DAMAGED).build())) {
            assertTrue(Records.intact(0, 3, 300, log.read(0)));
            assertTrue(Records.intact(hole + 1, 3, 300, log.read(hole + 1)));
            assertTrue(Records.intact(1499, 3, 300, log.read(1499)));
            assertThrows(LogCorruptException.class, () -> log.read(hole));
            // An iterator stops at the hole with the read's error, unchecked.
            Iterator<Record> it = log.iterator(hole - 1);
            assertEquals(hole - 1, it.next().lsn());
            UncheckedIOException u = assertThrows(UncheckedIOException.class, it::hasNext);
            assertTrue(u.getCause() instanceof LogCorruptException, u.toString());
        }
    }

    @Test
    void useAfterCloseIsIllegalStateForEveryHandle() throws IOException {
        Path dir = tmp.resolve("log");
        Log log = Log.open(dir);
        log.append(text("a"));
        log.append(text("b"));
        Tailer t = log.tail(0);
        Tailer t2 = log.tail(1);
        Iterator<Record> it = log.iterator(0);
        t2.close();
        t2.close();
        assertTrue(t2.isClosed());
        assertThrows(IllegalStateException.class, () -> t2.poll(Duration.ZERO));
        assertThrows(IllegalStateException.class, t2::position);
        assertEquals(0, t.position());
        assertEquals(2, t.lag(), "two durable records not yet returned");
        assertNotNull(t.poll(Duration.ZERO));
        assertEquals(1, t.lag());
        assertThrows(IllegalStateException.class, t2::lag);

        log.close();
        log.close(); // idempotent
        assertTrue(log.isClosed());
        assertTrue(t.isClosed(), "closing the log closed its tailer");
        List<org.junit.jupiter.api.function.Executable> uses = List.of(
                () -> log.append(text("x")),
                () -> log.append(ByteBuffer.allocateDirect(1)),
                () -> log.append(text("x"), 0, 1),
                () -> log.appendBatch(List.of(text("x"))),
                () -> log.appendBatch(List.of()),
                () -> log.read(0),
                () -> log.iterator(0),
                () -> log.tail(0),
                log::firstLsn,
                log::durableLsn,
                log::nextLsn,
                log::sync,
                log::seal,
                log::refresh,
                () -> log.purgeBefore(0),
                () -> log.truncateAfter(0),
                () -> t.poll(Duration.ZERO),
                t::poll,
                t::position,
                it::hasNext);
        for (org.junit.jupiter.api.function.Executable u : uses) {
            IllegalStateException e = assertThrows(IllegalStateException.class, u);
            assertTrue(e.getMessage().contains(dir.toString()), e.getMessage());
        }
        t.close();
        // And the log can be opened again at once.
        try (Log again = Log.open(dir)) {
            assertEquals(2, again.nextLsn());
        }
    }

    @Test
    void singleFileLayoutAppendsReopensAndReads() throws IOException {
        Path dir = tmp.resolve("single");
        LogOptions o = small().singleFile(4096 + 16 * (64 << 10)).durability(Durability.NONE).build();
        assertTrue(o.isSingleFile());
        try (Log log = Log.open(dir, o)) {
            for (int i = 0; i < 1500; i++) {
                assertEquals(i, log.append(Records.of(i, 4, 300)));
            }
            log.sync();
        }
        assertTrue(Files.exists(dir.resolve("log.data")));
        assertEquals(4096 + 16 * (64 << 10), Files.size(dir.resolve("log.data")));
        assertEquals(List.of(), segments(dir), "no segment files in the single-file layout");
        try (Log log = Log.open(dir)) {
            assertEquals(1500, log.nextLsn());
            long n = 0;
            for (Iterator<Record> it = log.iterator(0); it.hasNext(); n++) {
                Record r = it.next();
                assertEquals(n, r.lsn());
                assertTrue(Records.intact(n, 4, 300, r.data()));
            }
            assertEquals(1500, n);
        }
    }

    @Test
    void aFullSingleFileLogIsLogFullUntilPurged() throws IOException {
        Path dir = tmp.resolve("full");
        // Four slots of 64 KiB: a few hundred records of 1 KiB fill them.
        try (Log log = Log.open(dir, small().singleFile(4096 + 4 * (64 << 10)).durability(Durability.NONE).build())) {
            byte[] rec = new byte[1024];
            long lsn = -1;
            LogFullException full = null;
            for (int i = 0; i < 10_000 && full == null; i++) {
                try {
                    lsn = log.append(rec);
                } catch (LogFullException e) {
                    full = e;
                }
            }
            assertNotNull(full, "the ring filled");
            assertTrue(full instanceof DaxException);
            assertTrue(full.getMessage().contains(dir.toString()), full.getMessage());
            assertTrue(lsn > 150, "about 60 records a slot: " + lsn);
            assertEquals(lsn + 1, log.nextLsn(), "nothing lost, nothing half-appended");
            log.purgeBefore(lsn / 2);
            assertEquals(lsn + 1, log.append(rec), "appends resume after a purge");
        }
    }

    @Test
    void defaultMaxRecordFitsSmallSegments() throws IOException {
        // Only the segment size given: the record limit shrinks to what fits.
        try (Log log = Log.open(tmp.resolve("log"), LogOptions.builder().segmentSize(64 << 10).build())) {
            assertEquals(0, log.append(new byte[8000]));
            assertThrows(IOException.class, () -> log.append(new byte[64 << 10]), "larger than a segment");
        }
    }
}

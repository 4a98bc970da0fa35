package io.dynadax;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ReadOnlyBufferException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** DaxFile's reads, writes and switches, and Mapping's buffer, persist and life. */
class DaxFileTest {
    @TempDir
    Path tmp;

    private Path directDir() throws IOException {
        Path d = Files.createDirectories(tmp.resolve("direct"));
        Dax.setMode(d, Mode.DIRECT);
        return d;
    }

    @Test
    void createOpenSizeAndSetLength() throws IOException {
        Path p = tmp.resolve("f");
        assertThrows(NoSuchFileException.class, () -> DaxFile.open(p));
        try (DaxFile f = DaxFile.create(p)) {
            assertEquals(p, f.path());
            assertEquals(0, f.size());
            f.setLength(10_000);
            assertEquals(10_000, f.size());
            assertEquals(10_000, Files.size(p));
            f.setLength(100);
            assertEquals(100, f.size());
        }
        try (DaxFile f = DaxFile.open(p)) {
            assertEquals(100, f.size());
        }
    }

    @Test
    void readAndWriteWithEveryKindOfBuffer() throws IOException {
        Path p = tmp.resolve("rw");
        byte[] abc = "abcdefghij".getBytes(StandardCharsets.US_ASCII);
        try (DaxFile f = DaxFile.create(p)) {
            // A heap buffer with an array offset (a slice) and a position inside it.
            ByteBuffer heap = ByteBuffer.wrap(new byte[20], 5, 15).slice();
            heap.put(abc).flip();
            heap.position(2);
            assertEquals(8, f.write(heap, 0));
            assertEquals(heap.limit(), heap.position());

            ByteBuffer direct = ByteBuffer.allocateDirect(16);
            direct.put("0123".getBytes(StandardCharsets.US_ASCII)).flip();
            assertEquals(4, f.write(direct, 8));
            assertFalse(direct.hasRemaining());

            ByteBuffer ro = ByteBuffer.wrap("XY".getBytes(StandardCharsets.US_ASCII)).asReadOnlyBuffer();
            assertEquals(2, f.write(ro, 12));
            assertEquals(2, ro.position());

            assertEquals("cdefghij0123XY", Files.readString(p, StandardCharsets.US_ASCII));

            ByteBuffer in = ByteBuffer.allocate(32);
            in.position(3);
            assertEquals(14, f.read(in, 0), "a read stops at the end of the file");
            assertEquals(17, in.position());
            assertEquals("cdefghij0123XY", new String(in.array(), 3, 14, StandardCharsets.US_ASCII));

            ByteBuffer din = ByteBuffer.allocateDirect(4);
            assertEquals(4, f.read(din, 8));
            din.flip();
            byte[] got = new byte[4];
            din.get(got);
            assertEquals("0123", new String(got, StandardCharsets.US_ASCII));

            assertEquals(-1, f.read(ByteBuffer.allocate(4), 14), "at the end of the file");
            assertEquals(-1, f.read(ByteBuffer.allocateDirect(4), 1000), "past the end of the file");
            assertEquals(0, f.read(ByteBuffer.allocate(0), 0));
            assertThrows(IllegalArgumentException.class, () -> f.read(ByteBuffer.allocate(4).asReadOnlyBuffer(), 0));
            assertThrows(IllegalArgumentException.class, () -> f.read(ByteBuffer.allocate(4), -1));
            assertThrows(IllegalArgumentException.class, () -> f.write(ByteBuffer.allocate(4), -1));
            f.persist(0, 14);
        }
    }

    @Test
    void aMappingBlocksSwitchesUntilClosed() throws Exception {
        Path p = directDir().resolve("mapped");
        try (DaxFile f = DaxFile.create(p)) {
            f.setLength(8192);
            Mapping m = f.map(0, 8192, false);
            assertEquals(1, f.status().liveMappings());
            DaxBusyException e = assertThrows(DaxBusyException.class, () -> Dax.setMode(p, Mode.CACHED));
            assertTrue(e instanceof IOException);
            assertTrue(e.getMessage().contains(p.toString()), e.getMessage());
            assertEquals(p, e.path());
            assertThrows(DaxBusyException.class, () -> f.setMode(Mode.CACHED));
            assertThrows(DaxBusyException.class, () -> f.setMode(Mode.CACHED, Duration.ofMillis(50)));
            assertEquals(Mode.DIRECT, Dax.stat(p).physical(), "a refused switch changes nothing");
            m.close();
            assertEquals(0, f.status().liveMappings());
            assertEquals(Mode.CACHED, Dax.setMode(p, Mode.CACHED).physical());
        }
    }

    @Test
    void aSwitchWithAWaitGoesOnOnceTheMappingCloses() throws Exception {
        Path p = directDir().resolve("wait");
        try (DaxFile f = DaxFile.create(p)) {
            f.setLength(4096);
            Mapping m = f.map(0, 4096, true);
            CompletableFuture<Void> closer = CompletableFuture.runAsync(() -> {
                try {
                    Thread.sleep(200);
                } catch (InterruptedException e) {
                    throw new RuntimeException(e);
                }
                m.close();
            });
            long t0 = System.nanoTime();
            Status s = Dax.setMode(p, Mode.CACHED, Duration.ofSeconds(20));
            long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
            assertEquals(Mode.CACHED, s.physical());
            assertTrue(ms >= 150, "the switch waited for the mapping: " + ms + " ms");
            closer.get();
        }
    }

    @Test
    void aWriteThroughAMappingIsReadBackAfterSwitchingToCached() throws IOException {
        Path p = directDir().resolve("through");
        byte[] msg = "written through the mapping".getBytes(StandardCharsets.UTF_8);
        try (DaxFile f = DaxFile.create(p)) {
            assertEquals(Mode.DIRECT, f.status().physical());
            f.setLength(3 * 4096);
            try (Mapping m = f.map(4096, 8192, true)) {
                assertEquals(4096, m.offset());
                assertEquals(8192, m.length());
                ByteBuffer b = m.buffer();
                assertTrue(b.isDirect());
                assertFalse(b.isReadOnly());
                assertEquals(8192, b.capacity());
                b.position(100);
                b.put(msg);
                m.persist(100, msg.length);
                // Independent views: another buffer() starts at 0 and sees the bytes.
                ByteBuffer b2 = m.buffer();
                assertEquals(0, b2.position());
                assertEquals(msg[0], b2.get(100));
                assertThrows(IndexOutOfBoundsException.class, () -> m.persist(8000, 500));
                assertThrows(IndexOutOfBoundsException.class, () -> m.persist(-1, 1));
            }
            Status s = f.setMode(Mode.CACHED);
            assertEquals(Mode.CACHED, s.physical());
            assertEquals(Mode.CACHED, s.effective());
            ByteBuffer back = ByteBuffer.allocate(msg.length);
            assertEquals(msg.length, f.read(back, 4096 + 100));
            assertArrayEquals(msg, back.array());
        }
        byte[] all = Files.readAllBytes(p);
        assertArrayEquals(msg, java.util.Arrays.copyOfRange(all, 4196, 4196 + msg.length));
    }

    @Test
    void aReadOnlyMappingHasAReadOnlyBuffer() throws IOException {
        Path p = tmp.resolve("ro");
        Files.write(p, "read only!".getBytes(StandardCharsets.US_ASCII));
        try (DaxFile f = DaxFile.open(p); Mapping m = f.map(0, 10, false)) {
            ByteBuffer b = m.buffer();
            assertTrue(b.isReadOnly());
            assertTrue(b.isDirect());
            assertFalse(m.isWritable());
            assertEquals('r', b.get(0));
            assertEquals('!', b.get(9));
            assertThrows(ReadOnlyBufferException.class, () -> b.put(0, (byte) 1));
            // A read-only direct buffer is written from in place: copy the mapping out.
            try (DaxFile copy = DaxFile.create(tmp.resolve("copy"))) {
                assertEquals(10, copy.write(m.buffer(), 0));
            }
            assertEquals("read only!", Files.readString(tmp.resolve("copy"), StandardCharsets.US_ASCII));
        }
    }

    @Test
    void aMappingsBufferAfterCloseReadsZerosAndDoesNotCrash() throws IOException {
        Path p = directDir().resolve("stale");
        try (DaxFile f = DaxFile.create(p)) {
            f.setLength(4096);
            byte[] ones = new byte[4096];
            java.util.Arrays.fill(ones, (byte) 1);
            f.write(ByteBuffer.wrap(ones), 0);
            f.persist(0, 4096);
            Mapping m = f.map(0, 4096, true);
            ByteBuffer stale = m.buffer();
            assertEquals(1, stale.get(17));
            m.close();
            m.close(); // idempotent
            assertTrue(m.isClosed());
            for (int i = 0; i < 4096; i += 512) {
                assertEquals(0, stale.get(i), "zero pages after close, at " + i);
            }
            stale.put(5, (byte) 99); // reaches no file, crashes nothing
            assertThrows(IllegalStateException.class, m::buffer);
            assertThrows(IllegalStateException.class, () -> m.persist(0, 1));
            // The file never saw the store, and the switch may go on.
            ByteBuffer back = ByteBuffer.allocate(4096);
            f.read(back, 0);
            assertArrayEquals(ones, back.array());
            assertEquals(Mode.CACHED, f.setMode(Mode.CACHED).physical());
        }
    }

    @Test
    void aMappingOutlivesItsFile() throws IOException {
        Path p = tmp.resolve("outlive");
        Files.write(p, "still here".getBytes(StandardCharsets.US_ASCII));
        Mapping m;
        try (DaxFile f = DaxFile.open(p)) {
            m = f.map(0, 10, true);
        }
        ByteBuffer b = m.buffer();
        assertEquals('s', b.get(0));
        b.put(0, (byte) 'S');
        m.persist(0, 1);
        m.close();
        assertEquals("Still here", Files.readString(p, StandardCharsets.US_ASCII));
    }

    /** A mapping that is never closed is ended by the cleaner once its buffers are gone. */
    @Test
    void anUnreachableMappingIsUnmappedByTheCleaner() throws Exception {
        Path p = directDir().resolve("leaked");
        try (DaxFile f = DaxFile.create(p)) {
            f.setLength(4096);
            mapAndForget(f);
            assertEquals(1, f.status().liveMappings());
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (f.status().liveMappings() != 0 && System.nanoTime() < deadline) {
                System.gc();
                Thread.sleep(20);
            }
            assertEquals(0, f.status().liveMappings(), "the cleaner closed the leaked mapping");
            assertEquals(Mode.CACHED, f.setMode(Mode.CACHED).physical());
        }
    }

    private static void mapAndForget(DaxFile f) throws IOException {
        Mapping m = f.map(0, 4096, true);
        m.buffer().put(0, (byte) 7).duplicate().slice();
    }

    @Test
    void useAfterCloseIsIllegalState() throws IOException {
        Path p = tmp.resolve("closed");
        DaxFile f = DaxFile.create(p);
        f.setLength(4096);
        f.close();
        f.close(); // idempotent
        assertTrue(f.isClosed());
        assertThrows(IllegalStateException.class, f::size);
        assertThrows(IllegalStateException.class, () -> f.setLength(1));
        assertThrows(IllegalStateException.class, () -> f.read(ByteBuffer.allocate(1), 0));
        assertThrows(IllegalStateException.class, () -> f.read(ByteBuffer.allocate(0), 0));
        assertThrows(IllegalStateException.class, () -> f.write(ByteBuffer.allocateDirect(1), 0));
        assertThrows(IllegalStateException.class, () -> f.persist(0, 1));
        assertThrows(IllegalStateException.class, f::status);
        assertThrows(IllegalStateException.class, () -> f.setMode(Mode.CACHED));
        assertThrows(IllegalStateException.class, () -> f.map(0, 4096, false));
        IllegalStateException e = assertThrows(IllegalStateException.class, f::size);
        assertTrue(e.getMessage().contains(p.toString()), e.getMessage());
    }

    /**
     * Closes racing users of a file and of a mapping: the users end with
     * IllegalStateException, a buffer read through the close sees the bytes or zeros.
     */
    @Test
    void closesRacingUsersAreIllegalStateNeverACrash() throws Exception {
        Path p = directDir().resolve("race");
        for (int round = 0; round < 5; round++) {
            DaxFile f = DaxFile.create(p);
            f.setLength(1 << 16);
            byte[] sevens = new byte[1 << 16];
            java.util.Arrays.fill(sevens, (byte) 7);
            f.write(ByteBuffer.wrap(sevens), 0);
            Mapping m = f.map(0, 1 << 16, true);
            ByteBuffer view = m.buffer();
            java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(5);
            java.util.concurrent.CountDownLatch started = new java.util.concurrent.CountDownLatch(5);
            java.util.concurrent.atomic.AtomicBoolean stop = new java.util.concurrent.atomic.AtomicBoolean();
            java.util.List<java.util.concurrent.Future<Throwable>> users = new java.util.ArrayList<>();
            for (int t = 0; t < 4; t++) {
                int kind = t;
                users.add(pool.submit(() -> {
                    started.countDown();
                    ByteBuffer direct = ByteBuffer.allocateDirect(4096);
                    try {
                        for (long k = 0;; k++) {
                            switch ((int) ((k + kind) % 4)) {
                                case 0:
                                    direct.clear();
                                    f.read(direct, k % 60_000);
                                    break;
                                case 1:
                                    direct.clear();
                                    f.write(direct.put(0, (byte) 7), 4096);
                                    break;
                                case 2:
                                    m.persist((int) (k % 60_000), 100);
                                    break;
                                default:
                                    f.persist(0, 4096);
                                    f.size();
                            }
                        }
                    } catch (Throwable e) {
                        return e;
                    }
                }));
            }
            java.util.concurrent.Future<Long> reader = pool.submit(() -> {
                started.countDown();
                long sum = 0;
                while (!stop.get()) {
                    for (int i = 0; i < view.capacity(); i += 4096) {
                        byte b = view.get(i);
                        if (b != 0 && b != 7) {
                            throw new AssertionError("byte " + b + " at " + i);
                        }
                        sum += b;
                    }
                }
                return sum;
            });
            started.await();
            Thread.sleep(20 + 10 * round);
            if (round % 2 == 0) {
                f.close();
                m.close();
            } else {
                m.close();
                f.close();
            }
            for (java.util.concurrent.Future<Throwable> u : users) {
                Throwable e = u.get(10, TimeUnit.SECONDS);
                assertTrue(e instanceof IllegalStateException, "ended with " + e);
            }
            Thread.sleep(20);
            stop.set(true);
            assertTrue(reader.get(10, TimeUnit.SECONDS) >= 0);
            assertEquals(0, view.get(0), "zeros after the close");
            pool.shutdown();
            assertEquals(0, Dax.stat(p).liveMappings());
        }
    }

    @Test
    void mapArgumentsAreChecked() throws IOException {
        try (DaxFile f = DaxFile.create(tmp.resolve("args"))) {
            f.setLength(4096);
            assertThrows(IllegalArgumentException.class, () -> f.map(-1, 10, false));
            assertThrows(IllegalArgumentException.class, () -> f.map(0, 1L << 32, false));
            assertThrows(IllegalArgumentException.class, () -> f.map(0, 0, false));
        }
    }

    @Test
    void toStringsNameThePath() throws IOException {
        Path p = tmp.resolve("named");
        try (DaxFile f = DaxFile.create(p)) {
            f.setLength(4096);
            assertTrue(f.toString().contains(p.toString()));
            try (Mapping m = f.map(0, 4096, false)) {
                assertTrue(m.toString().contains(p.toString()));
                assertSame(m.buffer().order(), java.nio.ByteOrder.BIG_ENDIAN);
            }
        }
    }
}

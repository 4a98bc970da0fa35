package io.dynadax.log;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** Many threads on one log: appenders, tailers, and closes racing them. */
@Timeout(60)
class LogConcurrencyTest {
    @TempDir
    Path tmp;

    @Test
    void eightThreadsAppendingAtOnce() throws Exception {
        int threads = 8;
        int each = 400;
        Path dir = tmp.resolve("log");
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        try (Log log = Log.open(dir, LogTest.small().build())) {
            CountDownLatch go = new CountDownLatch(1);
            List<Future<long[]>> results = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int thread = t;
                results.add(pool.submit(() -> {
                    go.await();
                    long[] lsns = new long[each];
                    ByteBuffer direct = ByteBuffer.allocateDirect(16);
                    for (int i = 0; i < each; i++) {
                        if (i % 2 == 0) {
                            lsns[i] = log.append(payload(thread, i));
                        } else {
                            direct.clear();
                            direct.put(payload(thread, i)).flip();
                            lsns[i] = log.append(direct);
                        }
                    }
                    return lsns;
                }));
            }
            go.countDown();
            Set<Long> seen = ConcurrentHashMap.newKeySet();
            for (int t = 0; t < threads; t++) {
                long[] lsns = results.get(t).get(50, TimeUnit.SECONDS);
                for (int i = 0; i < each; i++) {
                    assertTrue(seen.add(lsns[i]), "LSN " + lsns[i] + " given twice");
                    if (i > 0) {
                        assertTrue(lsns[i] > lsns[i - 1], "a thread's appends are ordered");
                    }
                    assertEquals(ByteBuffer.wrap(payload(t, i)), ByteBuffer.wrap(log.read(lsns[i])),
                            "record of thread " + t + " #" + i);
                }
            }
            assertEquals(threads * each, seen.size());
            assertEquals(threads * each, log.nextLsn());
            assertEquals(threads * each, log.durableLsn());
            for (long l = 0; l < threads * each; l++) {
                assertTrue(seen.contains(l), "no gap at " + l);
            }
        } finally {
            pool.shutdownNow();
        }
    }

    private static byte[] payload(int thread, int i) {
        return ByteBuffer.allocate(16).putLong(thread).putLong(i).array();
    }

    @Test
    void aTailerInAnotherThreadIsWokenByAppends() throws Exception {
        Path dir = tmp.resolve("log");
        int n = 50;
        try (Log log = Log.open(dir)) {
            log.append(LogTest.text("before"));
            Tailer t = log.tail(1);
            assertNull(t.poll(Duration.ofMillis(30)), "nothing yet");
            List<Record> got = new ArrayList<>();
            AtomicLong latencyMax = new AtomicLong();
            Thread follower = new Thread(() -> {
                try {
                    while (got.size() < n) {
                        Record r = t.poll(Duration.ofSeconds(20));
                        assertNotNull(r, "woken within the timeout");
                        got.add(r);
                    }
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });
            follower.start();
            for (int i = 0; i < n; i++) {
                if (i % 10 == 0) {
                    Thread.sleep(20); // the tailer is asleep now
                }
                long t0 = System.nanoTime();
                log.append(LogTest.text("r" + i));
                latencyMax.accumulateAndGet(System.nanoTime() - t0, Math::max);
            }
            follower.join(30_000);
            assertEquals(n, got.size());
            for (int i = 0; i < n; i++) {
                assertEquals(new Record(i + 1, LogTest.text("r" + i)), got.get(i));
            }
            assertEquals(n + 1, t.position());
            // A timed-out poll waits about as long as asked.
            long t0 = System.nanoTime();
            assertNull(t.poll(Duration.ofMillis(250)));
            long waited = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
            assertTrue(waited >= 240 && waited < 5000, "waited " + waited + " ms");
        }
    }

    @Test
    void closingATailerEndsABlockedPollQuickly() throws Exception {
        try (Log log = Log.open(tmp.resolve("log"))) {
            Tailer t = log.tail(0);
            CountDownLatch polling = new CountDownLatch(1);
            ExecutorService one = Executors.newSingleThreadExecutor();
            try {
                Future<Throwable> f = one.submit(() -> {
                    polling.countDown();
                    try {
                        t.poll(Duration.ofSeconds(30));
                        return null;
                    } catch (Throwable e) {
                        return e;
                    }
                });
                polling.await();
                Thread.sleep(150);
                long t0 = System.nanoTime();
                t.close();
                Throwable e = f.get(5, TimeUnit.SECONDS);
                long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
                assertTrue(e instanceof IllegalStateException, String.valueOf(e));
                assertTrue(ms < 1000, "the poll ended " + ms + " ms after the close");
            } finally {
                one.shutdownNow();
            }
            // The log lives on.
            assertEquals(0, log.append(LogTest.text("x")));
        }
    }

    @Test
    void closingTheLogEndsItsTailersPolls() throws Exception {
        Path dir = tmp.resolve("log");
        Log log = Log.open(dir);
        Tailer t = log.tail(0);
        ExecutorService one = Executors.newSingleThreadExecutor();
        try {
            Future<Throwable> f = one.submit(() -> {
                try {
                    t.poll();
                    return null;
                } catch (Throwable e) {
                    return e;
                }
            });
            Thread.sleep(200);
            log.close();
            assertTrue(t.isClosed());
            Throwable e = f.get(5, TimeUnit.SECONDS);
            assertTrue(e instanceof IllegalStateException, String.valueOf(e));
        } finally {
            one.shutdownNow();
        }
        // Every native object is gone with the close: the lock too.
        try (Log again = Log.open(dir)) {
            assertEquals(0, again.nextLsn());
        }
    }

    /** A close racing four appending threads: they all end with IllegalStateException. */
    @Test
    void aCloseRacingAppendersIsIllegalStateNeverACrash() throws Exception {
        for (int round = 0; round < 5; round++) {
            Path dir = tmp.resolve("log" + round);
            Log log = Log.open(dir, LogTest.small().durability(Durability.NONE).build());
            int threads = 4;
            ExecutorService pool = Executors.newFixedThreadPool(threads);
            CountDownLatch started = new CountDownLatch(threads);
            AtomicLong appended = new AtomicLong();
            List<Future<Throwable>> ends = new ArrayList<>();
            for (int i = 0; i < threads; i++) {
                int thread = i;
                ends.add(pool.submit(() -> {
                    started.countDown();
                    ByteBuffer direct = ByteBuffer.allocateDirect(100);
                    try {
                        for (long k = 0;; k++) {
                            if ((k + thread) % 3 == 0) {
                                direct.clear();
                                log.append(direct);
                            } else if ((k + thread) % 3 == 1) {
                                log.append(new byte[100]);
                            } else {
                                if (k % 64 == 2) {
                                    log.sync();
                                }
                                long at = log.append(new byte[50]);
                                log.nextLsn();
                                if (log.durableLsn() > at) {
                                    log.read(at);
                                }
                            }
                            appended.incrementAndGet();
                        }
                    } catch (Throwable e) {
                        return e;
                    }
                }));
            }
            started.await();
            Thread.sleep(30 + 20 * round);
            log.close();
            for (Future<Throwable> f : ends) {
                Throwable e = f.get(10, TimeUnit.SECONDS);
                assertTrue(e instanceof IllegalStateException, "ended with " + e);
            }
            pool.shutdown();
            assertTrue(appended.get() > 0);
            // The log the race left opens and reads through to its end.
            try (Log again = Log.open(dir)) {
                long next = again.nextLsn();
                long n = 0;
                for (var it = again.iterator(0); it.hasNext(); it.next()) {
                    n++;
                }
                assertEquals(next - again.firstLsn(), n, "every record up to the end reads");
            }
        }
    }
}

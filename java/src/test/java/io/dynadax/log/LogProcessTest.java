package io.dynadax.log;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.dynadax.Child;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Iterator;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** Logs shared with other JVMs: a read-only follower, and a writer killed with SIGKILL. */
class LogProcessTest {
    private static final String EOF = "\u0000eof";

    @TempDir
    Path tmp;

    /** Collects a child's stdout lines, then {@link #EOF}. */
    private static BlockingQueue<String> lines(Process p) {
        BlockingQueue<String> q = new LinkedBlockingQueue<>();
        Thread t = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                for (String l; (l = r.readLine()) != null;) {
                    q.add(l);
                }
            } catch (IOException e) {
                q.add("reader failed: " + e);
            } finally {
                q.add(EOF);
            }
        }, "child stdout");
        t.setDaemon(true);
        t.start();
        return q;
    }

    private static String take(BlockingQueue<String> q, long seconds) throws InterruptedException {
        String l = q.poll(seconds, TimeUnit.SECONDS);
        assertNotNull(l, "the child said nothing for " + seconds + " s");
        return l;
    }

    @Test
    @Timeout(60)
    void aReadOnlyLogInAnotherJvmFollowsTheWriter() throws Exception {
        Path dir = tmp.resolve("log");
        int before = 10;
        int total = 100;
        try (Log log = Log.open(dir, LogTest.small().build())) {
            for (int i = 0; i < before; i++) {
                log.append(Records.of(i, 5, 1500));
            }
            Process p = Child.start(Follower.class, dir.toString(), Integer.toString(total));
            try {
                BlockingQueue<String> out = lines(p);
                assertEquals("open " + before, take(out, 30), "the reader saw what was durable");
                for (int i = before; i < total; i++) {
                    log.append(Records.of(i, 5, 1500)); // ~30 a segment: seals meanwhile
                    if (i % 20 == 0) {
                        Thread.sleep(30);
                    }
                }
                for (int i = 0; i < total; i++) {
                    String l = take(out, 30);
                    String[] f = l.split(" ");
                    assertEquals(2, f.length, l);
                    assertEquals(i, Long.parseLong(f[0]), l);
                    assertArrayEquals(Records.of(i, 5, 1500), Base64.getDecoder().decode(f[1]), "record " + i);
                }
                assertEquals("refreshed " + total + " first 0", take(out, 30));
                assertEquals(EOF, take(out, 30));
                assertEquals(0, p.waitFor());
            } finally {
                p.destroyForcibly();
            }
        }
    }

    /** Child of {@link #aReadOnlyLogInAnotherJvmFollowsTheWriter}: prints "LSN base64" lines. */
    public static final class Follower {
        public static void main(String[] args) throws Exception {
            Path dir = Path.of(args[0]);
            int count = Integer.parseInt(args[1]);
            PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
            try (Log log = Log.openReadOnly(dir); Tailer t = log.tail(0)) {
                out.println("open " + log.durableLsn());
                out.flush();
                for (int i = 0; i < count; i++) {
                    Record r = t.poll(Duration.ofSeconds(20));
                    if (r == null) {
                        out.println("timeout at " + t.position());
                        out.flush();
                        System.exit(1);
                    }
                    out.println(r.lsn() + " " + Base64.getEncoder().encodeToString(r.data()));
                }
                log.refresh();
                out.println("refreshed " + log.durableLsn() + " first " + log.firstLsn());
                out.flush();
            }
        }
    }

    /**
     * kill -9 of a writer appending with {@link Durability#EACH}, 24 times on one log: every
     * LSN it printed (after its append returned) reads back intact in this JVM.
     */
    @Test
    @Timeout(120)
    void everyAcknowledgedRecordSurvivesKillMinus9() throws Exception {
        Path dir = tmp.resolve("log");
        SplittableRandom rnd = new SplittableRandom(System.nanoTime());
        List<Long> acked = new ArrayList<>();
        int cycles = 24;
        int killedWhileAppending = 0;
        for (int c = 0; c < cycles; c++) {
            // Alternate the tail's write path: through a mapping (msync), or pwrite+fdatasync.
            String tailMode = c % 2 == 0 ? "DIRECT" : "AUTO";
            Process p = Child.start(Writer.class, dir.toString(), tailMode);
            BlockingQueue<String> out = lines(p);
            List<Long> mine = new ArrayList<>();
            try {
                if (c % 6 == 5) {
                    // Sometimes while it starts, opens or recovers the log.
                    Thread.sleep(rnd.nextInt(0, 300));
                } else {
                    String first = take(out, 30);
                    assertTrue(first.startsWith("ready "), first);
                    Thread.sleep(rnd.nextInt(5, 250));
                }
            } finally {
                p.destroyForcibly();
            }
            assertEquals(137, p.waitFor(), "killed by SIGKILL (cycle " + c + ")");
            List<String> said = new ArrayList<>();
            for (String l; !(l = take(out, 10)).equals(EOF);) {
                said.add(l);
            }
            for (int i = 0; i < said.size(); i++) {
                String l = said.get(i);
                if (l.startsWith("A ") && l.endsWith(" .")) {
                    mine.add(Long.parseLong(l.substring(2, l.length() - 2)));
                } else {
                    // The kill may cut the last line only.
                    assertTrue(l.startsWith("ready ") || i == said.size() - 1, "cycle " + c + ": " + l);
                }
            }
            if (!mine.isEmpty()) {
                killedWhileAppending++;
            }
            acked.addAll(mine);
            check(dir, acked, c);
        }
        System.out.println("kill -9: " + cycles + " cycles, " + killedWhileAppending + " killed mid-append, "
                + acked.size() + " acknowledged records checked after each");
        assertTrue(killedWhileAppending >= cycles / 2, "killed mid-append in " + killedWhileAppending + " cycles");
        assertTrue(acked.size() > 100, "acknowledged " + acked.size());
    }

    private static void check(Path dir, List<Long> acked, int cycle) throws IOException {
        try (Log log = Log.open(dir, LogTest.small().durability(Durability.EACH).build())) {
            long next = log.nextLsn();
            for (long lsn : acked) {
                assertTrue(lsn < next, "acknowledged LSN " + lsn + " lost (next " + next + ", cycle " + cycle + ")");
                assertTrue(Records.intact(lsn, Writer.SALT, Writer.MAX, log.read(lsn)),
                        "acknowledged LSN " + lsn + " damaged (cycle " + cycle + ")");
            }
            // Records written but not acknowledged may be there too: intact if so.
            long n = log.firstLsn();
            for (Iterator<Record> it = log.iterator(0); it.hasNext(); n++) {
                Record r = it.next();
                assertEquals(n, r.lsn());
                if (!Records.intact(r.lsn(), Writer.SALT, Writer.MAX, r.data())) {
                    fail("record " + r.lsn() + " is not what was written (cycle " + cycle + ")");
                }
            }
            assertEquals(next, n, "the log reads through to its end");
        }
    }

    /** Child of the kill -9 test: appends and prints "A LSN ." once each append returned. */
    public static final class Writer {
        static final long SALT = 77;
        static final int MAX = 2000;

        public static void main(String[] args) throws Exception {
            Path dir = Path.of(args[0]);
            TailMode mode = TailMode.valueOf(args[1]);
            PrintStream out = new PrintStream(System.out, false, StandardCharsets.US_ASCII);
            try (Log log = Log.open(dir, LogTest.small().durability(Durability.EACH).tailMode(mode).build())) {
                out.println("ready " + log.nextLsn());
                out.flush();
                for (;;) {
                    long want = log.nextLsn();
                    long lsn = log.append(Records.of(want, SALT, MAX));
                    if (lsn != want) {
                        out.println("ERROR: got " + lsn + " for " + want);
                        out.flush();
                        System.exit(2);
                    }
                    out.println("A " + lsn + " .");
                    out.flush();
                }
            }
        }
    }
}

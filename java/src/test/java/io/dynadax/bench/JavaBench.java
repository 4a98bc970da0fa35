package io.dynadax.bench;

import io.dynadax.Dax;
import io.dynadax.Status;
import io.dynadax.log.BenchAccess;
import io.dynadax.log.Durability;
import io.dynadax.log.Log;
import io.dynadax.log.LogOptions;
import io.dynadax.log.Record;
import io.dynadax.log.TailMode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;

/**
 * The Java side of the benchmarks of issue 13 (not a JUnit test): one JSON line per result
 * on stdout, progress on stderr.
 *
 * <pre>
 * JavaBench append  DIR [--seconds S] [--warmup S]        Durability.EACH, TailMode.DIRECT,
 *                                                          256 and 4096 B, byte[] and direct
 * JavaBench durable DIR [--seconds S] [--threads 1,8]     dynadax GROUP vs FileChannel
 *                                                          write + force(false), 256 B
 * JavaBench iterate DIR [--reps N]                        one sealed 256 MiB segment of
 *                                                          4,000 B records, iterated
 * </pre>
 *
 * For {@code append} on tmpfs, set {@code DYNADAX_FORCE_CACHE_FLUSH=1} in the environment
 * (scripts/java-bench does) so the tail persists by cache-line flush, as on kernel DAX;
 * each line's {@code persist} says what the tail used.
 */
public final class JavaBench {
    private JavaBench() {}

    private static final long MIB = 1 << 20;

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            usage();
        }
        String mode = args[0];
        Path dir = Path.of(args[1]);
        Map<String, String> opt = new LinkedHashMap<>();
        for (int i = 2; i < args.length; i += 2) {
            if (!args[i].startsWith("--") || i + 1 >= args.length) {
                usage();
            }
            opt.put(args[i].substring(2), args[i + 1]);
        }
        double seconds = Double.parseDouble(opt.getOrDefault("seconds", "2"));
        double warmup = Double.parseDouble(opt.getOrDefault("warmup", "0.5"));
        Files.createDirectories(dir);
        switch (mode) {
            case "append":
                for (int size : new int[] {256, 4096}) {
                    appendTurns(dir, size, seconds, warmup);
                }
                break;
            case "durable":
                for (String t : opt.getOrDefault("threads", "1,8").split(",")) {
                    int threads = Integer.parseInt(t.trim());
                    durableDynadax(dir, threads, seconds, warmup);
                    durableFileChannel(dir, threads, seconds, warmup);
                }
                break;
            case "iterate":
                iterate(dir, Integer.parseInt(opt.getOrDefault("reps", "3")));
                break;
            case "crossing":
                crossing(dir, seconds);
                break;
            default:
                usage();
        }
    }

    private static void usage() {
        System.err.println("usage: JavaBench append|durable|iterate|crossing DIR [--seconds S] [--warmup S] [--threads 1,8] [--reps N]");
        System.exit(2);
    }

    // ---- append: one thread, each append persisted ---------------------------------------

    /**
     * Java ({@code byte[]} and direct buffer) and the same loop in Rust, on one log in
     * one process, in turns of 100 ms, the order rotating each round: the tail's fresh
     * pages and the segment preparation cost more than the JNI crossing and drift over
     * a run, so separate runs (or one way always first) measure the drift.
     */
    private static void appendTurns(Path base, int size, double seconds, double warmup) throws IOException {
        Path dir = fresh(base, "append-" + size);
        LogOptions o = LogOptions.builder().durability(Durability.EACH).tailMode(TailMode.DIRECT).build();
        String[] ways = {"byte[]", "direct", "rust"};
        long[] ops = new long[3];
        long[] nanos = new long[3];
        long turn = 100_000_000L;
        try (Log log = Log.open(dir, o)) {
            byte[] rec = new byte[size];
            ByteBuffer direct = ByteBuffer.allocateDirect(size);
            for (int i = 0; i < size; i++) {
                rec[i] = (byte) i;
                direct.put(i, (byte) i);
            }
            long rounds = Math.max(1, (long) ((seconds + warmup) * 1e9 / turn / 3));
            long warmRounds = (long) (warmup * 1e9 / turn / 3);
            long total = 0;
            for (long r = 0; r < rounds; r++) {
                for (int k = 0; k < 3; k++) {
                    int w = (int) ((k + r) % 3);
                    long t0 = System.nanoTime();
                    long n = 0;
                    if (w == 2) {
                        n = BenchAccess.rustAppends(log, direct, size, turn);
                    } else {
                        long end = t0 + turn;
                        while (System.nanoTime() < end) {
                            for (int i = 0; i < 256; i++) {
                                appendOne(log, rec, direct, w == 1);
                            }
                            n += 256;
                        }
                    }
                    long t = System.nanoTime() - t0;
                    total += n;
                    if (r >= warmRounds) {
                        ops[w] += n;
                        nanos[w] += t;
                    }
                }
                // Bounded so a run of 4 KiB records cannot fill a tmpfs: sealed segments go.
                log.purgeBefore(log.durableLsn());
            }
            if (log.durableLsn() != total || log.nextLsn() != total) {
                throw new IllegalStateException("durable " + log.durableLsn() + " after " + total + " appends");
            }
            String persist = persistOf(dir);
            for (int w = 0; w < 3; w++) {
                emit("append", w == 2 ? "rust" : "dynadax-java", w == 2 ? "&[u8]" : ways[w], size, 1, ops[w],
                        nanos[w] / 1e9, persist + ", turns of 100 ms in one process");
            }
        } finally {
            delete(dir);
        }
    }

    private static void appendOne(Log log, byte[] rec, ByteBuffer direct, boolean useDirect) throws IOException {
        if (useDirect) {
            direct.clear();
            log.append(direct);
        } else {
            log.append(rec);
        }
    }

    // ---- durable: T threads, 256 B, durable on return ------------------------------------

    private static void durableDynadax(Path base, int threads, double seconds, double warmup) throws Exception {
        Path dir = fresh(base, "durable-dynadax-" + threads);
        try (Log log = Log.open(dir, LogOptions.builder().durability(Durability.GROUP).build())) {
            byte[] rec = new byte[256];
            long[] r = drive(threads, seconds, warmup, () -> log.append(rec));
            if (log.durableLsn() != r[2]) {
                throw new IllegalStateException("durable " + log.durableLsn() + " after " + r[2] + " appends");
            }
            emit("durable", "dynadax-java-group", "byte[]", 256, threads, r[0], r[1] / 1e9, persistOf(dir));
        } finally {
            delete(dir);
        }
    }

    private static void durableFileChannel(Path base, int threads, double seconds, double warmup) throws Exception {
        Path dir = Files.createDirectories(fresh(base, "durable-filechannel-" + threads));
        Path file = dir.resolve("journal");
        // The plain JDK journal: one shared channel, each append at its own offset, then
        // force(false) (fdatasync) before it counts as durable.
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            AtomicLong offset = new AtomicLong();
            ThreadLocal<ByteBuffer> bufs = ThreadLocal.withInitial(() -> ByteBuffer.allocateDirect(256));
            long[] r = drive(threads, seconds, warmup, () -> {
                ByteBuffer b = bufs.get();
                b.clear();
                long at = offset.getAndAdd(256);
                while (b.hasRemaining()) {
                    ch.write(b, at + b.position());
                }
                ch.force(false);
            });
            if (ch.size() != r[2] * 256) {
                throw new IllegalStateException("journal of " + ch.size() + " bytes after " + r[2] + " appends");
            }
            emit("durable", "jdk-filechannel-force", "direct", 256, threads, r[0], r[1] / 1e9,
                    "FileChannel.write + force(false)");
        } finally {
            delete(dir);
        }
    }

    interface Op {
        void run() throws IOException;
    }

    /**
     * Runs {@code op} in {@code threads} threads: {@code warmup} seconds, then {@code seconds}
     * measured. Returns {measured ops, measured nanoseconds, all ops}.
     */
    private static long[] drive(int threads, double seconds, double warmup, Op op) throws Exception {
        AtomicBoolean measuring = new AtomicBoolean();
        AtomicBoolean stop = new AtomicBoolean();
        AtomicLong measured = new AtomicLong();
        AtomicLong all = new AtomicLong();
        CyclicBarrier start = new CyclicBarrier(threads + 1);
        List<Thread> ts = new ArrayList<>();
        List<Throwable> errors = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            Thread th = new Thread(() -> {
                long n = 0;
                long m = 0;
                try {
                    start.await();
                    while (!stop.get()) {
                        op.run();
                        n++;
                        if (measuring.get()) {
                            m++;
                        }
                    }
                } catch (Throwable e) {
                    synchronized (errors) {
                        errors.add(e);
                    }
                    stop.set(true);
                }
                measured.addAndGet(m);
                all.addAndGet(n);
            });
            th.start();
            ts.add(th);
        }
        start.await();
        Thread.sleep((long) (warmup * 1000));
        measuring.set(true);
        long t0 = System.nanoTime();
        Thread.sleep((long) (seconds * 1000));
        measuring.set(false);
        long t1 = System.nanoTime();
        stop.set(true);
        for (Thread th : ts) {
            th.join();
        }
        if (!errors.isEmpty()) {
            throw new IllegalStateException("a benchmark thread failed", errors.get(0));
        }
        return new long[] {measured.get(), t1 - t0, all.get()};
    }

    // ---- iterate: one sealed 256 MiB segment of 4,000 B records --------------------------

    private static void iterate(Path base, int reps) throws IOException {
        Path dir = fresh(base, "iterate");
        int size = 4000;
        long segment = 256 * MIB;
        try {
            long records;
            try (Log log = Log.open(dir, LogOptions.builder().durability(Durability.NONE).segmentSize(segment)
                    .maxRecord(size).build())) {
                byte[] rec = new byte[size];
                // Records fill the segment after its 64-byte header, each 24 + 4000 bytes.
                long fit = (segment - 64) / (24 + size);
                for (long i = 0; i < fit; i++) {
                    rec[0] = (byte) i;
                    log.append(rec);
                }
                log.sync();
                log.seal();
                records = log.nextLsn();
            }
            List<Path> segs = segments(dir);
            System.err.printf(Locale.ROOT, "iterate: %d records in %s (%d bytes, sealed), %d segments%n", records,
                    segs.get(0).getFileName(), Files.size(segs.get(0)), segs.size());
            try (Log log = Log.open(dir)) {
                for (int r = 0; r < reps; r++) {
                    long t0 = System.nanoTime();
                    long n = 0;
                    long bytes = 0;
                    long check = 0;
                    for (Iterator<Record> it = log.iterator(0); it.hasNext();) {
                        byte[] d = it.next().data();
                        bytes += d.length;
                        check += d[0];
                        n++;
                    }
                    double secs = (System.nanoTime() - t0) / 1e9;
                    if (n != records) {
                        throw new IllegalStateException("iterated " + n + " of " + records + " records (" + check + ")");
                    }
                    System.out.printf(Locale.ROOT,
                            "{\"bench\":\"iterate\",\"impl\":\"dynadax-java\",\"api\":\"iterator\",\"record\":%d,\"threads\":1,\"records\":%d,"
                                    + "\"rep\":%d,\"secs\":%.6f,\"ops_per_s\":%.1f,\"ns_per_op\":%.1f,\"mb_per_s\":%.1f,"
                                    + "\"gb_per_s\":%.3f,\"fs\":\"%s\"}%n",
                            size, n, r, secs, n / secs, secs * 1e9 / n, bytes / secs / 1e6, bytes / secs / 1e9,
                            json(Dax.probe(dir).fsType()));
                }
            }
        } finally {
            delete(dir);
        }
    }

    // ---- crossing: what a JNI call costs, with as little else as possible ---------------

    /**
     * The cost of the crossing itself: {@code nextLsn()} (an atomic load in Rust) in a
     * loop, and 256 B appends with {@link Durability#NONE} (a copy into the tail, no
     * persist), each beside the same loop in Rust ({@code rust_peer crossing}).
     */
    private static void crossing(Path base, double seconds) throws IOException {
        Path dir = fresh(base, "crossing");
        try (Log log = Log.open(dir, LogOptions.builder().durability(Durability.NONE).tailMode(TailMode.DIRECT)
                .build())) {
            long sink = 0;
            for (int rep = 0; rep < 2; rep++) { // the first pass warms the JIT
                int n = 20_000_000;
                long t0 = System.nanoTime();
                for (int i = 0; i < n; i++) {
                    sink += log.nextLsn();
                }
                double secs = (System.nanoTime() - t0) / 1e9;
                if (rep == 1) {
                    emit("crossing", "dynadax-java", "nextLsn", 0, 1, n, secs, "sink " + sink);
                }
            }
            byte[] rec = new byte[256];
            ByteBuffer direct = ByteBuffer.allocateDirect(256);
            // Interleaved, both warmed first: the tail's fresh pages cost as much as
            // the crossing, and they come in waves (segment preparation).
            String[] order = {"byte[]", "direct", "byte[]", "direct", "direct", "byte[]"};
            for (int k = 0; k < order.length; k++) {
                String api = order[k];
                boolean useDirect = api.equals("direct");
                long t0 = System.nanoTime();
                long end = t0 + (long) (seconds * 1e9 / 4);
                long ops = 0;
                long now = t0;
                while (now < end) {
                    for (int i = 0; i < 256; i++) {
                        appendOne(log, rec, direct, useDirect);
                    }
                    ops += 256;
                    now = System.nanoTime();
                }
                if (k >= 2) {
                    emit("append-none", "dynadax-java", api, 256, 1, ops, (now - t0) / 1e9, persistOf(dir));
                }
                // Keep the tail small: what is sealed can go.
                log.purgeBefore(log.durableLsn());
            }
        } finally {
            delete(dir);
        }
    }

    // ---- helpers -------------------------------------------------------------------------

    private static void emit(String bench, String impl, String api, int record, int threads, long ops, double secs,
            String persist) {
        double opsPerS = ops / secs;
        System.out.printf(Locale.ROOT,
                "{\"bench\":\"%s\",\"impl\":\"%s\",\"api\":\"%s\",\"record\":%d,\"threads\":%d,\"ops\":%d,"
                        + "\"secs\":%.3f,\"ops_per_s\":%.1f,\"ns_per_op\":%.1f,\"mb_per_s\":%.1f,\"persist\":\"%s\"}%n",
                bench, impl, json(api), record, threads, ops, secs, opsPerS, 1e9 / opsPerS, opsPerS * record / 1e6,
                json(persist));
        System.out.flush();
    }

    private static String persistOf(Path dir) throws IOException {
        List<Path> segs = segments(dir);
        if (segs.isEmpty()) {
            return "?";
        }
        Status st = Dax.stat(segs.get(segs.size() - 1));
        return st.effective() + " " + st.backing() + ", " + st.persistence() + " (" + segs.size() + " segments)";
    }

    private static List<Path> segments(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.filter(p -> p.getFileName().toString().endsWith(".dlog")).sorted().collect(
                    java.util.stream.Collectors.toList());
        }
    }

    private static String json(String s) {
        return s == null ? "" : s.replace("\\", "\\\\").replace("\"", "\\\"");
    }

    private static Path fresh(Path base, String name) throws IOException {
        Path dir = base.resolve("java-bench-" + name);
        delete(dir);
        return dir;
    }

    private static void delete(Path dir) throws IOException {
        if (!Files.exists(dir)) {
            return;
        }
        try (Stream<Path> s = Files.walk(dir)) {
            s.sorted(Comparator.reverseOrder()).forEach(p -> {
                try {
                    Files.delete(p);
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            });
        }
    }
}

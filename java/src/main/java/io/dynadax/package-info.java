/**
 * dynadax for the JVM: Linux's per-file DAX model. Every file and directory has a
 * persistent {@link io.dynadax.Mode}, {@code DIRECT} (loads and stores through a
 * mapping, no page cache; kernel DAX or emulated) or {@code CACHED}, switched safely at
 * run time. {@link io.dynadax.Dax} probes paths and reads and sets modes;
 * {@link io.dynadax.DaxFile} reads, writes, persists and maps files under their ops lock.
 * The segmented log is in {@link io.dynadax.log}.
 *
 * <p>The classes call the native library {@code libdynadax_jni.so}, which the jar
 * carries for linux-x86_64 and loads on first use; the system property
 * {@code dynadax.library.path} names another copy to load instead.
 *
 * <pre>{@code
 * Path dir = Path.of("/mnt/pmem/wal");
 * Files.createDirectories(dir);
 * Dax.setMode(dir, Mode.DIRECT);                       // new files inherit direct
 * try (DaxFile f = DaxFile.create(dir.resolve("data"))) {
 *     f.setLength(4096);
 *     try (Mapping m = f.map(0, 4096, true)) {
 *         m.buffer().put(0, (byte) 42);
 *         m.persist(0, 1);                             // durable
 *     }
 *     f.setMode(Mode.CACHED);                          // refused while mapped
 * }
 * }</pre>
 */
package io.dynadax;

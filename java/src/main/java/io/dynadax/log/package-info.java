/**
 * The dynadax log: a segmented, crash-safe append-only log for persistent memory and
 * ordinary disks, with sealing, recovery, readers and tailers across processes.
 *
 * <pre>{@code
 * LogOptions opts = LogOptions.builder().durability(Durability.GROUP).build();
 * try (Log log = Log.open(Path.of("/data/wal"), opts);
 *      Tailer tail = log.tail(log.nextLsn())) {
 *     long lsn = log.append("event".getBytes(StandardCharsets.UTF_8));
 *     Record r = tail.poll(Duration.ofSeconds(1));     // the record just appended
 *     log.purgeBefore(lsn);                            // prefix purge
 *     log.truncateAfter(lsn);                          // crash-safe suffix truncation
 * }
 * }</pre>
 *
 * <p>Damage found when a log is opened or read is a
 * {@link io.dynadax.log.LogCorruptException} naming the file and offset.
 */
package io.dynadax.log;

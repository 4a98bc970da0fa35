//! How each implementation is driven. Each `run_*` opens a fresh log in `dir`, runs
//! `drive`, checks afterwards that every appended record is in the log, and returns
//! the outcome plus a short description of how appends were made durable (checked,
//! not assumed, where the implementation lets us look).

use crate::drive::{drive, drive_then, Bounds, Outcome};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Run {
    pub outcome: Outcome,
    /// How appends were persisted, as observed.
    pub persist: String,
    /// Appends per persist (`fdatasync`, `msync` or flush run), where the
    /// implementation counts them (dynadax's `Log::flush_stats`).
    pub per_flush: Option<f64>,
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn check(cond: bool, what: impl FnOnce() -> String) -> io::Result<()> {
    if cond {
        Ok(())
    } else {
        Err(other(what()))
    }
}

// ---------------------------------------------------------------------------------
// dynadax

pub fn run_dynadax(
    dir: &Path,
    b: Bounds,
    durability: dynadax::log::Durability,
    segment_size: u64,
    want_flush: bool,
    pipelined: bool,
) -> io::Result<Run> {
    use dynadax::log::{Log, LogOptions};
    let opts = LogOptions { segment_size, durability, ..LogOptions::default() };
    let log = Log::open(dir, opts).map_err(other)?;
    // How the tail persists: a cache-line flush when forced on tmpfs; on ext4 msync
    // (direct tail) or fdatasync (cached tail).
    let describe = |log: &Log| -> io::Result<String> {
        let segs = log.segments().map_err(other)?;
        let tail = segs.last().ok_or_else(|| other("log has no segment"))?;
        let st = dynadax::File::open(&tail.path).map_err(other)?.status().map_err(other)?;
        Ok(format!(
            "{:?} {:?}, {}",
            tail.effective.map(|m| format!("{m:?}")).unwrap_or_default(),
            tail.backing,
            st.persistence.unwrap_or_default()
        ))
    };
    let persist = describe(&log)?;
    // Steady state: the background preparer has made the next segment (on a disk, by
    // writing its zeros) before the clock starts, as it has long before a segment
    // fills in a log that runs; in a run of seconds its writeback would otherwise
    // share the disk with every flush measured.
    let t = std::time::Instant::now();
    while !log.next_segment_ready() && t.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    if durability != dynadax::log::Durability::None {
        if want_flush {
            check(persist.contains("cache-line-flush"), || {
                format!("dynadax does not persist by cache-line flush: {persist}")
            })?;
        } else {
            // On a disk: msync (direct tail) or fdatasync (cached tail, what
            // `TailMode::Auto` picks on a block device without DAX), never a flush.
            check(!persist.contains("cache-line-flush"), || {
                format!("dynadax persists by cache-line flush on a disk: {persist}")
            })?;
        }
    }
    let outcome = if pipelined {
        // One writer keeps up to `WINDOW` appends in flight: at every half window it
        // waits until the appends of the half before are durable, while the flusher
        // persists the rest. The run ends when everything appended is durable.
        const HALF: u64 = 1 << 15;
        let append = |_, _, rec: &[u8]| {
            let lsn = log.append_nowait(rec).map_err(other)?;
            if lsn % HALF == 0 && lsn >= HALF {
                log.wait_durable(lsn - HALF).map_err(other)?;
            }
            Ok(())
        };
        drive_then(b, append, |_| log.sync().map(drop).map_err(other))?
    } else {
        drive(b, |_, _, rec| log.append(rec).map(|_| ()).map_err(other))?
    };
    let total: u64 = outcome.per_writer.iter().sum();
    if durability != dynadax::log::Durability::None {
        check(log.durable_lsn() == total, || format!("durable LSN {} != {} appends", log.durable_lsn(), total))?;
    }
    check(log.next_lsn() == total, || format!("next LSN {} != {} appends", log.next_lsn(), total))?;
    let segs = log.segments().map_err(other)?;
    let stats = log.flush_stats();
    let persist = format!(
        "{} ({} segments of {} MiB at the end; {} flushes, mean {:.0} us; {} gathering waits, mean {:.0} us)",
        persist,
        segs.len(),
        segment_size >> 20,
        stats.flushes,
        stats.flush_time.as_secs_f64() * 1e6 / stats.flushes.max(1) as f64,
        stats.gathers,
        stats.gather_time.as_secs_f64() * 1e6 / stats.gathers.max(1) as f64,
    );
    let per_flush = (stats.flushes > 0).then(|| stats.records_per_flush());
    Ok(Run { outcome, persist, per_flush })
}

// ---------------------------------------------------------------------------------
// libpmemlog, through its C API

#[allow(non_camel_case_types)]
type PMEMlogpool = libc::c_void;

#[link(name = "pmemlog")]
extern "C" {
    fn pmemlog_create(path: *const libc::c_char, poolsize: libc::size_t, mode: libc::mode_t) -> *mut PMEMlogpool;
    fn pmemlog_append(plp: *mut PMEMlogpool, buf: *const libc::c_void, count: libc::size_t) -> libc::c_int;
    fn pmemlog_tell(plp: *mut PMEMlogpool) -> libc::c_longlong;
    fn pmemlog_nbyte(plp: *mut PMEMlogpool) -> libc::size_t;
    fn pmemlog_close(plp: *mut PMEMlogpool);
    fn pmemlog_errormsg() -> *const libc::c_char;
}

#[link(name = "pmem")]
extern "C" {
    fn pmem_is_pmem(addr: *const libc::c_void, len: libc::size_t) -> libc::c_int;
}

struct Pool(*mut PMEMlogpool);
// SAFETY: libpmemlog serialises appends on the pool with its own lock.
unsafe impl Send for Pool {}
unsafe impl Sync for Pool {}

fn pmem_err(what: &str) -> io::Error {
    // SAFETY: pmemlog_errormsg returns a thread-local NUL-terminated string.
    let msg = unsafe { std::ffi::CStr::from_ptr(pmemlog_errormsg()) }.to_string_lossy().into_owned();
    other(format!("{what}: {msg}"))
}

pub fn run_libpmemlog(dir: &Path, b: Bounds, pool_size: u64) -> io::Result<Run> {
    use std::os::unix::ffi::OsStrExt;
    std::fs::create_dir_all(dir)?;
    let path = dir.join("pool.pmemlog");
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(other)?;
    // SAFETY: valid C string; the pool is closed below.
    let plp = unsafe { pmemlog_create(c.as_ptr(), pool_size as usize, 0o600) };
    if plp.is_null() {
        return Err(pmem_err("pmemlog_create"));
    }
    let pool = Pool(plp);
    // SAFETY: plp is a live pool.
    let nbyte = unsafe { pmemlog_nbyte(pool.0) } as u64;
    // Whether libpmem treats the pool as persistent memory (cache-line flushes) or
    // not (msync): PMEM_IS_PMEM_FORCE=1 makes it answer 1 on tmpfs.
    let probe = [0u8; 64];
    // SAFETY: any address is fine: the answer depends on the env override here.
    let is_pmem = unsafe { pmem_is_pmem(probe.as_ptr().cast(), probe.len()) } != 0;
    let env = std::env::var("PMEM_IS_PMEM_FORCE").unwrap_or_default();
    let persist = format!(
        "pmem_is_pmem={} (PMEM_IS_PMEM_FORCE={env}, PMEMLOG_CONF={}), pool {} MiB, {} MiB usable",
        is_pmem as u8,
        std::env::var("PMEMLOG_CONF").unwrap_or_default(),
        pool_size >> 20,
        nbyte >> 20
    );
    let res = (|| -> io::Result<Outcome> {
        check(is_pmem, || format!("libpmem would msync, not flush: {persist}"))?;
        let need = (b.max_ops + b.warmup_ops) * b.record as u64;
        check(need <= nbyte, || format!("pool too small: {need} bytes needed, {nbyte} usable"))?;
        let p = &pool;
        let outcome = drive(b, |_, _, rec| {
            // SAFETY: live pool, valid buffer.
            if unsafe { pmemlog_append(p.0, rec.as_ptr().cast(), rec.len()) } != 0 {
                return Err(pmem_err("pmemlog_append"));
            }
            Ok(())
        })?;
        let total: u64 = outcome.per_writer.iter().sum();
        // SAFETY: live pool.
        let tell = unsafe { pmemlog_tell(p.0) } as u64;
        check(tell == total * b.record as u64, || {
            format!("pmemlog_tell {tell} != {} bytes appended", total * b.record as u64)
        })?;
        Ok(outcome)
    })();
    // SAFETY: closed once, after every use.
    unsafe { pmemlog_close(pool.0) };
    Ok(Run { outcome: res?, persist, per_flush: None })
}

// ---------------------------------------------------------------------------------
// One fsync per append: a plain file, pwrite at a reserved offset, then fdatasync.

pub fn run_fsync_each(dir: &Path, b: Bounds) -> io::Result<Run> {
    use std::os::unix::fs::FileExt;
    std::fs::create_dir_all(dir)?;
    let path = dir.join("log");
    let f = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?;
    f.sync_all()?;
    std::fs::File::open(dir)?.sync_all()?;
    let tail = AtomicU64::new(0);
    let outcome = drive(b, |_, _, rec| {
        let off = tail.fetch_add(rec.len() as u64, Ordering::Relaxed);
        f.write_all_at(rec, off)?;
        f.sync_data()
    })?;
    let total: u64 = outcome.per_writer.iter().sum();
    let len = f.metadata()?.len();
    check(len == total * b.record as u64, || format!("file is {len} bytes, {} appended", total * b.record as u64))?;
    Ok(Run {
        outcome,
        persist: "pwrite + fdatasync per append, file grows (no preallocation)".into(),
        per_flush: Some(1.0),
    })
}

// ---------------------------------------------------------------------------------
// The disk's bandwidth for writes of the record's size: `dd oflag=direct` in a loop.
// Each record is written with O_DIRECT from an aligned buffer at the next offset of a
// growing file (as dd does), and one fdatasync at the end makes them durable.

pub fn run_odirect(dir: &Path, b: Bounds) -> io::Result<Run> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    check(b.record % 4096 == 0 && b.writers == 1, || "odirect: one writer, records a multiple of 4 KiB".into())?;
    std::fs::create_dir_all(dir)?;
    let path = dir.join("log");
    let f =
        std::fs::OpenOptions::new().create(true).truncate(true).write(true).custom_flags(libc::O_DIRECT).open(&path)?;
    let layout = std::alloc::Layout::from_size_align(b.record, 4096).map_err(other)?;
    // SAFETY: the layout has a non-zero size (a multiple of 4 KiB, checked above).
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    check(!p.is_null(), || "odirect: cannot allocate an aligned buffer".into())?;
    // SAFETY: p is a live allocation of b.record bytes, freed below after its last use.
    let buf = unsafe { std::slice::from_raw_parts_mut(p, b.record) };
    let buf = std::sync::Mutex::new(buf);
    let tail = AtomicU64::new(0);
    let res = drive_then(
        b,
        |_, _, rec| {
            let mut buf = buf.lock().unwrap();
            buf.copy_from_slice(rec);
            f.write_all_at(&buf, tail.fetch_add(rec.len() as u64, Ordering::Relaxed))
        },
        |_| f.sync_data(),
    );
    // SAFETY: allocated above with this layout; `buf` is not used after this.
    unsafe { std::alloc::dealloc(p, layout) };
    let outcome = res?;
    let total: u64 = outcome.per_writer.iter().sum();
    let len = f.metadata()?.len();
    check(len == total * b.record as u64, || format!("file is {len} bytes, {} written", total * b.record as u64))?;
    Ok(Run {
        outcome,
        persist: "O_DIRECT pwrite per record (dd oflag=direct), one fdatasync at the end".into(),
        per_flush: None,
    })
}

// ---------------------------------------------------------------------------------
// raft-engine: one shared engine, one Raft group (region) per writer, each append a
// LogBatch of one entry written with sync = true (fdatasync, group-committed by the
// engine's write barrier).

struct Entries;
impl raft_engine::MessageExt for Entries {
    type Entry = protobuf::well_known_types::BytesValue;
    fn index(e: &Self::Entry) -> u64 {
        u64::from_le_bytes(e.value[..8].try_into().expect("record has 8 bytes"))
    }
}

pub fn run_raft_engine(dir: &Path, b: Bounds, file_size: u64) -> io::Result<Run> {
    use raft_engine::{Config, Engine, LogBatch, ReadableSize};
    std::fs::create_dir_all(dir)?;
    let cfg = Config {
        dir: dir.to_string_lossy().into_owned(),
        target_file_size: ReadableSize(file_size),
        ..Config::default()
    };
    let engine = Engine::open(cfg).map_err(other)?;
    let outcome = drive(b, |w, _, rec| {
        thread_local! {
            static BATCH: std::cell::RefCell<(LogBatch, protobuf::well_known_types::BytesValue)> =
                std::cell::RefCell::new((LogBatch::with_capacity(1), Default::default()));
        }
        BATCH.with(|cell| {
            let (batch, entry) = &mut *cell.borrow_mut();
            entry.value.clear();
            entry.value.extend_from_slice(rec);
            batch.add_entries::<Entries>(w as u64 + 1, std::slice::from_ref(entry)).map_err(other)?;
            engine.write(batch, true).map_err(other)?;
            Ok(())
        })
    })?;
    for (w, n) in outcome.per_writer.iter().enumerate() {
        let last = engine.last_index(w as u64 + 1).unwrap_or(0);
        check(last == *n, || format!("region {}: last index {last} != {n} appends", w + 1))?;
    }
    Ok(Run {
        per_flush: None,
        outcome,
        persist: format!(
            "Engine::write(batch of 1 entry, sync=true): fdatasync, group commit by its write barrier; {} MiB files",
            file_size >> 20
        ),
    })
}

// ---------------------------------------------------------------------------------
// okaywal: one shared WriteAheadLog, each append an entry of one chunk, committed
// (commit returns after fdatasync, shared by concurrent committers).

#[derive(Debug)]
struct Discard;
impl okaywal::LogManager for Discard {
    fn recover(&mut self, _entry: &mut okaywal::Entry<'_>) -> io::Result<()> {
        Ok(())
    }
    fn checkpoint_to(
        &mut self,
        _last: okaywal::EntryId,
        _entries: &mut okaywal::SegmentReader,
        _wal: &okaywal::WriteAheadLog,
    ) -> io::Result<()> {
        Ok(())
    }
}

pub fn run_okaywal(dir: &Path, b: Bounds, file_size: u64) -> io::Result<Run> {
    std::fs::create_dir_all(dir)?;
    let wal = okaywal::Configuration::default_for(dir)
        .preallocate_bytes(file_size as u32)
        .checkpoint_after_bytes(file_size * 3 / 4)
        .open(Discard)?;
    let committed = AtomicU64::new(0);
    let outcome = drive(b, |_, _, rec| {
        let mut e = wal.begin_entry()?;
        e.write_chunk(rec)?;
        e.commit()?;
        committed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    })?;
    let total: u64 = outcome.per_writer.iter().sum();
    check(committed.load(Ordering::Relaxed) == total, || "commit count mismatch".into())?;
    wal.shutdown()?;
    Ok(Run {
        per_flush: None,
        outcome,
        persist: format!(
            "begin_entry + write_chunk + commit: fdatasync, shared by concurrent committers; {} MiB preallocated files",
            file_size >> 20
        ),
    })
}

// ---------------------------------------------------------------------------------
// Diagnostics: the hardware floor of a flushed append on this machine.

#[cfg(target_arch = "x86_64")]
unsafe fn clwb_range(p: *const u8, len: usize) {
    let mut line = p as usize & !63;
    let end = p as usize + len;
    while line < end {
        // SAFETY: caller's range is mapped.
        unsafe { std::arch::asm!("clwb [{0}]", in(reg) line, options(nostack, preserves_flags)) };
        line += 64;
    }
    // SAFETY: no preconditions.
    unsafe { std::arch::asm!("sfence", options(nostack, preserves_flags)) };
}

/// A fresh file `raw` of `bytes` bytes in `dir`, mapped shared (the caller unmaps it).
fn map_raw_file(dir: &Path, bytes: u64) -> io::Result<(std::fs::File, *mut libc::c_void)> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(dir)?;
    let f = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(dir.join("raw"))?;
    f.set_len(bytes)?;
    // SAFETY: fresh file of `bytes` bytes, mapped shared; the caller unmaps it.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok((f, base))
}

/// Allocates the file's space and faults the whole mapping in *writable*, as dynadax's
/// preparer does. (`MAP_POPULATE` is not that: on a shared mapping it faults pages in
/// read-only, and every first store then takes a write fault.)
fn fault_in_writable(f: &std::fs::File, base: *mut libc::c_void, bytes: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscalls on our own descriptor and mapping of `bytes` bytes.
    unsafe {
        if libc::fallocate(f.as_raw_fd(), 0, 0, bytes as i64) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::madvise(base, bytes as usize, 23 /* MADV_POPULATE_WRITE */) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `raw-flush`: memcpy the record (with dynadax's 16-byte frame header, 8-byte
/// aligned) into a shared mapping of a tmpfs file faulted in writable, clwb its lines, sfence.
/// No log, no lock, no checksum: what one flushed append costs the hardware.
/// `crc` fills the checksum with dynadax's frame encoder (CRC32C); `fences` = 2 adds a second
/// flush + fence of an 8-byte "tail" word, as libpmemlog does per append.
/// `locked` adds one locked read-modify-write (`lock xadd`) after the fence, as a
/// mutex release or a SeqCst atomic does: it waits for the write-backs to finish, so
/// nothing after it (the next record's checksum) overlaps them.
pub fn run_raw_flush(dir: &Path, b: Bounds, bytes: u64, crc: bool, fences: u32, locked: bool) -> io::Result<Run> {
    static SINK: AtomicU64 = AtomicU64::new(0);
    let (f, base) = map_raw_file(dir, bytes)?;
    fault_in_writable(&f, base, bytes)?;
    let base = base as usize;
    let frame = dynadax::log::frame_len(b.record);
    check((b.max_ops + b.warmup_ops) * frame as u64 + 4096 <= bytes, || "raw file too small".into())?;
    check(frame <= MAX_RAW_FRAME, || format!("raw frames are at most {MAX_RAW_FRAME} bytes"))?;
    let off = AtomicU64::new(4096);
    let outcome = drive(b, |_, seq, rec| {
        let at = off.fetch_add(frame as u64, Ordering::Relaxed) as usize;
        let p = (base + at) as *mut u8;
        let mut frame_buf = [0u8; MAX_RAW_FRAME];
        let buf = raw_frame(seq, rec, crc, &mut frame_buf);
        // SAFETY: in bounds of the mapping (checked above).
        unsafe {
            std::ptr::copy_nonoverlapping(buf.as_ptr(), p, frame);
            clwb_range(p, frame);
            if fences > 1 {
                let tail = base as *mut u64;
                tail.write_volatile((at + frame) as u64);
                clwb_range(tail as *const u8, 8);
            }
        }
        if locked {
            SINK.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    })?;
    // SAFETY: mapped above, not used after.
    unsafe { libc::munmap(base as *mut libc::c_void, bytes as usize) };
    Ok(Run {
        per_flush: None,
        outcome,
        persist: format!(
            "memcpy + clwb + sfence{}{}{}",
            if crc { ", dynadax's frame encoder (CRC32C)" } else { "" },
            if fences > 1 { ", + tail word clwb + sfence" } else { "" },
            if locked { ", + lock xadd" } else { "" }
        ),
    })
}

/// `raw-nt`: the floor of what dynadax's `Durability::Each` append does, without the
/// log: the frame (16-byte header, payload, zero padding to 8 bytes) written with
/// non-temporal 8-byte stores, one `sfence`, then one locked read-modify-write (as
/// publishing the durable LSN does: any log needs at least one). `crc` fills the
/// header's checksum with dynadax's own frame encoder (`dynadax::log::encode_record`,
/// three-chain CRC32C); without it the header's checksum is 0. `fresh`: the file
/// starts empty and a second thread allocates and faults it in 2 MiB ahead of the
/// appender (fallocate + MADV_POPULATE_WRITE), as dynadax's preparer does, and the
/// appender waits when it catches up; otherwise the whole file is faulted in first.
pub fn run_raw_nt(dir: &Path, b: Bounds, bytes: u64, crc: bool, fresh: bool) -> io::Result<Run> {
    static SINK: AtomicU64 = AtomicU64::new(0);
    const CHUNK: u64 = 2 << 20;
    use std::os::fd::AsRawFd;
    let (f, base) = map_raw_file(dir, bytes)?;
    if !fresh {
        fault_in_writable(&f, base, bytes)?;
    }
    let base = base as usize;
    let frame = dynadax::log::frame_len(b.record);
    check((b.max_ops + b.warmup_ops) * frame as u64 + 4096 <= bytes, || "raw file too small".into())?;
    check(frame <= MAX_RAW_FRAME, || format!("raw frames are at most {MAX_RAW_FRAME} bytes"))?;
    let ready = AtomicU64::new(if fresh { 0 } else { bytes });
    let stop = std::sync::atomic::AtomicBool::new(false);
    let waits = AtomicU64::new(0);
    let outcome = std::thread::scope(|s| {
        if fresh {
            s.spawn(|| {
                let mut at = 0;
                while at < bytes && !stop.load(Ordering::Relaxed) {
                    // SAFETY: `at..at+CHUNK` is inside the mapping (bytes is a multiple of 2 MiB).
                    unsafe {
                        libc::fallocate(f.as_raw_fd(), 0, at as i64, CHUNK as i64);
                        libc::madvise(
                            (base + at as usize) as *mut libc::c_void,
                            CHUNK as usize,
                            23, /* MADV_POPULATE_WRITE */
                        );
                    }
                    at += CHUNK;
                    ready.store(at, Ordering::Release);
                }
            });
        }
        let off = AtomicU64::new(4096);
        let r = drive(b, |_, seq, rec| {
            let at = off.fetch_add(frame as u64, Ordering::Relaxed);
            while ready.load(Ordering::Acquire) < at + frame as u64 {
                waits.fetch_add(1, Ordering::Relaxed);
                std::thread::yield_now();
            }
            let mut frame_buf = [0u8; MAX_RAW_FRAME];
            let buf = raw_frame(seq, rec, crc, &mut frame_buf);
            let p = (base + at as usize) as *mut i64;
            for k in 0..frame / 8 {
                let w = i64::from_le_bytes(buf[8 * k..8 * k + 8].try_into().unwrap());
                // SAFETY: in bounds of the mapping (checked above) and 8-aligned.
                unsafe { std::arch::x86_64::_mm_stream_si64(p.add(k), w) };
            }
            // SAFETY: no preconditions.
            unsafe { std::arch::x86_64::_mm_sfence() };
            SINK.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        stop.store(true, Ordering::Relaxed);
        r
    })?;
    // SAFETY: mapped above, not used after.
    unsafe { libc::munmap(base as *mut libc::c_void, bytes as usize) };
    Ok(Run {
        per_flush: None,
        outcome,
        persist: format!(
            "frame by movnti + sfence + lock xadd{}{}",
            if crc { ", dynadax's frame encoder (CRC32C)" } else { ", no checksum" },
            if fresh {
                format!(
                    ", fresh pages faulted in 2 MiB ahead by a second thread ({} waits)",
                    waits.load(Ordering::Relaxed)
                )
            } else {
                ", pages faulted in first".into()
            }
        ),
    })
}

/// Largest frame the raw loops build (on the stack: no lock, no allocation per append).
const MAX_RAW_FRAME: usize = 1024;

/// The frame of record `seq` in `buf`: dynadax's own encoder (CRC32C) if `crc`, else
/// the same layout with a zero checksum.
fn raw_frame<'a>(seq: u64, rec: &[u8], crc: bool, buf: &'a mut [u8; MAX_RAW_FRAME]) -> &'a [u8] {
    let buf = &mut buf[..dynadax::log::frame_len(rec.len())];
    if crc {
        // Each raw record is persisted before the next: all before it acknowledged.
        dynadax::log::encode_record(seq, seq, rec, buf);
    } else {
        buf[..4].copy_from_slice(&(rec.len() as u32).to_le_bytes());
        buf[8..16].copy_from_slice(&seq.to_le_bytes());
        buf[16..24].copy_from_slice(&seq.to_le_bytes());
        buf[24..24 + rec.len()].copy_from_slice(rec);
    }
    buf
}

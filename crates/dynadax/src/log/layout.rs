//! Where a log's segments live, and the operations that depend on it: one file per
//! segment ([`Layout::Files`], the default), or every segment as a fixed-size slot of
//! one data file used as a ring ([`Layout::SingleFile`]: the thread's "segments
//! entirely logical instead of needing separate physical files").
//!
//! Everything else in the log (appends, the scan, recovery's rules, readers) sees a
//! segment as bytes from its start, through a [`SegFile`]; this module is the one
//! place that knows whether that start is a file or an offset in `log.data`.
//!
//! The single-file layout, in the terms of the access-mode layer:
//! - the data file is preallocated at creation (`capacity`), so a log never needs more
//!   space than that and an append never allocates;
//! - the tail's slot is a **direct range** written through its mapping (on kernel DAX a
//!   `MAP_SYNC` mapping of that range only); sealing is a **range switch** of the slot
//!   to cached: constant time, and the next slot's mapping lives on;
//! - a purged slot is freed by zeroing its header (one persisted store); a free slot
//!   is reused as the ring comes round: switched back to direct, zeroed, then given
//!   its header (the switch the thread asked for, in both directions). Zeroing before
//!   the header, each durable, is what makes a crash at any point leave either a free
//!   slot or a valid empty segment. Nothing is punched: the space stays allocated for
//!   the next use, and the file never shrinks under a mapping.
//! - a full ring (the slot after the tail still holds records) is [`Error::Full`]:
//!   appends fail, nothing is lost, and they resume once a purge frees the slot.

use super::format::{self, DataSuper, SegmentHeader, HEADER_LEN, SUPER_LEN};
use super::meta::sync_dir;
use super::segment::{read_full, FileCache, SegFile, Segment};
use super::{now_ns, Lsn, PREPARE_PREFIX};
use crate::error::{Error, IoContext, Result};
use crate::{fsops, File, Mode, SwitchOptions};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How a log keeps its segments, chosen when it is created (an existing log keeps its
/// own: the option is ignored for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "layout")]
pub enum Layout {
    /// One file per segment, `{base_lsn:020}.dlog`.
    #[default]
    Files,
    /// All segments in one data file, `log.data`, of `capacity` bytes: slots of
    /// `LogOptions::segment_size` (a multiple of 4 KiB) after a 4 KiB superblock.
    SingleFile {
        /// Bytes of the data file: at least two segments and the superblock.
        capacity: u64,
    },
}

/// The single-file layout's data file.
pub const DATA_FILE: &str = "log.data";

/// A segment found in a log: its first LSN and where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub base: Lsn,
    pub path: PathBuf,
    pub offset: u64,
    pub span: u64,
}

impl Found {
    pub fn open(&self, read_only: bool) -> Result<SegFile> {
        SegFile::open_at(&self.path, self.offset, self.span, read_only)
    }
}

/// A slot whose header is neither zero nor valid: its offset, and what is wrong.
pub(crate) type BadSlot = (u64, String);

/// The layout of one open log.
#[derive(Debug, Clone)]
pub(crate) enum Store {
    Files { dir: PathBuf },
    Slots { dir: PathBuf, data: PathBuf, sup: DataSuper },
}

impl Store {
    /// The layout of the log in `dir`: single-file if it has a data file; else, for a
    /// writer of a log without segments yet, the one `layout` asks for (the data file
    /// is made now); else files.
    pub fn open(dir: &Path, layout: Layout, segment_size: u64, writer: bool) -> Result<Store> {
        let data = dir.join(DATA_FILE);
        if data.exists() {
            return Self::slots(dir, data);
        }
        match layout {
            Layout::SingleFile { capacity } if writer && Self::files_in(dir)?.is_empty() => {
                Self::create_data(dir, &data, capacity, segment_size)?;
                Self::slots(dir, data)
            }
            _ => Ok(Store::Files { dir: dir.to_path_buf() }),
        }
    }

    fn slots(dir: &Path, data: PathBuf) -> Result<Store> {
        let f = fs::File::open(&data).ctx(&data, "open log data file")?;
        let mut b = [0u8; 36];
        let n = read_full(&f, &data, &mut b, 0, "read log data file")?;
        let sup = DataSuper::decode(&b[..n]).map_err(|why| Error::Corrupt {
            path: data.clone(),
            what: "log data file",
            why: format!("at byte 0: {why}"),
            offset: Some(0),
        })?;
        Ok(Store::Slots { dir: dir.to_path_buf(), data, sup })
    }

    /// Makes the data file durably: preallocated whole, superblock written, synced,
    /// renamed into place, directory synced. Made through dynadax, so it inherits
    /// the log directory's direct mode (on kernel DAX: a DAX file for its life).
    fn create_data(dir: &Path, data: &Path, capacity: u64, slot: u64) -> Result<()> {
        if slot % 4096 != 0 {
            return Err(Error::invalid(
                dir,
                format!("a single-file log's segment size must be a multiple of 4096 bytes, not {slot}"),
            ));
        }
        let slots = capacity.saturating_sub(SUPER_LEN) / slot;
        if slots < 2 {
            return Err(Error::invalid(
                dir,
                format!(
                    "capacity {capacity} holds fewer than 2 segments of {slot} bytes (after the {SUPER_LEN}-byte \
                     superblock): give a larger capacity or a smaller segment size"
                ),
            ));
        }
        let sup = DataSuper { slot, slots };
        let tmp = dir.join(format!("{PREPARE_PREFIX}data.{}.tmp", std::process::id()));
        let made = (|| {
            let f = File::create(&tmp)?;
            f.allocate(0, sup.file_len())?;
            f.write_at(&sup.encode(), 0)?;
            f.persist(0, SUPER_LEN)?;
            drop(f);
            fsops::sync_path(&tmp).ctx(&tmp, "fsync log data file")?;
            fsops::rename(&tmp, data).ctx(data, "rename log data file into place")?;
            sync_dir(dir)
        })();
        if made.is_err() {
            let _ = fsops::remove_file(&tmp);
        }
        made
    }

    fn files_in(dir: &Path) -> Result<Vec<Found>> {
        let mut v: Vec<Found> = fs::read_dir(dir)
            .ctx(dir, "list log directory")?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                format::parse_segment_name(&e.path()).map(|base| Found {
                    base,
                    path: e.path(),
                    offset: 0,
                    span: u64::MAX,
                })
            })
            .collect();
        v.sort_by_key(|f| f.base);
        Ok(v)
    }

    /// The layout, as the option that makes it.
    pub fn layout(&self) -> Layout {
        match self {
            Store::Files { .. } => Layout::Files,
            Store::Slots { sup, .. } => Layout::SingleFile { capacity: sup.file_len() },
        }
    }

    /// The segment size this layout imposes (single-file: its slots), if any.
    pub fn slot_size(&self) -> Option<u64> {
        match self {
            Store::Files { .. } => None,
            Store::Slots { sup, .. } => Some(sup.slot),
        }
    }

    /// The segments of the log, sorted by first LSN, and the slots whose header is
    /// neither zero (free) nor valid: `(offset, what is wrong)`.
    pub fn list(&self) -> Result<(Vec<Found>, Vec<BadSlot>)> {
        match self {
            Store::Files { dir } => Ok((Self::files_in(dir)?, Vec::new())),
            Store::Slots { data, sup, .. } => {
                let f = fs::File::open(data).ctx(data, "open log data file")?;
                // A data file cut short hides the slots past its end: they would read
                // as free, and their records would be gone without a word.
                let len = f.metadata().ctx(data, "stat log data file")?.len();
                if len < sup.file_len() {
                    return Err(Error::Corrupt {
                        path: data.clone(),
                        what: "log data file",
                        offset: None,
                        why: format!(
                            "it is {len} bytes, shorter than the {} its superblock says ({} segments of {}): it was \
                             truncated, and the records of the segments past byte {len} may be lost; nothing was \
                             changed (restore the file; `truncate -s {}` accepts the loss)",
                            sup.file_len(),
                            sup.slots,
                            sup.slot,
                            sup.file_len()
                        ),
                    });
                }
                let (mut found, mut bad) = (Vec::new(), Vec::new());
                for i in 0..sup.slots {
                    let offset = sup.offset(i);
                    let mut head = [0u8; HEADER_LEN];
                    let n = read_full(&f, data, &mut head, offset, "read segment header")?;
                    if is_free(&head[..n]) {
                        continue;
                    }
                    match SegmentHeader::decode(&head[..n]) {
                        Ok(h) => found.push(Found { base: h.base_lsn, path: data.clone(), offset, span: sup.slot }),
                        Err(why) => bad.push((offset, why)),
                    }
                }
                found.sort_by_key(|f| f.base);
                Ok((found, bad))
            }
        }
    }

    /// Whether the ring slot after the one at `offset` is the slot at `next`.
    pub fn follows(&self, offset: u64, next: u64) -> bool {
        match self {
            Store::Files { .. } => false,
            Store::Slots { sup, .. } => sup.offset(((offset - SUPER_LEN) / sup.slot + 1) % sup.slots) == next,
        }
    }

    /// Creates segment `base` durably and opens it through dynadax as the tail, in
    /// direct mode. Files: the prepared file (or one made now) gets its header, is
    /// renamed into place, and the directory is synced. Single-file: the ring slot
    /// after the newest of `live` (the first slot for an empty log) is switched to
    /// direct, zeroed, and given its header; [`Error::Full`] if it still holds a
    /// segment of `live`.
    /// `prepared`: the files layout's preallocated file; `slot`: the slot the
    /// preparer readied (switched to direct and zeroed), used if it is the one.
    pub fn create(
        &self,
        base: Lsn,
        capacity: u64,
        prepared: Option<PathBuf>,
        slot: Option<u64>,
        live: &[Arc<Segment>],
        files: &Arc<FileCache>,
    ) -> Result<Arc<Segment>> {
        match self {
            Store::Files { dir } => {
                let final_path = dir.join(format::segment_name(base));
                let tmp = match prepared {
                    Some(p) => p,
                    None => super::writer::prepare_file(dir, capacity)?,
                };
                let header = SegmentHeader { base_lsn: base, created_ns: now_ns(), capacity };
                {
                    let f = fs::OpenOptions::new().write(true).open(&tmp).ctx(&tmp, "open prepared segment")?;
                    fsops::write_all_at(&f, &tmp, &header.encode(), 0).ctx(&tmp, "write segment header")?;
                    fsops::sync_file(&f, &tmp).ctx(&tmp, "fsync segment header")?;
                }
                fsops::rename(&tmp, &final_path).ctx(&final_path, "rename prepared segment into place")?;
                sync_dir(dir)?;
                let file = File::open(&final_path)?;
                if file.status()?.physical != Mode::Direct {
                    file.set_mode(Mode::Direct, SwitchOptions::default())?;
                }
                let file = SegFile::of_dax(file, 0, u64::MAX);
                Ok(Segment::new(
                    final_path,
                    0,
                    u64::MAX,
                    header,
                    format::Frames::V2,
                    file,
                    super::segment::Index::dense(Vec::new(), HEADER_LEN as u64),
                    false,
                    files,
                ))
            }
            Store::Slots { data, sup, .. } => {
                debug_assert!(prepared.is_none(), "the single-file layout prepares no files");
                let offset = self.next_slot(live)?;
                let header = SegmentHeader { base_lsn: base, created_ns: now_ns(), capacity: sup.slot };
                if slot != Some(offset) {
                    self.prepare_slot(offset)?;
                }
                let file = File::open(data)?;
                file.write_at(&header.encode(), offset)?;
                file.persist(offset, HEADER_LEN as u64)?;
                let sf = SegFile::of_dax(file, offset, sup.slot);
                Ok(Segment::new(
                    data.clone(),
                    offset,
                    sup.slot,
                    header,
                    format::Frames::V2,
                    sf,
                    super::segment::Index::dense(Vec::new(), HEADER_LEN as u64),
                    false,
                    files,
                ))
            }
        }
    }

    /// Readies the free slot at `offset` for a new segment: its range switched to
    /// direct, then zeroed, durably (its header stays zero, so it stays free until
    /// [`Store::create`] writes one). Run ahead of a rotation by the preparer thread.
    pub fn prepare_slot(&self, offset: u64) -> Result<()> {
        let Store::Slots { data, sup, .. } = self else { unreachable!("slots only") };
        let file = File::open(data)?;
        set_slot_mode(&file, offset, sup.slot, Mode::Direct, None)?;
        file.zero_range(offset, sup.slot)?;
        file.persist(offset, sup.slot)
    }

    /// The slot after the newest of `live` if it is free: where the next segment goes.
    pub fn next_free(&self, live: &[Arc<Segment>]) -> Option<u64> {
        match self {
            Store::Files { .. } => None,
            Store::Slots { .. } => self.next_slot(live).ok(),
        }
    }

    /// The free slot a new segment goes to, or `Full`.
    fn next_slot(&self, live: &[Arc<Segment>]) -> Result<u64> {
        self.room(live, 1)?;
        let Store::Slots { sup, .. } = self else { unreachable!("slots only") };
        Ok(match live.iter().max_by_key(|s| s.base()) {
            None => sup.offset(0),
            Some(last) => sup.offset(((last.offset - SUPER_LEN) / sup.slot + 1) % sup.slots),
        })
    }

    /// `Ok` if `n` new segments can be made, one after the other, without a purge;
    /// else `Full`, naming the segment in the way.
    pub fn room(&self, live: &[Arc<Segment>], n: usize) -> Result<()> {
        let Store::Slots { dir, sup, .. } = self else { return Ok(()) };
        let Some(last) = live.iter().max_by_key(|s| s.base()) else { return Ok(()) };
        let at = (last.offset - SUPER_LEN) / sup.slot;
        for k in 1..=n as u64 {
            let next = sup.offset((at + k) % sup.slots);
            if let Some(holder) = live.iter().find(|s| s.offset == next) {
                return Err(Error::Full {
                    path: dir.clone(),
                    why: format!(
                        "all {} segments of its data file are in use (the next one, at byte {next} of {}, holds \
                         LSNs from {}): purge records (purge_before, retention) to free it; appends resume then",
                        sup.slots,
                        DATA_FILE,
                        holder.base()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Seals `seg`, whose records end at `end` and are persisted: switched to cached
    /// (waiting, bounded, for a group-commit leader or the populater to drop the
    /// tail's mapping). Files: then trimmed to its records, durably (constant time:
    /// no data is touched). Single-file: a range switch of its slot; nothing trimmed.
    pub fn seal(&self, seg: &Arc<Segment>, end: u64) -> Result<()> {
        let file = seg.file()?;
        let f = file.dax();
        let wait = SwitchOptions { wait: Some(Duration::from_secs(10)) };
        match self {
            Store::Files { .. } => {
                f.set_mode(Mode::Cached, wait)?;
                f.set_len(end)?;
                f.persist(0, end)
            }
            Store::Slots { .. } => set_slot_mode(f, seg.offset, seg.span, Mode::Cached, wait.wait),
        }
    }

    /// Recovery's end of an interrupted seal: cached, and (files, `trim`) trimmed.
    /// The repair done, if any.
    pub fn finish_seal(&self, seg: &Arc<Segment>, trim: bool) -> Result<Option<String>> {
        let file = seg.file()?;
        let f = file.dax();
        match self {
            Store::Files { .. } => {
                if f.status()?.physical != Mode::Cached {
                    f.set_mode(Mode::Cached, SwitchOptions::default())?;
                }
                let end = seg.end.load(std::sync::atomic::Ordering::Acquire);
                if trim && f.len()? > end {
                    f.set_len(end)?;
                    f.persist(0, end)?;
                    return Ok(Some(format!("{}: unfinished seal: trimmed to {end} bytes", seg.path.display())));
                }
                Ok(None)
            }
            Store::Slots { .. } => {
                let _ = trim; // A slot is never trimmed.
                if range_physical(&f.status()?, seg.offset) == Mode::Cached {
                    return Ok(None);
                }
                set_slot_mode(f, seg.offset, seg.span, Mode::Cached, None)?;
                Ok(Some(format!(
                    "{} (segment at byte {}): unfinished seal: switched to cached",
                    seg.path.display(),
                    seg.offset
                )))
            }
        }
    }

    /// Removes a segment (purged, truncated away, set aside): its file, or its slot
    /// freed by zeroing its header durably. Files: the directory is synced by
    /// [`Store::synced`] after a batch.
    pub fn remove(&self, path: &Path, offset: u64) -> Result<()> {
        match self {
            Store::Files { .. } => {
                fsops::remove_file(path).ctx(path, "remove segment")?;
                // Its index goes with it (one left behind describes a file that is gone,
                // and is never taken for another: it names its segment's creation time).
                let _ = std::fs::remove_file(format::index_path(path));
                Ok(())
            }
            Store::Slots { data, .. } => {
                // One aligned 8-byte store, the magic: a crash leaves it whole or not
                // at all (persistent memory's failure atomicity), never a half-zeroed
                // header that would read as damage. The rest is zeroed when the slot is
                // readied for reuse.
                let f = File::open(data)?;
                f.write_at(&[0u8; 8], offset)?;
                f.persist(offset, 8)?;
                // Its index goes too (one left behind never matches the slot's next
                // segment, whose header has another creation time).
                let _ = std::fs::remove_file(format::slot_index_path(data, offset));
                Ok(())
            }
        }
    }

    /// Removes `seg`'s index file durably (the directory synced), before its records
    /// are cut: the segment, sealed again later with other records, must not meet its
    /// old index after a crash (same segment, same header).
    pub fn remove_index(&self, seg: &Segment) -> Result<()> {
        let ip = seg.index_file();
        match std::fs::remove_file(&ip) {
            Ok(()) => {
                let dir = match self {
                    Store::Files { dir } | Store::Slots { dir, .. } => dir,
                };
                sync_dir(dir)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&ip, "remove segment index", e)),
        }
    }

    /// Files layout: replaces `seg`'s file by a new one (of `capacity` bytes) holding
    /// its first `keep` bytes and zeros after them, by rename, durably. A mapping of
    /// the old file keeps its bytes (a cut into a sealed segment, see `view.rs`). A
    /// crash leaves the old file or the new one, never a mix; an unrenamed new file
    /// is a prepared file, removed at the next open.
    pub fn replace_prefix(&self, seg: &Arc<Segment>, keep: u64, capacity: u64) -> Result<()> {
        let Store::Files { dir } = self else {
            return Err(Error::invalid(&seg.path, "only a segment file is replaced"));
        };
        // Its index describes the old file.
        self.remove_index(seg)?;
        let tmp = super::writer::prepare_file(dir, capacity.max(keep))?;
        let res = (|| {
            let src = seg.file()?;
            let dst = File::open(&tmp)?;
            let mut buf = vec![0u8; 1 << 20];
            let mut at = 0;
            while at < keep {
                let n = (keep - at).min(buf.len() as u64) as usize;
                if src.read_at(&mut buf[..n], at)? < n {
                    return Err(seg.corrupt(at, format!("segment ends before byte {keep}, where it is cut")));
                }
                dst.write_at(&buf[..n], at)?;
                at += n as u64;
            }
            dst.persist(0, keep)?;
            drop(dst);
            fsops::rename(&tmp, &seg.path).ctx(&seg.path, "replace cut segment")?;
            sync_dir(dir)
        })();
        if res.is_err() {
            let _ = fsops::remove_file(&tmp);
        }
        seg.reset_file();
        res
    }

    /// Makes a batch of removals durable (files: the directory's fsync).
    pub fn synced(&self) -> Result<()> {
        match self {
            Store::Files { dir } => sync_dir(dir),
            Store::Slots { .. } => Ok(()),
        }
    }

    /// Whether the segment `seg` a reader knows is still in the log: its file exists,
    /// or its slot still holds a segment of its first LSN.
    pub fn holds(&self, seg: &Segment) -> bool {
        match self {
            Store::Files { .. } => seg.path.exists(),
            Store::Slots { data, .. } => {
                let mut head = [0u8; HEADER_LEN];
                fs::File::open(data)
                    .ok()
                    .and_then(|f| read_full(&f, data, &mut head, seg.offset, "read segment header").ok())
                    .and_then(|n| SegmentHeader::decode(&head[..n]).ok())
                    .is_some_and(|h| h.base_lsn == seg.base() && h.created_ns == seg.header.created_ns)
            }
        }
    }

    /// A cheap picture of the segments (names and sizes, or slot headers) that
    /// changes whenever the writer creates, seals, purges or truncates one.
    pub fn picture(&self) -> Vec<(PathBuf, u64, u64)> {
        match self {
            Store::Files { dir } => {
                let mut v: Vec<(PathBuf, u64, u64)> = fs::read_dir(dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| format::parse_segment_name(&e.path()).is_some())
                    .map(|e| (e.path(), 0, e.metadata().map_or(u64::MAX, |m| m.len())))
                    .collect();
                v.sort();
                v
            }
            Store::Slots { .. } => self
                .list()
                .map(|(f, bad)| {
                    let mut v: Vec<_> = f.into_iter().map(|f| (PathBuf::new(), f.offset, f.base)).collect();
                    v.extend(bad.into_iter().map(|(o, _)| (PathBuf::new(), o, u64::MAX)));
                    v
                })
                .unwrap_or_default(),
        }
    }
}

/// Whether a slot header (its first bytes) says the slot is free: its magic, the
/// first 8 bytes, is zero (see [`Store::remove`]).
pub(crate) fn is_free(head: &[u8]) -> bool {
    head.iter().take(8).all(|&b| b == 0)
}

/// Sets the physical mode of a slot (a range of the data file), if it differs.
fn set_slot_mode(f: &File, offset: u64, span: u64, mode: Mode, wait: Option<Duration>) -> Result<()> {
    if range_physical(&f.status()?, offset) != mode {
        f.set_range_mode(offset, Some(span), mode, SwitchOptions { wait })?;
    }
    Ok(())
}

/// The physical mode at byte `off` of a file with this status.
pub(crate) fn range_physical(st: &crate::Status, off: u64) -> Mode {
    range_at(st, off).map_or(st.physical, |r| r.physical)
}

/// The range of this status that holds byte `off`, if it is not the file's own mode.
pub(crate) fn range_at(st: &crate::Status, off: u64) -> Option<&crate::RangeStatus> {
    st.ranges.iter().find(|r| r.offset <= off && r.len.is_none_or(|l| off < r.offset + l))
}

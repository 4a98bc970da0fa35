//! dynadax: per-file and per-directory access modes, `direct` (DAX) or `cached`,
//! switchable safely at run time.
//!
//! It brings the Linux per-file DAX model (a persistent *physical* mode per file and
//! directory kept in `FS_XFLAG_DAX`, inheritance at creation, a volume policy like the
//! `dax=` mount option, and an *effective* mode that says what is in force) to
//! applications, with the switch protocol of the 2020 "dynamic address space
//! operations" thread: every operation holds the file's ops lock for read, a switch
//! holds it for write and is refused while a mapping is alive, and a switch costs
//! constant time whatever the file's size.
//!
//! ```no_run
//! use dynadax::{File, Mode, SwitchOptions};
//! # fn main() -> dynadax::Result<()> {
//! let f = File::create("/mnt/pmem/wal.0")?;
//! f.set_mode(Mode::Direct, SwitchOptions::default())?;
//! f.write_at(b"record", 0)?;
//! f.persist(0, 6)?; // cache-line flush on kernel DAX, msync elsewhere
//! let st = f.set_mode(Mode::Cached, SwitchOptions::default())?; // seal: O(1)
//! println!("{} is now {:?} ({})", st.path.display(), st.effective, st.reason);
//! # Ok(()) }
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod aops;
mod atomic_file;
mod error;
mod file;
mod flags;
mod fsops;
mod inode;
pub mod log;
mod mode;
mod mount;
mod probe;
mod ranges;
mod sync;
mod sys;
mod volume;
mod xproc;

pub use aops::{dram_cache_totals, Advice, CacheStats, DramTotals, Extent, Persistence};
pub use error::{Error, Result};
pub use file::{create_dir, set_mode, stat, Detached, File, Hold, Kind, MapGuard, RangeStatus, Status};
pub use flags::{FlagStore, MODE_XATTR, SIDECAR_NAME};
pub use inode::SwitchOptions;
pub use mode::{Backing, Mode, MountDax, Policy};
pub use probe::{probe, Probe};
pub use ranges::RANGES_XATTR;
pub use sys::{FlushInsn, FS_XFLAG_DAX, STATX_ATTR_DAX};
pub use volume::{Volume, VOLUME_FILE};

/// The crash trace (test-only feature `crash-trace`; see `tests/crash_model_log.rs`).
#[cfg(feature = "crash-trace")]
#[doc(hidden)]
pub use fsops::trace;

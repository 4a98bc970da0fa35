//! Errors. Every variant names the path it concerns and says what is wrong, so the
//! CLI can print `Display` as its one-line message.

use std::io;
use std::path::{Path, PathBuf};

/// Result alias for dynadax operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed. `op` says which operation dynadax was doing.
    #[error("{}: {op}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What dynadax was doing, in a few words ("read", "set FS_XFLAG_DAX", ...).
        op: &'static str,
        /// The operating system's error, intact.
        #[source]
        source: io::Error,
    },

    /// A read or write failed at a known place in a file (a bad sector, a poisoned
    /// line of persistent memory): never taken for a torn write.
    #[error("{}: {op} at byte {offset}: {source}", path.display())]
    IoAt {
        /// The file.
        path: PathBuf,
        /// Where in it.
        offset: u64,
        /// What dynadax was doing.
        op: &'static str,
        /// The operating system's error, intact.
        #[source]
        source: io::Error,
    },

    /// A record of a salvaged log is damaged: a hole that
    /// [`RecoveryMode::SkipDamaged`](crate::log::RecoveryMode::SkipDamaged) kept
    /// open, reported instead of the record. The intact records around it read.
    #[error("{}: record {lsn} at byte {offset} is damaged (the log was salvaged around it; see log repair)", path.display())]
    Damaged {
        /// The record's LSN.
        lsn: u64,
        /// The segment file that held it.
        path: PathBuf,
        /// Where its damaged bytes begin.
        offset: u64,
    },

    /// The path does not exist.
    #[error("{}: no such file or directory", path.display())]
    NotFound {
        /// The missing path.
        path: PathBuf,
    },

    /// A mode switch (or a shrink) was refused because mapping guards of the file are
    /// alive, in this process or in another one: changing the operations vector under
    /// a live mapping is what the seed thread's rule 2 forbids, and cutting a file
    /// another process maps would kill it with SIGBUS. Drop the guards, or ask the
    /// switch to wait.
    #[error("{}: busy: {}", path.display(), busy_text(*mappings, elsewhere.as_deref()))]
    Busy {
        /// The file being switched.
        path: PathBuf,
        /// How many mapping guards of this process were alive when it gave up (0 when
        /// the mappings are in another process).
        mappings: usize,
        /// The mappings are in another process: which, where the kernel tells
        /// ("another process" when it cannot be found).
        elsewhere: Option<String>,
    },

    /// The request itself is wrong for this path (bad range, wrong kind of file, ...).
    #[error("{}: {what}", path.display())]
    Invalid {
        /// The path concerned.
        path: PathBuf,
        /// What is wrong, as a phrase.
        what: String,
    },

    /// The file system or machine cannot do what was asked.
    #[error("{}: {what} is not supported here: {why}", path.display())]
    Unsupported {
        /// The path concerned.
        path: PathBuf,
        /// The operation.
        what: &'static str,
        /// Why not.
        why: String,
    },

    /// A previous persist or fsync of the log failed. The log refuses further appends
    /// because what reached the media is unknown (after a failed fsync the kernel may
    /// have dropped the dirty pages: "fsyncgate", <https://www.usenix.org/system/files/atc20-rebello.pdf>).
    /// Nothing acknowledged is lost: reopen the log to recover.
    #[error("{}: log refuses appends after a failed persist ({why}); reopen it to recover", path.display())]
    Poisoned {
        /// The log directory.
        path: PathBuf,
        /// The failure that poisoned it.
        why: String,
    },

    /// A single-file log's data file has no free segment left: the slot after the
    /// tail still holds records. Nothing was written; purge records (or let
    /// retention drop them) and appends resume.
    #[error("{}: log is full: {why}", path.display())]
    Full {
        /// The log directory.
        path: PathBuf,
        /// Which segment is in the way, and what frees it.
        why: String,
    },

    /// Another process (or another `Log` in this one) is the log's writer.
    #[error("{}: log is locked by another writer ({holder}); open it read-only to read", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as the lock file says.
        holder: String,
    },

    /// A file dynadax keeps (a volume file, a mode record) does not parse.
    #[error("{}: corrupt {what}: {why}", path.display())]
    Corrupt {
        /// The file that does not parse.
        path: PathBuf,
        /// What it is ("volume file", "mode attribute", ...).
        what: &'static str,
        /// What is wrong with it.
        why: String,
        /// Where in the file the damage is, when one place is to blame.
        offset: Option<u64>,
    },
}

fn busy_text(mappings: usize, elsewhere: Option<&str>) -> String {
    match elsewhere {
        Some(who) => {
            format!("mapped (or its mode held) in another process: {who}; it must let go first (or this must wait)")
        }
        None => format!(
            "{mappings} live mapping(s) of this file in this process; drop them (or wait) before switching its mode"
        ),
    }
}

impl Error {
    /// The path the error concerns.
    pub fn path(&self) -> &Path {
        match self {
            Error::Io { path, .. }
            | Error::IoAt { path, .. }
            | Error::Damaged { path, .. }
            | Error::NotFound { path }
            | Error::Busy { path, .. }
            | Error::Invalid { path, .. }
            | Error::Unsupported { path, .. }
            | Error::Poisoned { path, .. }
            | Error::Full { path, .. }
            | Error::Locked { path, .. }
            | Error::Corrupt { path, .. } => path,
        }
    }

    /// The byte of [`Error::path`] the error is about, when it is about one place.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Error::IoAt { offset, .. } | Error::Damaged { offset, .. } => Some(*offset),
            Error::Corrupt { offset, .. } => *offset,
            _ => None,
        }
    }

    /// Wraps an `io::Error`, turning "not found" into [`Error::NotFound`].
    pub(crate) fn io(path: &Path, op: &'static str, source: io::Error) -> Error {
        if source.kind() == io::ErrorKind::NotFound {
            Error::NotFound { path: path.to_path_buf() }
        } else {
            Error::Io { path: path.to_path_buf(), op, source }
        }
    }

    /// Adds `offset` to an I/O error about a place in a file.
    pub(crate) fn at(self, offset: u64) -> Error {
        match self {
            Error::Io { path, op, source } => Error::IoAt { path, offset, op, source },
            e => e,
        }
    }

    pub(crate) fn invalid(path: &Path, what: impl Into<String>) -> Error {
        Error::Invalid { path: path.to_path_buf(), what: what.into() }
    }
}

/// Adds the path and operation to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, path: &Path, op: &'static str) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, path: &Path, op: &'static str) -> Result<T> {
        self.map_err(|e| Error::io(path, op, e))
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn ctx(self, path: &Path, op: &'static str) -> Result<T> {
        self.map_err(|e| Error::io(path, op, e.into()))
    }
}

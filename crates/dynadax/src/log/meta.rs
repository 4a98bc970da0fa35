//! The small durable record kept beside the log (`log.meta`): where the log starts
//! after purges, a pending suffix truncation, and the application's own bytes (for
//! example a Raft vote). Replaced atomically: temporary file, fsync, rename, fsync
//! of the directory.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::Path;

/// File name of the metadata record.
pub const META_FILE: &str = "log.meta";
const FORMAT: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Meta {
    pub format: u32,
    /// Records below this LSN are purged, even if their segment still holds them.
    pub purged_before: u64,
    /// A suffix truncation that was started: this LSN and everything after it are to
    /// be dropped. Recovery finishes it if a crash interrupted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate_from: Option<u64>,
    /// The same intent as written by earlier versions (drop everything *after* it);
    /// read, never written.
    #[serde(default, skip_serializing)]
    pub truncate_after: Option<u64>,
    /// The application's bytes, hex-encoded.
    pub user: String,
}

impl Meta {
    pub fn load(dir: &Path) -> Result<Option<Meta>> {
        let path = dir.join(META_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, "read log metadata", e)),
        };
        let mut m = crate::atomic_file::parse_versioned(&path, &bytes, "log metadata", |m: &Meta| m.format, FORMAT)?;
        if let Some(after) = m.truncate_after.take() {
            m.truncate_from = m.truncate_from.or(Some(after.saturating_add(1)));
        }
        Ok(Some(m))
    }

    pub fn store(&self, dir: &Path) -> Result<()> {
        #[cfg(feature = "failpoints")]
        fail::fail_point!("log-meta-write", |_| Err(Error::Io {
            path: dir.join(META_FILE),
            op: "write log metadata",
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        }));
        let body = serde_json::to_vec(&Meta { format: FORMAT, ..self.clone() }).expect("plain struct serializes");
        crate::atomic_file::replace(&dir.join(META_FILE), &body, "write log metadata")
    }

    pub fn user_bytes(&self) -> Vec<u8> {
        (0..self.user.len() / 2).filter_map(|i| u8::from_str_radix(&self.user[2 * i..2 * i + 2], 16).ok()).collect()
    }

    pub fn set_user_bytes(&mut self, b: &[u8]) {
        self.user = b.iter().map(|x| format!("{x:02x}")).collect();
    }
}

pub(crate) use crate::atomic_file::sync_dir;

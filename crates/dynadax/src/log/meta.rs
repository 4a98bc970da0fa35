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
    /// A suffix truncation that was started: everything after this LSN is to be
    /// dropped. Recovery finishes it if a crash interrupted it.
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
        let m = crate::atomic_file::parse_versioned(&path, &bytes, "log metadata", |m: &Meta| m.format, FORMAT)?;
        Ok(Some(m))
    }

    pub fn store(&self, dir: &Path) -> Result<()> {
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

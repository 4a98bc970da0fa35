//! The small durable record kept beside the log (`log.meta`): where the log starts
//! after purges, a pending suffix truncation, salvaged holes, and the application's
//! own bytes (for example a Raft vote). Replaced atomically: temporary file, fsync,
//! rename, fsync of the directory.
//!
//! Format 2 (written): one line of JSON, then a line `crc32c XXXXXXXX` with the
//! CRC32C of the JSON line's bytes, so that a flipped digit (a purge point, a vote)
//! is damage found, not a value believed. Format 1 (no checksum line) is still read.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::Path;

/// File name of the metadata record.
pub const META_FILE: &str = "log.meta";
const FORMAT: u32 = 2;
/// The first format: the JSON line alone.
const FORMAT_1: u32 = 1;

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
    /// Damaged LSN ranges `[start, end)` a salvage kept as holes
    /// (`RecoveryMode::SkipDamaged`): later opens accept exactly these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<(u64, u64)>,
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
        let corrupt = |why: String| Error::Corrupt { path: path.clone(), what: "log metadata", why, offset: None };
        let (body, want) = match bytes.iter().position(|&b| b == b'\n') {
            Some(nl) => {
                let trailer = std::str::from_utf8(&bytes[nl + 1..]).unwrap_or("");
                let stored = trailer
                    .trim_end_matches('\n')
                    .strip_prefix("crc32c ")
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .ok_or_else(|| corrupt(format!("no checksum line after the record (found {trailer:?})")))?;
                let crc = crc32c::crc32c(&bytes[..nl]);
                if crc != stored {
                    return Err(corrupt(format!("checksum mismatch (stored {stored:08x}, computed {crc:08x})")));
                }
                (&bytes[..nl], FORMAT)
            }
            None => (&bytes[..], FORMAT_1),
        };
        let mut m = crate::atomic_file::parse_versioned(&path, body, "log metadata", |m: &Meta| m.format, want)?;
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
        let mut body = serde_json::to_vec(&Meta { format: FORMAT, ..self.clone() }).expect("plain struct serializes");
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(format!("\ncrc32c {crc:08x}\n").as_bytes());
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

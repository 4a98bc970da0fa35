//! Replacing a small file atomically and durably: the one routine behind the volume
//! marker, the mode sidecar and the log's metadata record; and reading back the
//! versioned JSON records among them.

use crate::error::{Error, IoContext, Result};
use crate::fsops;
use std::fs;
use std::path::Path;

/// Replaces `path` with `bytes`: a temporary file in the same directory, fsync,
/// rename over `path`, fsync of the directory. A crash leaves the old or the new
/// content, never a mix; `what` names the file in errors.
pub(crate) fn replace(path: &Path, bytes: &[u8], what: &'static str) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!("{name}.tmp.{}", std::process::id()));
    let f = fs::File::create(&tmp).ctx(&tmp, what)?;
    fsops::record!(fsops::trace::Event::Create(tmp.clone()));
    fsops::record!(fsops::trace::Event::SetLen(tmp.clone(), 0));
    fsops::write_all_at(&f, &tmp, bytes, 0).ctx(&tmp, what)?;
    fsops::sync_file(&f, &tmp).ctx(&tmp, what)?;
    fsops::rename(&tmp, path).ctx(path, what)?;
    sync_dir(dir)
}

pub(crate) use crate::fsops::sync_dir;

/// Parses a versioned JSON record (`{"format": N, ...}`) read from `path`: malformed
/// JSON, or a `format` other than `want`, is [`Error::Corrupt`] naming the file and
/// `what` it is.
pub(crate) fn parse_versioned<T: serde::de::DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
    what: &'static str,
    format_of: impl Fn(&T) -> u32,
    want: u32,
) -> Result<T> {
    let corrupt = |why: String| Error::Corrupt { path: path.to_path_buf(), what, why, offset: None };
    let v: T = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    match format_of(&v) {
        f if f == want => Ok(v),
        f => Err(corrupt(format!("format {f} is not the supported format {want}"))),
    }
}

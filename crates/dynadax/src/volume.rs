//! Volumes: directory trees with a policy, like a mount with its `dax=` option.
//!
//! A volume is marked by a `.dynadax-volume` file at its root holding
//! `{"format":1,"policy":"inode"}`. A path belongs to the nearest enclosing volume; a
//! path in none belongs to the default volume, whose policy is `inode`.

use crate::error::{Error, IoContext, Result};
use crate::mode::Policy;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// The marker file at a volume's root.
pub const VOLUME_FILE: &str = ".dynadax-volume";
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeFile {
    format: u32,
    policy: Policy,
}

/// A volume: its root (none for the default volume) and its policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Volume {
    root: Option<PathBuf>,
    policy: Policy,
}

impl Volume {
    /// Makes `dir` (created if missing) the root of a volume with `policy`, or changes
    /// the policy of the volume already there. The marker is replaced atomically.
    pub fn init(dir: impl AsRef<Path>, policy: Policy) -> Result<Volume> {
        let dir = dir.as_ref();
        if dir.exists() && !dir.is_dir() {
            return Err(Error::invalid(dir, "not a directory: a volume is a directory tree"));
        }
        fs::create_dir_all(dir).ctx(dir, "create volume directory")?;
        let body = serde_json::to_string(&VolumeFile { format: FORMAT, policy }).expect("plain struct serializes");
        crate::atomic_file::replace(&dir.join(VOLUME_FILE), body.as_bytes(), "write volume file")?;
        let root = fs::canonicalize(dir).ctx(dir, "resolve volume directory")?;
        Ok(Volume { root: Some(root), policy })
    }

    /// The volume `path` belongs to (`path` need not exist).
    pub fn of(path: impl AsRef<Path>) -> Result<Volume> {
        let path = path.as_ref();
        let mut at = nearest_existing(path).ctx(path, "resolve path")?;
        loop {
            let file = at.join(VOLUME_FILE);
            match fs::read(&file) {
                Ok(bytes) => return Self::parse(&file, &bytes).map(|policy| Volume { root: Some(at), policy }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => {}
                Err(e) => return Err(Error::io(&file, "read volume file", e)),
            }
            if !at.pop() {
                return Ok(Volume { root: None, policy: Policy::Inode });
            }
        }
    }

    fn parse(file: &Path, bytes: &[u8]) -> Result<Policy> {
        let v = crate::atomic_file::parse_versioned(file, bytes, "volume file", |v: &VolumeFile| v.format, FORMAT)?;
        Ok(v.policy)
    }

    /// The volume's root directory; `None` for the default volume.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// The volume's policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }
}

/// The canonical form of `path` if it exists, else of its nearest existing ancestor.
pub(crate) fn nearest_existing(path: &Path) -> std::io::Result<PathBuf> {
    let abs = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir()?.join(path) };
    let mut at = abs.as_path();
    loop {
        match fs::canonicalize(at) {
            Ok(p) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match at.parent() {
                Some(p) => at = p,
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_volume_wins_and_default_is_inode() {
        let t = tempfile::tempdir().unwrap();
        let outer = t.path().join("outer");
        let inner = outer.join("a/inner");
        Volume::init(&outer, Policy::Always).unwrap();
        Volume::init(&inner, Policy::Never).unwrap();
        assert_eq!(Volume::of(outer.join("a/x")).unwrap().policy(), Policy::Always);
        assert_eq!(Volume::of(inner.join("deep/not/there")).unwrap().policy(), Policy::Never);
        let v = Volume::of(t.path()).unwrap();
        // The temp dir may itself sit in a volume only if someone made one above /tmp.
        if v.root().is_none() {
            assert_eq!(v.policy(), Policy::Inode);
        }
    }

    #[test]
    fn corrupt_volume_file_is_named() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join(VOLUME_FILE), b"{\"format\":1,\"policy\":\"sometimes\"}").unwrap();
        let err = Volume::of(t.path().join("f")).unwrap_err().to_string();
        assert!(err.contains(VOLUME_FILE) && err.contains("corrupt volume file"), "{err}");
    }

    #[test]
    fn init_on_a_file_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        fs::write(&f, b"data").unwrap();
        let err = Volume::init(&f, Policy::Never).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
        assert_eq!(fs::read(&f).unwrap(), b"data");
    }
}

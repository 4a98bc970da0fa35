//! On tmpfs the kernel refuses FS_XFLAG_DAX: the mode lives in `user.dynadax.mode`,
//! (survival across a process restart is tested with the CLI in `dynadax-cli`), and is inherited by files dynadax creates.

mod common;
use common::*;
use dynadax::{Backing, File, FlagStore, Mode, SwitchOptions};

#[test]
fn xattr_store_records_and_inherits() {
    let d = tmpfs_dir();
    let dir = path(&d, "wal");
    std::fs::create_dir(&dir).unwrap();
    let st = dynadax::set_mode(&dir, Mode::Direct, SwitchOptions::default()).unwrap();
    assert_eq!(st.flag_store, FlagStore::Xattr);
    assert_eq!(mode_xattr(&dir).as_deref(), Some("direct"));

    let f = File::create(dir.join("seg")).unwrap();
    let st = f.status().unwrap();
    assert_eq!(st.physical, Mode::Direct, "dynadax-created file inherits through the xattr");
    assert_eq!(st.effective, Some(Mode::Direct));
    assert_eq!(st.backing, Some(Backing::Emulated));
    assert_eq!(mode_xattr(&dir.join("seg")).as_deref(), Some("direct"));

    dynadax::create_dir(dir.join("sub")).unwrap();
    assert_eq!(mode_xattr(&dir.join("sub")).as_deref(), Some("direct"));

    // A file made by another program has no record: cached, like a clear kernel flag.
    std::fs::write(dir.join("foreign"), b"x").unwrap();
    assert_eq!(dynadax::stat(dir.join("foreign")).unwrap().physical, Mode::Cached);
}

#[test]
fn corrupt_xattr_is_a_named_error() {
    let d = tmpfs_dir();
    let p = path(&d, "f");
    std::fs::write(&p, b"x").unwrap();
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let rc = unsafe { libc::setxattr(c.as_ptr(), c"user.dynadax.mode".as_ptr(), b"turbo".as_ptr().cast(), 5, 0) };
    assert_eq!(rc, 0);
    let err = dynadax::stat(&p).unwrap_err().to_string();
    assert!(err.contains(&*p.to_string_lossy()) && err.contains("turbo"), "{err}");
    assert_eq!(std::fs::read(&p).unwrap(), b"x", "data untouched");
}

//! The physical mode on ext4/xfs is the kernel's own FS_XFLAG_DAX: set by dynadax,
//! seen by an independent ioctl, inherited by files any program creates.

mod common;
use common::*;
use dynadax::{Backing, File, FlagStore, Mode, SwitchOptions};

#[test]
fn directory_mode_is_the_kernel_flag_and_is_inherited_by_any_program() {
    let d = kernel_flag_dir();
    let dir = path(&d, "wal");
    std::fs::create_dir(&dir).unwrap();
    let before = std::fs::File::create(dir.join("before")).map(drop);
    before.unwrap();

    let st = dynadax::set_mode(&dir, Mode::Direct, SwitchOptions::default()).unwrap();
    assert_eq!(st.flag_store, FlagStore::FsXflag);
    assert_eq!(st.physical, Mode::Direct);
    assert_eq!(st.effective, None, "directories have no effective mode");
    assert_ne!(xflags(&dir) & XFLAG_DAX, 0, "FS_XFLAG_DAX not set on the directory");

    // A file made by another program (touch), and a subdirectory by mkdir(2).
    let status = std::process::Command::new("touch").arg(dir.join("by-touch")).status().unwrap();
    assert!(status.success());
    std::fs::create_dir(dir.join("sub")).unwrap();
    assert_ne!(xflags(&dir.join("by-touch")) & XFLAG_DAX, 0, "new file did not inherit");
    assert_ne!(xflags(&dir.join("sub")) & XFLAG_DAX, 0, "new directory did not inherit");
    // R3: existing children are not changed.
    assert_eq!(xflags(&dir.join("before")) & XFLAG_DAX, 0, "existing child was changed");

    let st = dynadax::stat(dir.join("by-touch")).unwrap();
    assert_eq!(st.physical, Mode::Direct);
    assert_eq!(st.effective, Some(Mode::Direct));
    assert_eq!(st.backing, Some(Backing::Emulated), "this machine has no DAX device");
    assert!(st.reason.contains("cannot do DAX") && st.reason.contains("emulated"), "{}", st.reason);

    // And back: clearing the directory flag changes only what new children get.
    dynadax::set_mode(&dir, Mode::Cached, SwitchOptions::default()).unwrap();
    assert_eq!(xflags(&dir) & XFLAG_DAX, 0);
    std::fs::File::create(dir.join("after")).unwrap();
    assert_eq!(xflags(&dir.join("after")) & XFLAG_DAX, 0);
    assert_ne!(xflags(&dir.join("by-touch")) & XFLAG_DAX, 0);
}

#[test]
fn file_switch_sets_and_clears_the_kernel_flag() {
    let d = kernel_flag_dir();
    let p = path(&d, "f");
    let f = File::create(&p).unwrap();
    assert_eq!(xflags(&p) & XFLAG_DAX, 0);
    f.set_mode(Mode::Direct, SwitchOptions::default()).unwrap();
    assert_ne!(xflags(&p) & XFLAG_DAX, 0);
    f.set_mode(Mode::Cached, SwitchOptions::default()).unwrap();
    assert_eq!(xflags(&p) & XFLAG_DAX, 0);
}

/// A flag set by another tool (chattr +x) is read as physical direct.
#[test]
fn flag_set_by_chattr_is_seen() {
    let d = kernel_flag_dir();
    let p = path(&d, "f");
    std::fs::write(&p, b"hello").unwrap();
    let ok = std::process::Command::new("chattr").arg("+x").arg(&p).status();
    let ok = ok.expect("chattr (e2fsprogs) must be installed").success();
    assert!(ok, "chattr +x failed");
    let st = dynadax::stat(&p).unwrap();
    assert_eq!(st.physical, Mode::Direct);
}

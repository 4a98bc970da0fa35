//! Power cuts simulated on the host: the log lives on an ext4 file system in a
//! loop-mounted image file, and a copy of that image taken while the file system is
//! mounted holds exactly what the file system had written to its device: what a
//! power cut would leave. Dirty pages that were never written back are not in it.
//! The copy is then mounted (ext4 replays its journal) and recovered. Needs root
//! and mkfs.ext4 (CI has both; scripts/test installs e2fsprogs).

#[path = "common/layout.rs"]
mod layout;
use dynadax::log::{Durability, Log, LogOptions, TailMode};
use std::path::{Path, PathBuf};
use std::process::Command;

/// An ext4 image mounted on a loop device; unmounted when dropped.
struct LoopExt4 {
    img: PathBuf,
    mnt: tempfile::TempDir,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl LoopExt4 {
    fn mount(img: &Path) -> LoopExt4 {
        let mnt = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        run(Command::new("mount").args(["-t", "ext4", "-o", "loop"]).arg(img).arg(mnt.path()));
        LoopExt4 { img: img.to_path_buf(), mnt }
    }

    fn new(img: &Path, size: u64) -> LoopExt4 {
        std::fs::File::create(img).unwrap().set_len(size).unwrap();
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(img));
        LoopExt4::mount(img)
    }

    /// What a power cut now would leave: a copy of the device.
    fn power_cut_image(&self, to: &Path) {
        std::fs::copy(&self.img, to).unwrap();
    }
}

impl Drop for LoopExt4 {
    fn drop(&mut self) {
        // A mapping of a closed log may still be being torn down on dynadax's reaper
        // thread for a moment (the file is busy until then); detach it at worst.
        for _ in 0..50 {
            if Command::new("umount").arg(self.mnt.path()).status().is_ok_and(|s| s.success()) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = Command::new("umount").arg("-l").arg(self.mnt.path()).status();
    }
}

/// Review defect 2: recovery adopted tail bytes a killed writer had written but not
/// persisted, and published them as durable without persisting them; the next
/// writer persisted only its own appends. After a power cut the adopted frames were
/// gone and recovery cleared the next writer's acknowledged records as stale bytes
/// after a hole. Now a writer persists the tail it adopts before it acknowledges
/// anything, and the cut leaves every record.
#[test]
fn a_killed_writers_unpersisted_tail_survives_the_next_writer_and_a_power_cut() {
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let fs = LoopExt4::new(&work.path().join("disk.img"), 64 << 20);
    let dir = fs.mnt.path().join("log");
    let opts = |durability| LogOptions {
        segment_size: 1 << 20,
        max_record: 4096,
        durability,
        tail_mode: TailMode::Direct,
        // The single-file layout (DYNADAX_TEST_LAYOUT): 16 segments, to fit the disk.
        layout: if layout::single_file() {
            dynadax::log::Layout::SingleFile { capacity: dynadax::log::SUPER_LEN + 16 * (1 << 20) }
        } else {
            dynadax::log::Layout::Files
        },
        ..LogOptions::default()
    };
    let rec = |i: u64| format!("a{i}-{}", "x".repeat(890)).into_bytes();
    // Writer A, never persisting: its frames stay dirty in the page cache when it goes
    // (as after kill -9).
    let a = Log::open(&dir, opts(Durability::None)).unwrap();
    for i in 0..100 {
        a.append(&rec(i)).unwrap();
    }
    drop(a);
    // Writer B acknowledges one record of its own, durable per record.
    let b = Log::open(&dir, opts(Durability::Each)).unwrap();
    assert_eq!(b.next_lsn(), 100, "B adopts A's records");
    assert_eq!(b.append(b"b100").unwrap(), 100);
    let cut = work.path().join("cut.img");
    fs.power_cut_image(&cut);
    drop(b);
    drop(fs);
    let after = LoopExt4::mount(&cut);
    let log = Log::open(after.mnt.path().join("log"), opts(Durability::Each))
        .unwrap_or_else(|e| panic!("recovery after the power cut: {e}"));
    assert_eq!(log.next_lsn(), 101, "records lost: {:?}", log.recovery_report());
    assert_eq!(log.read(100).unwrap(), b"b100", "B's acknowledged record");
    for i in 0..100 {
        assert_eq!(log.read(i).unwrap(), rec(i), "A's record {i}");
    }
}

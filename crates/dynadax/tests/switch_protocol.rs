//! The switch protocol: Busy while mapped, success after, data intact both ways,
//! waiting switches, shrink refused under a mapping, and the policy matrix on real
//! files and volumes.

mod common;
use common::*;
use dynadax::{Backing, Error, File, Mode, Policy, SwitchOptions, Volume};
use std::time::Duration;

fn both_file_systems() -> Vec<tempfile::TempDir> {
    vec![kernel_flag_dir(), tmpfs_dir()]
}

#[test]
fn busy_while_mapped_then_succeeds_and_data_survives_both_ways() {
    for d in both_file_systems() {
        let p = path(&d, "f");
        let f = File::create(&p).unwrap();
        let a = pattern(1 << 20, 1, 1);
        f.write_at(&a, 0).unwrap();
        f.persist(0, a.len() as u64).unwrap();
        assert_eq!(f.status().unwrap().effective, Some(Mode::Cached));

        let g = f.map(4096, 8192, true).unwrap();
        assert_eq!(f.live_mappings(), 1);
        let err = f.set_mode(Mode::Direct, SwitchOptions::default()).unwrap_err();
        match &err {
            Error::Busy { path, mappings, .. } => {
                assert_eq!(path, &p);
                assert_eq!(*mappings, 1);
            }
            e => panic!("expected Busy, got {e}"),
        }
        assert!(err.to_string().contains(&*p.to_string_lossy()), "{err}");
        // Refused means nothing changed.
        assert_eq!(f.status().unwrap().physical, Mode::Cached);
        drop(g);
        assert_eq!(f.live_mappings(), 0);

        // cached -> direct: what was written through the page cache reads back through the mapping.
        let st = f.set_mode(Mode::Direct, SwitchOptions::default()).unwrap();
        assert_eq!((st.effective, st.backing), (Some(Mode::Direct), Some(Backing::Emulated)));
        let mut buf = vec![0u8; a.len()];
        assert_eq!(f.read_at(&mut buf, 0).unwrap(), a.len());
        assert!(buf == a, "cached -> direct lost data on {}", d.path().display());

        // direct -> cached: written through the mapping, read through the page cache.
        let b = pattern(1 << 20, 2, 2);
        f.write_at(&b, 512).unwrap();
        f.persist(512, b.len() as u64).unwrap();
        f.set_mode(Mode::Cached, SwitchOptions::default()).unwrap();
        let mut buf = vec![0u8; 512 + b.len()];
        assert_eq!(f.read_at(&mut buf, 0).unwrap(), buf.len());
        assert_eq!(&buf[..512], &a[..512]);
        assert!(buf[512..] == b[..], "direct -> cached lost data");
        // And another process's view (plain read) agrees.
        assert_eq!(std::fs::read(&p).unwrap(), buf);
    }
}

#[test]
fn switch_waits_for_mappings_when_asked() {
    let d = tmpfs_dir();
    let f = File::create(path(&d, "f")).unwrap();
    f.set_len(4096).unwrap();
    let g = f.map(0, 4096, false).unwrap();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(g);
    });
    let st = f.set_mode(Mode::Direct, SwitchOptions { wait: Some(Duration::from_secs(30)) }).unwrap();
    assert_eq!(st.effective, Some(Mode::Direct));
    t.join().unwrap();

    let _g = f.map(0, 4096, false).unwrap();
    let err = f.set_mode(Mode::Cached, SwitchOptions { wait: Some(Duration::from_millis(50)) }).unwrap_err();
    assert!(matches!(err, Error::Busy { mappings: 1, .. }), "{err}");
}

#[test]
fn handles_share_one_inode_and_one_lock() {
    let d = tmpfs_dir();
    let p = path(&d, "f");
    let a = File::create(&p).unwrap();
    let b = File::open(&p).unwrap();
    a.set_len(8192).unwrap();
    let _g = b.map(0, 4096, false).unwrap();
    assert_eq!(a.live_mappings(), 1, "second handle's mapping is seen by the first");
    assert!(matches!(a.set_mode(Mode::Direct, SwitchOptions::default()), Err(Error::Busy { .. })));
}

#[test]
fn shrink_below_a_live_mapping_is_refused() {
    for d in both_file_systems() {
        let f = File::create(path(&d, "f")).unwrap();
        for mode in [Mode::Cached, Mode::Direct] {
            f.set_mode(mode, SwitchOptions::default()).unwrap();
            f.set_len(3 * 4096).unwrap();
            let g = f.map(4096, 4096, true).unwrap();
            g.write(0, b"mapped").unwrap();
            g.persist(0, 6).unwrap();
            assert!(matches!(f.set_len(4096), Err(Error::Busy { .. })), "{mode}");
            assert_eq!(f.len().unwrap(), 3 * 4096, "refused shrink changed the length");
            f.set_len(2 * 4096).unwrap(); // Still covers the guard.
            let mut buf = [0u8; 6];
            f.read_at(&mut buf, 4096).unwrap();
            assert_eq!(&buf, b"mapped");
            drop(g);
            f.set_len(0).unwrap();
        }
    }
}

#[test]
fn mapping_past_the_end_is_refused_with_the_path() {
    let d = tmpfs_dir();
    let p = path(&d, "f");
    let f = File::create(&p).unwrap();
    f.set_len(100).unwrap();
    let err = f.map(0, 4096, false).unwrap_err().to_string();
    assert!(err.contains(&*p.to_string_lossy()) && err.contains("100 bytes"), "{err}");
    assert_eq!(f.live_mappings(), 0);
}

/// R4/R5 on real files: every policy x physical mode, on both file systems.
#[test]
fn policy_matrix_on_real_volumes() {
    for d in both_file_systems() {
        for policy in [Policy::Always, Policy::Never, Policy::Inode] {
            let vol = d.path().join(policy.as_str());
            Volume::init(&vol, policy).unwrap();
            for physical in [Mode::Direct, Mode::Cached] {
                let p = vol.join(physical.as_str());
                std::fs::write(&p, b"0123456789").unwrap();
                dynadax::set_mode(&p, physical, SwitchOptions::default()).unwrap();
                let st = dynadax::stat(&p).unwrap();
                let want = policy.apply(physical);
                assert_eq!(st.physical, physical);
                assert_eq!(st.effective, Some(want), "{policy} x {physical} on {}", d.path().display());
                assert_eq!(st.policy, policy);
                // The opened file's vector agrees with stat, and works.
                let f = File::open(&p).unwrap();
                assert_eq!(f.status().unwrap().effective, Some(want));
                let mut buf = [0u8; 10];
                f.read_at(&mut buf, 0).unwrap();
                assert_eq!(&buf, b"0123456789");
            }
        }
    }
}

#[test]
fn every_operation_works_in_both_vectors() {
    for d in both_file_systems() {
        let f = File::create(path(&d, "ops")).unwrap();
        for mode in [Mode::Cached, Mode::Direct] {
            f.set_mode(mode, SwitchOptions::default()).unwrap();
            f.set_len(0).unwrap();
            let data = pattern(3 * 4096, 7, mode as u64);
            f.write_at(&data, 0).unwrap();
            f.persist(0, data.len() as u64).unwrap();
            f.zero_range(100, 200).unwrap();
            let mut want = data.clone();
            want[100..300].fill(0);
            let mut got = vec![0u8; want.len()];
            assert_eq!(f.read_at(&mut got, 0).unwrap(), want.len());
            assert_eq!(got, want, "{mode}: zero_range");

            f.allocate(0, 5 * 4096).unwrap();
            assert_eq!(f.len().unwrap(), 5 * 4096, "{mode}: allocate extends");
            f.advise(0, 4096, dynadax::Advice::Sequential).unwrap();
            let ext = f.extents(0, 5 * 4096).unwrap();
            assert_eq!(ext.iter().map(|e| e.len).sum::<u64>(), 5 * 4096, "{mode}: extents cover the file");
            assert!(ext[0].data && ext[0].offset == 0, "{mode}: {ext:?}");

            // Direct I/O exists in both vectors (rule 1). tmpfs has O_DIRECT since 6.6.
            let block = pattern(4096, 9, 9);
            f.direct_write_at(&block, 4096).unwrap();
            let mut back = vec![0u8; 4096];
            assert_eq!(f.direct_read_at(&mut back, 4096).unwrap(), 4096);
            assert_eq!(back, block, "{mode}: direct I/O round trip");
            let mut odd = vec![0u8; 10];
            assert_eq!(f.direct_read_at(&mut odd, 4100).unwrap(), 10, "{mode}: unaligned direct read");
            assert_eq!(odd[..], block[4..14]);

            // Writes past the direct window's capacity grow it.
            f.write_at(b"far", 200 << 20).unwrap();
            let mut far = [0u8; 3];
            f.read_at(&mut far, 200 << 20).unwrap();
            assert_eq!(&far, b"far", "{mode}: write past window");
            f.set_len(0).unwrap();
        }
    }
}

/// A detached guard lets the switch go on at once, while its addresses stay mapped:
/// zero pages that no longer reach the file (what the Java binding leaves behind a
/// closed mapping's direct buffer). A guard that is a view of the direct window
/// cannot be detached.
#[test]
fn a_detached_mapping_frees_the_switch_and_its_addresses_read_zeros_not_the_file() {
    for d in both_file_systems() {
        let p = path(&d, "f");
        let f = File::create(&p).unwrap();
        f.set_mode(Mode::Direct, SwitchOptions::default()).unwrap();
        let a = pattern(64 << 10, 3, 3);
        f.write_at(&a, 0).unwrap();
        f.persist(0, a.len() as u64).unwrap();

        let g = f.map_detachable(4096, 8192, true).unwrap();
        let ptr = g.as_ptr();
        // SAFETY (test): the guard maps 8192 bytes at ptr.
        assert_eq!(unsafe { ptr.read_volatile() }, a[4096]);
        assert!(matches!(f.set_mode(Mode::Cached, SwitchOptions::default()), Err(Error::Busy { .. })));
        let detached = g.detach().unwrap();
        assert_eq!(f.live_mappings(), 0);
        f.set_mode(Mode::Cached, SwitchOptions::default()).unwrap();
        assert_eq!(detached.as_ptr(), ptr, "4096 is page aligned: the range starts at the guard's byte");
        // SAFETY (test): the detached range is 8192 bytes of private memory we own.
        unsafe {
            assert_eq!(ptr.read_volatile(), 0);
            ptr.write_volatile(0xee);
            assert_eq!(ptr.add(8191).read_volatile(), 0);
        }
        let mut buf = vec![0u8; a.len()];
        f.read_at(&mut buf, 0).unwrap();
        assert!(buf == a, "a store through detached addresses reached the file");
        drop(detached);

        f.set_mode(Mode::Direct, SwitchOptions::default()).unwrap();
        let view = f.map(0, 4096, false).unwrap();
        let Err((view, _)) = view.detach() else { panic!("a view of the window is not detachable") };
        assert_eq!(f.live_mappings(), 1, "a refused detach hands the guard back, still mapped");
        drop(view);
        assert_eq!(f.live_mappings(), 0);
    }
}

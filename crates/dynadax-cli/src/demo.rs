//! `dynadax demo`: the whole access-mode layer on a scratch directory, with a report.

use anyhow::{bail, Context};
use dynadax::log::{Durability, Log, LogOptions, TailMode};
use dynadax::{Error, File, Mode, Policy, Status, SwitchOptions, Volume, VOLUME_FILE};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Serialize)]
struct Step {
    step: String,
    ok: bool,
    detail: String,
    micros: Option<u128>,
}

#[derive(Serialize)]
struct Report {
    dir: String,
    probe: dynadax::Probe,
    bytes: u64,
    before: Status,
    after_cached: Status,
    after_direct: Status,
    steps: Vec<Step>,
}

/// Deterministic content so every read-back can be checked byte for byte.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_right(13) as u8 ^ seed).collect()
}

fn read_all(f: &File, len: u64) -> anyhow::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    let n = f.read_at(&mut buf, 0)?;
    if n as u64 != len {
        bail!("{}: short read: {n} of {len} bytes", f.path().display());
    }
    Ok(buf)
}

pub fn run(dir: &Path, size: u64, json: bool) -> anyhow::Result<()> {
    if size == 0 || size > (1 << 32) {
        bail!("--size must be between 1 byte and 4 GiB, got {size}");
    }
    let mut steps = Vec::new();
    let mut say = |step: &str, ok: bool, detail: String, t: Option<Duration>| {
        if !json {
            let time = t.map_or(String::new(), |t| format!("  [{:.1} µs]", t.as_secs_f64() * 1e6));
            println!("{} {step}: {detail}{time}", if ok { "✓" } else { "✗" });
        }
        steps.push(Step { step: step.into(), ok, detail, micros: t.map(|t| t.as_micros()) });
    };

    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create demo directory", dir.display()))?;
    let probe = dynadax::probe(dir)?;
    if !json {
        println!("dynadax demo in {}\n", dir.display());
        crate::report::probe(&probe, false)?;
        println!();
    }

    // A fresh volume each run; only a directory that is already a volume is replaced.
    let vol = dir.join("volume");
    if vol.join(VOLUME_FILE).exists() {
        std::fs::remove_dir_all(&vol).with_context(|| format!("{}: cannot clear previous demo", vol.display()))?;
    } else if vol.exists() {
        bail!("{}: exists and is not a dynadax volume; refusing to touch it", vol.display());
    }
    Volume::init(&vol, Policy::Inode)?;
    say("volume", true, format!("{} created with policy inode", vol.display()), None);

    let tail = vol.join("tail");
    dynadax::create_dir(&tail)?;
    let st = dynadax::set_mode(&tail, Mode::Direct, SwitchOptions::default())?;
    say(
        "directory mode",
        st.physical == Mode::Direct,
        format!("{} physical direct (new files inherit it)", tail.display()),
        None,
    );

    let seg = tail.join("segment-0");
    let f = File::create(&seg)?;
    let before = f.status()?;
    say(
        "inherit",
        before.physical == Mode::Direct,
        format!(
            "{} created: physical {}, effective {} ({})",
            seg.display(),
            before.physical,
            fmt_eff(&before),
            before.reason
        ),
        None,
    );

    let data = pattern(size as usize, 0x5a);
    let t = Instant::now();
    f.write_at(&data, 0)?;
    f.persist(0, size)?;
    say(
        "write direct",
        true,
        format!("{} bytes written and persisted via {}", size, before.persistence.as_deref().unwrap_or("?")),
        Some(t.elapsed()),
    );

    let guard = f.map(0, 4096, true)?;
    match f.set_mode(Mode::Cached, SwitchOptions::default()) {
        Err(Error::Busy { mappings, .. }) => {
            say("switch while mapped", true, format!("refused: Busy ({mappings} live mapping)"), None)
        }
        Ok(_) => say("switch while mapped", false, "was NOT refused".into(), None),
        Err(e) => return Err(e.into()),
    }
    drop(guard);

    let t = Instant::now();
    let after_cached = f.set_mode(Mode::Cached, SwitchOptions::default())?;
    let el = t.elapsed();
    say(
        "switch to cached",
        after_cached.effective == Some(Mode::Cached) || after_cached.pending,
        format!("effective {}", fmt_eff(&after_cached)),
        Some(el),
    );
    let ok = read_all(&f, size)? == data;
    say(
        "read cached",
        ok,
        format!("{size} bytes read back through the page cache {}", if ok { "intact" } else { "CORRUPT" }),
        None,
    );

    let more = pattern(size as usize, 0xa5);
    f.write_at(&more, 0)?;
    f.persist(0, size)?;
    let t = Instant::now();
    let after_direct = f.set_mode(Mode::Direct, SwitchOptions::default())?;
    let el = t.elapsed();
    say(
        "switch to direct",
        after_direct.effective == Some(Mode::Direct) || after_direct.pending,
        format!("effective {}", fmt_eff(&after_direct)),
        Some(el),
    );
    let ok2 = read_all(&f, size)? == more;
    say(
        "read direct",
        ok2,
        format!(
            "{size} bytes written cached, read back through the mapping {}",
            if ok2 { "intact" } else { "CORRUPT" }
        ),
        None,
    );

    // Logical segments inside one file: the file's first half sealed to cached as a
    // range while a mapping of its tail stays alive and keeps taking stores.
    let half = (size / 2) & !4095;
    if half >= 4096 && size - half >= 4096 {
        let tail_map = f.map(half, 4096, true)?;
        let t = Instant::now();
        let st = f.set_range_mode(0, Some(half), Mode::Cached, SwitchOptions::default())?;
        let el = t.elapsed();
        tail_map.write(0, b"tail, still mapped")?;
        tail_map.persist(0, 18)?;
        let mut expect = more.clone();
        expect[half as usize..half as usize + 18].copy_from_slice(b"tail, still mapped");
        let range = st.ranges.first();
        let ok = range.is_some_and(|r| r.physical == Mode::Cached) && read_all(&f, size)? == expect;
        say(
            "range switch",
            ok,
            format!(
                "first {half} bytes of {} set cached ({}) while its tail stays mapped; every byte {}",
                seg.display(),
                range.map_or("-".into(), |r| format!("{} {}", r.effective, r.backing)),
                if ok { "intact" } else { "WRONG" }
            ),
            Some(el),
        );
        drop(tail_map);
    }

    // The log: a direct-mode tail, sealed segments switched to cached in O(1). The
    // tail is direct even on a disk without DAX (emulated) to show the switch at
    // every seal; `TailMode::Auto` would write it cached there.
    let log_dir = vol.join("wal");
    let opts = LogOptions {
        segment_size: 128 << 10,
        max_record: 16 << 10,
        durability: Durability::Each,
        tail_mode: TailMode::Direct,
        ..LogOptions::default()
    };
    let log = Log::open(&log_dir, opts.clone())?;
    let n = 5_000u64;
    let t = Instant::now();
    for i in 0..n {
        log.append(format!("event {i:06} {}", "·".repeat((i % 40) as usize)).as_bytes())?;
    }
    let el = t.elapsed();
    let segs = log.segments()?;
    let sealed = segs.iter().filter(|s| s.sealed).count();
    let sealed_cached = segs.iter().filter(|s| s.sealed && s.effective == Some(Mode::Cached)).count();
    let tail = segs.last().map(|s| (s.sealed, s.effective, s.backing));
    let tail_direct = matches!(tail, Some((false, Some(Mode::Direct), _)));
    let tail_backing = tail.and_then(|t| t.2).map_or("-".into(), |b| b.to_string());
    say(
        "log append",
        sealed > 0 && sealed == sealed_cached && tail_direct,
        format!(
            "{n} records, each persisted before returning ({:.0}/s): {sealed} sealed segments switched to cached, tail {} ({tail_backing})",
            n as f64 / el.as_secs_f64(),
            tail.and_then(|t| t.1).map_or("-".into(), |m| m.to_string())
        ),
        Some(el),
    );
    drop(log);
    let t = Instant::now();
    let log = Log::open(&log_dir, opts)?;
    let rec = log.recovery_report();
    let mut intact = log.next_lsn() == n;
    for (k, r) in log.iter(0).enumerate() {
        let (lsn, data) = r?;
        intact &= lsn == k as u64 && data == format!("event {k:06} {}", "·".repeat(k % 40)).into_bytes();
    }
    say(
        "log reopen",
        intact,
        format!(
            "recovery scanned {} records in {} segments; all {n} read back {}",
            rec.records,
            rec.segments,
            if intact { "intact, in order" } else { "WRONG" }
        ),
        Some(t.elapsed()),
    );

    let all_ok = steps.iter().all(|s| s.ok);
    if json {
        let r =
            Report { dir: dir.display().to_string(), probe, bytes: size, before, after_cached, after_direct, steps };
        serde_json::to_writer(std::io::stdout().lock(), &r)?;
        println!();
    } else {
        println!("\nfile after the tour:");
        crate::report::status(&f.status()?, false)?;
        println!("\n{}", if all_ok { "demo passed: every step checked" } else { "demo FAILED: see ✗ above" });
    }
    if !all_ok {
        bail!("{}: a demo step failed", dir.display());
    }
    Ok(())
}

fn fmt_eff(s: &Status) -> String {
    format!(
        "{} ({}{})",
        s.effective.map_or("-".into(), |m| m.to_string()),
        s.backing.map_or("-".into(), |b| b.to_string()),
        if s.pending { ", pending" } else { "" }
    )
}

//! Human and JSON output of the reporting commands.

use dynadax::{Probe, Status, Volume};
use std::io::Write;

fn json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_string(), ToString::to_string)
}

pub fn probe(p: &Probe, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(p);
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    println!(
        "path               {}{}",
        p.path.display(),
        if p.exists { "" } else { "  (does not exist: answers are for a file created there)" }
    );
    println!(
        "file system        {} on {} (mounted at {}, block size {})",
        p.fs_type,
        p.source,
        p.mount_point.display(),
        p.block_size
    );
    println!(
        "mount dax=         {}{}",
        p.mount_dax,
        if p.mount_dax_listed { "" } else { " (default, not listed in mount options)" }
    );
    println!(
        "device DAX         {}{}",
        yes(p.device_dax),
        p.device.as_ref().map_or(String::new(), |d| format!(" ({d})"))
    );
    println!("statx DAX          {}", p.statx_dax.map_or("-", yes));
    println!("MAP_SYNC           {}", if p.map_sync { "would succeed" } else { "would fail (EOPNOTSUPP)" });
    println!("persistence        {}", p.persistence);
    println!("flush instruction  {}", p.flush_instruction.name());
    println!("flag store         {}", p.flag_store.as_str());
    println!("physical           {}", p.physical);
    println!("effective          {}", p.effective);
    println!("why                {}", p.reason);
    Ok(())
}

pub fn status(s: &Status, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(s);
    }
    println!("path          {}", s.path.display());
    println!("kind          {}", serde_json::to_value(s.kind)?.as_str().unwrap_or("?"));
    println!("physical      {}  (kept in {})", s.physical, s.flag_store.as_str());
    println!("effective     {}{}", opt(&s.effective), s.backing.map_or(String::new(), |b| format!("  ({b})")));
    if let Some(p) = &s.persistence {
        println!("persistence   {p}");
    }
    println!("pending       {}", if s.pending { "yes" } else { "no" });
    println!("reason        {}", s.reason);
    println!(
        "volume        {} (policy {})",
        s.volume.as_ref().map_or("default".into(), |v| v.display().to_string()),
        s.policy
    );
    println!("live maps     {}", s.live_mappings);
    for r in &s.ranges {
        let end = r.len.map_or("end".to_string(), |l| (r.offset + l).to_string());
        println!(
            "range         {}..{end}: physical {}, effective {} ({}){}",
            r.offset,
            r.physical,
            r.effective,
            r.backing,
            if r.live_mappings > 0 { format!(", {} live map(s)", r.live_mappings) } else { String::new() }
        );
    }
    if let Some(c) = &s.cache {
        println!(
            "dram cache    {} of {} pages of {} bytes, {} hits, {} misses",
            c.pages, c.capacity_pages, c.page_size, c.hits, c.misses
        );
    }
    Ok(())
}

pub fn volume(v: &Volume, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(v);
    }
    match v.root() {
        Some(r) => println!("volume {} policy {}", r.display(), v.policy()),
        None => println!("default volume (no .dynadax-volume above this path) policy {}", v.policy()),
    }
    Ok(())
}

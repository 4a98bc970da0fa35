//! Reads a log without copying its records: `cargo run --release --example
//! read_zero_copy -- DIR` opens the log in DIR read-only (a writer may be running in
//! another process) and walks it with `Log::cursor`, which lends each record's bytes
//! from the sealed segments' mappings, CRC checked. Prints what it read and how fast.

use dynadax::log::{Log, LogOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: read_zero_copy DIR")?;
    let log = Log::open_read_only(&dir, LogOptions::default())?;
    let t = std::time::Instant::now();
    let (mut records, mut bytes, mut sum) = (0u64, 0u64, 0u64);
    let mut c = log.cursor(log.first_lsn());
    while let Some(e) = c.next() {
        let e = e?;
        records += 1;
        bytes += e.bytes.len() as u64;
        // Something to do with the bytes, where they lie.
        sum = sum.wrapping_add(e.bytes.iter().map(|&b| b as u64).sum::<u64>());
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{records} records, {bytes} bytes in {:.1} ms ({:.2} GB/s); byte sum {sum}",
        secs * 1e3,
        bytes as f64 / secs / 1e9
    );
    Ok(())
}

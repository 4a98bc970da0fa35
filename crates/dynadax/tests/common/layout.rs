//! The log layout the log suites run on: one definition, included by the dynadax,
//! dynadax-cli and dynadax-raft test suites.
#![allow(dead_code)]

/// The log layout under test, for a log of `segment_size` segments: files by default,
/// the single-file layout (a data file of 4 to 1,024 segments, 256 MiB at most) with
/// `DYNADAX_TEST_LAYOUT=single-file`. `scripts/test` runs the log suites both ways, so
/// every log test is a test of both layouts.
pub fn layout(segment_size: u64) -> dynadax::log::Layout {
    if single_file() {
        let slots = ((256 << 20) / segment_size).clamp(4, 1024);
        dynadax::log::Layout::SingleFile { capacity: dynadax::log::SUPER_LEN + slots * segment_size }
    } else {
        dynadax::log::Layout::Files
    }
}

/// Whether the log suites run on the single-file layout (see [`layout`]).
pub fn single_file() -> bool {
    std::env::var("DYNADAX_TEST_LAYOUT").is_ok_and(|v| v == "single-file")
}

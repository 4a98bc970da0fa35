//! Modes for ranges of one file: the physical *range map*.
//!
//! A file's physical mode (in `FS_XFLAG_DAX` or its fallback) covers all of it; the
//! range map overrides it for page-aligned byte ranges, so one file can hold logical
//! segments, a direct tail after cached sealed parts. The map is kept in the extended
//! attribute [`RANGES_XATTR`] beside the file's own mode:
//!
//! ```text
//! v1 OFFSET+LEN=MODE OFFSET+=MODE ...
//! ```
//!
//! sorted, non-overlapping, `OFFSET+=MODE` meaning "from OFFSET to the end of the file,
//! whatever it grows to". A range never repeats the file's own mode (that is what
//! "no range" means), and adjacent ranges of one mode are merged, so every file has
//! exactly one encoding of its modes.
//!
//! This module is pure (no I/O): the inode keeps the map and records it (`inode.rs`),
//! and the property tests compare it against a byte-by-byte model.

use crate::mode::Mode;

/// The extended attribute holding a file's range map.
pub const RANGES_XATTR: &str = "user.dynadax.ranges";

/// Physical modes of byte ranges of a file, overriding its own mode. `end` of
/// `u64::MAX` is open-ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RangeMap {
    /// `(start, end, mode)`, sorted by `start`, disjoint, no two adjacent of one mode,
    /// and, relative to the file's mode when last normalized, never equal to it.
    ranges: Vec<(u64, u64, Mode)>,
}

impl RangeMap {
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges, as `(start, end, mode)`.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64, Mode)> + '_ {
        self.ranges.iter().copied()
    }

    /// Sets `start..end` to `mode` over a file whose own mode is `base`.
    pub fn set(&mut self, start: u64, end: u64, mode: Mode, base: Mode) {
        debug_assert!(start < end);
        let mut out = Vec::with_capacity(self.ranges.len() + 2);
        for &(s, e, m) in &self.ranges {
            if e <= start || s >= end {
                out.push((s, e, m));
                continue;
            }
            // Keep the parts of an overlapped range outside `start..end`.
            if s < start {
                out.push((s, start, m));
            }
            if e > end {
                out.push((end, e, m));
            }
        }
        out.push((start, end, mode));
        out.sort_by_key(|r| r.0);
        self.ranges = out;
        self.normalize(base);
    }

    /// Drops ranges of the file's own mode and merges adjacent ranges of one mode
    /// (after the file's mode changed, too).
    pub fn normalize(&mut self, base: Mode) {
        let mut out: Vec<(u64, u64, Mode)> = Vec::with_capacity(self.ranges.len());
        for &(s, e, m) in &self.ranges {
            if m == base || s >= e {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.1 == s && last.2 == m => last.1 = e,
                _ => out.push((s, e, m)),
            }
        }
        self.ranges = out;
    }

    /// The mode at `off` over a file of mode `base`, and where that run of mode ends
    /// (`u64::MAX` if it never does).
    pub fn mode_at(&self, off: u64, base: Mode) -> (Mode, u64) {
        let i = self.ranges.partition_point(|r| r.1 <= off);
        match self.ranges.get(i) {
            Some(&(s, e, m)) if s <= off => (m, e),
            Some(&(s, _, _)) => (base, s),
            None => (base, u64::MAX),
        }
    }

    /// Splits `off..off+len` into runs of one mode: `(offset, length, mode)`.
    pub fn split(&self, off: u64, len: u64, base: Mode) -> impl Iterator<Item = (u64, u64, Mode)> + '_ {
        let end = off.saturating_add(len);
        let mut at = off;
        std::iter::from_fn(move || {
            if at >= end {
                return None;
            }
            let (m, run_end) = self.mode_at(at, base);
            let stop = run_end.min(end);
            let r = (at, stop - at, m);
            at = stop;
            Some(r)
        })
    }

    /// The text kept in [`RANGES_XATTR`] (empty map: no attribute at all).
    pub fn encode(&self) -> String {
        let mut s = String::from("v1");
        for &(start, end, m) in &self.ranges {
            if end == u64::MAX {
                s.push_str(&format!(" {start}+={m}"));
            } else {
                s.push_str(&format!(" {start}+{}={m}", end - start));
            }
        }
        s
    }

    /// Parses [`RangeMap::encode`]'s text; `Err` says what is wrong.
    pub fn decode(text: &str) -> Result<RangeMap, String> {
        let mut words = text.split_ascii_whitespace();
        match words.next() {
            Some("v1") => {}
            Some(v) => return Err(format!("version {v:?} is not the supported v1")),
            None => return Err("empty".into()),
        }
        let mut ranges: Vec<(u64, u64, Mode)> = Vec::new();
        for w in words {
            let bad = || format!("{w:?} is not OFFSET+LEN=MODE");
            let (span, mode) = w.split_once('=').ok_or_else(bad)?;
            let mode: Mode = mode.parse()?;
            let (start, len) = span.split_once('+').ok_or_else(bad)?;
            let start: u64 = start.parse().map_err(|_| bad())?;
            let end = match len {
                "" => u64::MAX,
                n => start.checked_add(n.parse().map_err(|_| bad())?).ok_or_else(bad)?,
            };
            if start >= end || ranges.last().is_some_and(|l| l.1 > start) {
                return Err(format!("{w:?} is empty or overlaps or precedes the range before it"));
            }
            ranges.push((start, end, mode));
        }
        Ok(RangeMap { ranges })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D: Mode = Mode::Direct;
    const C: Mode = Mode::Cached;

    #[test]
    fn tail_direct_after_cached_sealed_parts() {
        let mut m = RangeMap::default();
        m.set(1 << 20, u64::MAX, D, C);
        assert_eq!(m.mode_at(0, C), (C, 1 << 20));
        assert_eq!(m.mode_at(5 << 20, C), (D, u64::MAX));
        assert_eq!(m.encode(), "v1 1048576+=direct");
        // Seal the first MiB of the tail: cached again, so it merges into the base.
        m.set(1 << 20, 2 << 20, C, C);
        assert_eq!(m.encode(), "v1 2097152+=direct");
        let runs: Vec<_> = m.split(0, 3 << 20, C).collect();
        assert_eq!(runs, vec![(0, 2 << 20, C), (2 << 20, 1 << 20, D)]);
    }

    #[test]
    fn decode_refuses_what_encode_never_writes() {
        for bad in
            ["", "v2 0+4096=direct", "v1 0+4096=dax", "v1 0+0=direct", "v1 8192+4096=direct 4096+8192=cached", "v1 x"]
        {
            assert!(RangeMap::decode(bad).is_err(), "{bad:?} accepted");
        }
    }

    fn model_set(model: &mut [Mode], start: u64, end: u64, mode: Mode) {
        let end = end.min(model.len() as u64);
        for b in &mut model[start as usize..end as usize] {
            *b = mode;
        }
    }

    proptest! {
        /// Any sequence of sets gives the modes a byte-by-byte model gives, in the one
        /// normal form, and survives an encode/decode round trip.
        #[test]
        fn equals_a_byte_model(
            base in prop::bool::ANY,
            ops in prop::collection::vec((0u64..64, 1u64..64, prop::bool::ANY, prop::bool::ANY), 0..24),
        ) {
            let base = if base { D } else { C };
            const N: u64 = 128;
            let mut model = vec![base; N as usize];
            let mut m = RangeMap::default();
            for (start, len, direct, open) in ops {
                let mode = if direct { D } else { C };
                let end = if open { u64::MAX } else { start + len };
                m.set(start, end, mode, base);
                model_set(&mut model, start, end, mode);
            }
            for (b, want) in model.iter().enumerate() {
                prop_assert_eq!(m.mode_at(b as u64, base).0, *want, "byte {}", b);
            }
            let runs: Vec<_> = m.split(0, N, base).collect();
            prop_assert_eq!(runs.iter().map(|r| r.1).sum::<u64>(), N);
            for w in runs.windows(2) {
                prop_assert!(w[0].2 != w[1].2, "adjacent runs of one mode: {:?}", w);
            }
            for &(s, e, mode) in &m.ranges {
                prop_assert!(s < e && mode != base);
            }
            prop_assert_eq!(RangeMap::decode(&m.encode()).unwrap(), m);
        }

        /// Whatever an attribute holds (another program may write it), decoding
        /// never panics, and what it accepts is a valid map that encodes back to
        /// itself.
        #[test]
        fn decode_takes_any_text(text in "(v1|v2|x)?( [0-9]{1,20}\\+[0-9]{0,20}=(direct|cached|dax)){0,6}") {
            if let Ok(m) = RangeMap::decode(&text) {
                for w in m.ranges.windows(2) {
                    prop_assert!(w[0].1 <= w[1].0);
                }
                prop_assert!(m.ranges.iter().all(|r| r.0 < r.1));
                prop_assert_eq!(RangeMap::decode(&m.encode()).unwrap(), m);
            }
        }
    }
}

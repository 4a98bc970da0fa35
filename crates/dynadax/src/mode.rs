//! Modes, policies, and the one rule that turns them into the effective mode.
//!
//! The rule mirrors the kernel's `xfs_inode_should_enable_dax` / `ext4_should_enable_dax`
//! (rules R4, R5, R7 and R8 of `linux-perfile-dax.md`) and extends it to file systems
//! without DAX, where `direct` is emulated:
//!
//! | kernel view of the file system     | effective mode                                   |
//! |------------------------------------|--------------------------------------------------|
//! | cannot do DAX (no DAX device, tmpfs, other fs) | `policy.apply(physical)`; direct is *emulated* |
//! | can do DAX, `statx` says DAX       | direct, backing *kernel-dax* (the kernel decides)  |
//! | can do DAX, `statx` says not DAX   | the kernel decides; if it disagrees with the flag under `dax=inode`, the change is *pending* until the last holder closes |
//!
//! where `policy.apply` is: `never` → cached, `always` → direct, `inode` → physical.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An access mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Load/store through a mapping, no page cache: kernel DAX where the file system
    /// has it, emulated with a shared mapping persisted by `msync` elsewhere.
    Direct,
    /// Reads and writes through the page cache (`pread`/`pwrite`).
    Cached,
}

/// A volume's policy, like the kernel's `dax=` mount option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Every regular file is direct, whatever its physical mode.
    Always,
    /// Every regular file is cached, whatever its physical mode.
    Never,
    /// Each file follows its own physical mode (the default).
    #[default]
    Inode,
}

impl Policy {
    /// The mode this policy asks for, given a file's physical mode.
    pub fn apply(self, physical: Mode) -> Mode {
        match self {
            Policy::Always => Mode::Direct,
            Policy::Never => Mode::Cached,
            Policy::Inode => physical,
        }
    }
}

/// What actually serves a regular file's operations now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backing {
    /// Kernel DAX (`STATX_ATTR_DAX`): `MAP_SYNC` mappings, persisted by cache-line
    /// flush and fence.
    KernelDax,
    /// Direct mode emulated on a non-DAX file: a shared mapping persisted by `msync`.
    Emulated,
    /// The page cache, persisted by `fdatasync`.
    PageCache,
    /// A `cached` range of a file the kernel serves by DAX: dynadax's own DRAM cache
    /// of its pages (read-through, write-through), persisted by `fdatasync`.
    DramCache,
}

/// The kernel's `dax=` mount mode for a file system, as dynadax determined it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountDax {
    /// `dax=always` (or the legacy `dax`).
    Always,
    /// `dax=never`.
    Never,
    /// `dax=inode`, shown or implied (xfs does not list its default).
    Inode,
    /// The file system has no DAX mount option at all (tmpfs, btrfs, ...).
    None,
}

/// What the kernel says about DAX for one regular file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KernelView {
    /// This file system cannot do kernel DAX; `why` says why, for the report.
    Incapable { why: String },
    /// It can; `statx_dax` is `STATX_ATTR_DAX` for this file now.
    Capable { mount: MountDax, statx_dax: bool },
}

/// The effective state of a regular file and the reason for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub effective: Mode,
    pub backing: Backing,
    pub pending: bool,
    pub reason: String,
}

/// The rule of the module docs. Pure, so the policy matrix is tested exhaustively.
pub(crate) fn decide(policy: Policy, physical: Mode, kernel: &KernelView) -> Decision {
    let wanted = policy.apply(physical);
    let overridden = overridden(policy, physical);
    let d = |effective, backing, pending, reason: String| Decision { effective, backing, pending, reason };
    match kernel {
        KernelView::Incapable { why } => match wanted {
            Mode::Direct => d(
                Mode::Direct,
                Backing::Emulated,
                false,
                join(overridden, &format!("{why}: direct is emulated with a shared mapping persisted by msync")),
            ),
            Mode::Cached => d(
                Mode::Cached,
                Backing::PageCache,
                false,
                join(overridden, "physical mode cached: page cache, persisted by fdatasync"),
            ),
        },
        KernelView::Capable { mount, statx_dax: true } => {
            let why = match (mount, physical) {
                (MountDax::Always, _) => "mount option dax=always puts every capable file in kernel DAX",
                (MountDax::Inode, Mode::Cached) => {
                    return d(
                        Mode::Direct,
                        Backing::KernelDax,
                        true,
                        "FS_XFLAG_DAX is clear, but the kernel keeps this file in DAX until \
                         the last holder closes it (pending)"
                            .into(),
                    )
                }
                _ => "FS_XFLAG_DAX is set: kernel DAX, MAP_SYNC mappings, cache-line flush",
            };
            let why = match (wanted, policy) {
                (Mode::Cached, Policy::Never) => {
                    format!("{why}; volume policy never cannot take a file out of kernel DAX")
                }
                (Mode::Cached, _) => format!("{why}; its physical mode cached cannot take it out"),
                _ => why.to_string(),
            };
            d(Mode::Direct, Backing::KernelDax, false, why)
        }
        KernelView::Capable { mount, statx_dax: false } => match (mount, wanted) {
            (MountDax::Never, Mode::Direct) => {
                d(Mode::Cached, Backing::PageCache, false, "mount option dax=never keeps every file out of DAX".into())
            }
            (_, Mode::Cached) => d(
                Mode::Cached,
                Backing::PageCache,
                false,
                join(overridden, "FS_XFLAG_DAX is clear: page cache, persisted by fdatasync"),
            ),
            (MountDax::Inode | MountDax::None, Mode::Direct) if physical == Mode::Direct => d(
                Mode::Cached,
                Backing::PageCache,
                true,
                "FS_XFLAG_DAX is set, but the kernel serves this file from the page cache until \
                 the last holder closes it (pending; or the file cannot use DAX)"
                    .into(),
            ),
            (_, Mode::Direct) => d(
                Mode::Direct,
                Backing::Emulated,
                false,
                join(
                    overridden,
                    "the kernel has not put this file in DAX: direct is emulated with a shared \
                     mapping persisted by msync",
                ),
            ),
        },
    }
}

/// The effective state of a range of physical mode `physical` (see `ranges.rs`) in a
/// file whose own effective state is `file`. The kernel decides DAX per inode, so a
/// range follows the file's backing: on kernel DAX a direct range is kernel DAX and a
/// cached one is served from dynadax's DRAM cache; elsewhere a direct range is
/// emulated and a cached one is the page cache.
pub(crate) fn decide_range(policy: Policy, physical: Mode, file: &Decision) -> Decision {
    let wanted = policy.apply(physical);
    let overridden = overridden(policy, physical);
    let d = |effective, backing, reason: &str| Decision {
        effective,
        backing,
        pending: false,
        reason: join(overridden, reason),
    };
    match (file.backing, wanted) {
        (Backing::KernelDax, Mode::Direct) => {
            d(Mode::Direct, Backing::KernelDax, "the kernel serves this file by DAX: MAP_SYNC, cache-line flush")
        }
        (Backing::KernelDax, Mode::Cached) => d(
            Mode::Cached,
            Backing::DramCache,
            "the kernel serves the whole file by DAX, which a range cannot leave: dynadax caches this \
             range's pages in DRAM (read-through), persisted by fdatasync",
        ),
        (_, Mode::Direct) => d(
            Mode::Direct,
            Backing::Emulated,
            "the kernel serves this file through the page cache: a direct range is emulated with a \
             shared mapping persisted by msync",
        ),
        (_, Mode::Cached) => d(Mode::Cached, Backing::PageCache, "page cache, persisted by fdatasync"),
    }
}

/// Why the policy gives another mode than the physical one, if it does.
fn overridden(policy: Policy, physical: Mode) -> Option<&'static str> {
    match (policy, physical) {
        (Policy::Never, Mode::Direct) => Some("volume policy never overrides physical direct"),
        (Policy::Always, Mode::Cached) => Some("volume policy always overrides physical cached"),
        _ => None,
    }
}

fn join(first: Option<&str>, rest: &str) -> String {
    match first {
        Some(f) => format!("{f}; {rest}"),
        None => rest.to_string(),
    }
}

macro_rules! names {
    ($ty:ty { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// The lowercase name used by the CLI and JSON.
            pub fn as_str(self) -> &'static str {
                match self { $(<$ty>::$variant => $name),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($name => Ok(<$ty>::$variant),)+
                    other => Err(format!(
                        "unknown {} {other:?} (expected one of: {})",
                        stringify!($ty).to_lowercase(),
                        [$($name),+].join(", ")
                    )),
                }
            }
        }
    };
}

names!(Mode { Direct => "direct", Cached => "cached" });
names!(Policy { Always => "always", Never => "never", Inode => "inode" });
names!(Backing { KernelDax => "kernel-dax", Emulated => "emulated", PageCache => "page-cache", DramCache => "dram-cache" });
names!(MountDax { Always => "always", Never => "never", Inode => "inode", None => "none" });

#[cfg(test)]
mod tests {
    use super::*;

    const POLICIES: [Policy; 3] = [Policy::Always, Policy::Never, Policy::Inode];
    const MODES: [Mode; 2] = [Mode::Direct, Mode::Cached];

    /// R4/R5 on a file system without DAX: the policy matrix, emulated.
    #[test]
    fn policy_matrix_without_kernel_dax() {
        let k = KernelView::Incapable { why: "tmpfs cannot do DAX".into() };
        for policy in POLICIES {
            for physical in MODES {
                let got = decide(policy, physical, &k);
                let want = match (policy, physical) {
                    (Policy::Always, _) => Mode::Direct,
                    (Policy::Never, _) => Mode::Cached,
                    (Policy::Inode, m) => m,
                };
                assert_eq!(got.effective, want, "{policy} x {physical}");
                let backing = if want == Mode::Direct { Backing::Emulated } else { Backing::PageCache };
                assert_eq!(got.backing, backing, "{policy} x {physical}");
                assert!(!got.pending);
                assert_eq!(got.reason.contains("overrides"), policy.apply(physical) != physical);
            }
        }
    }

    /// On a kernel DAX file system, statx is the truth for kernel DAX.
    #[test]
    fn kernel_dax_follows_statx() {
        for policy in POLICIES {
            for physical in MODES {
                for mount in [MountDax::Always, MountDax::Inode] {
                    let got = decide(policy, physical, &KernelView::Capable { mount, statx_dax: true });
                    assert_eq!(got.effective, Mode::Direct);
                    assert_eq!(got.backing, Backing::KernelDax);
                    assert_eq!(got.pending, mount == MountDax::Inode && physical == Mode::Cached);
                }
            }
        }
    }

    #[test]
    fn pending_when_flag_set_but_kernel_not_yet_dax() {
        let k = KernelView::Capable { mount: MountDax::Inode, statx_dax: false };
        let got = decide(Policy::Inode, Mode::Direct, &k);
        assert_eq!((got.effective, got.backing, got.pending), (Mode::Cached, Backing::PageCache, true));
        assert!(got.reason.contains("last holder"), "{}", got.reason);
    }

    #[test]
    fn mount_never_wins_over_flag_and_policy() {
        let k = KernelView::Capable { mount: MountDax::Never, statx_dax: false };
        for policy in [Policy::Always, Policy::Inode] {
            let got = decide(policy, Mode::Direct, &k);
            assert_eq!((got.effective, got.pending), (Mode::Cached, false));
            assert!(got.reason.contains("dax=never"));
        }
    }

    #[test]
    fn policy_always_on_non_dax_file_of_dax_fs_is_emulated() {
        let k = KernelView::Capable { mount: MountDax::Inode, statx_dax: false };
        let got = decide(Policy::Always, Mode::Cached, &k);
        assert_eq!((got.effective, got.backing, got.pending), (Mode::Direct, Backing::Emulated, false));
    }

    /// A range follows its file's backing: kernel DAX or DRAM cache on a DAX file,
    /// emulated or page cache elsewhere; the policy applies as to files.
    #[test]
    fn ranges_follow_the_file_backing() {
        let dax = decide(Policy::Inode, Mode::Direct, &KernelView::Capable { mount: MountDax::Inode, statx_dax: true });
        let plain = decide(Policy::Inode, Mode::Cached, &KernelView::Incapable { why: "tmpfs".into() });
        let cases = [
            (&dax, Policy::Inode, Mode::Direct, Mode::Direct, Backing::KernelDax),
            (&dax, Policy::Inode, Mode::Cached, Mode::Cached, Backing::DramCache),
            (&dax, Policy::Never, Mode::Direct, Mode::Cached, Backing::DramCache),
            (&plain, Policy::Inode, Mode::Direct, Mode::Direct, Backing::Emulated),
            (&plain, Policy::Inode, Mode::Cached, Mode::Cached, Backing::PageCache),
            (&plain, Policy::Always, Mode::Cached, Mode::Direct, Backing::Emulated),
        ];
        for (file, policy, physical, effective, backing) in cases {
            let got = decide_range(policy, physical, file);
            assert_eq!((got.effective, got.backing), (effective, backing), "{policy} x {physical} in {file:?}");
            assert_eq!(got.reason.contains("overrides"), policy.apply(physical) != physical);
        }
    }

    #[test]
    fn names_round_trip_and_reject_unknown() {
        for m in MODES {
            assert_eq!(m.as_str().parse::<Mode>().unwrap(), m);
        }
        for p in POLICIES {
            assert_eq!(p.as_str().parse::<Policy>().unwrap(), p);
        }
        let err = "dax".parse::<Mode>().unwrap_err();
        assert!(err.contains("direct, cached"), "{err}");
    }
}

//! The `dynadax` command line: argument parsing, dispatch, exit codes.
//!
//! Exit codes: 0 success, 1 an error (one line on stderr naming the path and what is
//! wrong), 2 a usage error (from clap), 3 busy (a switch refused while mapped), 4 a
//! single-file log is full (purge to make room).

mod demo;
mod log_bench;
mod log_cmd;
mod report;
mod service_cmd;

use clap::{Parser, Subcommand, ValueEnum};
use dynadax::{Mode, Policy, SwitchOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Per-file DAX access modes, switchable safely at run time.
///
/// Every file and directory has a persistent *physical* mode, `direct` (DAX: loads
/// and stores through a mapping, no page cache) or `cached` (the page cache). On ext4
/// and xfs it is the kernel's own FS_XFLAG_DAX, so `lsattr`/`xfs_io` agree; new files
/// inherit it from their directory. The *effective* mode is what is in force now:
/// kernel DAX where the device can do it (statx says so), emulated with a shared
/// mapping and msync elsewhere. A volume policy (always | never | inode) can override
/// physical modes, like the kernel's dax= mount option.
#[derive(Parser, Debug)]
#[command(name = "dynadax", version, propagate_version = true, max_term_width = 100)]
#[command(after_help = "Exit codes: 0 ok, 1 error, 2 usage error, 3 busy (file is mapped), 4 log full.\n\
Start with `dynadax demo` to see it all on a scratch directory, or `dynadax probe .`.")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Can this path do DAX and MAP_SYNC, and how would it persist? Changes nothing.
    ///
    /// Works on any path, existing or not (a missing path is answered for a file
    /// created there now). Reads mount options, sysfs, statx and the kernel's flags
    /// only: it never creates, grows, maps or modifies anything.
    Probe {
        /// File, directory, or a path that does not exist yet.
        path: PathBuf,
        /// Print one JSON object (keys: path, fs_type, mount_dax, device_dax,
        /// statx_dax, map_sync, persistence, flush_instruction, flag_store, ...).
        #[arg(long)]
        json: bool,
    },
    /// Show the physical and effective mode of a file or directory, and why.
    Stat {
        /// An existing file or directory.
        path: PathBuf,
        /// Print one JSON object (keys: path, kind, physical, effective, backing,
        /// pending, reason, flag_store, live_mappings, ...).
        #[arg(long)]
        json: bool,
    },
    /// Set the physical mode of a file or directory, or of a range of a file.
    ///
    /// On a file this is a run-time switch: metadata only, constant time, refused
    /// while the file is mapped by this process. On a directory it changes what new
    /// children inherit, never the children that already exist. On kernel DAX file
    /// systems the effective mode follows when the last holder closes the file.
    ///
    /// With --range, only that part of the file changes (a direct tail after cached
    /// parts, in one file), refused only while a mapping overlaps that range. Without
    /// it, the whole file changes and its ranges are cleared.
    #[command(after_help = "Examples:
  dynadax mode data/wal direct
          dynadax mode data/segments cached --range 0:64M     # the first 64 MiB, sealed
          dynadax mode data/segments direct --range 64M:      # from 64 MiB to the end")]
    Mode {
        /// An existing file or directory.
        path: PathBuf,
        /// The new physical mode.
        #[arg(value_enum)]
        mode: ModeArg,
        /// OFFSET:LEN of a file, in whole pages (K, M, G suffixes); LEN empty for "to
        /// the end of the file, whatever it grows to".
        #[arg(long, value_parser = parse_range)]
        range: Option<(u64, Option<u64>)>,
        /// Print the resulting status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Manage volumes: directory trees with a policy, like a mount's dax= option.
    Volume {
        #[command(subcommand)]
        command: VolumeCommand,
    },
    /// Work with a segmented log (append, read, tail, stat, verify).
    Log {
        #[command(subcommand)]
        command: log_cmd::LogCommand,
    },
    /// Run one node of a replicated log service until SIGINT or SIGTERM.
    ///
    /// openraft replicates the node's Raft log (a dynadax log in DIR/raft) to the
    /// others over HTTP; each committed append becomes the next record of DIR/applied,
    /// at the same index on every node. Logs to stderr.
    #[command(after_help = "Examples (three nodes, one command each; the cluster forms itself):
  dynadax serve --id 1 --dir n1 --listen 127.0.0.1:7001 --peers 2=127.0.0.1:7002,3=127.0.0.1:7003
  dynadax serve --id 2 --dir n2 --listen 127.0.0.1:7002 --peers 1=127.0.0.1:7001,3=127.0.0.1:7003
  dynadax serve --id 3 --dir n3 --listen 127.0.0.1:7003 --peers 1=127.0.0.1:7001,2=127.0.0.1:7002
Or start them without --peers and run `dynadax cluster init` once.")]
    Serve(service_cmd::ServeArgs),
    /// Set up and change a cluster (init, add-learner, promote, remove,
    /// transfer-leader) and see a node's status.
    Cluster {
        #[command(flatten)]
        tls: service_cmd::TlsArgs,
        #[command(subcommand)]
        command: service_cmd::ClusterCommand,
    },
    /// Append to and read the replicated log of a cluster.
    Client {
        #[command(flatten)]
        tls: service_cmd::TlsArgs,
        #[command(subcommand)]
        command: service_cmd::ClientCommand,
    },
    /// Run the tour: probe, volume, modes, writes in both vectors, a switch refused
    /// while mapped, switches both ways with data checked, and a short report.
    Demo {
        /// Scratch directory (created; only its `volume/` subdirectory is replaced).
        #[arg(default_value = "dynadax-demo")]
        dir: PathBuf,
        /// Bytes to write in the demo file.
        #[arg(long, default_value_t = 8 << 20)]
        size: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum VolumeCommand {
    /// Make DIR (created if missing) the root of a volume, or change its policy.
    Init {
        /// The volume's root directory.
        dir: PathBuf,
        /// always: every file direct; never: every file cached; inode: each file
        /// follows its physical mode.
        #[arg(long, value_enum, default_value_t = PolicyArg::Inode)]
        policy: PolicyArg,
        /// Print the volume as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show which volume a path belongs to, and its policy.
    Show {
        /// Any path.
        path: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum ModeArg {
    /// DAX: loads and stores through a mapping.
    Direct,
    /// The page cache.
    Cached,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum PolicyArg {
    Always,
    Never,
    Inode,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Direct => Mode::Direct,
            ModeArg::Cached => Mode::Cached,
        }
    }
}

impl From<PolicyArg> for Policy {
    fn from(p: PolicyArg) -> Policy {
        match p {
            PolicyArg::Always => Policy::Always,
            PolicyArg::Never => Policy::Never,
            PolicyArg::Inode => Policy::Inode,
        }
    }
}

/// Parses arguments, runs the command, maps errors to exit codes.
pub fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dynadax: {}", one_line(&e));
            ExitCode::from(match e.downcast_ref::<dynadax::Error>() {
                Some(dynadax::Error::Busy { .. }) => 3,
                Some(dynadax::Error::Full { .. }) => 4,
                _ => 1,
            })
        }
    }
}

/// The error and its causes on one line, each cause once: dynadax's errors already
/// end with the system's message, which anyhow would print again as the source.
fn one_line(e: &anyhow::Error) -> String {
    let mut s = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if !s.contains(&c) {
            if !s.is_empty() {
                s.push_str(": ");
            }
            s.push_str(&c);
        }
    }
    s
}

/// Output into a closed pipe (`dynadax log stat L | head -1`) ends the process
/// quietly, as it does other Unix tools, instead of a panic on `EPIPE`: Rust starts
/// programs with `SIGPIPE` ignored.
fn restore_sigpipe() {
    // SAFETY: called first thing in `main`, before any thread exists; `SIG_DFL` is a
    // valid disposition for SIGPIPE and no handler code runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Probe { path, json } => report::probe(&dynadax::probe(&path)?, json),
        Command::Stat { path, json } => report::status(&dynadax::stat(&path)?, json),
        Command::Mode { path, mode, range: None, json } => {
            let st = dynadax::set_mode(&path, mode.into(), SwitchOptions { wait: None::<Duration> })?;
            report::status(&st, json)
        }
        Command::Mode { path, mode, range: Some((off, len)), json } => {
            let st = dynadax::File::open(&path)?.set_range_mode(off, len, mode.into(), SwitchOptions::default())?;
            report::status(&st, json)
        }
        Command::Volume { command: VolumeCommand::Init { dir, policy, json } } => {
            report::volume(&dynadax::Volume::init(&dir, policy.into())?, json)
        }
        Command::Volume { command: VolumeCommand::Show { path, json } } => {
            report::volume(&dynadax::Volume::of(&path)?, json)
        }
        Command::Log { command } => log_cmd::run(command),
        Command::Demo { dir, size, json } => demo::run(&dir, size, json),
        Command::Serve(args) => service_cmd::serve(args),
        Command::Cluster { tls, command } => service_cmd::cluster(tls, command),
        Command::Client { tls, command } => service_cmd::client(tls, command),
    }
}

/// `OFFSET:LEN` (sizes with K, M, G suffixes), `LEN` empty meaning "to the end".
fn parse_range(s: &str) -> Result<(u64, Option<u64>), String> {
    let (off, len) =
        s.split_once(':').ok_or_else(|| format!("{s:?} is not OFFSET:LEN (e.g. 0:64M, or 64M: for the rest)"))?;
    // An offset may be 0; a length, when given, may not.
    let off = log_cmd::parse_offset(off)?;
    let len = match len {
        "" => None,
        l => Some(log_cmd::parse_size(l)?),
    };
    Ok((off, len))
}

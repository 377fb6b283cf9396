//! runc's command line, flag for flag, as clap derive structs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "rune",
    about = "rune: a runc-compatible OCI runtime for enclave containers",
    disable_version_flag = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    /// Print the version
    #[arg(short = 'v', long)]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalOpts {
    /// Root directory for container state
    #[arg(long, global = true, default_value = rune_core::DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Log file (default: stderr)
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Enable debug logging
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use systemd for cgroups
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility (containerd passes it); rootless mode is detected
    #[arg(id = "rootless_mode", long = "rootless", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub rootless: Option<String>,
    /// Accepted for runc compatibility; checkpointing is not supported
    #[arg(long, global = true, hide = true)]
    pub criu: Option<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container
    Create(Create),
    /// Run the user program of a created container
    Start(Id),
    /// Create and run a container
    Run(Run),
    /// Run a new process inside a container
    Exec(Exec),
    /// Send a signal to the container's init process
    Kill(Kill),
    /// Delete a container
    Delete(Delete),
    /// Output the state of a container
    State(Id),
    /// List containers
    List(List),
    /// Create a new specification file
    Spec(SpecCmd),
    /// List the processes running inside a container
    Ps(Ps),
    /// Display container events and statistics
    Events(Events),
    /// Suspend all processes of a container
    Pause(Id),
    /// Resume all processes of a paused container
    Resume(Id),
    /// Update container resource constraints
    Update(Update),
    /// Show the features of this runtime
    Features,
    /// Get a local report from the enclave runtime of an enclave container (with --isRA, an
    /// intelSgx enclave's DCAP quote)
    Attest(Attest),
    /// The waiter of a detached exec in an enclave container (started by `exec -d`;
    /// stdin is the agent connection, stdout the signal pipe)
    #[command(hide = true)]
    EnclaveExecWait(Id),
}

#[derive(Args, Debug)]
pub struct Attest {
    /// Remote attestation: an intelSgx enclave's REPORT quoted by aesmd (a DCAP quote,
    /// which `shelter verify` checks)
    #[arg(long = "isRA", alias = "is-ra")]
    pub is_ra: bool,
    /// The quote type for --isRA: ecdsa (DCAP); Intel has retired EPID
    #[arg(long = "quote-type", default_value = "ecdsa")]
    pub quote_type: String,
    /// Write the report (or quote) to this file instead of printing it in hex
    #[arg(long, alias = "reportFile")]
    pub report_file: Option<PathBuf>,
    /// Up to 64 bytes of report data, in hex (zero-padded); not for intelSgx, whose
    /// enclave runtime chooses its own
    #[arg(long)]
    pub report_data: Option<String>,
    /// Container id
    pub id: String,
}

#[derive(Args, Debug)]
pub struct Id {
    /// Container id
    pub id: String,
}

#[derive(Args, Debug, Clone)]
pub struct Create {
    /// Path to the bundle directory
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// File to write the container's init pid to
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot_root to jail the process inside the rootfs
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring (accepted for compatibility)
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Number of extra file descriptors (from 3) passed to the container
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Unix socket that receives a pidfd of the init (not supported yet)
    #[arg(long, hide = true)]
    pub pidfd_socket: Option<PathBuf>,
    /// Container id
    pub id: String,
}

#[derive(Args, Debug)]
pub struct Run {
    #[command(flatten)]
    pub create: Create,
    /// Detach from the container's process
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits (accepted for compatibility)
    #[arg(long)]
    pub keep: bool,
    /// Do not make rune the child subreaper of the container's orphans (those of a
    /// container sharing rune's pid namespace go to rune's own subreaper instead)
    #[arg(long)]
    pub no_subreaper: bool,
}

#[derive(Args, Debug)]
pub struct Exec {
    /// Path to a process.json
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Detach from the process
    #[arg(short, long)]
    pub detach: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Environment variable KEY=VALUE (repeatable)
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// UID[:GID] to run as
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional group ids (repeatable)
    #[arg(short = 'g', long)]
    pub additional_gids: Vec<u32>,
    /// Add a capability (repeatable)
    #[arg(short, long = "cap")]
    pub cap: Vec<String>,
    /// Set no_new_privs
    #[arg(long)]
    pub no_new_privs: bool,
    /// File to write the process pid to
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Unix socket that receives a pidfd (not supported yet)
    #[arg(long, hide = true)]
    pub pidfd_socket: Option<PathBuf>,
    /// Number of extra file descriptors (from 3) passed to the process
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Exec in a paused container (the process starts frozen)
    #[arg(long)]
    pub ignore_paused: bool,
    /// Run the process in existing sub-cgroups of the container:
    /// [controller[,controller…]:]path (repeatable, one per controller set)
    #[arg(long)]
    pub cgroup: Vec<String>,
    /// AppArmor profile of the process
    #[arg(long)]
    pub apparmor: Option<String>,
    /// SELinux label of the process
    #[arg(long)]
    pub process_label: Option<String>,
    /// Container id
    pub id: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct Kill {
    /// Send the signal to every process in the container
    #[arg(short, long)]
    pub all: bool,
    /// Container id
    pub id: String,
    /// Signal name or number
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

#[derive(Args, Debug)]
pub struct Delete {
    /// Kill the container if it is still running
    #[arg(short, long)]
    pub force: bool,
    /// Container id
    pub id: String,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct List {
    /// Output format
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Print only the container ids
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct SpecCmd {
    /// Bundle directory to write config.json into
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Write a spec for a rootless container
    #[arg(long)]
    pub rootless: bool,
    /// Make it an enclave container of this type (fills the enclave.* annotations)
    #[arg(long, value_parser = ["sim", "intelSgx"])]
    pub enclave: Option<String>,
    /// Host path of the enclave runtime (PAL) for --enclave
    #[arg(long, requires = "enclave")]
    pub enclave_runtime_path: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct Ps {
    /// Output format
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Container id
    pub id: String,
    /// Options passed to ps(1) in table format
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_options: Vec<String>,
}

#[derive(Args, Debug)]
pub struct Events {
    /// Print statistics once and exit
    #[arg(long)]
    pub stats: bool,
    /// Statistics interval, such as 5s or 1m
    #[arg(long, default_value = "5s")]
    pub interval: String,
    /// Container id
    pub id: String,
}

/// `update`'s flags, runc's: values are taken as text and parsed as runc parses them
/// (`rune_core::resources`), so `-1` is a value and a bad one is refused in one line.
/// With `--resources` every other resource flag is ignored, as by runc.
#[derive(Args, Debug)]
pub struct Update {
    /// LinuxResources JSON file, or - for stdin; the other resource flags are then ignored
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    /// Memory limit (bytes, or with k, m, g suffix); -1 for unlimited
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory soft limit
    #[arg(long, allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit; -1 for unlimited
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Kernel memory limit (ignored, as by runc)
    #[arg(long, allow_hyphen_values = true)]
    pub kernel_memory: Option<String>,
    /// Kernel TCP buffer memory limit (ignored, as by runc)
    #[arg(long, allow_hyphen_values = true)]
    pub kernel_memory_tcp: Option<String>,
    /// CPU shares (relative weight)
    #[arg(long, alias = "cpu-shares", allow_hyphen_values = true)]
    pub cpu_share: Option<String>,
    /// CPU realtime period to be used for hardcapping (microseconds)
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_rt_period: Option<String>,
    /// CPU realtime hardcap limit (microseconds)
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<String>,
    /// The string of Intel RDT/CAT L3 cache schema
    #[arg(long)]
    pub l3_cache_schema: Option<String>,
    /// The string of Intel RDT/MBA memory bandwidth schema
    #[arg(long)]
    pub mem_bw_schema: Option<String>,
    /// CPU CFS period in microseconds
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_period: Option<String>,
    /// CPU CFS quota in microseconds; -1 for none
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<String>,
    /// CPUs allowed (0-3, 0,1)
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes allowed
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of pids; -1 for unlimited
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<String>,
    /// Block IO weight (10-1000)
    #[arg(long, allow_hyphen_values = true)]
    pub blkio_weight: Option<String>,
    /// Container id
    pub id: String,
}

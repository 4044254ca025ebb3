//! Command-line definitions (clap). Flag names and short forms follow the docker CLI.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "pelagos",
    version,
    about = "A fast, Docker-compatible container engine"
)]
pub struct Cli {
    /// Persistent data (images, containers, volumes) [default: daemon.json's `data-root`,
    /// else /var/lib/pelagos].
    #[arg(long, global = true, env = "PELAGOS_DATA_ROOT")]
    pub data_root: Option<PathBuf>,
    /// Runtime state (sockets, generated specs); cleared by a reboot.
    #[arg(long, global = true, env = "PELAGOS_RUN_ROOT", default_value = engine::paths::DEFAULT_RUN_ROOT)]
    pub run_root: PathBuf,
    /// Daemon-wide settings, with Docker's daemon.json key names.
    #[arg(
        long,
        global = true,
        env = "PELAGOS_CONFIG",
        default_value = "/etc/pelagos/daemon.json"
    )]
    pub config_file: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create and start a container.
    Run(RunArgs),
    /// Create a container without starting it.
    Create(RunArgs),
    /// Start stopped containers.
    Start(StartArgs),
    /// Stop running containers (stop signal, then SIGKILL after the timeout).
    Stop(StopArgs),
    /// Restart containers.
    Restart(StopArgs),
    /// Send a signal to running containers.
    Kill(KillArgs),
    /// Pause all processes in containers.
    Pause(Targets),
    /// Unpause containers.
    Unpause(Targets),
    /// Remove containers.
    Rm(RmArgs),
    /// Block until containers stop, then print their exit codes.
    Wait(Targets),
    /// Rename a container.
    Rename { container: String, new_name: String },
    /// List containers.
    Ps(PsArgs),
    /// Detailed information on containers or images.
    Inspect(InspectArgs),
    /// Fetch the logs of a container.
    Logs(LogsArgs),
    /// Run a command in a running container.
    Exec(ExecArgs),
    /// Attach to a running container's stdio.
    Attach(AttachArgs),
    /// Display the running processes of a container.
    Top { container: String },
    /// Resource usage of containers.
    Stats(StatsArgs),
    /// Manage containers.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Pull an image from a registry.
    Pull(PullArgs),
    /// Push an image to a registry.
    Push(PushArgs),
    /// Save images to a tar archive (stdout by default) that `docker load` reads.
    Save(SaveArgs),
    /// Show the history of an image.
    History(HistoryArgs),
    /// Manage pelagos.
    #[command(subcommand)]
    System(SystemCommand),
    /// Log in to a registry (stored in the docker CLI's config.json).
    Login(LoginArgs),
    /// Log out from a registry.
    Logout { server: String },
    /// Load images from a `docker save` or OCI archive.
    Load(LoadArgs),
    /// List images.
    Images(ImagesArgs),
    /// Create a tag TARGET that refers to SOURCE.
    Tag { source: String, target: String },
    /// Remove images.
    Rmi(RmiArgs),
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Update resource limits or the restart policy of containers.
    Update(UpdateArgs),
    /// Changes to files in a container's filesystem (A added, C changed, D deleted).
    Diff { container: String },
    /// Export a container's filesystem as a tar archive.
    Export {
        /// Write to a file instead of stdout.
        #[arg(short, long)]
        output: Option<String>,
        container: String,
    },
    /// List port mappings of a container.
    Port {
        container: String,
        /// PRIVATE_PORT[/PROTO]
        port: Option<String>,
    },
    /// Serve the Docker Engine API (for the unmodified docker CLI and SDKs).
    Daemon(DaemonArgs),
    /// Build an image from a Dockerfile (Docker's classic builder).
    Build(BuildArgs),
    /// Create a new image from a container's changes.
    Commit(CommitArgs),
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Name and optionally a tag (name:tag); repeatable.
    #[arg(short, long = "tag")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: PATH/Dockerfile).
    #[arg(short, long)]
    pub file: Option<String>,
    /// KEY=VALUE build-time variables (KEY alone takes the value from the environment).
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// The stage to build.
    #[arg(long)]
    pub target: Option<String>,
    /// KEY=VALUE labels for the image.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Always pull base images.
    #[arg(long)]
    pub pull: bool,
    /// Print only the image ID.
    #[arg(short, long)]
    pub quiet: bool,
    /// Network of the RUN containers.
    #[arg(long)]
    pub network: Option<String>,
    /// The build context directory.
    pub path: String,
}

#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Author (e.g. "Jane <jane@example.com>").
    #[arg(short, long)]
    pub author: Option<String>,
    /// Dockerfile instructions to apply (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER,
    /// VOLUME, WORKDIR); repeatable.
    #[arg(short, long = "change")]
    pub changes: Vec<String>,
    /// Commit message.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Pause the container while committing.
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set)]
    pub pause: bool,
    pub container: String,
    /// REPOSITORY[:TAG] for the new image.
    pub repository: Option<String>,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Memory limit (e.g. 64m).
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Memory plus swap (-1: unlimited swap).
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Number of CPUs (e.g. 0.5).
    #[arg(long)]
    pub cpus: Option<f64>,
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    #[arg(long = "cpu-quota")]
    pub cpu_quota: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    /// no, always, unless-stopped, on-failure[:N]
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// Create a network.
    Create(NetworkCreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls {
        #[arg(short, long)]
        quiet: bool,
        #[arg(long = "no-trunc")]
        no_trunc: bool,
    },
    /// Detailed information on networks.
    Inspect {
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove networks.
    #[command(alias = "remove")]
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove all unused networks.
    Prune {
        #[arg(short, long)]
        force: bool,
    },
    /// Connect a container to a network.
    Connect {
        #[arg(long = "alias")]
        aliases: Vec<String>,
        #[arg(long)]
        ip: Option<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network.
    Disconnect {
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
    /// Not Docker's: deletes this data root's bridges, firewall table and networks
    /// (uninstall; test cleanup of private roots).
    #[command(name = "destroy-all", hide = true)]
    DestroyAll,
}

#[derive(Args, Debug)]
pub struct NetworkCreateArgs {
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    #[arg(long)]
    pub subnet: Option<String>,
    #[arg(long)]
    pub gateway: Option<String>,
    #[arg(long = "ip-range")]
    pub ip_range: Option<String>,
    #[arg(long)]
    pub internal: bool,
    #[arg(long)]
    pub attachable: bool,
    #[arg(long = "label")]
    pub labels: Vec<String>,
    #[arg(short = 'o', long = "opt")]
    pub opts: Vec<String>,
    pub name: String,
}

#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// Remove all stopped containers.
    Prune(PruneArgs),
    /// List containers.
    Ls(PsArgs),
    /// Detailed information on containers.
    Inspect(InspectArgs),
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Detailed information on images.
    Inspect(InspectArgs),
    /// List images.
    Ls(ImagesArgs),
    /// Remove images.
    Rm(RmiArgs),
    /// Load images.
    Load(LoadArgs),
    /// Tag an image.
    Tag { source: String, target: String },
    /// Pull an image.
    Pull(PullArgs),
    /// Push an image.
    Push(PushArgs),
    /// Save images to a tar archive.
    Save(SaveArgs),
    /// Show the history of an image.
    History(HistoryArgs),
    /// Remove unused images.
    Prune(ImagePruneArgs),
}

#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Show disk usage.
    Df {
        #[arg(short, long)]
        verbose: bool,
    },
}

#[derive(Args, Debug)]
pub struct PushArgs {
    #[arg(short, long)]
    pub quiet: bool,
    pub image: String,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to a file instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    pub human: bool,
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long)]
    pub format: Option<String>,
    pub image: String,
}

#[derive(Args, Debug)]
pub struct ImagePruneArgs {
    /// Remove all unused images, not just dangling ones.
    #[arg(short, long)]
    pub all: bool,
    #[arg(short, long)]
    pub force: bool,
    #[arg(long = "filter")]
    pub filters: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// Create a volume.
    Create {
        name: Option<String>,
        #[arg(short = 'l', long = "label")]
        labels: Vec<String>,
        #[arg(short = 'o', long = "opt")]
        opts: Vec<String>,
        #[arg(short = 'd', long, default_value = "local")]
        driver: String,
    },
    /// List volumes.
    Ls {
        #[arg(short, long)]
        quiet: bool,
    },
    /// Detailed information on volumes.
    Inspect { names: Vec<String> },
    /// Remove volumes.
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove unused anonymous volumes (all unused with -a).
    Prune {
        #[arg(short, long)]
        all: bool,
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Args, Debug, Default, Clone)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[arg(short = 'i', long)]
    pub interactive: bool,
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(long)]
    pub rm: bool,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    #[arg(short = 'l', long = "label")]
    pub labels: Vec<String>,
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    #[arg(long = "mount")]
    pub mounts: Vec<String>,
    #[arg(long = "tmpfs")]
    pub tmpfs: Vec<String>,
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    #[arg(long)]
    pub entrypoint: Option<String>,
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    #[arg(long)]
    pub domainname: Option<String>,
    #[arg(long)]
    pub init: bool,
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    #[arg(long)]
    pub privileged: bool,
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    #[arg(long = "read-only")]
    pub read_only: bool,
    #[arg(long = "sysctl")]
    pub sysctls: Vec<String>,
    #[arg(long = "ulimit")]
    pub ulimits: Vec<String>,
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    #[arg(long)]
    pub cpus: Option<String>,
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    #[arg(long = "cpu-quota")]
    pub cpu_quota: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    #[arg(long = "oom-score-adj", allow_hyphen_values = true)]
    pub oom_score_adj: Option<i32>,
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    #[arg(long = "network", alias = "net")]
    pub network: Option<String>,
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    #[arg(long = "expose")]
    pub expose: Vec<String>,
    #[arg(long)]
    pub ip: Option<String>,
    #[arg(long = "network-alias", alias = "net-alias")]
    pub network_alias: Vec<String>,
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    #[arg(long = "link")]
    pub link: Vec<String>,
    #[arg(long)]
    pub dns: Vec<String>,
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    #[arg(long = "dns-option")]
    pub dns_option: Vec<String>,
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    #[arg(long = "stop-timeout", allow_hyphen_values = true)]
    pub stop_timeout: Option<i64>,
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    #[arg(long = "restart")]
    pub restart: Option<String>,
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    /// Run from a plain directory instead of an image (all arguments are the command).
    #[arg(long)]
    pub rootfs: Option<PathBuf>,
    /// IMAGE [COMMAND] [ARG...]
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    #[arg(short = 'a', long)]
    pub attach: bool,
    #[arg(short = 'i', long)]
    pub interactive: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    #[arg(
        short = 't',
        long = "time",
        alias = "timeout",
        allow_hyphen_values = true
    )]
    pub time: Option<i64>,
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    #[arg(short = 's', long, default_value = "SIGKILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct Targets {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    #[arg(short, long)]
    pub force: bool,
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct PsArgs {
    #[arg(short, long)]
    pub all: bool,
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    #[arg(short = 'f', long = "filter")]
    pub filters: Vec<String>,
    #[arg(long)]
    pub format: Option<String>,
    #[arg(short = 'n', long = "last")]
    pub last: Option<usize>,
    #[arg(short = 'l', long)]
    pub latest: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    #[arg(long = "type")]
    pub kind: Option<String>,
    #[arg(required = true)]
    pub targets: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    #[arg(short = 'f', long)]
    pub follow: bool,
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
    #[arg(short = 't', long)]
    pub timestamps: bool,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[arg(short = 'i', long)]
    pub interactive: bool,
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    #[arg(long)]
    pub privileged: bool,
    pub container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub cmd: Vec<String>,
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    #[arg(short, long)]
    pub all: bool,
    #[arg(long)]
    pub format: Option<String>,
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    #[arg(short, long)]
    pub force: bool,
    #[arg(long = "filter")]
    pub filters: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    #[arg(short, long)]
    pub username: Option<String>,
    #[arg(short, long)]
    pub password: Option<String>,
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    pub server: String,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    #[arg(short, long)]
    pub quiet: bool,
    /// os/arch[/variant] to pull from a multi-platform image (default: the host's).
    #[arg(long)]
    pub platform: Option<String>,
    pub image: String,
}

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// Where to listen: unix:///path or tcp://127.0.0.1:PORT (repeatable; default
    /// unix:///var/run/pelagos.sock).
    #[arg(short = 'H', long = "host")]
    pub hosts: Vec<String>,
    /// Group owning the Unix socket (default: docker, if it exists).
    #[arg(short = 'G', long)]
    pub group: Option<String>,
    /// Write our PID to this file once the sockets accept connections.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    #[arg(short = 'i', long = "input")]
    pub input: Option<PathBuf>,
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(short, long)]
    pub all: bool,
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    #[arg(long)]
    pub format: Option<String>,
    pub reference: Option<String>,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

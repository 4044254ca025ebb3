//! One function per command; each translates flags into engine/registry calls.

mod container;
mod exec;
pub mod images;
mod logs;
mod network;
mod ps;
mod stats;
mod system;
mod volumes;

use crate::cli::{Cli, Command, ContainerCommand, ImageCommand, SystemCommand};
use crate::errors::CliResult;
use engine::{Engine, Roots};

/// What every command needs: the engine and the image store on the chosen roots.
pub struct Ctx {
    pub roots: Roots,
    /// The parsed daemon.json (an empty object when there is none).
    pub config: serde_json::Value,
}

impl Ctx {
    /// Where this command's image events go (the engine logs container, network and
    /// volume events itself).
    pub fn journal(&self) -> engine::events::Journal {
        engine::events::Journal::new(&self.roots)
    }
    pub fn engine(&self) -> CliResult<Engine> {
        Ok(Engine::open(self.roots.clone())?.with_net_settings(self.net_settings()?))
    }
    pub fn net_settings(&self) -> CliResult<::network::NetSettings> {
        Ok(::network::NetSettings::from_json(&self.config)?)
    }
    pub fn images(&self) -> CliResult<registry::ImageStore> {
        Ok(registry::ImageStore::open(&self.roots.data)?)
    }
    pub fn registry_settings(&self) -> CliResult<registry::RegistrySettings> {
        Ok(registry::RegistrySettings::from_json(&self.config)?)
    }
}

/// Runs the command; returns the process exit code.
pub fn dispatch(cli: Cli) -> CliResult<i32> {
    let config = crate::daemon_config::load(&cli.config_file)?;
    let data_root = cli
        .data_root
        .or_else(|| crate::daemon_config::data_root(&config))
        .unwrap_or_else(|| engine::paths::DEFAULT_DATA_ROOT.into());
    let ctx = Ctx {
        roots: Roots::new(data_root, cli.run_root),
        config,
    };
    match cli.command {
        Command::Run(a) => container::run(&ctx, a),
        Command::Create(a) => container::create(&ctx, a),
        Command::Start(a) => container::start(&ctx, a),
        Command::Stop(a) => container::stop(&ctx, a, false),
        Command::Restart(a) => container::stop(&ctx, a, true),
        Command::Kill(a) => container::kill(&ctx, a),
        Command::Pause(t) => container::each(&ctx, &t.containers, |e, c| e.pause(c)),
        Command::Unpause(t) => container::each(&ctx, &t.containers, |e, c| e.unpause(c)),
        Command::Rm(a) => container::rm(&ctx, a),
        Command::Wait(t) => container::wait(&ctx, t),
        Command::Rename {
            container,
            new_name,
        } => {
            let e = ctx.engine()?;
            let id = e.containers.resolve(&container)?;
            e.containers.rename(&id, &new_name)?;
            Ok(0)
        }
        Command::Ps(a) => ps::ps(&ctx, a),
        Command::Inspect(a) => container::inspect(&ctx, a),
        Command::Logs(a) => logs::logs(&ctx, a),
        Command::Exec(a) => exec::exec(&ctx, a),
        Command::Attach(a) => container::attach(&ctx, a),
        Command::Top { container } => stats::top(&ctx, &container),
        Command::Stats(a) => stats::stats(&ctx, a),
        Command::Container(c) => match c {
            ContainerCommand::Prune(a) => container::prune(&ctx, a),
            ContainerCommand::Ls(a) => ps::ps(&ctx, a),
            ContainerCommand::Inspect(a) => container::inspect(&ctx, a),
        },
        Command::Pull(a) => images::pull(&ctx, a),
        Command::Push(a) => images::push(&ctx, a),
        Command::Save(a) => images::save(&ctx, a),
        Command::History(a) => images::history(&ctx, a),
        Command::System(SystemCommand::Df { verbose }) => system::df(&ctx, verbose),
        Command::Login(a) => images::login(&ctx, a),
        Command::Logout { server } => images::logout(&server),
        Command::Load(a) => images::load(&ctx, a),
        Command::Images(a) => images::images(&ctx, a),
        Command::Tag { source, target } => images::tag(&ctx, &source, &target),
        Command::Rmi(a) => images::rmi(&ctx, a),
        Command::Image(c) => match c {
            ImageCommand::Inspect(a) => images::inspect(&ctx, a),
            ImageCommand::Ls(a) => images::images(&ctx, a),
            ImageCommand::Rm(a) => images::rmi(&ctx, a),
            ImageCommand::Load(a) => images::load(&ctx, a),
            ImageCommand::Tag { source, target } => images::tag(&ctx, &source, &target),
            ImageCommand::Pull(a) => images::pull(&ctx, a),
            ImageCommand::Push(a) => images::push(&ctx, a),
            ImageCommand::Save(a) => images::save(&ctx, a),
            ImageCommand::History(a) => images::history(&ctx, a),
            ImageCommand::Prune(a) => images::prune(&ctx, a),
        },
        Command::Volume(v) => volumes::volume(&ctx, v),
        Command::Network(n) => network::network(&ctx, n),
        Command::Update(a) => container::update(&ctx, a),
        Command::Diff { container } => container::diff(&ctx, &container),
        Command::Export { output, container } => {
            container::export(&ctx, &container, output.as_deref())
        }
        Command::Port { container, port } => network::port(&ctx, &container, port.as_deref()),
        Command::Daemon(a) => daemon(&ctx, a),
        Command::Build(a) => images::build(&ctx, a),
        Command::Commit(a) => images::commit(&ctx, a),
    }
}

/// `pelagos daemon`: the Docker Engine API on the same state as this CLI.
fn daemon(ctx: &Ctx, a: crate::cli::DaemonArgs) -> CliResult<i32> {
    let mut cfg = compat_api::DaemonConfig::load(ctx.roots.clone(), &a.hosts, a.group, &ctx.config)
        .map_err(|e| crate::errors::CliError::Other(anyhow::anyhow!("{e}")))?;
    cfg.ready_fd_path = a.ready_file;
    compat_api::run(cfg).map_err(|e| crate::errors::CliError::Other(anyhow::anyhow!("{e}")))?;
    Ok(0)
}

//! Container lifecycle commands.

use super::Ctx;
use crate::attach_client::{self, AttachOptions};
use crate::cli::{
    AttachArgs, InspectArgs, KillArgs, PruneArgs, RmArgs, RunArgs, StartArgs, StopArgs, Targets,
};
use crate::errors::{CliError, CliResult};
use crate::run_opts;
use engine::Engine;
use engine::runtime::AttachStreams;
use std::os::unix::net::UnixStream;

/// Creates the container; returns (engine, id).
fn create_container(ctx: &Ctx, a: &RunArgs) -> CliResult<(Engine, String)> {
    let engine = ctx.engine()?;
    let (image, cmd) = if a.rootfs.is_some() {
        (None, a.args.clone())
    } else {
        let Some((img, cmd)) = a.args.split_first() else {
            return Err(CliError::Usage(
                "\"run\"/\"create\" requires at least 1 argument: IMAGE [COMMAND] [ARG...]".into(),
            ));
        };
        let store = ctx.images()?;
        (Some(run_opts::image_info(&store, img)?), cmd.to_vec())
    };
    let opts = run_opts::create_options(a, image, cmd)?;
    let rec = engine.create(opts)?;
    Ok((engine, rec.id))
}

pub fn create(ctx: &Ctx, a: RunArgs) -> CliResult<i32> {
    let (_, id) = create_container(ctx, &a).map_err(|e| CliError::Run(Box::new(e)))?;
    println!("{id}");
    Ok(0)
}

pub fn run(ctx: &Ctx, a: RunArgs) -> CliResult<i32> {
    let (engine, id) = create_container(ctx, &a).map_err(|e| CliError::Run(Box::new(e)))?;
    if a.detach {
        engine
            .start(&id, None)
            .map_err(|e| CliError::Run(Box::new(e.into())))?;
        println!("{id}");
        return Ok(0);
    }
    let streams = AttachStreams {
        stdin: a.interactive,
        stdout: true,
        stderr: true,
    };
    let (ours, theirs) = engine::runtime::sync::channel()?;
    engine
        .start(&id, Some((theirs, streams)))
        .map_err(|e| CliError::Run(Box::new(e.into())))?;
    let proxy = a.sig_proxy.then(|| (engine.clone(), id.clone()));
    let code = attach_client::relay(
        UnixStream::from(ours),
        AttachOptions {
            stdin: a.interactive,
            tty: a.tty,
            proxy_to: proxy,
        },
    )
    .map_err(|e| CliError::Other(anyhow::anyhow!("attach: {e}")))?;
    match code {
        Some(c) => Ok(c),
        None => Ok(engine.wait(&id).unwrap_or(125)),
    }
}

pub fn start(ctx: &Ctx, a: StartArgs) -> CliResult<i32> {
    let engine = ctx.engine()?;
    if a.attach {
        let [one] = a.containers.as_slice() else {
            return Err(CliError::Usage(
                "you cannot start and attach multiple containers at once".into(),
            ));
        };
        let c = engine.containers.lookup(one)?;
        let (ours, theirs) = engine::runtime::sync::channel()?;
        let streams = AttachStreams {
            stdin: a.interactive,
            stdout: true,
            stderr: true,
        };
        engine.start(&c.record.id, Some((theirs, streams)))?;
        let code = attach_client::relay(
            UnixStream::from(ours),
            AttachOptions {
                stdin: a.interactive,
                tty: c.record.config.tty,
                proxy_to: Some((engine.clone(), c.record.id.clone())),
            },
        )
        .map_err(|e| CliError::Other(anyhow::anyhow!("attach: {e}")))?;
        return Ok(code.unwrap_or(0));
    }
    each(ctx, &a.containers, |e, c| match e.start(c, None) {
        Ok(_) | Err(engine::Error::NotModified(..)) => Ok(()),
        Err(err) => Err(err),
    })
}

/// Applies `f` to every target, printing each name like docker does; errors are printed
/// and make the exit code 1, but do not stop the others.
pub fn each(
    ctx: &Ctx,
    targets: &[String],
    f: impl Fn(&Engine, &str) -> engine::Result<()>,
) -> CliResult<i32> {
    let engine = ctx.engine()?;
    let mut code = 0;
    for t in targets {
        match f(&engine, t) {
            Ok(()) => println!("{t}"),
            Err(e) => {
                eprintln!("pelagos: error: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

pub fn stop(ctx: &Ctx, a: StopArgs, restart: bool) -> CliResult<i32> {
    let time = a.time;
    each(ctx, &a.containers, |e, c| {
        if restart {
            e.restart(c, time)
        } else {
            match e.stop(c, time) {
                Ok(()) | Err(engine::Error::NotModified(..)) => Ok(()),
                Err(err) => Err(err),
            }
        }
    })
}

pub fn kill(ctx: &Ctx, a: KillArgs) -> CliResult<i32> {
    let sig = a.signal.clone();
    each(ctx, &a.containers, |e, c| e.kill(c, Some(&sig)))
}

pub fn rm(ctx: &Ctx, a: RmArgs) -> CliResult<i32> {
    each(ctx, &a.containers, |e, c| e.remove(c, a.force, a.volumes))
}

pub fn wait(ctx: &Ctx, t: Targets) -> CliResult<i32> {
    let engine = ctx.engine()?;
    let mut code = 0;
    for c in &t.containers {
        match engine.wait(c) {
            Ok(exit) => println!("{exit}"),
            Err(e) => {
                eprintln!("pelagos: error: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

pub fn inspect(ctx: &Ctx, a: InspectArgs) -> CliResult<i32> {
    let engine = ctx.engine()?;
    let mut out = Vec::new();
    let mut code = 0;
    for t in &a.targets {
        let want_image = a.kind.as_deref() == Some("image");
        if !want_image && let Ok(c) = engine.containers.lookup(t) {
            out.push(engine::inspect::container_json(
                &c,
                &engine.paths(&c.record.id),
            ));
            continue;
        }
        if a.kind.as_deref() != Some("container") {
            let store = ctx.images()?;
            if let Ok(rec) = store.resolve(t) {
                out.push(store.inspect(&rec)?);
                continue;
            }
        }
        eprintln!("pelagos: error: No such object: {t}");
        code = 1;
    }
    crate::format::print_inspect(&out, a.format.as_deref())?;
    Ok(code)
}

pub fn prune(ctx: &Ctx, _a: PruneArgs) -> CliResult<i32> {
    let engine = ctx.engine()?;
    println!("Deleted Containers:");
    for c in engine.containers.list()? {
        if !c.state.is_running() && engine.remove(&c.record.id, false, false).is_ok() {
            println!("{}", c.record.id);
        }
    }
    Ok(0)
}

pub fn attach(ctx: &Ctx, a: AttachArgs) -> CliResult<i32> {
    use engine::runtime::attach::{FrameKind, write_frame};
    let engine = ctx.engine()?;
    let c = engine.containers.lookup(&a.container)?;
    if !c.state.is_running() {
        return Err(CliError::Usage(
            "You cannot attach to a stopped container, start it first".into(),
        ));
    }
    let stdin = !a.no_stdin && c.record.config.open_stdin;
    let sock = engine.paths(&c.record.id).attach_socket();
    let mut stream = UnixStream::connect(&sock)
        .map_err(|e| CliError::Other(anyhow::anyhow!("attach {}: {e}", sock.display())))?;
    let hello = serde_json::to_vec(&AttachStreams {
        stdin,
        stdout: true,
        stderr: true,
    })
    .unwrap_or_default();
    write_frame(&mut stream, FrameKind::Hello, &hello)
        .map_err(|e| CliError::Other(anyhow::anyhow!("attach: {e}")))?;
    let code = attach_client::relay(
        stream,
        AttachOptions {
            stdin,
            tty: c.record.config.tty,
            proxy_to: a.sig_proxy.then(|| (engine.clone(), c.record.id.clone())),
        },
    )
    .map_err(|e| CliError::Other(anyhow::anyhow!("attach: {e}")))?;
    Ok(code.unwrap_or(0))
}

/// `diff CONTAINER`: Docker's `C /path` lines.
pub fn diff(ctx: &Ctx, container: &str) -> CliResult<i32> {
    for c in ctx.engine()?.changes(container)? {
        println!("{} {}", c.kind.letter(), c.path);
    }
    Ok(0)
}

/// `export [-o FILE] CONTAINER`: the filesystem as tar, to a file (temp + rename, so a
/// failed export leaves none) or to stdout (refused on a terminal, as Docker does).
pub fn export(ctx: &Ctx, container: &str, output: Option<&str>) -> CliResult<i32> {
    use std::io::IsTerminal;
    let engine = ctx.engine()?;
    match output {
        Some(path) => {
            let view = engine.merged_view(container)?;
            let tmp = format!("{path}.pelagos-tmp{}", std::process::id());
            let written = std::fs::File::create(&tmp)
                .map_err(|e| CliError::Other(anyhow::anyhow!("{tmp}: {e}")))
                .and_then(|f| {
                    engine::layerview::export_tar(&view, std::io::BufWriter::new(f))
                        .map_err(CliError::from)
                })
                .and_then(|()| {
                    std::fs::rename(&tmp, path)
                        .map_err(|e| CliError::Other(anyhow::anyhow!("{path}: {e}")))
                });
            if written.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            written?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                return Err(CliError::Usage(
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect".into(),
                ));
            }
            let view = engine.merged_view(container)?;
            engine::layerview::export_tar(
                &view,
                std::io::BufWriter::new(std::io::stdout().lock()),
            )?;
        }
    }
    Ok(0)
}

/// `update [flags] CONTAINER...`: new limits on each container (live when running).
pub fn update(ctx: &Ctx, a: crate::cli::UpdateArgs) -> CliResult<i32> {
    use engine::units::parse_size;
    let size = |v: &Option<String>| -> CliResult<Option<i64>> {
        v.as_deref()
            .map(|s| {
                if s == "-1" {
                    Ok(-1)
                } else {
                    parse_size(s).map(|b| b as i64).map_err(CliError::from)
                }
            })
            .transpose()
    };
    let u = engine::update::ResourceUpdate {
        memory: size(&a.memory)?,
        memory_swap: size(&a.memory_swap)?,
        memory_reservation: size(&a.memory_reservation)?,
        nano_cpus: a.cpus.map(|c| (c * 1e9) as i64),
        cpu_shares: a.cpu_shares,
        cpu_period: a.cpu_period,
        cpu_quota: a.cpu_quota,
        cpuset_cpus: a.cpuset_cpus,
        cpuset_mems: a.cpuset_mems,
        pids_limit: a.pids_limit,
        blkio_weight: a.blkio_weight,
        restart_policy: a
            .restart
            .as_deref()
            .map(crate::run_opts::parse_restart)
            .transpose()?,
    };
    let engine = ctx.engine()?;
    let mut code = 0;
    for c in &a.containers {
        match engine.update(c, &u) {
            Ok(()) => println!("{c}"),
            Err(e) => {
                eprintln!("pelagos: error: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

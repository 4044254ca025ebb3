//! The Docker Engine API served on a Unix socket (and optionally TCP). It only translates
//! requests into engine, registry and network calls.

// serde_json::json! of /info needs more than the default.
#![recursion_limit = "256"]

mod blocking;
pub mod config;
mod error;
mod events;
mod heap_trim;
mod params;
mod prune_filter;
mod registry_auth;
mod routes;
mod server;
mod state;
mod stream;
mod supervise;
mod translate;

pub use config::DaemonConfig;
pub use error::{ApiError, status_for};
pub use server::{API_VERSION, Listen, MIN_API_VERSION};

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Engine(#[from] engine::Error),
    #[error(transparent)]
    Registry(#[from] registry::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let context = context.into();
    move |source| DaemonError::Io { context, source }
}

/// Runs the daemon until SIGTERM/SIGINT. Containers keep running when it stops: their
/// monitors own them, and the next daemon finds them in the shared state.
/// Fresh network namespaces the daemon keeps ready: one start in flight takes one while the
/// next is made; bursts beyond that make their own.
const NETNS_POOL: usize = 2;

pub fn run(cfg: DaemonConfig) -> Result<(), DaemonError> {
    // The CLI restores SIGPIPE's default (quiet ends for `pelagos ps | head`), but the
    // daemon writes to clients' sockets with plain write(2): a client that closes while a
    // response is still going out (`docker build` stops reading at its error line) must
    // cost an EPIPE, not the daemon. Set before any thread exists.
    // SAFETY: setting a signal's disposition to ignore has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // glibc gives each thread that contends for the heap an arena of its own, up to 16
    // here, and what a thread freed stays in its arena: after 8 concurrent clients ~4 MiB
    // of free heap sat in a dozen arenas. Two hold it in far less, with no measurable
    // loss of throughput (A/B, 8 workers). See also heap_trim.
    // SAFETY: mallopt only changes allocator tuning; called before any thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    // Two workers are plenty: handlers either answer from disk quickly or wait; blocking
    // engine calls go to the blocking pool.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(128)
        .enable_all()
        .build()
        .map_err(io("tokio runtime"))?;
    rt.block_on(serve(cfg))
}

async fn serve(cfg: DaemonConfig) -> Result<(), DaemonError> {
    let daemon = Arc::new(state::Daemon::open(
        cfg.roots.clone(),
        cfg.registry.clone(),
        cfg.net.clone(),
    )?);
    // Our nftables table rebuilt from the state on disk: rules a crash or an older run
    // left behind go, missing ones come back. In the background, so serving starts at once
    // (`nft` takes ~20 ms); not fatal: the next network change retries.
    // Then the containers their restart policy brings back (Docker's restore), once the
    // rules their ports need are in place.
    let d = daemon.clone();
    tokio::task::spawn_blocking(move || {
        // Monitors are forked by a small spawner from now on (until then, exec'd).
        engine::runtime::spawner::install();
        // And each start's network namespace is made ahead of time.
        network::netlink::enable_netns_pool(NETNS_POOL);
        // Removed containers' files are deleted off the request path.
        engine::store::remove_in_background(&d.roots);
        if d.roots.data.join("networks").exists()
            && let Err(e) = d.engine.networks().and_then(|n| Ok(n.sync_firewall()?))
        {
            tracing::warn!("firewall rules at start: {e}");
        }
        match d.engine.start_by_restart_policy() {
            Ok(failed) => {
                for (id, e) in failed {
                    tracing::warn!("restart policy of {id}: {e}");
                }
            }
            Err(e) => tracing::warn!("restart policies at start: {e}"),
        }
    });
    let app = routes::router(daemon.clone());
    tokio::spawn(heap_trim::run());
    let hosts = if cfg.hosts.is_empty() {
        vec![Listen::Unix(config::DEFAULT_SOCKET.into())]
    } else {
        cfg.hosts.clone()
    };
    let mut tasks = Vec::new();
    // The Unix sockets this daemon bound, by inode.
    let mut ours: Vec<(std::path::PathBuf, u64)> = Vec::new();
    for h in hosts {
        match h {
            Listen::Unix(path) => {
                let l = config::bind_unix(&path, cfg.group.as_deref())?;
                if let Ok(m) = std::fs::metadata(&path) {
                    ours.push((path.clone(), m.ino()));
                }
                let app = app.clone();
                tasks.push(tokio::spawn(async move {
                    loop {
                        if let Ok((s, _)) = l.accept().await {
                            // Bulk responses (logs, exports, image saves) go out in large
                            // writes instead of a ping-pong of ~2 KiB pieces with the
                            // reader; the kernel charges only what is really queued.
                            let _ = nix::sys::socket::setsockopt(
                                &s,
                                nix::sys::socket::sockopt::SndBufForce,
                                &(4 << 20),
                            );
                            tokio::spawn(server::serve_connection(app.clone(), s));
                        }
                    }
                }));
            }
            Listen::Tcp(addr) => {
                let l = tokio::net::TcpListener::bind(&addr)
                    .await
                    .map_err(io(format!("listen on tcp://{addr}")))?;
                // As dockerd warns: plain TCP is root on this host for anyone who can
                // reach the address.
                if l.local_addr().is_ok_and(|a| !a.ip().is_loopback()) {
                    tracing::warn!(
                        "API listening on tcp://{addr} without TLS: anyone who can reach \
                         it has root on this host"
                    );
                }
                let app = app.clone();
                tasks.push(tokio::spawn(async move {
                    loop {
                        if let Ok((s, _)) = l.accept().await {
                            let _ = s.set_nodelay(true);
                            tokio::spawn(server::serve_connection(app.clone(), s));
                        }
                    }
                }));
            }
        }
    }
    if let Some(ready) = &cfg.ready_fd_path {
        let _ = std::fs::write(ready, std::process::id().to_string());
    }
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(io("signal"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(io("signal"))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    // Stop accepting; running containers are left to their monitors.
    for t in tasks {
        t.abort();
    }
    // Only the sockets that are still ours: a daemon started on the same path while this
    // one was stopping has bound a new socket there, which must survive our exit.
    for (path, ino) in &ours {
        if std::fs::metadata(path).is_ok_and(|m| m.ino() == *ino) {
            let _ = std::fs::remove_file(path);
        }
    }
    // Removed containers' files still queued are deleted before we go.
    tokio::task::spawn_blocking(engine::store::finish_background_removals)
        .await
        .ok();
    Ok(())
}

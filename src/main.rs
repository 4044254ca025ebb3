//! `pelagos`: the daemonless command line. It parses flags and translates them into
//! engine and registry calls; all real work lives in those crates.

mod attach_client;
mod cli;
mod commands;
mod daemon_config;
mod errors;
mod format;
mod progress;
mod run_opts;
mod terminal;

use clap::Parser;

fn main() {
    // The monitor is this same binary; check before anything else so a monitor touches as
    // little memory as possible.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == engine::runtime::spawn::MONITOR_ARG)
    {
        engine::runtime::monitor::main();
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == engine::runtime::spawner::SPAWNER_ARG)
    {
        engine::runtime::spawner::main();
    }
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == network::dns::DNS_ARG) {
        network::dns::main(&args[2..]);
    }
    if args
        .get(1)
        .is_some_and(|a| a == engine::runtime::health::HEALTH_ARG)
    {
        engine::runtime::health::main(&args[2..]);
    }
    // Likewise the daemon's exec helper: single-threaded, nothing initialised.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == engine::runtime::exec_helper::EXEC_HELPER_ARG)
    {
        engine::runtime::exec_helper::main();
    }
    // Like other command-line tools, end quietly when our output pipe closes
    // (`pelagos ps | head -1`) instead of panicking in println!. The monitor (above) keeps
    // Rust's ignored SIGPIPE: it must survive attach clients going away.
    // SAFETY: restoring the default disposition before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PELAGOS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = cli::Cli::parse();
    let code = match commands::dispatch(cli) {
        Ok(code) => code,
        Err(e) => errors::report(&e),
    };
    std::process::exit(code);
}

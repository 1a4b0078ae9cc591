//! The `hephd` binary: flags, logging and signals around [`hephd::run`].

use std::process::ExitCode;

use clap::Parser;
use hephd::config::{Args, Config};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

fn main() -> ExitCode {
    // Everything hephd creates (database, lock, socket) is private to its user.
    // SAFETY: umask only sets the process's file-mode mask; no threads exist yet.
    unsafe { libc::umask(0o077) };
    hephd::install_crypto_provider();
    let args = Args::parse();
    let env = |k: &str| std::env::var(k).ok();
    let config = match Config::resolve(&args, &env, &|p| std::fs::read_to_string(p)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hephd: error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        print!("{}", config.render());
        return ExitCode::SUCCESS;
    }
    if let Some(command) = args.command.clone() {
        return match hephd::run_command(&config, command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hephd: error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    hephd::logging::init(&config.log_level.value, config.log_format.value);
    for key in &config.unknown_keys {
        tracing::warn!(key = %key, file = %config.config_file.value.display(), "unknown key in the config file is ignored");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hephd: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let (stop, stopped) = watch::channel(false);
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            eprintln!("hephd: error: cannot install signal handlers");
            return ExitCode::FAILURE;
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: finishing in-flight requests, then stopping"),
                _ = int.recv() => tracing::info!("SIGINT: finishing in-flight requests, then stopping"),
            }
            let _ = stop.send(true);
        });
        match hephd::run(&config, stopped).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hephd: error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

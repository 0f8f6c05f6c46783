//! The `egressd` binary: parse the command line, set up logging, hand off to the library.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use egressd::cli::{self, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command.unwrap_or(Command::Run) {
        Command::Run => match run(&cli.config) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("egressd: {e:#}");
                1
            }
        },
        Command::Check(a) => cli::check(&cli.config, a.strict),
        Command::Explain(a) => cli::explain(&cli.config, &a),
        Command::Test(a) => cli::run_tests(&cli.config, &a.files),
    };
    ExitCode::from(code as u8)
}

fn run(config: &std::path::Path) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "egressd=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // The plain proxy listener runs on one single-thread runtime per core (EGRESSD_PROXY_THREADS
    // sets how many; 0: everything on the shared multi-thread runtime), each with its own
    // SO_REUSEPORT socket, as nginx and HAProxy run one event loop per thread. In the
    // side-by-side harness it served about a quarter more kept-alive requests than the shared
    // runtime, with a longer tail on a box shared with the load (p99 over half of Squid's in
    // some runs; README, Performance). The shared runtime keeps a worker per core for the TLS listener, admin,
    // reloads and signals.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_core: usize = match std::env::var("EGRESSD_PROXY_THREADS") {
        Ok(v) => v
            .parse()
            .context("EGRESSD_PROXY_THREADS must be a number of threads")?,
        Err(_) => cores,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
        let opts = egressd::app::Options {
            per_core,
            ..Default::default()
        };
        let server = egressd::app::Server::start_with(config, opts).await?;
        tracing::info!(config = %server.config_path().display(), "egressd running");
        shutdown_signal().await;
        let grace = server.shutdown_grace();
        server.shutdown(grace).await;
        server.flush_audit(std::time::Duration::from_secs(5)).await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// SIGTERM (service managers, Kubernetes) or SIGINT (a terminal) starts the drain.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
    }
}

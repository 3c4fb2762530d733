//! The `puerta` binary: CLI, logging, signals and exit codes. Everything else is in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use puerta::config::Config;
use tokio_util::sync::CancellationToken;

/// Exit code for configuration problems, so that scripts can tell them from runtime failures.
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(name = "puerta", version, about = "MongoDB and Redis Cluster proxy")]
struct Cli {
    /// Path to the TOML configuration file.
    #[arg(long, short)]
    config: PathBuf,
    /// Validate the configuration (and load the TLS files it names) and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = puerta::logging::init();
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if std::env::var_os("RUST_LOG").is_none() {
        if let Some(level) = &config.log_level {
            log.set(level);
        }
    }
    if cli.check {
        if let Err(e) = config.redis.as_ref().map_or(Ok(()), puerta::tls::check) {
            tracing::error!("invalid configuration: redis mode: TLS: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        println!("{}: configuration is valid", cli.config.display());
        return ExitCode::SUCCESS;
    }
    match run(config, cli.config, log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{}", puerta::error_line::one_line(e.as_ref()));
            let config_problem = e
                .downcast_ref::<puerta::app::AppError>()
                .is_some_and(|a| a.is_config_problem());
            if config_problem {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(config: Config, path: PathBuf, log: puerta::logging::LogLevel) -> anyhow::Result<()> {
    match puerta::limits::raise_nofile() {
        Ok(n) => tracing::info!(nofile = n, "file descriptor limit"),
        Err(e) => tracing::warn!("cannot raise RLIMIT_NOFILE: {e}"),
    }
    if !puerta::limits::return_big_buffers_to_the_os() {
        tracing::warn!(
            "the allocator refused a fixed mmap threshold; RSS may stay above what is held"
        );
    }
    // Everything that may need a capability happens here, on the only thread; then they all go, before
    // the runtime starts the threads that serve clients.
    let prepared = puerta::startup::prepare(&config)?;
    let keep = prepared.capabilities_needed_later();
    puerta::privileges::drop_process(&keep)?.log();
    let runtime = runtime(&config)?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        let (publish, reloads) = tokio::sync::watch::channel(Arc::new(config.clone()));
        tokio::spawn(puerta::reload::on_sighup(
            path,
            config.clone(),
            log,
            publish,
        ));
        puerta::app::run_prepared(config, prepared, shutdown, reloads).await
    })?;
    // Flows still running past the drain deadline are dropped with the runtime.
    runtime.shutdown_background();
    tracing::info!("stopped");
    Ok(())
}

/// MongoDB mode's flows run on a work-stealing runtime of `worker_threads`. Redis mode starts its
/// own worker threads (`redis::client::worker`), each with a runtime of its own; this thread is the
/// first of them.
fn runtime(config: &Config) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match config.mode {
        puerta::config::Mode::Redis => tokio::runtime::Builder::new_current_thread(),
        puerta::config::Mode::Mongodb => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(config.threads());
            builder
        }
    };
    builder.enable_all().build()
}

/// First SIGINT/SIGTERM starts a graceful stop.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
    }
    shutdown.cancel();
}

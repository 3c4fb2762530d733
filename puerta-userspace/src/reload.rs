//! SIGHUP: re-read the config file. A file that does not load or validate is rejected with a log line
//! and the running configuration stays. A valid one sets the log level here and is published to the
//! mode, which applies what can change live (MongoDB: backends, weights, health settings, connect
//! timeout; Redis: seeds); settings that need a restart are named in a warning.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Mode};
use crate::logging::LogLevel;

/// Waits for the next configuration `on_sighup` publishes; `None` once `stop` fires or the publisher is
/// gone. Each mode's reload loop is `while let Some(config) = next_config(..).await { apply }`.
pub async fn next_config(
    reloads: &mut watch::Receiver<Arc<Config>>,
    stop: &CancellationToken,
) -> Option<Arc<Config>> {
    tokio::select! {
        _ = stop.cancelled() => None,
        changed = reloads.changed() => match changed {
            Ok(()) => Some(reloads.borrow_and_update().clone()),
            Err(_) => None,
        },
    }
}

pub async fn on_sighup(
    path: PathBuf,
    mut running: Config,
    log: LogLevel,
    publish: watch::Sender<Arc<Config>>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler; reloads are unavailable");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!(path = %path.display(), "SIGHUP: reloading the configuration");
        let new = match Config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("reload rejected, keeping the running configuration: {e}");
                continue;
            }
        };
        if let Some(problem) = restart_only_change(&running, &new) {
            tracing::error!("reload rejected, keeping the running configuration: {problem}");
            continue;
        }
        warn_fixed_settings(&running, &new);
        if let Some(level) = &new.log_level {
            log.set(level);
        }
        running = new.clone();
        publish.send_replace(Arc::new(new));
    }
}

/// Changes that cannot be applied to a running process at all; the whole reload is refused so the
/// operator does not believe a half-applied file is in force.
fn restart_only_change(running: &Config, new: &Config) -> Option<String> {
    if running.mode != new.mode {
        return Some(format!(
            "mode changed from {:?} to {:?}; restart Puerta to switch modes",
            running.mode, new.mode
        ));
    }
    None
}

/// Top-level settings fixed at start-up: named so that nobody waits for them to take effect.
fn warn_fixed_settings(running: &Config, new: &Config) {
    let fixed = [
        ("listen_addr", running.listen_addr != new.listen_addr),
        ("admin_addr", running.admin_addr != new.admin_addr),
        (
            "handover_socket",
            running.handover_socket != new.handover_socket,
        ),
        (
            "max_connections",
            running.max_connections != new.max_connections,
        ),
        (
            "worker_threads",
            running.worker_threads != new.worker_threads,
        ),
        (
            // MongoDB mode applies it to new flows; Redis sessions read it once.
            "client_idle_timeout_sec",
            new.mode == Mode::Redis && running.client_idle_timeout != new.client_idle_timeout,
        ),
        (
            "drain_timeout_sec",
            running.drain_timeout != new.drain_timeout,
        ),
    ];
    for (key, changed) in fixed {
        if changed {
            tracing::warn!("{key} changed; it takes effect only after a restart");
        }
    }
}

//! Logging set-up with a filter that can be replaced while running (SIGHUP applies `log_level`).

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Handle to change the active log filter.
#[derive(Clone)]
pub struct LogLevel(reload::Handle<EnvFilter, Registry>);

impl LogLevel {
    /// Replaces the filter; an invalid one is logged and the current one stays.
    pub fn set(&self, directives: &str) {
        match EnvFilter::try_new(directives) {
            Ok(filter) => match self.0.reload(filter) {
                Ok(()) => tracing::info!(log_level = directives, "log level set"),
                Err(e) => tracing::error!("cannot change the log level: {e}"),
            },
            Err(e) => tracing::error!("log_level {directives:?} is not a valid filter: {e}"),
        }
    }
}

/// Installs the global subscriber: `RUST_LOG` or `info`, plain text unless stderr is a terminal
/// (journald and log files get text that grep can match).
pub fn init() -> LogLevel {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    tracing_subscriber::registry().with(filter).with(fmt).init();
    LogLevel(handle)
}

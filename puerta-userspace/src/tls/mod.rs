//! TLS for Redis mode's two legs: towards clients (`[redis.tls]`, [`server::Acceptor`]) and towards
//! cluster nodes (`[redis.backend_tls]`, [`client::Connector`]). rustls with the aws-lc-rs provider: no
//! OpenSSL in the process. Both hold their rustls configuration behind a lock so that SIGHUP can
//! swap in re-read certificates for new connections while established ones keep theirs.

pub mod client;
mod expiry;
mod pem;
pub mod server;
pub mod stream;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

pub use stream::{ReadHalf, Stream, WriteHalf};

/// Why TLS material could not be loaded. Each names the file, so an operator knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {what}", path.display())]
    Pem { path: PathBuf, what: String },
    #[error("{context}: {source}")]
    Rustls {
        context: String,
        source: rustls::Error,
    },
    #[error("`{key}`: {message}")]
    Setting { key: &'static str, message: String },
    #[error("{}: no usable CA certificate: {message}", path.display())]
    Roots { path: PathBuf, message: String },
}

/// The rustls set-up SIGHUP may replace: each new connection takes a clone of the current one, so
/// a replacement never touches established connections.
struct Swappable<T>(RwLock<T>);

impl<T: Clone> Swappable<T> {
    fn new(value: T) -> Swappable<T> {
        Swappable(RwLock::new(value))
    }

    fn get(&self) -> T {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn replace(&self, value: T) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = value;
    }
}

/// aws-lc-rs (rustls' default, with post-quantum key exchange), explicitly: the process never depends
/// on which provider another crate installed.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Seconds since the Unix epoch at which the first certificate of `chain` expires (the served one).
fn expiry_of(chain: &[rustls_pki_types::CertificateDer<'static>]) -> Option<i64> {
    chain.first().and_then(|c| expiry::not_after(c))
}

/// Publishes the served certificate's expiry on `/metrics` (`side`: `client` or `backend`).
fn publish_expiry(side: &'static str, at: Option<i64>) {
    if let Some(at) = at {
        metrics::gauge!("puerta_tls_certificate_expiry_timestamp_seconds", "side" => side)
            .set(at as f64);
    }
}

/// Loads every TLS file `redis` names, as start-up would (`puerta --check`).
pub fn check(redis: &crate::config::RedisConfig) -> Result<(), TlsError> {
    if let Some(settings) = &redis.tls {
        server::Acceptor::load(settings)?;
    }
    if let Some(settings) = &redis.backend_tls {
        client::Connector::load(settings)?;
    }
    Ok(())
}

/// Registers the TLS metrics' help texts.
pub fn describe() {
    metrics::describe_gauge!(
        "puerta_tls_certificate_expiry_timestamp_seconds",
        "Unix time at which the certificate Puerta presents expires (side: client = to clients, backend = to cluster nodes)"
    );
    metrics::describe_counter!(
        "puerta_tls_handshake_failures_total",
        "TLS handshakes that failed (side: client = with a client, backend = with a cluster node)"
    );
}

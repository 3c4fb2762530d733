//! TLS towards clients (`[redis.tls]`): the handshake on each accepted connection, optionally
//! requiring a client certificate signed by `client_ca_file` (mutual TLS).

use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::{pem, provider, publish_expiry, Stream, Swappable, TlsError};
use crate::config::{ListenerTls, TlsVersion};

/// A client that connects and never finishes its handshake holds only a socket for this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Acceptor {
    current: Swappable<TlsAcceptor>,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tls::Acceptor")
    }
}

impl Acceptor {
    pub fn load(settings: &ListenerTls) -> Result<Acceptor, TlsError> {
        Ok(Acceptor {
            current: Swappable::new(build(settings)?),
        })
    }

    /// Re-reads the files (SIGHUP). On an error the certificates in use stay, and the caller logs it.
    pub fn reload(&self, settings: &ListenerTls) -> Result<(), TlsError> {
        self.current.replace(build(settings)?);
        Ok(())
    }

    /// The TLS handshake with a client; the error says why it failed.
    pub async fn accept(&self, tcp: TcpStream) -> Result<Stream, String> {
        let acceptor = self.current.get();
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => Ok(Stream::Tls(Box::new(tls.into()))),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no handshake within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            )),
        }
    }
}

fn build(settings: &ListenerTls) -> Result<TlsAcceptor, TlsError> {
    let chain = pem::certificates(&settings.cert_file)?;
    let key = pem::private_key(&settings.key_file)?;
    let expiry = super::expiry_of(&chain);
    let rustls_error = |context: String| move |source| TlsError::Rustls { context, source };
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = settings
        .protocols
        .iter()
        .map(|v| match v {
            TlsVersion::V1_2 => &rustls::version::TLS12,
            TlsVersion::V1_3 => &rustls::version::TLS13,
        })
        .collect();
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions)
        .map_err(rustls_error("redis.tls.protocols".into()))?;
    let builder = match &settings.client_ca_file {
        Some(path) => {
            let roots = Arc::new(pem::roots(path)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| TlsError::Roots {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(rustls_error(format!(
            "{} with {}",
            settings.cert_file.display(),
            settings.key_file.display()
        )))?;
    publish_expiry("client", expiry);
    Ok(TlsAcceptor::from(Arc::new(config)))
}

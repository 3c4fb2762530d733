//! TLS towards cluster nodes (`[redis.backend_tls]`), for every node connection: pooled, blocking,
//! subscribed, the invalidation feed, and nodes first met through MOVED/ASK.
//!
//! Nodes announce IP addresses in `CLUSTER SLOTS`, so by default a node's certificate is checked
//! against the IP it is reached at (it needs that IP among its subject alternative names). With
//! `server_name`, every node's certificate is checked against that one name instead (a certificate
//! shared by all nodes), which is also sent as SNI. A node announced by hostname is checked
//! against that hostname.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{pem, provider, publish_expiry, Stream, Swappable, TlsError};
use crate::config::BackendTls;

pub struct Connector {
    current: Swappable<Current>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tls::Connector")
    }
}

#[derive(Clone)]
struct Current {
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl Connector {
    pub fn load(settings: &BackendTls) -> Result<Connector, TlsError> {
        Ok(Connector {
            current: Swappable::new(build(settings)?),
        })
    }

    /// Re-reads the files (SIGHUP); new node connections use them. On an error nothing changes.
    pub fn reload(&self, settings: &BackendTls) -> Result<(), TlsError> {
        self.current.replace(build(settings)?);
        Ok(())
    }

    /// The TLS handshake with the node at `addr` (`host:port`, as the cluster announced it).
    pub async fn connect(&self, addr: &str, tcp: TcpStream) -> Result<Stream, String> {
        let current = self.current.get();
        let name = match current.server_name {
            Some(name) => name,
            None => name_of(addr)?,
        };
        let tls = current
            .connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Stream::Tls(Box::new(tls.into())))
    }
}

/// The name a node's certificate must carry: the host part of `addr`, an IP or a DNS name.
fn name_of(addr: &str) -> Result<ServerName<'static>, String> {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_string()).map_err(|e| format!("no TLS name for {addr}: {e}"))
}

fn build(settings: &BackendTls) -> Result<Current, TlsError> {
    let rustls_error = |context: String| move |source| TlsError::Rustls { context, source };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_error("redis.backend_tls".into()))?;
    let builder = match (&settings.ca_file, settings.insecure_skip_verify) {
        (_, true) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider()))),
        (Some(ca), false) => builder.with_root_certificates(pem::roots(ca)?),
        (None, false) => {
            return Err(TlsError::Setting {
                key: "redis.backend_tls.ca_file",
                message: "needed unless insecure_skip_verify = true".into(),
            })
        }
    };
    let config = match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => {
            let chain = pem::certificates(cert)?;
            publish_expiry("backend", super::expiry_of(&chain));
            builder
                .with_client_auth_cert(chain, pem::private_key(key)?)
                .map_err(rustls_error(format!(
                    "{} with {}",
                    cert.display(),
                    key.display()
                )))?
        }
        _ => builder.with_no_client_auth(),
    };
    let server_name = match &settings.server_name {
        Some(name) => Some(
            ServerName::try_from(name.clone()).map_err(|e| TlsError::Setting {
                key: "redis.backend_tls.server_name",
                message: e.to_string(),
            })?,
        ),
        None => None,
    };
    Ok(Current {
        connector: TlsConnector::from(Arc::new(config)),
        server_name,
    })
}

/// `insecure_skip_verify`: any certificate is accepted (the handshake's signatures are still
/// checked, so the session keys are the node's). For test setups only; start-up logs a WARN.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_come_from_the_announced_address() {
        let ip = |s: &str| ServerName::IpAddress(s.parse::<IpAddr>().unwrap().into());
        assert_eq!(name_of("127.0.0.1:7000").unwrap(), ip("127.0.0.1"));
        assert_eq!(name_of("[::1]:7000").unwrap(), ip("::1"));
        assert_eq!(
            name_of("redis-0.example:6379").unwrap(),
            ServerName::try_from("redis-0.example").unwrap()
        );
        assert!(name_of("bad name:1").is_err());
    }
}

//! How a connected client/backend pair moves its payload. This is the seam between the userspace copy
//! loop and the kernel (eBPF sockmap) splice: the MongoDB mode only ever calls [`Forwarder::forward`]
//! with two connected sockets that have nothing pending (the PROXY header is already written).

mod userspace;

use std::io;

use tokio::net::TcpStream;

use crate::config::{Forwarding, MongoConfig};
pub use userspace::{userspace_bytes, UserspaceForwarder, DEFAULT_BUFFER_SIZE};

/// Payload bytes a finished flow moved, per direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlowBytes {
    pub client_to_backend: u64,
    pub backend_to_client: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("forwarding = \"kernel\" was requested, but {0}")]
    KernelUnavailable(String),
}

/// The data path chosen at start-up for all flows.
#[derive(Debug)]
pub enum Forwarder {
    Userspace(UserspaceForwarder),
}

impl Forwarder {
    /// Picks the data path for `forwarding`, logging the choice once.
    pub fn from_config(config: &MongoConfig) -> Result<Forwarder, ForwardError> {
        match config.forwarding {
            Forwarding::Kernel => Err(ForwardError::KernelUnavailable(
                "the kernel path is not built yet".into(),
            )),
            Forwarding::Auto => {
                tracing::info!("forwarding in userspace (kernel path not built yet)");
                Ok(Forwarder::Userspace(UserspaceForwarder::default()))
            }
            Forwarding::Userspace => {
                tracing::info!("forwarding in userspace (forwarding = \"userspace\")");
                Ok(Forwarder::Userspace(UserspaceForwarder::default()))
            }
        }
    }

    /// Moves bytes both ways until both directions have ended, then closes both sockets.
    pub async fn forward(&self, client: TcpStream, backend: TcpStream) -> io::Result<FlowBytes> {
        match self {
            Forwarder::Userspace(u) => u.forward(client, backend).await,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Forwarder::Userspace(_) => "userspace",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn mongo(forwarding: &str) -> MongoConfig {
        let text = format!(
            "mode = \"mongodb\"\nlisten_addr = \"127.0.0.1:1\"\n[mongodb]\n\
             mongos_endpoints = [\"a:1\"]\nforwarding = \"{forwarding}\"\n"
        );
        Config::parse(&text, Path::new("t.toml"))
            .unwrap()
            .mongodb()
            .clone()
    }

    #[test]
    fn forwarding_choice() {
        assert_eq!(
            Forwarder::from_config(&mongo("userspace")).unwrap().name(),
            "userspace"
        );
        assert_eq!(
            Forwarder::from_config(&mongo("auto")).unwrap().name(),
            "userspace"
        );
        let err = Forwarder::from_config(&mongo("kernel")).unwrap_err();
        assert!(err.to_string().contains("kernel"), "{err}");
    }
}

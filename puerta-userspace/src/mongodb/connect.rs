//! Outgoing connections to backends. Names are resolved on every connect, so a mongos that moves to a
//! new address is followed without a restart; every resolved address is tried in order.

use std::io;

use tokio::net::TcpStream;

use crate::config::Endpoint;

/// Resolves `endpoint` and connects to the first address that accepts. The caller bounds the time.
pub async fn connect(endpoint: &Endpoint) -> io::Result<TcpStream> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host(endpoint.address()).await? {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{endpoint} resolves to no address"),
        )
    }))
}

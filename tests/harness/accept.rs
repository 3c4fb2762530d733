//! The accept loop of every test backend. A failed accept (EMFILE while a test holds thousands of
//! sockets, ENOBUFS under memory pressure) is reported and retried: a test backend that stopped
//! accepting for good would look like a fault of the proxy in front of it (a health check that
//! hangs until its timeout, holding a descriptor, reads as a leak).

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// The next accepted connection, however many accepts fail first.
pub async fn next(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((sock, _)) => return sock,
            Err(e) => {
                let at = listener.local_addr().map(|a| a.to_string());
                eprintln!("test backend {at:?}: accept failed: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

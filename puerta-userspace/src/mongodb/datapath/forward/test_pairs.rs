//! Socket pairs for the forwarders' unit tests: what a flow is given once both sides connected.

use tokio::net::{TcpListener, TcpStream};

/// Two connected pairs: (client, proxy-side client socket) and (proxy-side backend socket, backend).
pub async fn pairs() -> (TcpStream, TcpStream, TcpStream, TcpStream) {
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let back = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(front.local_addr().unwrap())
        .await
        .unwrap();
    let (accepted, _) = front.accept().await.unwrap();
    let to_backend = TcpStream::connect(back.local_addr().unwrap())
        .await
        .unwrap();
    let (backend, _) = back.accept().await.unwrap();
    (client, accepted, to_backend, backend)
}

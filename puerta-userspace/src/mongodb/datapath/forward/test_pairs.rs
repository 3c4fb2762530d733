//! Socket pairs for the forwarders' unit tests: what a flow is given once both sides connected.

use tokio::net::{TcpListener, TcpStream};

/// What a writer may get into a stalled flow: the buffers on the way as this host's sysctls let
/// them grow (the writer's send buffer, the proxy's receive and send buffers, the reader's receive
/// buffer), as `tests/mongodb_stalled.rs` bounds it, plus what the forwarder holds (`held`). A
/// fixed 32 MiB failed on a host whose `tcp_rmem` lets a receive buffer grow to 32 MiB.
pub fn stall_bound(held: usize) -> usize {
    let max = |name: &str| -> usize {
        let text = std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).unwrap();
        text.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    2 * max("tcp_wmem") + 2 * max("tcp_rmem") + held
}

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

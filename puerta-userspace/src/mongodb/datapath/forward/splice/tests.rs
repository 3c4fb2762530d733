use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::mongodb::datapath::forward::test_pairs::{pairs, stall_bound};
use crate::mongodb::datapath::forward::{failed_side, userspace_bytes};

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("nothing hangs")
}

fn spawn_flow(
    accepted: TcpStream,
    to_backend: TcpStream,
    idle: Option<Duration>,
) -> tokio::task::JoinHandle<io::Result<FlowBytes>> {
    tokio::spawn(async move {
        SpliceForwarder::probe()
            .unwrap()
            .forward(accepted, to_backend, idle)
            .await
    })
}

/// A byte pattern that shows reordering or loss, not just a wrong length.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

#[tokio::test]
async fn half_close_passes_through_and_reply_still_arrives() {
    let (mut client, accepted, to_backend, mut backend) = pairs().await;
    let before = userspace_bytes();
    let flow = spawn_flow(accepted, to_backend, None);
    client.write_all(b"request").await.unwrap();
    client.shutdown().await.unwrap();
    let mut got = Vec::new();
    within(backend.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"request", "backend saw the FIN after the data");
    backend.write_all(b"reply after client FIN").await.unwrap();
    backend.shutdown().await.unwrap();
    let mut reply = Vec::new();
    within(client.read_to_end(&mut reply)).await.unwrap();
    assert_eq!(reply, b"reply after client FIN");
    let bytes = within(flow).await.unwrap().unwrap();
    assert_eq!(
        bytes,
        FlowBytes {
            client_to_backend: 7,
            backend_to_client: 22,
            closed_idle: false,
            handed_over: false,
        }
    );
    assert_eq!(userspace_bytes(), before, "no payload copied to userspace");
}

/// 64 MiB each way at once, read back byte for byte: order and content survive chunking through the
/// pipe, and both directions make progress together (no deadlock when both sides write first).
#[tokio::test]
async fn large_transfers_both_ways_arrive_intact() {
    const LEN: usize = 64 << 20;
    let (client, accepted, to_backend, backend) = pairs().await;
    let flow = spawn_flow(accepted, to_backend, None);
    let exchange = |stream: TcpStream, send: Vec<u8>| async move {
        let (mut r, mut w) = stream.into_split();
        let writer = tokio::spawn(async move {
            w.write_all(&send).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut got = Vec::with_capacity(LEN);
        r.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        got
    };
    let (at_backend, at_client) = within(async {
        tokio::join!(
            exchange(backend, pattern(LEN, 0x5a)),
            exchange(client, pattern(LEN, 0xa5))
        )
    })
    .await;
    assert!(at_backend == pattern(LEN, 0xa5), "client→backend intact");
    assert!(at_client == pattern(LEN, 0x5a), "backend→client intact");
    let bytes = within(flow).await.unwrap().unwrap();
    assert_eq!(
        (bytes.client_to_backend, bytes.backend_to_client),
        (LEN as u64, LEN as u64)
    );
}

/// A backend that stops reading holds the client back through TCP: what the client manages to push is
/// bounded by socket buffers plus one pipe, and everything arrives in order once the backend reads.
#[tokio::test]
async fn a_stalled_backend_blocks_the_client_with_bounded_bytes() {
    let (client, accepted, to_backend, mut backend) = pairs().await;
    let flow = spawn_flow(accepted, to_backend, None);
    let std_client = client.into_std().unwrap();
    std_client.set_nonblocking(true).unwrap();
    let data = pattern(256 << 20, 7);
    let mut pushed = 0usize;
    let mut quiet_rounds = 0;
    // Push until the client has been refused for 20 rounds in a row: it is blocked.
    while quiet_rounds < 20 && pushed < data.len() {
        match std::io::Write::write(
            &mut &std_client,
            &data[pushed..(pushed + 65536).min(data.len())],
        ) {
            Ok(n) => {
                pushed += n;
                quiet_rounds = 0;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                quiet_rounds += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("client write: {e}"),
        }
    }
    let bound = stall_bound(PIPE_SIZE);
    assert!(
        pushed <= bound,
        "client pushed {pushed} bytes toward a backend that does not read (bound {bound})"
    );
    assert!(pushed < data.len(), "client was never held back");
    // The backend resumes: every pushed byte arrives, in order.
    let mut got = vec![0u8; pushed];
    within(backend.read_exact(&mut got)).await.unwrap();
    assert!(got == data[..pushed], "stalled bytes arrive intact");
    drop(std_client);
    let mut rest = Vec::new();
    within(backend.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty(), "the client's FIN follows its data");
    drop(backend);
    let bytes = within(flow).await.unwrap().unwrap();
    assert_eq!(bytes.client_to_backend, pushed as u64);
}

#[tokio::test]
async fn a_backend_reset_is_blamed_on_the_backend() {
    let (mut client, accepted, to_backend, mut backend) = pairs().await;
    let flow = spawn_flow(accepted, to_backend, None);
    client.write_all(b"request").await.unwrap();
    let mut got = [0u8; 7];
    within(backend.read_exact(&mut got)).await.unwrap();
    backend.set_zero_linger().unwrap();
    drop(backend);
    let err = within(flow).await.unwrap().unwrap_err();
    assert_eq!(failed_side(&err), Some(Side::Backend), "{err}");
    let mut rest = Vec::new();
    let _ = within(client.read_to_end(&mut rest)).await;
    assert!(rest.is_empty());
}

#[tokio::test]
async fn idle_timeout_closes_both_sides_and_keeps_the_counts() {
    let (mut client, accepted, to_backend, mut backend) = pairs().await;
    let flow = spawn_flow(accepted, to_backend, Some(Duration::from_millis(500)));
    client.write_all(b"hello").await.unwrap();
    let mut got = [0u8; 5];
    within(backend.read_exact(&mut got)).await.unwrap();
    let mut rest = Vec::new();
    within(client.read_to_end(&mut rest)).await.unwrap();
    within(backend.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());
    let bytes = within(flow).await.unwrap().unwrap();
    assert_eq!(
        bytes,
        FlowBytes {
            client_to_backend: 5,
            backend_to_client: 0,
            closed_idle: true,
            handed_over: false,
        }
    );
}

use std::time::Duration;

use super::*;
use crate::mongodb::datapath::forward::test_pairs::pairs;

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("nothing hangs")
}

#[tokio::test]
async fn half_close_passes_through_and_reply_still_arrives() {
    let (mut client, accepted, to_backend, mut backend) = pairs().await;
    let flow = tokio::spawn(async move {
        UserspaceForwarder::with_buffer_size(3)
            .forward(accepted, to_backend)
            .await
    });
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
    assert!(userspace_bytes() >= 29);
}

#[tokio::test]
async fn reset_on_one_side_ends_the_pair() {
    let (client, accepted, to_backend, mut backend) = pairs().await;
    let flow = tokio::spawn(async move {
        UserspaceForwarder::default()
            .forward(accepted, to_backend)
            .await
    });
    // SO_LINGER 0 makes the close a RST.
    client.set_zero_linger().unwrap();
    drop(client);
    let _ = within(flow).await.unwrap();
    let mut rest = Vec::new();
    // The backend sees its side closed, whether the forwarder saw a reset or a plain EOF.
    let _ = within(backend.read_to_end(&mut rest)).await;
    assert!(rest.is_empty());
}

#[tokio::test]
async fn idle_timeout_closes_both_sides_and_keeps_the_counts() {
    let (mut client, accepted, to_backend, mut backend) = pairs().await;
    let flow = tokio::spawn(async move {
        UserspaceForwarder::default()
            .forward_until_idle(accepted, to_backend, Some(Duration::from_millis(500)))
            .await
    });
    client.write_all(b"hello").await.unwrap();
    let mut got = [0u8; 5];
    within(backend.read_exact(&mut got)).await.unwrap();
    // Then nobody says anything: both ends see the close.
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

#[tokio::test]
async fn a_backend_reset_is_blamed_on_the_backend() {
    let (mut client, accepted, to_backend, mut backend) = pairs().await;
    let flow = tokio::spawn(async move {
        UserspaceForwarder::default()
            .forward(accepted, to_backend)
            .await
    });
    client.write_all(b"request").await.unwrap();
    let mut got = [0u8; 7];
    within(backend.read_exact(&mut got)).await.unwrap();
    backend.write_all(b"half a re").await.unwrap();
    backend.set_zero_linger().unwrap();
    drop(backend);
    let err = within(flow).await.unwrap().unwrap_err();
    assert_eq!(failed_side(&err), Some(Side::Backend), "{err}");
    assert!(err.to_string().contains("Backend socket"), "{err}");
    let mut rest = Vec::new();
    let _ = within(client.read_to_end(&mut rest)).await;
    assert!(rest.len() <= 9);
}

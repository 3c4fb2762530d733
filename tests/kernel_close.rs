//! Close handling of spliced pairs through the real binary: half-close from either side still delivers
//! everything and the other direction keeps working; a RST on either side ends the other within 1 s.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use puerta_tests::kernel::{assert_spliced_and_clean, start, stop, PinDir};
use puerta_tests::mongo_echo::MongoEcho;
use puerta_tests::stream::ends_within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn handed_pair(
    backend: &mut MongoEcho,
    proxy: SocketAddr,
) -> anyhow::Result<(TcpStream, TcpStream)> {
    let mut client = TcpStream::connect(proxy).await?;
    // The backend only sees the connection once Puerta connected; the first bytes prove the splice.
    client.write_all(b"ping").await?;
    let rx = backend.accepted.as_mut().expect("handing-over backend");
    let mut server = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await?
        .ok_or_else(|| anyhow::anyhow!("backend stopped"))?;
    let mut buf = [0u8; 4];
    server
        .read_exact(&mut buf)
        .await
        .context("backend reads ping")?;
    assert_eq!(&buf, b"ping");
    server.write_all(b"pong").await?;
    client
        .read_exact(&mut buf)
        .await
        .context("client reads pong")?;
    assert_eq!(&buf, b"pong");
    Ok((client, server))
}

fn reset(sock: TcpStream) -> anyhow::Result<()> {
    sock.set_zero_linger()?;
    drop(sock);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_and_reset_end_the_pair_within_a_second() -> anyhow::Result<()> {
    let mut backend = MongoEcho::start_handing_over().await?;
    let pins = PinDir::new("close");
    let puerta = start(&[backend.addr], "kernel", &pins).await?;
    let second = Duration::from_secs(1);

    // Client half-closes: the backend gets everything then EOF, and can still answer.
    let (mut client, mut server) = handed_pair(&mut backend, puerta.listen).await?;
    let payload = vec![7u8; 2 << 20];
    client.write_all(&payload).await?;
    client.shutdown().await?;
    let got = ends_within(&mut server, Duration::from_secs(10)).await?;
    assert_eq!(got.len(), payload.len());
    server.write_all(b"late reply").await?;
    server.shutdown().await?;
    assert_eq!(ends_within(&mut client, second).await?, b"late reply");

    // Backend half-closes: mirror image.
    let (mut client, mut server) = handed_pair(&mut backend, puerta.listen).await?;
    server.write_all(&payload).await?;
    server.shutdown().await?;
    assert_eq!(
        ends_within(&mut client, Duration::from_secs(10))
            .await?
            .len(),
        payload.len()
    );
    client.write_all(b"late request").await?;
    client.shutdown().await?;
    assert_eq!(ends_within(&mut server, second).await?, b"late request");

    // RST from the client ends the backend side, and RST from the backend ends the client side.
    let (client, mut server) = handed_pair(&mut backend, puerta.listen).await?;
    reset(client)?;
    ends_within(&mut server, second).await?;
    let (mut client, server) = handed_pair(&mut backend, puerta.listen).await?;
    reset(server)?;
    ends_within(&mut client, second).await?;
    let log = tokio::task::block_in_place(|| stop(puerta))?;
    assert_spliced_and_clean(&log);
    Ok(())
}

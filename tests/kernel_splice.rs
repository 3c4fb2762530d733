//! The kernel splice as a library, in-process: a minimal proxy (accept, connect, `KernelPath::splice`)
//! in front of an echo server. Needs root (CAP_BPF + CAP_NET_ADMIN) and a kernel with sockmap, as in CI.

use std::net::SocketAddr;
use std::time::Duration;

use puerta::mongodb::datapath::kernel::KernelPath;
use puerta_tests::stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Rig {
    kernel: KernelPath,
    proxy: SocketAddr,
    _pins: tempfile::TempDir,
}

async fn echo_server() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let mut sock = puerta_tests::accept::next(&listener).await;
            tokio::spawn(async move {
                let (mut r, mut w) = sock.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    Ok(addr)
}

async fn rig(backend: SocketAddr) -> anyhow::Result<Rig> {
    let pins = tempfile::Builder::new()
        .prefix("puerta-test-")
        .tempdir_in("/sys/fs/bpf")?;
    let kernel = KernelPath::load(pins.path())?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let proxy = listener.local_addr()?;
    let k = kernel.clone();
    tokio::spawn(async move {
        loop {
            let client = puerta_tests::accept::next(&listener).await;
            let k = k.clone();
            tokio::spawn(async move {
                let Ok(upstream) = TcpStream::connect(backend).await else {
                    return;
                };
                if let Err(e) = k.splice(client, upstream, 0, None).await {
                    eprintln!("splice: {e}");
                }
            });
        }
    });
    Ok(Rig {
        kernel,
        proxy,
        _pins: pins,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_through_kernel_is_identical_and_counted() -> anyhow::Result<()> {
    let rig = rig(echo_server().await?).await?;
    let len = 64 << 20;
    let sock = TcpStream::connect(rig.proxy).await?;
    let (sent, got) = stream::echo_roundtrip(sock, len, 7).await?;
    assert_eq!(sent, got, "echoed bytes differ");
    let c = rig.kernel.counters()?;
    assert_eq!(c.redirected_client_to_backend.bytes, len);
    assert_eq!(c.redirected_backend_to_client.bytes, len);
    wait_until(|| rig.kernel.map_entries().0 == 0).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_delivers_everything_then_eof() -> anyhow::Result<()> {
    let rig = rig(echo_server().await?).await?;
    for round in 0..20u64 {
        let mut sock = TcpStream::connect(rig.proxy).await?;
        let payload = vec![round as u8; 300_000 + round as usize * 1000];
        sock.write_all(&payload).await?;
        sock.shutdown().await?;
        let mut back = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut back)).await??;
        assert_eq!(back.len(), payload.len(), "round {round}");
        assert_eq!(back, payload);
    }
    wait_until(|| rig.kernel.map_entries() == (0, 0, 0)).await?;
    Ok(())
}

async fn wait_until(mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    for _ in 0..500 {
        if cond() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("condition not reached in 5 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bpftool_shows_affinity_with_field_names() -> anyhow::Result<()> {
    let rig = rig(echo_server().await?).await?;
    let value = puerta_common_value(2);
    rig.kernel
        .upsert_affinity("127.0.0.1".parse()?, value)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let pin = rig._pins.path().join("affinity");
    let out = std::process::Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(&pin)
        .output()?;
    anyhow::ensure!(out.status.success(), "bpftool: {out:?}");
    let dump: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let entry = &dump[0]["formatted"];
    assert_eq!(entry["key"]["family"], 2, "{dump}");
    let addr: Vec<u64> = (0..4)
        .filter_map(|i| entry["key"]["addr"][i].as_u64())
        .collect();
    assert_eq!(addr, [127, 0, 0, 1], "{dump}");
    assert_eq!(entry["value"]["backend"], 2, "{dump}");
    assert_eq!(entry["value"]["conn_count"], 1, "{dump}");
    rig.kernel.remove_affinity("127.0.0.1".parse()?);
    assert_eq!(rig.kernel.map_entries().2, 0);
    Ok(())
}

fn puerta_common_value(backend: u32) -> puerta::mongodb::datapath::kernel::AffinityValue {
    puerta::mongodb::datapath::kernel::AffinityValue {
        backend,
        conn_count: 1,
        last_seen_ns: puerta::mongodb::datapath::kernel::monotonic_ns(),
    }
}

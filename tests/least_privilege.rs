//! The capability set in `contrib/puerta.service` is enough: Puerta running as `nobody` with only
//! CAP_BPF and CAP_NET_ADMIN loads the kernel path (`forwarding = "kernel"`) and splices a flow, whose
//! bytes show up in the BPF counters on `/metrics`, with nothing copied in userspace.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use puerta_tests::http::{parse_metrics, sample, wait_for};
use puerta_tests::mongo::{puerta_config, Echo, EchoBackend};
use puerta_tests::{free_port, loopback, puerta_bin, wait_for_port, ChildGuard};

const WAIT: Duration = Duration::from_secs(30);
const CAPS: &str = "+bpf,+net_admin";
/// CAP_NET_ADMIN (12) and CAP_BPF (39), as /proc/<pid>/status prints CapEff.
const CAP_EFF: &str = "0000008000001000";

/// Removes the pin directory even when the test fails (the process is SIGKILLed by ChildGuard).
struct PinDir(std::path::PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn kernel_path_runs_as_nobody_with_bpf_and_net_admin_only() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to switch to nobody with chosen capabilities");
        return Ok(());
    }
    let echo = EchoBackend::start(Echo::Stream)?;
    let listen = loopback(free_port());
    let admin = loopback(free_port());
    let pins = PinDir(format!("/sys/fs/bpf/puerta-least-privilege-{}", listen.port()).into());
    let extra = format!(
        "forwarding = \"kernel\"\nbpf_pin_dir = \"{}\"",
        pins.0.display()
    );
    let config = format!(
        "admin_addr = \"{admin}\"\n{}",
        puerta_config(listen, 100, &[echo.address()], &extra)
    );
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let config_path = dir.path().join("puerta.toml");
    std::fs::write(&config_path, config)?;
    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o644))?;

    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(format!("--inh-caps=-all,{CAPS}"))
        .arg(format!("--ambient-caps=-all,{CAPS}"))
        .arg(format!("--bounding-set=-all,{CAPS}"))
        .arg(puerta_bin())
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "info");
    let puerta = ChildGuard::spawn("puerta-nobody", cmd)?;
    if let Err(e) = wait_for_port(listen, WAIT) {
        anyhow::bail!("{e}; output:\n{}", puerta.output());
    }
    puerta.wait_for_output("forwarding in the kernel", WAIT)?;

    let status = std::fs::read_to_string(format!("/proc/{}/status", puerta.pid()))?;
    assert!(status.contains("Uid:\t65534"), "{status}");
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:\t"))
        .unwrap_or_default();
    assert_eq!(cap_eff, CAP_EFF, "{status}");

    let mut client = TcpStream::connect(listen)?;
    client.set_read_timeout(Some(WAIT))?;
    let payload = vec![0x5a_u8; 100_000];
    client.write_all(&payload)?;
    let mut back = vec![0u8; payload.len()];
    client.read_exact(&mut back)?;
    assert!(back == payload, "echo mismatch");

    let text = wait_for(admin, "/metrics", WAIT, |_, body| {
        body.contains("path=\"kernel\"")
    })?;
    let samples = parse_metrics(&text)?;
    let bytes = |path: &str, direction: &str| {
        let (p, d) = (
            format!("path=\"{path}\""),
            format!("direction=\"{direction}\""),
        );
        sample(&samples, "puerta_bytes_total", &[&p, &d]).unwrap_or(0.0)
    };
    assert_eq!(bytes("kernel", "client_to_backend"), 100_000.0, "{text}");
    assert_eq!(bytes("kernel", "backend_to_client"), 100_000.0, "{text}");
    assert_eq!(bytes("userspace", "client_to_backend"), 0.0, "{text}");
    Ok(())
}

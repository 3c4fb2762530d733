//! Both legs against each other on loopback, with certificates from the test kit's CA.

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::client::Connector;
use super::server::Acceptor;
use super::Stream;
use crate::config::{BackendTls, ListenerTls, TlsVersion};
use testkit::tls::{Issued, Pki};

fn listener_tls(server: &Issued, client_ca: Option<&Path>) -> ListenerTls {
    ListenerTls {
        listen_addr: None,
        cert_file: server.cert.clone(),
        key_file: server.key.clone(),
        client_ca_file: client_ca.map(Path::to_path_buf),
        protocols: vec![TlsVersion::V1_2, TlsVersion::V1_3],
    }
}

fn backend_tls(ca: &Path, client: Option<&Issued>) -> BackendTls {
    BackendTls {
        ca_file: Some(ca.to_path_buf()),
        cert_file: client.map(|c| c.cert.clone()),
        key_file: client.map(|c| c.key.clone()),
        server_name: None,
        insecure_skip_verify: false,
    }
}

/// Connects `connector` to a one-shot echo server behind `acceptor`: `Ok` once a line made the
/// round trip through the split halves, else the client's or the server's error.
async fn echo(acceptor: &Acceptor, connector: &Connector) -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = async {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let (mut read, mut write) = acceptor.accept(tcp).await?.into_split();
        let mut buf = [0u8; 5];
        read.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        write.write_all(&buf).await.map_err(|e| e.to_string())?;
        write.flush().await.map_err(|e| e.to_string())
    };
    let client = async {
        let tcp = TcpStream::connect(&addr).await.map_err(|e| e.to_string())?;
        let mut tls: Stream = connector.connect(&addr, tcp).await?;
        tls.write_all(b"hello").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let mut back = [0u8; 5];
        tls.read_exact(&mut back).await.map_err(|e| e.to_string())?;
        assert_eq!(&back, b"hello");
        Ok::<_, String>(())
    };
    let (server, client) = tokio::join!(server, client);
    client.and(server)
}

#[tokio::test]
async fn a_node_is_verified_by_the_ip_it_is_reached_at() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "nodes").unwrap();
    let node = pki.issue("node").unwrap();
    let acceptor = Acceptor::load(&listener_tls(&node, None)).unwrap();
    let connector = Connector::load(&backend_tls(&pki.ca_file(), None)).unwrap();
    echo(&acceptor, &connector).await.unwrap();

    let other = Pki::new(dir.path(), "other").unwrap();
    let stranger = Connector::load(&backend_tls(&other.ca_file(), None)).unwrap();
    let err = echo(&acceptor, &stranger).await.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");

    let mut named = backend_tls(&pki.ca_file(), None);
    named.server_name = Some("not-on-the-certificate.example".into());
    let err = echo(&acceptor, &Connector::load(&named).unwrap())
        .await
        .unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");
    named.server_name = Some("localhost".into());
    echo(&acceptor, &Connector::load(&named).unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate_from_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mtls").unwrap();
    let (server, client) = (pki.issue("server").unwrap(), pki.issue("client").unwrap());
    let acceptor = Acceptor::load(&listener_tls(&server, Some(&pki.ca_file()))).unwrap();
    let anonymous = Connector::load(&backend_tls(&pki.ca_file(), None)).unwrap();
    assert!(echo(&acceptor, &anonymous).await.is_err());
    let outsider = Pki::new(dir.path(), "outsider")
        .unwrap()
        .issue("x")
        .unwrap();
    let foreign = Connector::load(&backend_tls(&pki.ca_file(), Some(&outsider))).unwrap();
    assert!(echo(&acceptor, &foreign).await.is_err());
    let known = Connector::load(&backend_tls(&pki.ca_file(), Some(&client))).unwrap();
    echo(&acceptor, &known).await.unwrap();
}

#[tokio::test]
async fn a_reload_with_a_bad_file_keeps_what_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "reload").unwrap();
    let server = pki.issue("server").unwrap();
    let settings = listener_tls(&server, None);
    let acceptor = Acceptor::load(&settings).unwrap();
    let connector = Connector::load(&backend_tls(&pki.ca_file(), None)).unwrap();

    std::fs::write(&server.key, "not a key").unwrap();
    let err = acceptor.reload(&settings).unwrap_err().to_string();
    assert!(
        err.contains("server.key") && err.contains("no PRIVATE KEY"),
        "{err}"
    );
    let mut missing = backend_tls(&pki.ca_file(), None);
    missing.ca_file = Some(dir.path().join("missing.pem"));
    let err = connector.reload(&missing).unwrap_err().to_string();
    assert!(err.contains("missing.pem: cannot read"), "{err}");
    echo(&acceptor, &connector).await.unwrap();

    // A certificate from another CA, re-read: new handshakes use it.
    let other = Pki::new(dir.path(), "next")
        .unwrap()
        .issue("server2")
        .unwrap();
    acceptor.reload(&listener_tls(&other, None)).unwrap();
    let err = echo(&acceptor, &connector).await.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[test]
fn files_that_are_not_what_they_should_be_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "files").unwrap();
    let server = pki.issue("server").unwrap();
    let swapped = ListenerTls {
        cert_file: server.key.clone(),
        ..listener_tls(&server, None)
    };
    let err = Acceptor::load(&swapped).unwrap_err().to_string();
    assert!(err.contains("server.key: no CERTIFICATE"), "{err}");
    let other_key = pki.issue("other").unwrap().key;
    let mismatched = ListenerTls {
        key_file: other_key,
        ..listener_tls(&server, None)
    };
    let err = Acceptor::load(&mismatched).unwrap_err().to_string();
    assert!(err.contains("server.pem with"), "{err}");
}

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use super::*;
use crate::mongodb::health::bson::{encode, Value};

/// Answers from a per-port switch the test flips.
#[derive(Default)]
struct Scripted(Mutex<HashMap<u16, Answer>>);

#[derive(Clone, Copy, PartialEq)]
enum Answer {
    Ok,
    Fail,
    Hang,
}

impl HealthCheck for Scripted {
    async fn check(&self, endpoint: &Endpoint) -> Result<HelloReply, CheckError> {
        let answer = self.0.lock().unwrap().get(&endpoint.port).copied();
        match answer {
            Some(Answer::Ok) => Ok(HelloReply { is_mongos: true }),
            Some(Answer::Hang) => std::future::pending().await,
            _ => Err(CheckError::Connect(
                std::io::ErrorKind::ConnectionRefused.into(),
            )),
        }
    }
}

fn endpoints(ports: &[u16]) -> Vec<Endpoint> {
    ports
        .iter()
        .map(|p| Endpoint::parse(&format!("127.0.0.1:{p}")).unwrap())
        .collect()
}

const SETTINGS: HealthSettings = HealthSettings {
    interval: Duration::from_secs(1),
    timeout: Duration::from_secs(1),
    fall: 3,
    rise: 2,
};

#[tokio::test]
async fn checker_applies_fall_and_rise() {
    let backends = Arc::new(Backends::new(&endpoints(&[1, 2]), false));
    let script = Scripted::default();
    script
        .0
        .lock()
        .unwrap()
        .extend([(1, Answer::Ok), (2, Answer::Fail)]);
    let mut checker = Checker::new(backends.clone(), script, SETTINGS);
    checker.round().await;
    assert!(backends.is_up(0));
    assert!(!backends.is_up(1));

    checker
        .prober
        .check
        .0
        .lock()
        .unwrap()
        .extend([(1, Answer::Fail), (2, Answer::Ok)]);
    checker.round().await;
    checker.round().await;
    assert!(backends.is_up(0), "two failures are below fall = 3");
    assert!(backends.is_up(1), "two successes reach rise = 2");
    checker.round().await;
    assert!(!backends.is_up(0));
}

#[tokio::test]
async fn a_hanging_backend_does_not_delay_noticing_a_dead_one() {
    let backends = Arc::new(Backends::new(&endpoints(&[1, 2]), false));
    let script = Scripted::default();
    script
        .0
        .lock()
        .unwrap()
        .extend([(1, Answer::Ok), (2, Answer::Ok)]);
    let settings = HealthSettings {
        interval: Duration::from_millis(50),
        timeout: Duration::from_secs(600),
        fall: 2,
        rise: 2,
    };
    let mut checker = Checker::new(backends.clone(), script, settings);
    checker.round().await;
    checker
        .prober
        .check
        .0
        .lock()
        .unwrap()
        .extend([(1, Answer::Hang), (2, Answer::Fail)]);
    let stop = CancellationToken::new();
    let task = tokio::spawn(checker.run(stop.clone()));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while backends.is_up(1) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !backends.is_up(1),
        "backend 2 noticed while backend 1 hangs"
    );
    assert!(backends.is_up(0), "the hanging one has not timed out yet");
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn hanging_backend_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts and then says nothing.
    let _server = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (s, _) = listener.accept().await.unwrap();
            held.push(s);
        }
    });
    let backends = Arc::new(Backends::new(&endpoints(&[port]), true));
    let settings = HealthSettings {
        timeout: Duration::from_millis(200),
        ..SETTINGS
    };
    let mut checker = Checker::new(backends.clone(), HelloCheck::default(), settings);
    checker.round().await;
    assert!(!backends.is_up(0));
}

#[tokio::test]
async fn hello_check_against_a_fake_mongos() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut req = vec![0u8; 52];
        s.read_exact(&mut req).await.unwrap();
        let id = i32::from_le_bytes([req[4], req[5], req[6], req[7]]);
        let body = encode(&[("ok", Value::Double(1.0))]);
        let len = (21 + body.len()) as i32;
        let mut msg = Vec::new();
        for v in [len, 1, id, 2013, 0] {
            msg.extend_from_slice(&v.to_le_bytes());
        }
        msg.push(0);
        msg.extend_from_slice(&body);
        s.write_all(&msg).await.unwrap();
    });
    let ep = &endpoints(&[port])[0];
    let reply = HelloCheck::default().check(ep).await.unwrap();
    assert!(!reply.is_mongos);
}

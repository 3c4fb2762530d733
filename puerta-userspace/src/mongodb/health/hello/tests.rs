use super::*;
use crate::mongodb::health::bson::{encode, Value};

fn reply(request_id: i32, flags: u32, body: &[u8]) -> Vec<u8> {
    let len = (HEADER_LEN + 5 + body.len()) as i32;
    let mut msg = Vec::new();
    for v in [len, 99, request_id, OP_MSG] {
        msg.extend_from_slice(&v.to_le_bytes());
    }
    msg.extend_from_slice(&flags.to_le_bytes());
    msg.push(0);
    msg.extend_from_slice(body);
    msg
}

#[test]
fn hello_request_bytes() {
    let msg = encode_hello(7);
    let mut expected = vec![
        52, 0, 0, 0, // messageLength
        7, 0, 0, 0, // requestID
        0, 0, 0, 0, // responseTo
        0xdd, 0x07, 0, 0, // opCode 2013
        0, 0, 0, 0, // flagBits
        0, // section kind 0
        31, 0, 0, 0, // document length
        0x10,
    ];
    expected.extend_from_slice(b"hello\0");
    expected.extend_from_slice(&[1, 0, 0, 0, 0x02]);
    expected.extend_from_slice(b"$db\0");
    expected.extend_from_slice(&[6, 0, 0, 0]);
    expected.extend_from_slice(b"admin\0");
    expected.push(0);
    assert_eq!(msg, expected);
}

#[test]
fn ok_reply_from_mongos_and_from_mongod() {
    let mongos = encode(&[
        ("isWritablePrimary", Value::Bool(true)),
        ("msg", Value::String("isdbgrid")),
        ("ok", Value::Double(1.0)),
    ]);
    assert_eq!(
        decode_hello_reply(&reply(7, 0, &mongos), 7).unwrap(),
        HelloReply { is_mongos: true }
    );
    for ok in [Value::Int32(1), Value::Int64(1), Value::Bool(true)] {
        let mongod = encode(&[("ok", ok)]);
        assert_eq!(
            decode_hello_reply(&reply(7, 0, &mongod), 7).unwrap(),
            HelloReply { is_mongos: false }
        );
    }
}

#[test]
fn not_ok_is_unhealthy() {
    let body = encode(&[
        ("ok", Value::Double(0.0)),
        ("errmsg", Value::String("shutting down")),
    ]);
    let err = decode_hello_reply(&reply(1, 0, &body), 1).unwrap_err();
    assert!(err.to_string().contains("shutting down"), "{err}");
    let body = encode(&[("isWritablePrimary", Value::Bool(true))]);
    assert!(matches!(
        decode_hello_reply(&reply(1, 0, &body), 1),
        Err(HelloError::NoOk)
    ));
}

#[test]
fn checksum_flag_strips_trailer() {
    let body = encode(&[("ok", Value::Double(1.0))]);
    let mut msg = reply(3, 1, &body);
    msg.extend_from_slice(&[1, 2, 3, 4]);
    let len = msg.len() as i32;
    msg[..4].copy_from_slice(&len.to_le_bytes());
    assert!(decode_hello_reply(&msg, 3).is_ok());
}

#[test]
fn malformed_replies_are_errors() {
    let body = encode(&[("ok", Value::Double(1.0))]);
    let good = reply(5, 0, &body);
    assert!(decode_hello_reply(&good, 5).is_ok());
    assert!(matches!(
        decode_hello_reply(&good, 6),
        Err(HelloError::ResponseTo { .. })
    ));
    let mut bad_op = good.clone();
    bad_op[12] = 1;
    assert!(matches!(
        decode_hello_reply(&bad_op, 5),
        Err(HelloError::Opcode(_))
    ));
    let mut more = good.clone();
    more[16] = 2;
    assert!(matches!(
        decode_hello_reply(&more, 5),
        Err(HelloError::Flags(_))
    ));
    let mut kind = good.clone();
    kind[20] = 9;
    assert!(decode_hello_reply(&kind, 5).is_err());
    // Every truncation, with the header length adjusted or not, is an error and never a panic.
    for cut in 0..good.len() {
        let mut short = good[..cut].to_vec();
        assert!(decode_hello_reply(&short, 5).is_err(), "cut {cut}");
        if cut >= 4 {
            short[..4].copy_from_slice(&(cut as i32).to_le_bytes());
            assert!(
                decode_hello_reply(&short, 5).is_err(),
                "cut {cut} relabelled"
            );
        }
    }
    // A section that claims more than is there.
    let mut long = good.clone();
    long[21] = 200;
    assert!(decode_hello_reply(&long, 5).is_err());
}

#[tokio::test]
async fn exchange_over_a_stream() {
    let (mut client, mut server) = tokio::io::duplex(4096);
    let serve = tokio::spawn(async move {
        let mut req = vec![0u8; 52];
        server.read_exact(&mut req).await.unwrap();
        let id = i32::from_le_bytes([req[4], req[5], req[6], req[7]]);
        let body = encode(&[
            ("msg", Value::String("isdbgrid")),
            ("ok", Value::Double(1.0)),
        ]);
        server.write_all(&reply(id, 0, &body)).await.unwrap();
    });
    let got = exchange(&mut client, 42).await.unwrap();
    assert!(got.is_mongos);
    serve.await.unwrap();
}

#[tokio::test]
async fn exchange_refuses_absurd_lengths() {
    let (mut client, mut server) = tokio::io::duplex(4096);
    tokio::spawn(async move {
        let mut req = vec![0u8; 52];
        server.read_exact(&mut req).await.unwrap();
        let mut header = vec![0u8; 16];
        header[..4].copy_from_slice(&i32::MAX.to_le_bytes());
        server.write_all(&header).await.unwrap();
        // Keep the stream open: the error must come from the length, not from EOF.
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    });
    assert!(matches!(
        exchange(&mut client, 1).await,
        Err(HelloError::Length(_))
    ));
}

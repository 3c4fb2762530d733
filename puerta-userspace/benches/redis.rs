//! Micro benchmarks of the Redis hot path: a GET from bytes to route, RESP parsing and encoding, key
//! slots, command lookup.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use puerta::redis::command::slots::key_slot;
use puerta::redis::command::spec::{key_indices, lookup};
use puerta::redis::command::Command;
use puerta::redis::resp::{encode_command, parse_command, parse_reply, Decoder, Frame, Limits};

fn command(args: &[&[u8]]) -> Vec<u8> {
    let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
    let mut out = BytesMut::new();
    encode_command(&args, &mut out);
    out.to_vec()
}

/// A buffer holding `wire` as a connection's read buffer does after its first frame: already split
/// once, so splitting frames off it no longer pays the one-time promotion to a shared buffer.
fn read_buffer(wire: &[u8]) -> BytesMut {
    let mut buf = BytesMut::with_capacity(wire.len() + 1);
    buf.extend_from_slice(b"+");
    buf.extend_from_slice(wire);
    drop(buf.split_to(1));
    buf
}

/// Parses every command in `wire` from a fresh buffer each iteration.
fn bench_parse(c: &mut Criterion, name: &str, wire: &[u8], commands: u64) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("resp_parse");
    group.throughput(Throughput::Elements(commands));
    group.bench_function(name, |b| {
        b.iter_batched_ref(
            || read_buffer(wire),
            |buf| {
                while let Some(frame) = parse_command(buf, &limits).expect("valid") {
                    black_box(frame);
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn parse_benches(c: &mut Criterion) {
    bench_parse(c, "get", &command(&[b"GET", b"user:1000"]), 1);
    bench_parse(
        c,
        "set_32b",
        &command(&[b"SET", b"user:1000", &[b'x'; 32]]),
        1,
    );
    let mget: Vec<Vec<u8>> = (0..10).map(|i| format!("key:{i}").into_bytes()).collect();
    let mut mget_args: Vec<&[u8]> = vec![b"MGET"];
    mget_args.extend(mget.iter().map(|k| k.as_slice()));
    bench_parse(c, "mget_10", &command(&mget_args), 1);
    let pipeline: Vec<u8> = (0..16)
        .flat_map(|i| {
            let key = format!("key:{i}");
            if i % 2 == 0 {
                command(&[b"GET", key.as_bytes()])
            } else {
                command(&[b"SET", key.as_bytes(), &[b'v'; 32]])
            }
        })
        .collect();
    bench_parse(c, "pipeline_16", &pipeline, 16);
    bench_parse(c, "inline_ping", b"PING\r\n", 1);

    let limits = Limits::default();
    let reply = {
        let mut out = BytesMut::new();
        Frame::Array((0..10).map(|_| Frame::bulk(vec![b'v'; 32])).collect()).encode(&mut out);
        out.to_vec()
    };
    c.bench_function("resp_parse_reply/array_10x32b", |b| {
        b.iter_batched_ref(
            || read_buffer(&reply),
            |buf| black_box(parse_reply(buf, &limits).expect("valid")),
            BatchSize::SmallInput,
        )
    });
}

fn encode_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("resp_encode");
    let replies = [
        ("ok", Frame::ok()),
        ("bulk_32b", Frame::bulk(vec![b'v'; 32])),
        ("integer", Frame::Integer(123_456)),
        (
            "array_10x32b",
            Frame::Array((0..10).map(|_| Frame::bulk(vec![b'v'; 32])).collect()),
        ),
    ];
    let mut out = BytesMut::with_capacity(64 * 1024);
    for (name, frame) in &replies {
        group.bench_function(*name, |b| {
            b.iter(|| {
                out.clear();
                frame.encode(&mut out);
                black_box(out.len())
            })
        });
    }
    let args: Vec<Bytes> = vec![
        Bytes::from_static(b"SET"),
        Bytes::from_static(b"user:1000"),
        Bytes::from(vec![b'x'; 32]),
    ];
    group.bench_function("command_set_32b", |b| {
        b.iter(|| {
            out.clear();
            encode_command(black_box(&args), &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

fn slot_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("key_slot");
    group.bench_function("plain_16b", |b| {
        b.iter(|| key_slot(black_box(b"user:1000:profile")))
    });
    group.bench_function("hash_tag_16b", |b| {
        b.iter(|| key_slot(black_box(b"{user:1000}:prof")))
    });
    group.finish();
}

fn lookup_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("command");
    for name in ["GET", "set", "ZRANGEBYSCORE", "nosuchcmd"] {
        group.bench_function(format!("lookup_{name}"), |b| {
            b.iter(|| lookup(black_box(name.as_bytes())))
        });
    }
    let mset: Vec<Bytes> = ["MSET", "a", "1", "b", "2", "c", "3"]
        .iter()
        .map(|s| Bytes::from_static(s.as_bytes()))
        .collect();
    let spec = lookup(b"MSET").expect("known");
    group.bench_function("key_indices_mset_3", |b| {
        b.iter(|| key_indices(spec, black_box(&mset)))
    });
    group.finish();
}

/// What the proxy does with a GET before it goes on the wire: frame it, find its table entry and its
/// key's slot, and take its bytes for the node (no encoding: they pass through). With the parser a
/// client connection keeps, as the session does (its argument record is allocated once).
fn hot_path_benches(c: &mut Criterion) {
    let mut decoder = Decoder::new(Limits::default());
    let wire = command(&[b"GET", b"key:000000012345"]);
    c.bench_function("hot_path/parse_and_route_get", |b| {
        b.iter_batched_ref(
            || read_buffer(&wire),
            |buf| {
                let raw = decoder.command_args(buf).expect("valid").expect("complete");
                black_box(Command::from_raw(raw).into_route().expect("routable"))
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(
    benches,
    hot_path_benches,
    parse_benches,
    encode_benches,
    slot_benches,
    lookup_benches
);
criterion_main!(benches);

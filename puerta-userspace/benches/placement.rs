//! Micro benchmarks of MongoDB-mode placement: the work done once per new client connection before any
//! byte is forwarded (SWRR pick, affinity lookup of a known client, insert of a new one).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use puerta::mongodb::placement::affinity::{AffinityTable, NoMirror};
use puerta::mongodb::placement::balancer::Balancer;

fn swrr(c: &mut Criterion) {
    let mut group = c.benchmark_group("swrr_pick");
    let three = Balancer::new([5, 1, 1]);
    group.bench_function("3 backends 5/1/1", |b| {
        b.iter(|| black_box(three.pick(|_| true)))
    });
    let sixteen = Balancer::new((1..=16).map(|w| w % 4 + 1));
    group.bench_function("16 backends, 1 down", |b| {
        b.iter(|| black_box(sixteen.pick(|i| i != 3)))
    });
    group.finish();
}

fn client(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
}

fn affinity(c: &mut Criterion) {
    let mut group = c.benchmark_group("affinity");
    let table = AffinityTable::new(Duration::from_secs(300), Arc::new(NoMirror));
    let now = Instant::now();
    for n in 0..10_000 {
        table.acquire(client(n), now, |_| true, || Some((n % 3) as usize));
    }
    group.bench_function("lookup (10k entries)", |b| {
        let mut n = 0;
        b.iter(|| {
            n = (n + 7919) % 10_000;
            black_box(table.get(client(n)))
        })
    });
    group.bench_function("acquire+release, pinned client (10k entries)", |b| {
        let mut n = 0;
        b.iter(|| {
            n = (n + 7919) % 10_000;
            let placed = table.acquire(client(n), now, |_| true, || Some(0));
            table.release(client(n), now);
            black_box(placed)
        })
    });
    group.bench_function("acquire, new client", |b| {
        let mut n = 10_000;
        b.iter(|| {
            n += 1;
            black_box(table.acquire(client(n), now, |_| true, || Some(1)))
        })
    });
    group.finish();
}

criterion_group!(benches, swrr, affinity);
criterion_main!(benches);

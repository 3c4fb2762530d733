//! Which mongos a new client connection goes to: its pinned one (affinity) while healthy, otherwise the
//! one the placement picks among the healthy backends: the next by smooth weighted round-robin
//! (`affinity = "table"`), or the client IP's by rendezvous hashing (`"hash"`, the same choice on
//! every instance).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::rendezvous::Rendezvous;
use crate::config::Affinity;
use crate::mongodb::placement::affinity::{AffinityTable, Lease, Placement};
use crate::mongodb::placement::backends::Backends;
use crate::mongodb::placement::balancer::Balancer;

pub struct Router {
    backends: Arc<Backends>,
    placer: Placer,
    affinity: Option<Arc<AffinityTable>>,
}

/// How a client without a healthy pin is placed.
enum Placer {
    RoundRobin(Balancer),
    Hash(Rendezvous),
}

impl Placer {
    fn pick(&self, ip: IpAddr, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        match self {
            Placer::RoundRobin(balancer) => balancer.pick(eligible),
            Placer::Hash(rendezvous) => rendezvous.pick(ip, eligible),
        }
    }
}

/// The chosen backend, and the affinity lease that counts this connection while it lives.
pub struct Route {
    pub backend: usize,
    ip: IpAddr,
    lease: Option<Lease>,
}

impl Router {
    pub fn new(
        backends: Arc<Backends>,
        affinity: Option<Arc<AffinityTable>>,
        placement: Affinity,
    ) -> Router {
        let placer = match placement {
            Affinity::Table => Placer::RoundRobin(Balancer::new(backends.weights())),
            Affinity::Hash => Placer::Hash(Rendezvous::new(&backends)),
        };
        Router {
            backends,
            placer,
            affinity,
        }
    }

    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// The backend for a new connection from `ip`; `None` if no backend is healthy.
    pub fn route(&self, ip: IpAddr) -> Option<Route> {
        let is_up = |i| self.backends.is_up(i);
        let Some(table) = &self.affinity else {
            let backend = self.placer.pick(ip, is_up)?;
            return Some(Route {
                backend,
                ip,
                lease: None,
            });
        };
        let (backend, placement) =
            table.acquire(ip, Instant::now(), is_up, || self.placer.pick(ip, is_up))?;
        match placement {
            Placement::Moved { from } => tracing::info!(
                client = %ip,
                "client {ip} re-placed: mongos {} is down, now pinned to {}",
                self.backends.endpoint(from),
                self.backends.endpoint(backend)
            ),
            Placement::New => tracing::debug!(
                client = %ip,
                "client {ip} pinned to mongos {}",
                self.backends.endpoint(backend)
            ),
            Placement::Pinned => {}
        }
        Some(Route {
            backend,
            ip,
            lease: Some(Lease::new(table.clone(), ip)),
        })
    }

    /// After `route.backend` failed to connect: another healthy backend not in `tried`, re-pinning the
    /// client there. False if none is left.
    pub fn reroute(&self, route: &mut Route, tried: &[usize]) -> bool {
        let Some(next) = self
            .placer
            .pick(route.ip, |i| self.backends.is_up(i) && !tried.contains(&i))
        else {
            return false;
        };
        route.backend = next;
        if let Some(lease) = &route.lease {
            if let Some(from) = lease.table().repin(lease.ip(), next, Instant::now()) {
                tracing::info!(
                    client = %lease.ip(),
                    "client {} re-placed: mongos {} refused the connection, now pinned to {}",
                    lease.ip(),
                    self.backends.endpoint(from),
                    self.backends.endpoint(next)
                );
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;
    use crate::config::Endpoint;
    use crate::mongodb::placement::affinity::NoMirror;

    fn router(affinity: bool) -> Router {
        router_placing(affinity, Affinity::Table)
    }

    fn router_placing(affinity: bool, placement: Affinity) -> Router {
        let eps: Vec<_> = (1..=3)
            .map(|p| Endpoint::parse(&format!("127.0.0.1:{p}")).unwrap())
            .collect();
        let backends = Arc::new(Backends::new(&eps, true));
        let table = affinity.then(|| {
            Arc::new(AffinityTable::new(
                Duration::from_secs(60),
                Arc::new(NoMirror),
            ))
        });
        Router::new(backends, table, placement)
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
    }

    #[test]
    fn without_affinity_every_connection_is_balanced() {
        let r = router(false);
        let picks: Vec<_> = (0..3).map(|_| r.route(ip(1)).unwrap().backend).collect();
        assert_eq!(picks, vec![0, 1, 2]);
    }

    #[test]
    fn with_affinity_one_ip_sticks_and_moves_when_down() {
        let r = router(true);
        let first = r.route(ip(1)).unwrap();
        let again = r.route(ip(1)).unwrap();
        assert_eq!(first.backend, again.backend);
        assert_ne!(r.route(ip(2)).unwrap().backend, first.backend);
        r.backends.set_up(first.backend, false);
        let moved = r.route(ip(1)).unwrap();
        assert_ne!(moved.backend, first.backend);
    }

    #[test]
    fn reroute_skips_tried_backends_and_repins() {
        let r = router(true);
        let mut route = r.route(ip(1)).unwrap();
        let first = route.backend;
        assert!(r.reroute(&mut route, &[first]));
        let second = route.backend;
        assert_ne!(second, first);
        assert_eq!(r.route(ip(1)).unwrap().backend, second);
        assert!(r.reroute(&mut route, &[0, 1]));
        assert_eq!(route.backend, 2);
        assert!(!r.reroute(&mut route, &[0, 1, 2]));
    }

    #[test]
    fn nothing_healthy_routes_nowhere() {
        let r = router(true);
        for i in 0..3 {
            r.backends.set_up(i, false);
        }
        assert!(r.route(ip(1)).is_none());
    }

    #[test]
    fn hash_placement_agrees_across_routers_and_moves_only_the_dead_backends_clients() {
        let a = router_placing(true, Affinity::Hash);
        let b = router_placing(false, Affinity::Hash);
        let placed: Vec<usize> = (1..=30).map(|n| a.route(ip(n)).unwrap().backend).collect();
        for (n, p) in (1..=30).zip(&placed) {
            assert_eq!(
                b.route(ip(n)).unwrap().backend,
                *p,
                "instances disagree on {n}"
            );
        }
        assert!((0..3).all(|i| placed.contains(&i)), "{placed:?}");
        let victim = placed[0];
        a.backends.set_up(victim, false);
        b.backends.set_up(victim, false);
        for (n, p) in (1..=30).zip(&placed) {
            let (on_a, on_b) = (
                a.route(ip(n)).unwrap().backend,
                b.route(ip(n)).unwrap().backend,
            );
            assert_eq!(on_a, on_b, "instances disagree on {n} after the kill");
            match *p == victim {
                true => assert_ne!(on_a, victim),
                false => assert_eq!(on_a, *p),
            }
        }
        // A connect failure falls back the same way on both.
        let mut on_a = a.route(ip(2)).unwrap();
        let mut on_b = b.route(ip(2)).unwrap();
        let tried = [on_a.backend];
        assert!(a.reroute(&mut on_a, &tried) && b.reroute(&mut on_b, &tried));
        assert_eq!(on_a.backend, on_b.backend);
    }
}

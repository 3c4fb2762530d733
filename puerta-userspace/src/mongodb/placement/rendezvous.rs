//! Weighted rendezvous hashing (highest random weight) of the client IP over the mongos: every
//! Puerta instance with the same backend list and the same health view sends a client to the same
//! mongos without talking to the others, so a client whose connections are spread over instances
//! (an L4 balancer, DNS, ECMP in front of them) keeps its cursors and sessions on one router.
//!
//! Each backend scores `weight / -ln(u)`, `u` a uniform hash of (client, backend address) in (0, 1);
//! the highest healthy score wins. A backend going down moves only its own clients (each to its
//! next-highest score, the same on every instance), and one coming back takes back only those.
//! Backends are keyed by address, not position, so reordering the list moves nobody.
//!
//! The hash is written out here (FNV-1a, then the splitmix64 finalizer) rather than taken from
//! `std`, whose algorithm may change between Rust releases: instances built apart must agree.

use std::net::IpAddr;

use crate::mongodb::placement::backends::Backends;

pub struct Rendezvous {
    /// Per backend, in index order: the hash of its address and its weight.
    backends: Vec<(u64, f64)>,
}

impl Rendezvous {
    pub fn new(backends: &Backends) -> Rendezvous {
        let backends = backends
            .endpoints()
            .map(|e| (fnv1a(e.address().as_bytes()), f64::from(e.weight.max(1))))
            .collect();
        Rendezvous { backends }
    }

    /// The eligible backend with the highest score for `ip`; `None` if none is eligible.
    pub fn pick(&self, ip: IpAddr, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let client = fnv1a(&ip_bytes(ip));
        let mut best: Option<(usize, f64)> = None;
        for (i, &(key, weight)) in self.backends.iter().enumerate() {
            if !eligible(i) {
                continue;
            }
            let score = weight / -unit(mix(client ^ mix(key))).ln();
            if best.is_none_or(|(_, top)| score > top) {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| i)
    }
}

/// IPv4 and IPv4-mapped IPv6 hash alike: one client is one client however its address is shown.
fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v6.octets().to_vec(),
        },
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// splitmix64's finalizer: every input bit reaches every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The top 53 bits as a float strictly inside (0, 1), so `ln` is finite and negative.
fn unit(h: u64) -> f64 {
    ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Endpoint;
    use std::net::Ipv4Addr;

    fn backends(list: &[(&str, u32)]) -> Backends {
        let eps: Vec<Endpoint> = list
            .iter()
            .map(|(addr, w)| {
                let mut e = Endpoint::parse(addr).unwrap();
                e.weight = *w;
                e
            })
            .collect();
        Backends::new(&eps, true)
    }

    fn clients(n: u32) -> Vec<IpAddr> {
        (0..n)
            .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
            .collect()
    }

    const THREE: [(&str, u32); 3] = [
        ("10.0.0.1:27017", 1),
        ("10.0.0.2:27017", 1),
        ("10.0.0.3:27017", 1),
    ];

    #[test]
    fn the_same_list_gives_the_same_choice_and_known_answers_do_not_drift() {
        let a = Rendezvous::new(&backends(&THREE));
        let b = Rendezvous::new(&backends(&THREE));
        for ip in clients(1000) {
            assert_eq!(a.pick(ip, |_| true), b.pick(ip, |_| true));
        }
        // Instances built by other releases must agree: the hash is fixed, so are these answers.
        let picks: Vec<usize> = clients(8)
            .into_iter()
            .filter_map(|ip| a.pick(ip, |_| true))
            .collect();
        assert_eq!(picks, KNOWN_PICKS);
    }

    /// What `clients(8)` get over `THREE`, recorded once.
    const KNOWN_PICKS: [usize; 8] = [2, 1, 1, 0, 1, 2, 2, 2];

    #[test]
    fn a_backend_down_moves_only_its_own_clients_and_the_list_order_does_not_matter() {
        let r = Rendezvous::new(&backends(&THREE));
        let before: Vec<usize> = clients(3000)
            .into_iter()
            .map(|ip| r.pick(ip, |_| true).unwrap())
            .collect();
        for b in 0..3 {
            let share = before.iter().filter(|&&x| x == b).count();
            assert!(
                (800..1200).contains(&share),
                "backend {b} got {share} of 3000"
            );
        }
        for (ip, was) in clients(3000).into_iter().zip(&before) {
            let now = r.pick(ip, |i| i != 1).unwrap();
            match was {
                1 => assert_ne!(now, 1),
                _ => assert_eq!(now, *was, "{ip} moved though its backend is up"),
            }
        }
        let reversed: Vec<(&str, u32)> = THREE.iter().rev().copied().collect();
        let r2 = Rendezvous::new(&backends(&reversed));
        for (ip, was) in clients(3000).into_iter().zip(&before) {
            assert_eq!(r2.pick(ip, |_| true), Some(2 - was));
        }
    }

    #[test]
    fn weights_set_the_shares_and_nothing_eligible_gives_none() {
        let r = Rendezvous::new(&backends(&[("10.0.0.1:1", 3), ("10.0.0.2:1", 1)]));
        let heavy = clients(4000)
            .into_iter()
            .filter(|ip| r.pick(*ip, |_| true) == Some(0))
            .count();
        assert!(
            (2800..3200).contains(&heavy),
            "{heavy} of 4000 on weight 3 of 4"
        );
        assert_eq!(r.pick(clients(1)[0], |_| false), None);
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        let plain: IpAddr = "10.0.0.7".parse().unwrap();
        assert_eq!(r.pick(mapped, |_| true), r.pick(plain, |_| true));
    }
}

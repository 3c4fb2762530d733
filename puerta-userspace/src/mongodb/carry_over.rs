//! MongoDB mode's state across a hand-over (see `handover`): the affinity pins, so that a client's
//! next connections reach the mongos that holds its cursors and sessions, whichever process accepts
//! them. One line per pin, `<client ip> <backend address>`: addresses, not indexes, since the new
//! configuration may list the backends in another order (a pin to a backend it no longer lists is
//! dropped, as on reload).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::reload::Live;
use crate::handover::CarryOver;

pub fn affinity(live: &Arc<Live>) -> CarryOver {
    let (from, into) = (live.clone(), live.clone());
    CarryOver {
        snapshot: Arc::new(move || snapshot(&from)),
        merge: Box::new(move |lines| {
            let added = merge(&into, &lines);
            tracing::info!(added, carried = lines.len(), "affinity pins carried over");
        }),
    }
}

fn snapshot(live: &Live) -> Vec<String> {
    let Some(table) = live.affinity() else {
        return Vec::new();
    };
    let ctx = live.current();
    let backends = ctx.router.backends();
    table
        .snapshot()
        .into_iter()
        .filter(|(_, e)| e.backend < backends.len())
        .map(|(ip, e)| format!("{ip} {}", backends.endpoint(e.backend).address()))
        .collect()
}

/// How many pins were added.
fn merge(live: &Live, lines: &[String]) -> usize {
    let Some(table) = live.affinity() else {
        return 0;
    };
    let ctx = live.current();
    let backends = ctx.router.backends();
    let now = Instant::now();
    lines
        .iter()
        .filter_map(|line| parse(line))
        .filter_map(|(ip, address)| Some((ip, backends.position(address)?)))
        .filter(|(ip, backend)| table.seed(*ip, *backend, now))
        .count()
}

fn parse(line: &str) -> Option<(IpAddr, &str)> {
    let (ip, address) = line.split_once(' ')?;
    Some((ip.parse().ok()?, address))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn a_pin_is_an_ip_and_an_address() {
        let ip = "10.0.0.7".parse().unwrap();
        assert_eq!(
            parse("10.0.0.7 mongos-a:27017"),
            Some((ip, "mongos-a:27017"))
        );
        let v6 = "::1".parse().unwrap();
        assert_eq!(parse("::1 [::1]:27017"), Some((v6, "[::1]:27017")));
        assert_eq!(parse("garbage"), None);
        assert_eq!(parse("10.0.0.300 a:1"), None);
    }
}

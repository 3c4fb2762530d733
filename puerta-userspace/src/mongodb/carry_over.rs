//! MongoDB mode's state across a hand-over (see `handover`):
//! - the affinity pins, so that a client's next connections reach the mongos that holds its
//!   cursors and sessions, whichever process accepts them. One line per pin,
//!   `<client ip> <backend address>`: addresses, not indexes, since the new configuration may list
//!   the backends in another order (a pin to a backend it no longer lists is dropped, as on
//!   reload);
//! - on the kernel path, the live spliced pairs themselves (see `kernel::handoff`), when the new
//!   instance runs the kernel path too: their connections never notice the upgrade.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::flow;
use super::reload::Live;
use crate::front_door::Intake;
use crate::handover::{CarryOver, Item};
use crate::mongodb::datapath::kernel::adopt_pairs;

/// How long the old instance waits for its spliced pairs to stop for the hand-over. They stop at
/// their next await point, so this is only a bound.
const PAIRS_STOP_WAIT: Duration = Duration::from_secs(5);

pub fn carry_over(live: &Arc<Live>, intake: &Intake) -> CarryOver {
    let (from, into, intake) = (live.clone(), live.clone(), intake.clone());
    CarryOver {
        snapshot: Arc::new(move |descriptors| snapshot(&from, descriptors)),
        merge: Box::new(move |items| merge(&into, &intake, items)),
        takes_descriptors: live.forwarder().kernel_path().is_some(),
    }
}

fn snapshot(live: &Live, descriptors: bool) -> Vec<Item> {
    let mut items: Vec<Item> = affinity_lines(live).into_iter().map(Item::line).collect();
    let kernel = live.forwarder().kernel_path().filter(|_| descriptors);
    if let Some(kernel) = kernel {
        let ctx = live.current();
        let backends = ctx.router.backends();
        let address_of = |index: u32| {
            let index = index as usize;
            (index < backends.len()).then(|| backends.endpoint(index).address().to_string())
        };
        items.extend(kernel.hand_over_pairs(PAIRS_STOP_WAIT, address_of));
    }
    items
}

fn merge(live: &Live, intake: &Intake, mut items: Vec<Item>) {
    if let Some(kernel) = live.forwarder().kernel_path() {
        let ctx = live.current();
        let backends = ctx.router.backends();
        let index_of = |address: &str| backends.position(address).map(|i| i as u32);
        let (pairs, errors) = adopt_pairs(&mut items, index_of);
        for e in &errors {
            tracing::warn!("{e}; its connections close");
        }
        tracing::info!(
            adopted = pairs.len(),
            refused = errors.len(),
            "spliced pairs carried over"
        );
        for pair in pairs {
            intake.spawn(flow::run_adopted(ctx.clone(), kernel.clone(), pair));
        }
    }
    let lines: Vec<String> = items.into_iter().map(|item| item.line).collect();
    let added = merge_pins(live, &lines);
    tracing::info!(added, carried = lines.len(), "affinity pins carried over");
}

fn affinity_lines(live: &Live) -> Vec<String> {
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
fn merge_pins(live: &Live, lines: &[String]) -> usize {
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

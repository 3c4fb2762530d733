//! Settings the proxy owns, which `CONFIG SET` changes and `CONFIG GET` shows as a Redis server
//! would: those of its own slow log. They change only the proxy, so they need no `admin_commands`;
//! with it on, a `CONFIG SET` that names them is also sent on to the nodes (which keep their own
//! slow logs), so that the two never disagree.

use crate::redis::cluster::Cluster;
use crate::redis::command::Command;
use crate::redis::resp::wire;
use crate::redis::resp::Frame;

const SLOWER_THAN: &str = "slowlog-log-slower-than";
const MAX_LEN: &str = "slowlog-max-len";

fn owned(name: &[u8]) -> Option<&'static str> {
    [SLOWER_THAN, MAX_LEN]
        .into_iter()
        .find(|p| p.as_bytes().eq_ignore_ascii_case(name))
}

/// A `CONFIG SET` that names the proxy's settings: they are applied, and the answer is returned
/// when nothing else is left to do (every setting was the proxy's, or a value was wrong). `None` for
/// any other command, and for a `CONFIG SET` that must go on to the nodes.
pub fn set(cluster: &Cluster, cmd: &Command) -> Option<Frame> {
    let is_set = cmd.name == "CONFIG" && cmd.arg(1).is_some_and(|s| s.eq_ignore_ascii_case(b"SET"));
    let pairs = cmd.args().get(2..)?;
    if !is_set || pairs.is_empty() || pairs.len() % 2 != 0 {
        return None;
    }
    let all_owned = pairs.chunks(2).all(|p| owned(&p[0]).is_some());
    if !all_owned && !cluster.config.admin_commands {
        // Refused as a whole, nothing applied.
        return None;
    }
    let mut values = Vec::new();
    for pair in pairs.chunks(2) {
        if let Some(name) = owned(&pair[0]) {
            match parse(name, &pair[1]) {
                Ok(value) => values.push((name, value)),
                Err(e) => return Some(e),
            }
        }
    }
    for (name, value) in values {
        match name {
            SLOWER_THAN => cluster.slowlog.set_slower_than_us(value),
            _ => cluster.slowlog.set_max_len(value as usize),
        }
    }
    all_owned.then(wire::ok)
}

/// Redis' own bounds and wording.
fn parse(name: &str, value: &[u8]) -> Result<i64, Frame> {
    let fail = |why: &str| {
        wire::error(format!(
            "ERR CONFIG SET failed (possibly related to argument '{name}') - {why}"
        ))
    };
    let n: i64 = std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| fail("argument couldn't be parsed into an integer"))?;
    let min = if name == SLOWER_THAN { -1 } else { 0 };
    if n < min || (name == MAX_LEN && n > i64::from(i32::MAX)) {
        return Err(fail(&format!(
            "argument must be between {min} and {} inclusive",
            if name == SLOWER_THAN {
                i64::MAX
            } else {
                i64::from(i32::MAX)
            }
        )));
    }
    Ok(n)
}

/// A node's `CONFIG GET` answer with the proxy's values for the settings it owns.
pub fn patch_get(cluster: &Cluster, reply: Frame) -> Frame {
    let value = |name: &Frame| {
        let name = name.as_bytes().and_then(|n| owned(n))?;
        let value = match name {
            SLOWER_THAN => cluster.slowlog.slower_than_us(),
            _ => cluster.slowlog.max_len() as i64,
        };
        Some(wire::bulk(value.to_string()))
    };
    match reply {
        Frame::Array(mut items) => {
            for pair in items.chunks_mut(2) {
                if let [name, old] = pair {
                    if let Some(new) = value(name) {
                        *old = new;
                    }
                }
            }
            Frame::Array(items)
        }
        Frame::Map(mut pairs) => {
            for (name, old) in pairs.iter_mut() {
                if let Some(new) = value(name) {
                    *old = new;
                }
            }
            Frame::Map(pairs)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::cluster::refresh::tests::config;

    #[test]
    fn the_slowlog_settings_are_the_proxys_own() {
        let cluster = Cluster::new(config(1));
        let cmd = Command::from_words(&["config", "set", "SLOWLOG-MAX-LEN", "7"]);
        assert_eq!(set(&cluster, &cmd), Some(wire::ok()));
        assert_eq!(cluster.slowlog.max_len(), 7);
        let bad = Command::from_words(&["config", "set", "slowlog-log-slower-than", "x"]);
        assert!(matches!(set(&cluster, &bad), Some(Frame::Error(_))));
        let mixed =
            Command::from_words(&["config", "set", "slowlog-max-len", "9", "maxmemory", "1"]);
        assert_eq!(set(&cluster, &mixed), None);
        assert_eq!(
            cluster.slowlog.max_len(),
            7,
            "refused as a whole without admin_commands"
        );
        let get = Command::from_words(&["config", "get", "slowlog-max-len"]);
        assert_eq!(set(&cluster, &get), None);
        let node = Frame::Array(vec![wire::bulk("slowlog-max-len"), wire::bulk("128")]);
        assert_eq!(
            patch_get(&cluster, node),
            Frame::Array(vec![wire::bulk("slowlog-max-len"), wire::bulk("7")])
        );
    }
}

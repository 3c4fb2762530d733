//! `CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p …] [BCAST] [OPTIN] [OPTOUT] [NOLOOP]`, with Redis'
//! errors, and what `CLIENT TRACKINGINFO` shows.

use bytes::Bytes;

use crate::redis::resp::wire;
use crate::redis::resp::Frame;

/// How a client tracks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mode {
    pub bcast: bool,
    pub prefixes: Vec<Bytes>,
    /// Only reads right after `CLIENT CACHING YES` are remembered.
    pub optin: bool,
    /// Reads right after `CLIENT CACHING NO` are not remembered.
    pub optout: bool,
    /// Accepted; Puerta cannot tell which client wrote a key, so a client may also be told of its
    /// own writes (a cache miss, never a stale value).
    pub noloop: bool,
    /// `REDIRECT id`: invalidations go to that client (a RESP2 one subscribed to
    /// `__redis__:invalidate`, or a RESP3 one as pushes) instead of this connection.
    pub redirect: Option<u64>,
}

/// What `CLIENT TRACKING` asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    On(Mode),
    Off,
}

impl Mode {
    /// Whether a BCAST client hears of `key`.
    pub fn matches(&self, key: &[u8]) -> bool {
        self.prefixes.is_empty() || self.prefixes.iter().any(|p| key.starts_with(p))
    }

    /// What a BCAST client hears of `keys`: per prefix (all of them without prefixes), the keys it
    /// matches, leaving out prefixes that match none.
    pub fn by_prefix(&self, keys: &[Bytes]) -> Vec<Vec<Bytes>> {
        if self.prefixes.is_empty() {
            return vec![keys.to_vec()];
        }
        self.prefixes
            .iter()
            .map(|p| {
                keys.iter()
                    .filter(|k| k.starts_with(p))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .filter(|group| !group.is_empty())
            .collect()
    }

    /// Whether a read is remembered, given the client's last `CLIENT CACHING` answer (for this
    /// command only).
    pub fn remembers(&self, caching: Option<bool>) -> bool {
        match (self.optin, self.optout) {
            (true, _) => caching == Some(true),
            (_, true) => caching != Some(false),
            _ => true,
        }
    }

    /// `CLIENT TRACKINGINFO` for a tracking client.
    pub fn info(&self, caching: Option<bool>) -> Frame {
        let mut flags = vec![Frame::bulk("on")];
        for (on, name) in [
            (self.bcast, "bcast"),
            (self.optin, "optin"),
            (self.optout, "optout"),
            (self.optin && caching == Some(true), "caching-yes"),
            (self.optout && caching == Some(false), "caching-no"),
            (self.noloop, "noloop"),
        ] {
            if on {
                flags.push(Frame::bulk(name));
            }
        }
        let redirect = self.redirect.map_or(0, |id| id as i64);
        info_map(flags, redirect, self.prefixes.clone())
    }
}

/// `CLIENT TRACKINGINFO` for a client that does not track.
pub fn info_off() -> Frame {
    info_map(vec![Frame::bulk("off")], -1, Vec::new())
}

fn info_map(flags: Vec<Frame>, redirect: i64, prefixes: Vec<Bytes>) -> Frame {
    Frame::Map(vec![
        (Frame::bulk("flags"), Frame::Array(flags)),
        (Frame::bulk("redirect"), Frame::Integer(redirect)),
        (
            Frame::bulk("prefixes"),
            Frame::Array(prefixes.into_iter().map(Frame::Bulk).collect()),
        ),
    ])
}

/// Parses the arguments after `CLIENT TRACKING`; `current` is the client's mode if it tracks.
pub fn parse(args: &[Bytes], current: Option<&Mode>) -> Result<Request, Frame> {
    let Some(switch) = args.first() else {
        return Err(wire::error("ERR syntax error"));
    };
    let on = match switch.to_ascii_uppercase().as_slice() {
        b"ON" => true,
        b"OFF" => false,
        _ => return Err(wire::error("ERR syntax error")),
    };
    let mut mode = Mode::default();
    let mut rest = args[1..].iter();
    while let Some(option) = rest.next() {
        match option.to_ascii_uppercase().as_slice() {
            b"BCAST" => mode.bcast = true,
            b"OPTIN" => mode.optin = true,
            b"OPTOUT" => mode.optout = true,
            b"NOLOOP" => mode.noloop = true,
            b"PREFIX" => match rest.next() {
                Some(prefix) => mode.prefixes.push(prefix.clone()),
                None => return Err(wire::error("ERR syntax error")),
            },
            b"REDIRECT" => {
                let id = rest.next().ok_or_else(|| wire::error("ERR syntax error"))?;
                mode.redirect = Some(client_id(id)?);
            }
            _ => return Err(wire::error("ERR syntax error")),
        }
    }
    if !on {
        return Ok(Request::Off);
    }
    check(&mode, current)?;
    Ok(Request::On(mode))
}

/// A client id as Redis reads it: an integer (a negative or zero one names no client).
fn client_id(arg: &[u8]) -> Result<u64, Frame> {
    let not_integer = || wire::error("ERR value is not an integer or out of range");
    let id: i64 = std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(not_integer)?;
    u64::try_from(id)
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| wire::error("ERR The client ID you want redirect to does not exist"))
}

fn check(mode: &Mode, current: Option<&Mode>) -> Result<(), Frame> {
    if !mode.bcast && !mode.prefixes.is_empty() {
        return Err(wire::error(
            "ERR PREFIX option requires BCAST mode to be enabled",
        ));
    }
    if mode.optin && mode.optout {
        return Err(wire::error("ERR You can't use both OPTIN and OPTOUT"));
    }
    if mode.bcast && (mode.optin || mode.optout) {
        return Err(wire::error(
            "ERR OPTIN and OPTOUT are not compatible with BCAST",
        ));
    }
    if let Some(current) = current {
        if current.optin != mode.optin || current.optout != mode.optout {
            return Err(wire::error("ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode."));
        }
        if current.bcast != mode.bcast {
            return Err(wire::error("ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode."));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn error(words: &[&str]) -> String {
        match parse(&args(words), None) {
            Err(Frame::Error(e)) => String::from_utf8_lossy(&e).into_owned(),
            other => panic!("{words:?}: {other:?}"),
        }
    }

    #[test]
    fn modes_parse_as_redis_reads_them() {
        let on = parse(
            &args(&["on", "bcast", "prefix", "user:", "PREFIX", "o:", "noloop"]),
            None,
        );
        let Ok(Request::On(mode)) = on else {
            panic!("{on:?}");
        };
        assert!(mode.bcast && mode.noloop);
        assert!(mode.matches(b"user:1") && mode.matches(b"o:") && !mode.matches(b"x"));
        assert_eq!(parse(&args(&["OFF"]), None), Ok(Request::Off));
    }

    #[test]
    fn invalid_combinations_get_redis_errors() {
        assert!(error(&["on", "prefix", "a"]).contains("requires BCAST"));
        assert!(error(&["on", "optin", "optout"]).contains("both OPTIN and OPTOUT"));
        assert!(error(&["on", "bcast", "optin"]).contains("not compatible with BCAST"));
        assert!(error(&["maybe"]).contains("syntax error"));
        assert!(error(&["on", "prefix"]).contains("syntax error"));
        assert!(error(&["on", "redirect", "x"]).contains("not an integer"));
        assert!(error(&["on", "redirect", "0"]).contains("does not exist"));
        assert!(error(&["on", "redirect"]).contains("syntax error"));
        let redirected = parse(&args(&["on", "redirect", "7"]), None);
        assert!(matches!(
            redirected,
            Ok(Request::On(Mode {
                redirect: Some(7),
                ..
            }))
        ));
        let optin = Mode {
            optin: true,
            ..Mode::default()
        };
        let switched = parse(&args(&["on"]), Some(&optin));
        assert!(
            matches!(switched, Err(Frame::Error(e)) if e.starts_with(b"ERR You can't switch OPTIN"))
        );
    }

    #[test]
    fn caching_answers_choose_what_is_remembered() {
        let default = Mode::default();
        assert!(default.remembers(None));
        let optin = Mode {
            optin: true,
            ..Mode::default()
        };
        assert!(!optin.remembers(None) && optin.remembers(Some(true)));
        let optout = Mode {
            optout: true,
            ..Mode::default()
        };
        assert!(optout.remembers(None) && !optout.remembers(Some(false)));
    }
}

//! Replies built from the table: Redis' unknown-command error and `COMMAND`/`COMMAND INFO` entries.

use bytes::Bytes;

use super::{flag, CommandSpec, KeySpec, Kind};
use crate::redis::resp::Frame;

/// Redis 7's `-ERR unknown command 'foo', with args beginning with: 'a' 'b' ` for `args` (name
/// first): the name is cut at 128 bytes and the argument list stops once it reaches 128 bytes.
pub fn unknown_command(args: &[Bytes]) -> Frame {
    let name = args
        .first()
        .map(|n| &n[..n.len().min(128)])
        .unwrap_or_default();
    let mut listed = Vec::new();
    for arg in args.iter().skip(1) {
        if listed.len() >= 128 {
            break;
        }
        let room = 128 - listed.len();
        listed.push(b'\'');
        listed.extend_from_slice(&arg[..arg.len().min(room)]);
        listed.extend_from_slice(b"' ");
    }
    let mut text = b"ERR unknown command '".to_vec();
    text.extend_from_slice(name);
    text.extend_from_slice(b"', with args beginning with: ");
    text.extend_from_slice(&listed);
    Frame::error(text)
}

impl CommandSpec {
    /// This command as one entry of `COMMAND` / `COMMAND INFO` (Redis 7 layout: name, arity, flags,
    /// legacy first/last/step key positions, then ACL categories, tips, key specs and subcommands,
    /// left empty).
    pub fn info_frame(&self) -> Frame {
        let (first, last, step) = match self.keys {
            KeySpec::Single { pos } => (pos as i64, pos as i64, 1),
            KeySpec::Range { first, last, step } => (first as i64, i64::from(last), step as i64),
            // The fixed keys before the count (ZUNIONSTORE's destination), as Redis shows them.
            KeySpec::NumKeys { numkeys_pos, first } if first < numkeys_pos => {
                (first as i64, numkeys_pos as i64 - 1, 1)
            }
            KeySpec::None | KeySpec::NumKeys { .. } | KeySpec::Streams => (0, 0, 0),
        };
        let mut flags = Vec::new();
        for (bit, name) in [
            (flag::READONLY, "readonly"),
            (flag::WRITE, "write"),
            (flag::BLOCKING, "blocking"),
        ] {
            if self.has(bit) {
                flags.push(Frame::simple(name));
            }
        }
        if matches!(self.kind, Kind::Subscription(_)) {
            flags.push(Frame::simple("pubsub"));
        }
        if matches!(self.keys, KeySpec::NumKeys { .. } | KeySpec::Streams) {
            flags.push(Frame::simple("movablekeys"));
        }
        Frame::Array(vec![
            Frame::bulk(self.name),
            Frame::Integer(i64::from(self.arity)),
            Frame::Array(flags),
            Frame::Integer(first),
            Frame::Integer(last),
            Frame::Integer(step),
            Frame::Array(Vec::new()),
            Frame::Array(Vec::new()),
            Frame::Array(Vec::new()),
            Frame::Array(Vec::new()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::command::spec::lookup;
    use bytes::BytesMut;

    fn wire(frame: &Frame) -> String {
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn unknown_command_matches_redis() {
        let args: Vec<Bytes> = ["foo", "a", "b"].into_iter().map(Bytes::from).collect();
        assert_eq!(
            wire(&unknown_command(&args)),
            "-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n"
        );
        let long = vec![
            Bytes::from("x"),
            Bytes::from(vec![b'y'; 300]),
            Bytes::from("z"),
        ];
        let text = wire(&unknown_command(&long));
        assert!(
            text.contains(&format!("'{}' \r\n", "y".repeat(128))),
            "{text}"
        );
        let newline = [Bytes::from("a\r\nb")];
        assert_eq!(
            wire(&unknown_command(&newline)),
            "-ERR unknown command 'a  b', with args beginning with: \r\n"
        );
    }

    #[test]
    fn info_frame_has_the_legacy_key_positions() {
        let Frame::Array(mset) = lookup(b"mset").unwrap().info_frame() else {
            panic!("not an array");
        };
        assert_eq!(mset[0], Frame::bulk("mset"));
        assert_eq!(mset[1], Frame::Integer(-3));
        assert_eq!(
            mset[3..6],
            [Frame::Integer(1), Frame::Integer(-1), Frame::Integer(2)]
        );
        let Frame::Array(eval) = lookup(b"eval").unwrap().info_frame() else {
            panic!("not an array");
        };
        assert_eq!(eval[2], Frame::Array(vec![Frame::simple("movablekeys")]));
    }
}

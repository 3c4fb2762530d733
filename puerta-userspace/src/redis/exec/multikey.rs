//! MGET, MSET, DEL, UNLINK, EXISTS and TOUCH with keys in several slots: one sub-command per slot, sent
//! in parallel, answers merged as if one node had served them. MSET split this way is not atomic across
//! slots (neither is it in any cluster proxy); use {hash tags} when that matters.

use bytes::Bytes;

use crate::redis::command::spec::Merge;
use crate::redis::command::Command;
use crate::redis::exec::merge::{combine, first_error};
use crate::redis::resp::wire;
use crate::redis::resp::Frame;

/// One slot's share of the command.
#[derive(Debug, PartialEq, Eq)]
pub struct Part {
    pub slot: u16,
    pub args: Vec<Bytes>,
    /// For `Values`: where each of this part's keys sits in the original key list.
    pub positions: Vec<usize>,
}

#[derive(Debug)]
pub struct Split {
    pub merge: Merge,
    pub parts: Vec<Part>,
    pub keys: usize,
}

/// Splits `cmd` per slot, its parts' answers to be merged by `merge`; `Ok(None)` when its keys share
/// a slot.
pub fn split(cmd: &Command, merge: Merge) -> Result<Option<Split>, Frame> {
    let keys = cmd.key_slots()?;
    let Some(&(_, first)) = keys.first() else {
        return Ok(None);
    };
    if keys.iter().all(|(_, s)| *s == first) {
        return Ok(None);
    }
    let per_key = if merge == Merge::AllOk { 2 } else { 1 };
    let mut parts: Vec<Part> = Vec::new();
    for (ordinal, (index, slot)) in keys.iter().enumerate() {
        let part = match parts.iter_mut().position(|p| p.slot == *slot) {
            Some(i) => &mut parts[i],
            None => {
                parts.push(Part {
                    slot: *slot,
                    args: vec![cmd.args[0].clone()],
                    positions: Vec::new(),
                });
                parts.last_mut().expect("just pushed")
            }
        };
        let end = (index + per_key).min(cmd.args.len());
        part.args.extend(cmd.args[*index..end].iter().cloned());
        part.positions.push(ordinal);
    }
    Ok(Some(Split {
        merge,
        parts,
        keys: keys.len(),
    }))
}

/// Combines the parts' replies (same order as `split.parts`). Any error reply is passed through.
pub fn merge(split: &Split, replies: Vec<Frame>) -> Frame {
    match split.merge {
        Merge::Values => match first_error(&replies) {
            Some(err) => err,
            None => merge_values(split, replies),
        },
        merge => combine(merge, replies),
    }
}

fn merge_values(split: &Split, replies: Vec<Frame>) -> Frame {
    let mut values = vec![Frame::Null; split.keys];
    for (part, reply) in split.parts.iter().zip(replies) {
        let Frame::Array(items) = reply else {
            return wire::error(
                "ERR Puerta: a node answered MGET with something other than an array",
            );
        };
        if items.len() != part.positions.len() {
            return wire::error("ERR Puerta: a node answered MGET with the wrong number of values");
        }
        for (pos, item) in part.positions.iter().zip(items) {
            values[*pos] = item;
        }
    }
    Frame::Array(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::command::slots::key_slot;

    fn cmd(words: &[&str]) -> Command {
        Command::from_words(words)
    }

    /// The split the table asks for, as dispatch makes it.
    fn parts(c: &Command) -> Result<Option<Split>, Frame> {
        match c.kind() {
            Some(crate::redis::command::spec::Kind::Split(merge)) => split(c, merge),
            _ => Ok(None),
        }
    }

    fn b(s: &str) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn same_slot_is_not_split() {
        assert!(parts(&cmd(&["MGET", "{a}1", "{a}2"])).unwrap().is_none());
        assert!(parts(&cmd(&["GET", "x"])).unwrap().is_none());
        assert!(parts(&cmd(&["SUNION", "a", "b"])).unwrap().is_none());
    }

    #[test]
    fn mget_splits_per_slot_and_merges_in_key_order() {
        // a and c share a hash tag; b is elsewhere.
        let c = cmd(&["MGET", "{x}a", "{y}b", "{x}c", "{y}d", "{x}a"]);
        let s = parts(&c).unwrap().unwrap();
        assert_eq!(s.merge, Merge::Values);
        assert_eq!(s.parts.len(), 2);
        assert_eq!(s.parts[0].slot, key_slot(b"x"));
        assert_eq!(s.parts[0].positions, vec![0, 2, 4]);
        assert_eq!(s.parts[1].positions, vec![1, 3]);
        assert_eq!(s.parts[1].args.len(), 3);
        // Replies arrive per part; the client sees its own key order.
        let replies = vec![
            Frame::Array(vec![b("A"), Frame::Null, b("A")]),
            Frame::Array(vec![b("B"), b("D")]),
        ];
        assert_eq!(
            merge(&s, replies),
            Frame::Array(vec![b("A"), b("B"), Frame::Null, b("D"), b("A")])
        );
    }

    #[test]
    fn mset_keeps_pairs_together() {
        let c = cmd(&["MSET", "{x}a", "1", "{y}b", "2", "{x}c", "3"]);
        let s = parts(&c).unwrap().unwrap();
        assert_eq!(s.merge, Merge::AllOk);
        let words: Vec<Vec<&[u8]>> = s
            .parts
            .iter()
            .map(|p| p.args.iter().map(|a| a.as_ref()).collect())
            .collect();
        assert_eq!(words[0], vec![&b"MSET"[..], b"{x}a", b"1", b"{x}c", b"3"]);
        assert_eq!(words[1], vec![&b"MSET"[..], b"{y}b", b"2"]);
        assert_eq!(merge(&s, vec![wire::ok(), wire::ok()]), wire::ok());
    }

    #[test]
    fn counts_are_summed_and_errors_win() {
        for name in ["DEL", "UNLINK", "EXISTS", "TOUCH"] {
            let c = cmd(&[name, "{x}a", "{y}b", "{x}c"]);
            let s = parts(&c).unwrap().unwrap();
            assert_eq!(s.merge, Merge::Sum);
            assert_eq!(
                merge(&s, vec![Frame::Integer(2), Frame::Integer(1)]),
                Frame::Integer(3)
            );
            let err = wire::error("TRYAGAIN x");
            assert_eq!(merge(&s, vec![Frame::Integer(2), err.clone()]), err);
        }
    }

    #[test]
    fn a_short_mget_reply_is_an_error_not_a_wrong_answer() {
        let c = cmd(&["MGET", "{x}a", "{y}b", "{x}c"]);
        let s = parts(&c).unwrap().unwrap();
        let merged = merge(
            &s,
            vec![Frame::Array(vec![b("A")]), Frame::Array(vec![b("B")])],
        );
        assert!(matches!(merged, Frame::Error(_)));
    }
}

//! MGET, MSET, DEL, UNLINK, EXISTS and TOUCH with keys in several slots: one sub-command per slot, sent
//! in parallel, answers merged as if one node had served them. MSET split this way is not atomic across
//! slots (neither is it in any cluster proxy); use {hash tags} when that matters.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::redis::client::output::{Charged, OutputBudget};
use crate::redis::command::spec::Merge;
use crate::redis::command::{Command, KeySlot};
use crate::redis::exec::answer::Answer;
use crate::redis::exec::merge::combine;
use crate::redis::resp::{self, wire, Frame};

/// One slot's share of the command.
#[derive(Debug, PartialEq, Eq)]
pub struct Part {
    pub slot: u16,
    /// Where the share's wire form is in [`Split::wire`].
    span: Range<usize>,
    /// Where this part's keys are in [`Split::keys`].
    keys: Range<usize>,
}

#[derive(Debug)]
pub struct Split {
    pub merge: Merge,
    /// In slot order. A node owns ranges of slots, so its parts are mostly neighbours here.
    pub parts: Vec<Part>,
    /// Every part's wire form, one after the other.
    wire: Bytes,
    /// Every key, grouped by part (by slot, then in the client's order).
    keys: Vec<KeySlot>,
}

/// Splits `cmd` per slot, its parts' answers to be merged by `merge`; `Ok(None)` when its keys share
/// a slot. A split costs a handful of allocations whatever the number of keys: the parts are
/// encoded straight from the client's arguments into one buffer.
pub fn split(cmd: &Command, merge: Merge) -> Result<Option<Split>, Frame> {
    let mut keys = cmd.key_slots()?;
    let Some(first) = keys.first().map(|k| k.slot) else {
        return Ok(None);
    };
    if keys.iter().all(|k| k.slot == first) {
        return Ok(None);
    }
    let per_key = if merge == Merge::AllOk { 2 } else { 1 };
    // Grouped by slot; a slot's keys keep the client's order (the last of two equal keys wins).
    keys.sort_unstable_by_key(|k| (k.slot, k.ordinal));
    // The parts hold the command's arguments and a header and the name each: one allocation for
    // all of them, sized tightly (a small split's buffer then stays in the allocator's per-thread
    // cache, whose largest size is 1 KiB).
    let groups = || keys.chunk_by(|a, b| a.slot == b.slot);
    let per_part = 16 + cmd.arg(0).map_or(0, <[u8]>::len) + 16;
    let count = groups().count();
    let size = cmd.wire_size_bound() + per_part * count;
    let mut buf = BytesMut::with_capacity(size);
    let mut parts = Vec::with_capacity(count);
    let mut at = 0;
    // The name's bytes, found once for every part.
    let name = cmd.wire_args(0..1);
    for group in groups() {
        let args = |k: &KeySlot| per_key.min(cmd.arg_count() - k.arg as usize);
        let count = 1 + group.iter().map(args).sum::<usize>();
        let start = buf.len();
        resp::encode_array_header(count, &mut buf);
        match name {
            Some(name) => buf.extend_from_slice(name),
            None => put_args(cmd, 0..1, &mut buf),
        }
        for k in group {
            let index = k.arg as usize;
            put_args(cmd, index..index + args(k), &mut buf);
        }
        parts.push(Part {
            slot: group[0].slot,
            span: start..buf.len(),
            keys: at..at + group.len(),
        });
        at += group.len();
    }
    Ok(Some(Split {
        merge,
        parts,
        wire: buf.freeze(),
        keys,
    }))
}

impl Split {
    /// Part `i`'s wire form.
    pub fn payload(&self, i: usize) -> Bytes {
        self.payload_of(i..i + 1)
    }

    /// The wire form of the consecutive parts `parts`, as one payload.
    pub fn payload_of(&self, parts: Range<usize>) -> Bytes {
        match (
            self.parts.get(parts.start),
            parts
                .end
                .checked_sub(1)
                .and_then(|last| self.parts.get(last)),
        ) {
            (Some(first), Some(last)) => self.wire.slice(first.span.start..last.span.end),
            _ => Bytes::new(),
        }
    }
}

/// Arguments `range` of `cmd` into a part: copied as the client sent them when it can be, else
/// encoded. Copying skips formatting each length again (a third of a split's cost under callgrind).
fn put_args(cmd: &Command, range: Range<usize>, buf: &mut BytesMut) {
    match cmd.wire_args(range.clone()) {
        Some(wire) => buf.extend_from_slice(wire),
        None => range
            .filter_map(|i| cmd.arg(i))
            .for_each(|arg| resp::encode_bulk(arg, buf)),
    }
}

/// Combines the parts' answers (same order as `split.parts`) into what one node would have
/// answered, from their bytes: the first error wins; MSET's OK and MGET's values pass through as
/// the nodes sent them. A merged MGET reply counts against the client's `budget` like a node's.
pub fn merge(split: &Split, answers: Vec<Answer>, budget: Option<&Arc<OutputBudget>>) -> Answer {
    if let Some(i) = answers.iter().position(|a| a.error_text().is_some()) {
        return answers
            .into_iter()
            .nth(i)
            .unwrap_or_else(|| wire::ok().into());
    }
    match split.merge {
        Merge::AllOk => answers
            .into_iter()
            .next()
            .unwrap_or_else(|| wire::ok().into()),
        Merge::Sum => Answer::Built(Frame::Integer(answers.iter().map(integer).sum())),

        Merge::Values => match values(split, &answers) {
            Ok(bytes) => Answer::Node(match budget {
                Some(budget) => budget.charge(bytes),
                None => Charged::free(bytes),
            }),
            Err(e) => Answer::Built(wire::error(e)),
        },
        merge => Answer::Built(combine(
            merge,
            answers.into_iter().map(Answer::into_frame).collect(),
        )),
    }
}

/// A count a node answered (`:n`, built into a frame without allocating), 0 for anything else.
fn integer(answer: &Answer) -> i64 {
    match answer {
        Answer::Node(raw) => match raw.frame() {
            Frame::Integer(n) => n,
            _ => 0,
        },
        Answer::Built(Frame::Integer(n)) => *n,
        Answer::Built(_) => 0,
    }
}

/// MGET: each part's values put back in the client's key order.
fn values(split: &Split, answers: &[Answer]) -> Result<Bytes, &'static str> {
    let mut values = vec![Bytes::new(); split.keys.len()];
    for (part, answer) in split.parts.iter().zip(answers) {
        let Answer::Node(raw) = answer else {
            return Err("ERR Puerta: a node answered MGET with something other than an array");
        };
        let keys = &split.keys[part.keys.clone()];
        let mut next = keys.iter();
        let count = resp::array_elements(raw.bytes(), |value| {
            if let Some(place) = next.next().and_then(|k| values.get_mut(k.ordinal as usize)) {
                *place = value;
            }
        });
        match count {
            None => {
                return Err("ERR Puerta: a node answered MGET with something other than an array")
            }
            Some(n) if n != keys.len() => {
                return Err("ERR Puerta: a node answered MGET with the wrong number of values")
            }
            Some(_) => {}
        }
    }
    let size = values.iter().map(Bytes::len).sum::<usize>() + 24;
    let mut out = BytesMut::with_capacity(size);
    resp::encode_array_header(values.len(), &mut out);
    values.iter().for_each(|v| out.extend_from_slice(v));
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::command::slots::key_slot;
    use crate::redis::resp::Protocol;

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

    /// A node's answer, as its bytes.
    fn node(wire: &str) -> Answer {
        Answer::Node(Charged::free(Bytes::copy_from_slice(wire.as_bytes())))
    }

    /// What the client gets.
    fn wire_of(answer: Answer) -> String {
        let mut out = BytesMut::new();
        answer.encode_in(Protocol::Resp3, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn words(split: &Split, i: usize) -> Vec<Bytes> {
        let (words, count) = crate::redis::resp::command_head(&split.payload(i)).unwrap();
        assert_eq!(words.len(), count);
        words
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
        // Parts come in slot order.
        let (x, y) = (key_slot(b"x"), key_slot(b"y"));
        let (px, py) = if x < y { (0, 1) } else { (1, 0) };
        assert_eq!(s.parts[px].slot, x);
        assert_eq!(
            &s.payload(px)[..],
            b"*4\r\n$4\r\nMGET\r\n$4\r\n{x}a\r\n$4\r\n{x}c\r\n$4\r\n{x}a\r\n"
        );
        assert_eq!(words(&s, py).len(), 3);
        // Answers arrive per part; the client sees its own key order, values as the nodes sent them.
        let mut answers = vec![
            node("*3\r\n$1\r\nA\r\n_\r\n$2\r\nA2\r\n"),
            node("*2\r\n$1\r\nB\r\n$-1\r\n"),
        ];
        if px == 1 {
            answers.reverse();
        }
        assert_eq!(
            wire_of(merge(&s, answers, None)),
            "*5\r\n$1\r\nA\r\n$1\r\nB\r\n_\r\n$-1\r\n$2\r\nA2\r\n"
        );
    }

    #[test]
    fn a_merged_mget_counts_against_the_clients_output_limit() {
        let c = cmd(&["MGET", "{x}a", "{y}b"]);
        let s = parts(&c).unwrap().unwrap();
        let budget = OutputBudget::new(None, 1, None, Default::default());
        let merged = merge(
            &s,
            vec![node("*1\r\n$1\r\nA\r\n"), node("*1\r\n$1\r\nB\r\n")],
            Some(&budget),
        );
        assert_eq!(budget.held(), "*2\r\n$1\r\nA\r\n$1\r\nB\r\n".len());
        drop(merged);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn mset_keeps_pairs_together_and_passes_the_ok_through() {
        let c = cmd(&["MSET", "{x}a", "1", "{y}b", "2", "{x}c", "3"]);
        let s = parts(&c).unwrap().unwrap();
        assert_eq!(s.merge, Merge::AllOk);
        let mut all: Vec<Vec<Bytes>> = (0..s.parts.len()).map(|i| words(&s, i)).collect();
        all.sort();
        assert_eq!(
            all[0],
            ["MSET", "{x}a", "1", "{x}c", "3"].map(|w| Bytes::from_static(w.as_bytes()))
        );
        assert_eq!(
            all[1],
            ["MSET", "{y}b", "2"].map(|w| Bytes::from_static(w.as_bytes()))
        );
        assert_eq!(
            wire_of(merge(&s, vec![node("+OK\r\n"), node("+OK\r\n")], None)),
            "+OK\r\n"
        );
    }

    #[test]
    fn a_key_without_its_value_is_refused_as_redis_words_it() {
        let Err(Frame::Error(e)) = parts(&cmd(&["MSET", "{x}a", "1", "{y}b"])) else {
            panic!("an odd MSET must be refused");
        };
        assert_eq!(&e[..], b"ERR wrong number of arguments for 'mset' command");
    }

    #[test]
    fn parts_copy_the_clients_bytes_and_match_encoding_them() {
        let words = ["MsEt", "{x}a", "1", "{y}b", "", "{x}c", "3"];
        let mut wire = BytesMut::new();
        resp::encode_command(&words, &mut wire);
        let raw = resp::parse_command_args(&mut wire, &resp::Limits::default())
            .unwrap()
            .unwrap();
        let copied = parts(&Command::from_raw(raw)).unwrap().unwrap();
        let encoded = parts(&cmd(&words)).unwrap().unwrap();
        assert_eq!(copied.parts, encoded.parts);
        for i in 0..copied.parts.len() {
            assert_eq!(copied.payload(i), encoded.payload(i));
        }
        // The name as the client spelled it; the empty value (no slice of the wire) encoded.
        let (x, y) = match key_slot(b"x") < key_slot(b"y") {
            true => (0, 1),
            false => (1, 0),
        };
        assert_eq!(
            &copied.payload(x)[..],
            b"*5\r\n$4\r\nMsEt\r\n$4\r\n{x}a\r\n$1\r\n1\r\n$4\r\n{x}c\r\n$1\r\n3\r\n"
        );
        assert_eq!(
            &copied.payload(y)[..],
            b"*3\r\n$4\r\nMsEt\r\n$4\r\n{y}b\r\n$0\r\n\r\n"
        );
    }

    #[test]
    fn inline_commands_split_too() {
        let c = Command::new(
            ["DEL", "{x}a", "{y}b"]
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .to_vec(),
        );
        let s = parts(&c).unwrap().unwrap();
        assert_eq!(s.parts.len(), 2);
        assert!((0..s.parts.len()).all(|i| words(&s, i).len() == 2));
    }

    #[test]
    fn counts_are_summed_and_errors_win() {
        for name in ["DEL", "UNLINK", "EXISTS", "TOUCH"] {
            let c = cmd(&[name, "{x}a", "{y}b", "{x}c"]);
            let s = parts(&c).unwrap().unwrap();
            assert_eq!(s.merge, Merge::Sum);
            assert_eq!(
                wire_of(merge(&s, vec![node(":2\r\n"), node(":1\r\n")], None)),
                ":3\r\n"
            );
            let answers = vec![node(":2\r\n"), node("-TRYAGAIN x\r\n")];
            assert_eq!(wire_of(merge(&s, answers, None)), "-TRYAGAIN x\r\n");
        }
    }

    #[test]
    fn a_short_or_odd_mget_reply_is_an_error_not_a_wrong_answer() {
        let c = cmd(&["MGET", "{x}a", "{y}b", "{x}c"]);
        let s = parts(&c).unwrap().unwrap();
        let short = vec![node("*1\r\n$1\r\nA\r\n"), node("*1\r\n$1\r\nB\r\n")];
        assert!(wire_of(merge(&s, short, None)).starts_with("-ERR Puerta"));
        let odd = vec![node("$1\r\nA\r\n"), node("*1\r\n$1\r\nB\r\n")];
        assert!(wire_of(merge(&s, odd, None)).starts_with("-ERR Puerta"));
    }
}

//! MGET, MSET, DEL, UNLINK, EXISTS and TOUCH with keys in several slots: one sub-command per slot, sent
//! in parallel, answers merged as if one node had served them. MSET split this way is not atomic across
//! slots (neither is it in any cluster proxy); use {hash tags} when that matters.

use bytes::Bytes;

use super::command::Command;
use super::resp::Frame;
use super::wire;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Values back in the order the keys were asked.
    Values,
    /// `OK` when every part said OK.
    AllOk,
    /// Integer replies added up.
    Sum,
}

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

/// How the answers of a split command combine; `None` for commands that are never split.
pub fn merge_kind(name: &str) -> Option<Merge> {
    match name {
        "MGET" => Some(Merge::Values),
        "MSET" => Some(Merge::AllOk),
        "DEL" | "UNLINK" | "EXISTS" | "TOUCH" => Some(Merge::Sum),
        _ => None,
    }
}

/// Splits `cmd` per slot; `Ok(None)` when it is not a splittable command or its keys share a slot.
pub fn split(cmd: &Command) -> Result<Option<Split>, Frame> {
    let Some(merge) = merge_kind(&cmd.name) else {
        return Ok(None);
    };
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
    if let Some(err) = replies.iter().find(|r| matches!(r, Frame::Error(_))) {
        return err.clone();
    }
    match split.merge {
        Merge::AllOk => wire::ok(),
        Merge::Sum => Frame::Integer(
            replies
                .iter()
                .map(|r| if let Frame::Integer(n) = r { *n } else { 0 })
                .sum(),
        ),
        Merge::Values => merge_values(split, replies),
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

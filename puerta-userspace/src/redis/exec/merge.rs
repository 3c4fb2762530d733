//! How the answers of several nodes become the one answer a single Redis would give: the merge a
//! command's table entry names. An error from any node is the answer.

use crate::redis::command::spec::Merge;
use crate::redis::resp::wire;
use crate::redis::resp::Frame;

/// `replies` (one per node or part, in the order sent) merged by `merge`. `Merge::Values` needs the
/// key positions of a split and is done by [`crate::redis::exec::multikey::merge`].
pub fn combine(merge: Merge, replies: Vec<Frame>) -> Frame {
    if let Some(e) = first_error(&replies) {
        return e;
    }
    match merge {
        Merge::AllOk => replies.into_iter().next().unwrap_or_else(wire::ok),
        Merge::Sum => Frame::Integer(
            replies
                .iter()
                .map(|r| match r {
                    Frame::Integer(n) => *n,
                    _ => 0,
                })
                .sum(),
        ),
        Merge::Concat => {
            let mut all = Vec::new();
            for r in replies {
                if let Frame::Array(items) = r {
                    all.extend(items);
                }
            }
            Frame::Array(all)
        }
        Merge::Values => wire::error("ERR Puerta: values cannot be merged without their keys"),
    }
}

/// The first error among `replies`, if any.
pub fn first_error(replies: &[Frame]) -> Option<Frame> {
    replies
        .iter()
        .find(|r| matches!(r, Frame::Error(_)))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_answers() {
        let ints = vec![Frame::Integer(2), Frame::Integer(3)];
        assert_eq!(combine(Merge::Sum, ints), Frame::Integer(5));
        let with_err = vec![Frame::Integer(2), wire::error("ERR x")];
        assert_eq!(combine(Merge::Sum, with_err), wire::error("ERR x"));
        let arrays = vec![
            Frame::Array(vec![wire::bulk("a")]),
            Frame::Array(vec![]),
            Frame::Array(vec![wire::bulk("b")]),
        ];
        assert_eq!(
            combine(Merge::Concat, arrays),
            Frame::Array(vec![wire::bulk("a"), wire::bulk("b")])
        );
        assert_eq!(
            combine(Merge::AllOk, vec![wire::ok(), wire::ok()]),
            wire::ok()
        );
        let sha = wire::bulk("e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
        assert_eq!(combine(Merge::AllOk, vec![sha.clone(), sha.clone()]), sha);
    }
}

//! How the answers of several nodes become the one answer a single Redis would give: the merge a
//! command's table entry names. An error from any node is the answer.

use crate::redis::command::spec::Merge;
use crate::redis::resp::wire;
use crate::redis::resp::Frame;

/// `replies` (one per node or part, in the order sent) merged by `merge`. `Merge::Values` needs the
/// key positions of a split and is done by [`crate::redis::exec::multikey::merge`].
pub fn combine(merge: Merge, replies: Vec<Frame>) -> Frame {
    if merge == Merge::AnyOk {
        return any_ok(replies);
    }
    if let Some(e) = first_error(&replies) {
        return e;
    }
    match merge {
        Merge::AllOk | Merge::AnyOk => replies.into_iter().next().unwrap_or_else(wire::ok),
        Merge::Sum => sum(&replies),
        Merge::Concat => concat(replies),
        Merge::AllOf => all_of(replies),
        Merge::Each => match replies.first() {
            Some(Frame::Integer(_)) => sum(&replies),
            Some(Frame::Array(_)) => concat(replies),
            _ => replies.into_iter().next().unwrap_or_else(wire::ok),
        },
        Merge::ByName => replies
            .into_iter()
            .reduce(by_name)
            .unwrap_or(Frame::Array(Vec::new())),
        Merge::Values => wire::error("ERR Puerta: values cannot be merged without their keys"),
    }
}

/// Two maps (RESP3 maps, or RESP2 arrays of name, value, name, value) merged key by key: a value
/// both have is merged again (integers added up), one only `b` has is added. Integer keys (a
/// histogram's buckets) end up in ascending order, as each node prints them.
fn by_name(a: Frame, b: Frame) -> Frame {
    match (a, b) {
        (Frame::Integer(x), Frame::Integer(y)) => Frame::Integer(x + y),
        (Frame::Map(a), Frame::Map(b)) => Frame::Map(merge_pairs(a, b)),
        (Frame::Array(a), Frame::Array(b))
            if a.len().is_multiple_of(2) && b.len().is_multiple_of(2) =>
        {
            let flat = |items: Vec<Frame>| {
                let mut items = items.into_iter();
                std::iter::from_fn(move || Some((items.next()?, items.next()?))).collect()
            };
            Frame::Array(
                merge_pairs(flat(a), flat(b))
                    .into_iter()
                    .flat_map(|(k, v)| [k, v])
                    .collect(),
            )
        }
        (a, _) => a,
    }
}

fn merge_pairs(mut a: Vec<(Frame, Frame)>, b: Vec<(Frame, Frame)>) -> Vec<(Frame, Frame)> {
    for (key, value) in b {
        match a.iter().position(|(k, _)| *k == key) {
            Some(i) => {
                let have = std::mem::replace(&mut a[i].1, Frame::Null);
                a[i].1 = by_name(have, value);
            }
            None => a.push((key, value)),
        }
    }
    if a.iter().all(|(k, _)| matches!(k, Frame::Integer(_))) {
        a.sort_by_key(|(k, _)| match k {
            Frame::Integer(n) => *n,
            _ => 0,
        });
    }
    a
}

fn sum(replies: &[Frame]) -> Frame {
    Frame::Integer(
        replies
            .iter()
            .map(|r| match r {
                Frame::Integer(n) => *n,
                _ => 0,
            })
            .sum(),
    )
}

fn concat(replies: Vec<Frame>) -> Frame {
    let mut all = Vec::new();
    for r in replies {
        if let Frame::Array(items) = r {
            all.extend(items);
        }
    }
    Frame::Array(all)
}

fn all_of(replies: Vec<Frame>) -> Frame {
    let mut replies = replies.into_iter();
    let Some(Frame::Array(mut all)) = replies.next() else {
        return wire::error("ERR Puerta: expected an array from every node");
    };
    for reply in replies {
        let Frame::Array(items) = reply else {
            return wire::error("ERR Puerta: expected an array from every node");
        };
        for (have, item) in all.iter_mut().zip(items) {
            if item != Frame::Integer(1) {
                *have = Frame::Integer(0);
            }
        }
    }
    Frame::Array(all)
}

fn any_ok(replies: Vec<Frame>) -> Frame {
    let first = replies.first().cloned();
    replies
        .into_iter()
        .find(|r| !matches!(r, Frame::Error(_)))
        .or(first)
        .unwrap_or_else(wire::ok)
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

    #[test]
    fn histograms_merge_by_command_and_bucket() {
        let histogram = |calls: i64, buckets: &[(i64, i64)]| {
            let buckets = buckets
                .iter()
                .flat_map(|(b, n)| [Frame::Integer(*b), Frame::Integer(*n)])
                .collect();
            Frame::Array(vec![
                wire::bulk("calls"),
                Frame::Integer(calls),
                wire::bulk("histogram_usec"),
                Frame::Array(buckets),
            ])
        };
        let a = Frame::Array(vec![wire::bulk("set"), histogram(1, &[(8, 1)])]);
        let b = Frame::Array(vec![
            wire::bulk("get"),
            histogram(2, &[(4, 2)]),
            wire::bulk("set"),
            histogram(2, &[(2, 1), (8, 2)]),
        ]);
        assert_eq!(
            combine(Merge::ByName, vec![a, b]),
            Frame::Array(vec![
                wire::bulk("set"),
                histogram(3, &[(2, 1), (8, 3)]),
                wire::bulk("get"),
                histogram(2, &[(4, 2)]),
            ])
        );
    }

    #[test]
    fn admin_merges() {
        let ints = |v: &[i64]| Frame::Array(v.iter().map(|&n| Frame::Integer(n)).collect());
        assert_eq!(
            combine(Merge::AllOf, vec![ints(&[1, 1, 0]), ints(&[1, 0, 1])]),
            ints(&[1, 0, 0])
        );
        let busy = wire::error("NOTBUSY No scripts in execution right now.");
        assert_eq!(
            combine(Merge::AnyOk, vec![busy.clone(), wire::ok()]),
            wire::ok()
        );
        assert_eq!(
            combine(Merge::AnyOk, vec![busy.clone(), busy.clone()]),
            busy
        );
        assert_eq!(
            combine(Merge::Each, vec![Frame::Integer(1), Frame::Integer(2)]),
            Frame::Integer(3)
        );
        assert_eq!(
            combine(Merge::Each, vec![ints(&[1]), ints(&[2])]),
            ints(&[1, 2])
        );
        let text = wire::bulk("node report");
        assert_eq!(
            combine(Merge::Each, vec![text.clone(), wire::bulk("x")]),
            text
        );
    }
}

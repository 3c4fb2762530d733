//! First pass: find where one complete frame ends without allocating, enforcing the limits. The pass
//! is resumable: [`Progress`] remembers the last fully validated element of an incomplete frame, so a
//! large array arriving over many reads is validated in linear time (with a [`super::Decoder`]).

use std::ops::Range;

use super::cursor::{protocol, show, Cursor};
use super::{Limits, ParseError};

/// Commands with at most this many arguments have their argument positions recorded by the check
/// pass, so the build pass slices them without parsing the headers again.
const RECORDED_ARGS: usize = 16;

#[derive(Debug, Default)]
pub(super) struct Progress {
    /// Offset of the first byte not yet validated.
    pos: usize,
    /// Commands: the argument count once the header has been read, and how many are still missing.
    count: Option<usize>,
    remaining: usize,
    /// Commands: where the first `RECORDED_ARGS` arguments' bytes are.
    args: [(usize, usize); RECORDED_ARGS],
    /// Replies: elements still expected by each open array, outermost first.
    pending: Vec<usize>,
}

impl Progress {
    pub fn reset(&mut self) {
        self.pos = 0;
        self.count = None;
        self.remaining = 0;
        self.pending.clear();
    }

    /// The byte ranges of a complete command's `count` arguments, when they were all recorded.
    pub fn recorded_args(&self, count: usize) -> Option<&[(usize, usize)]> {
        self.args.get(..count)
    }

    /// Whether the state can belong to `buf` (the caller only appends between calls).
    pub fn fits(&self, buf: &[u8]) -> bool {
        self.pos <= buf.len()
    }
}

/// A multibulk command (`buf[0] == b'*'`): its end and argument count (0 for the empty forms).
pub(super) fn command(
    buf: &[u8],
    limits: &Limits,
    progress: &mut Progress,
) -> Result<Option<(usize, usize)>, ParseError> {
    let count = match progress.count {
        Some(count) => count,
        None => {
            let mut cur = Cursor::at(buf, 1);
            let Some(len) = cur.number("multibulk length")? else {
                return Ok(None);
            };
            let count = array_len(len, limits)?.unwrap_or(0);
            progress.pos = cur.pos;
            progress.count = Some(count);
            progress.remaining = count;
            count
        }
    };
    let mut cur = Cursor::at(buf, progress.pos);
    while progress.remaining > 0 {
        match cur.next_byte() {
            None => return Ok(None),
            Some(b'$') => {}
            Some(other) => {
                return Err(protocol(format!("expected '$', got '{}'", show(other))));
            }
        }
        let Some(arg) = bulk(&mut cur, limits, false)? else {
            return Ok(None);
        };
        if let Some(slot) = progress.args.get_mut(count - progress.remaining) {
            *slot = (arg.start, arg.end);
        }
        progress.pos = cur.pos;
        progress.remaining -= 1;
    }
    Ok(Some((progress.pos, count)))
}

/// Any reply frame: its end.
pub(super) fn reply(
    buf: &[u8],
    limits: &Limits,
    progress: &mut Progress,
) -> Result<Option<usize>, ParseError> {
    let mut cur = Cursor::at(buf, progress.pos);
    loop {
        let Some(item) = item(&mut cur, limits, progress.pending.len())? else {
            return Ok(None);
        };
        progress.pos = cur.pos;
        if let Item::Array(len) = item {
            progress.pending.push(len);
            continue;
        }
        // One element is complete; so are the arrays it was the last element of.
        loop {
            match progress.pending.last_mut() {
                None => return Ok(Some(progress.pos)),
                Some(left) => {
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                    progress.pending.pop();
                }
            }
        }
    }
}

enum Item {
    Complete,
    /// A non-empty array header: its elements follow.
    Array(usize),
}

/// One scalar, or the header of a non-empty array at nesting `depth` (0 = top level).
fn item(cur: &mut Cursor, limits: &Limits, depth: usize) -> Result<Option<Item>, ParseError> {
    let Some(kind) = cur.next_byte() else {
        return Ok(None);
    };
    let complete = match kind {
        b'+' | b'-' => {
            let max = limits.max_inline_len;
            let too_long = |len| ParseError::TooLarge {
                what: "simple string",
                len,
                limit: max,
            };
            cur.line(max, too_long)?.map(|_| ())
        }
        b':' => cur.number("integer")?.map(|_| ()),
        b'$' => bulk(cur, limits, true)?.map(|_| ()),
        b'*' => {
            let Some(len) = cur.number("multibulk length")? else {
                return Ok(None);
            };
            let Some(len) = array_len(len, limits)? else {
                return Ok(Some(Item::Complete));
            };
            if depth + 1 > limits.max_depth {
                return Err(ParseError::TooLarge {
                    what: "nesting depth",
                    len: depth + 1,
                    limit: limits.max_depth,
                });
            }
            return Ok(Some(if len == 0 {
                Item::Complete
            } else {
                Item::Array(len)
            }));
        }
        other => {
            return Err(protocol(format!(
                "expected a RESP type byte, got '{}'",
                show(other)
            )))
        }
    };
    Ok(complete.map(|()| Item::Complete))
}

/// Validates an array length; `None` is the null array (`*-1`).
fn array_len(len: i64, limits: &Limits) -> Result<Option<usize>, ParseError> {
    match len {
        -1 => Ok(None),
        len if len < -1 => Err(protocol("invalid multibulk length".into())),
        len if len as u64 > limits.max_array_len as u64 => Err(ParseError::TooLarge {
            what: "multibulk length",
            len: len as usize,
            limit: limits.max_array_len,
        }),
        len => Ok(Some(len as usize)),
    }
}

/// A bulk string after its `$`, returning its payload's range (empty for the null bulk). The declared
/// length is checked against the limit before waiting for the payload.
fn bulk(
    cur: &mut Cursor,
    limits: &Limits,
    allow_null: bool,
) -> Result<Option<Range<usize>>, ParseError> {
    let Some(len) = cur.number("bulk length")? else {
        return Ok(None);
    };
    if len == -1 && allow_null {
        return Ok(Some(cur.pos..cur.pos));
    }
    if len < 0 {
        return Err(protocol("invalid bulk length".into()));
    }
    if len as u64 > limits.max_bulk_len as u64 {
        return Err(ParseError::TooLarge {
            what: "bulk length",
            len: len as usize,
            limit: limits.max_bulk_len,
        });
    }
    cur.payload(len as usize)
}

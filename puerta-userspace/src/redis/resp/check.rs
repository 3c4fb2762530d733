//! First pass: find where one complete frame ends without allocating, enforcing the limits. The pass
//! is resumable: [`Progress`] remembers the last fully validated element of an incomplete frame, so a
//! large array arriving over many reads is validated in linear time (with a [`super::Decoder`]).

use std::ops::Range;

use super::cursor::{protocol, show, Cursor};
use super::{Limits, ParseError, Span};

/// Commands with at most this many arguments have their argument positions recorded by the check
/// pass, so the build pass slices them without parsing the headers again (a 10-key MSET has 21).
/// Recorded in a vector kept for the connection: at most 4 KiB, grown once.
const RECORDED_ARGS: usize = 256;

#[derive(Debug, Default)]
pub(super) struct Progress {
    /// Offset of the first byte not yet validated.
    pos: usize,
    /// Commands: the argument count once the header has been read, and how many are still missing.
    count: Option<usize>,
    remaining: usize,
    /// Commands: where the first `RECORDED_ARGS` arguments' bytes are (none past 4 GiB).
    args: Vec<Span>,
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

    /// The argument positions recorded so far (the first `RECORDED_ARGS`).
    pub fn recorded(&self) -> &[Span] {
        &self.args
    }

    /// The byte ranges of a complete command's `count` arguments, when they were all recorded.
    pub fn recorded_args(&self, count: usize) -> Option<&[Span]> {
        (self.args.len() == count).then_some(&self.args[..])
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
            // Redis skips any count <= 0 as an empty command (`*-10` included).
            let count = match len {
                ..=0 => 0,
                len => array_len(len, limits)?.unwrap_or(0),
            };
            progress.pos = cur.pos;
            progress.count = Some(count);
            progress.remaining = count;
            progress.args.clear();
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
        if progress.args.len() < RECORDED_ARGS {
            if let Some(span) = Span::new(arg.start, arg.end) {
                progress.args.push(span);
            }
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
        if let Item::Aggregate(children) = item {
            progress.pending.push(children);
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

/// The elements of one whole array or push (`raw` as a reader validated it), each as its byte
/// range: for merges that only reorder a node's values, and for a look at a message's first
/// elements. `None` when `raw` is neither, or is not one whole frame.
pub(super) fn elements(raw: &[u8], mut each: impl FnMut(Range<usize>)) -> Option<usize> {
    if !matches!(raw.first(), Some(b'*' | b'>')) {
        return None;
    }
    let mut cur = Cursor::at(raw, 1);
    let count = usize::try_from(cur.number("multibulk length").ok()??).ok()?;
    let limits = Limits::node();
    let mut start = cur.pos;
    let mut progress = Progress::default();
    for _ in 0..count {
        progress.reset();
        progress.pos = start;
        let end = reply(raw, &limits, &mut progress).ok()??;
        each(start..end);
        start = end;
    }
    (start == raw.len()).then_some(count)
}

enum Item {
    Complete,
    /// The header of an aggregate with this many child frames (at least one) still to come: an
    /// array's, set's or push's elements, a map's keys and values, an attribute's pairs and then the
    /// value it annotates.
    Aggregate(usize),
}

/// One scalar, or the header of an aggregate at nesting `depth` (0 = top level).
fn item(cur: &mut Cursor, limits: &Limits, depth: usize) -> Result<Option<Item>, ParseError> {
    let Some(kind) = cur.next_byte() else {
        return Ok(None);
    };
    let complete = match kind {
        b'+' | b'-' => text_line(cur, limits)?.map(|_| ()),
        b':' => cur.number("integer")?.map(|_| ()),
        b'$' => bulk(cur, limits, true)?.map(|_| ()),
        b'!' => bulk(cur, limits, false)?.map(|_| ()),
        b'=' => verbatim(cur, limits)?,
        b'_' | b'#' | b',' | b'(' => match text_line(cur, limits)? {
            None => None,
            Some(text) => Some(scalar(kind, text)?),
        },
        b'*' => {
            let Some(len) = cur.number("multibulk length")? else {
                return Ok(None);
            };
            let Some(len) = array_len(len, limits)? else {
                return Ok(Some(Item::Complete));
            };
            return aggregate(len, depth, limits);
        }
        b'%' | b'~' | b'>' | b'|' => {
            let Some(len) = cur.number("aggregate length")? else {
                return Ok(None);
            };
            let len = resp3_len(len, limits)?;
            let children = match kind {
                b'%' => 2 * len,
                b'|' => 2 * len + 1,
                _ => len,
            };
            return aggregate(children, depth, limits);
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

/// An aggregate header counts towards the nesting depth even when it is empty.
fn aggregate(children: usize, depth: usize, limits: &Limits) -> Result<Option<Item>, ParseError> {
    within("nesting depth", depth as u64 + 1, limits.max_depth)?;
    Ok(Some(if children == 0 {
        Item::Complete
    } else {
        Item::Aggregate(children)
    }))
}

/// The text after a `+ - _ # , (` type byte, bounded like a simple string.
fn text_line<'a>(cur: &mut Cursor<'a>, limits: &Limits) -> Result<Option<&'a [u8]>, ParseError> {
    let max = limits.max_inline_len;
    let too_long = |len| ParseError::TooLarge {
        what: "simple string",
        len,
        limit: max,
    };
    cur.line(max, too_long)
}

/// Checks the text of a RESP3 null, boolean, double or big number.
fn scalar(kind: u8, text: &[u8]) -> Result<(), ParseError> {
    let valid = match kind {
        b'_' => text.is_empty(),
        b'#' => text == b"t" || text == b"f",
        b',' => is_double(text),
        _ => is_big_number(text),
    };
    if valid {
        return Ok(());
    }
    let what = match kind {
        b'_' => "null",
        b'#' => "boolean",
        b',' => "double",
        _ => "big number",
    };
    Err(protocol(format!("invalid {what}")))
}

fn is_double(text: &[u8]) -> bool {
    std::str::from_utf8(text).is_ok_and(|t| t.parse::<f64>().is_ok())
}

fn is_big_number(text: &[u8]) -> bool {
    let digits = text
        .strip_prefix(b"-")
        .or_else(|| text.strip_prefix(b"+"))
        .unwrap_or(text);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// A verbatim string after its `=`: a bulk whose payload starts with a three-byte format and `:`.
fn verbatim(cur: &mut Cursor, limits: &Limits) -> Result<Option<()>, ParseError> {
    let Some(range) = bulk(cur, limits, false)? else {
        return Ok(None);
    };
    match cur.buf.get(range) {
        Some(payload) if payload.len() >= 4 && payload[3] == b':' => Ok(Some(())),
        _ => Err(protocol("invalid verbatim string".into())),
    }
}

/// The one over-limit check of every declared length and depth.
fn within(what: &'static str, len: u64, limit: usize) -> Result<(), ParseError> {
    if len > limit as u64 {
        return Err(ParseError::TooLarge {
            what,
            len: len as usize,
            limit,
        });
    }
    Ok(())
}

/// Validates a map / set / push / attribute length (RESP3 has no null aggregates).
fn resp3_len(len: i64, limits: &Limits) -> Result<usize, ParseError> {
    if len < 0 {
        return Err(protocol("invalid aggregate length".into()));
    }
    within("aggregate length", len as u64, limits.max_array_len)?;
    Ok(len as usize)
}

/// Validates an array length; `None` is the null array (`*-1`).
fn array_len(len: i64, limits: &Limits) -> Result<Option<usize>, ParseError> {
    match len {
        -1 => Ok(None),
        len if len < -1 => Err(protocol("invalid multibulk length".into())),
        len => {
            within("multibulk length", len as u64, limits.max_array_len)?;
            Ok(Some(len as usize))
        }
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
    within("bulk length", len as u64, limits.max_bulk_len)?;
    cur.payload(len as usize)
}

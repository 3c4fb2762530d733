//! Finding the key arguments of a call, with the arity check Redis does first.

use bytes::Bytes;

use super::{flag, is_keyword, CommandError, CommandSpec, KeySpec};
use crate::redis::command::slots::key_slot;

/// A call's arguments as the key finders read them: spans of the bytes the client sent (the hot
/// path, which then takes no allocation or reference count per argument) or `Bytes` of their own.
pub trait Args {
    /// How many, the command name included.
    fn count(&self) -> usize;
    fn arg(&self, i: usize) -> Option<&[u8]>;
}

impl Args for [Bytes] {
    fn count(&self) -> usize {
        self.len()
    }

    fn arg(&self, i: usize) -> Option<&[u8]> {
        self.get(i).map(|arg| &arg[..])
    }
}

impl Args for Vec<Bytes> {
    fn count(&self) -> usize {
        self.len()
    }

    fn arg(&self, i: usize) -> Option<&[u8]> {
        self[..].arg(i)
    }
}

/// The positions in `args` (`args[0]` = the command name) that are keys, in argument order.
pub fn key_indices(
    spec: &CommandSpec,
    args: &(impl Args + ?Sized),
) -> Result<Vec<usize>, CommandError> {
    let mut keys = Vec::new();
    for_each_key(spec, args, |i| keys.push(i))?;
    Ok(keys)
}

/// Like [`key_indices`] without allocating: calls `visit` with each key position in order.
pub fn for_each_key(
    spec: &CommandSpec,
    args: &(impl Args + ?Sized),
    mut visit: impl FnMut(usize),
) -> Result<(), CommandError> {
    if !spec.arity_ok(args.count()) {
        return Err(CommandError::WrongArity(spec.name));
    }
    match spec.keys {
        KeySpec::None => {}
        KeySpec::Single { pos } => {
            if pos < args.count() {
                visit(pos);
            }
        }
        KeySpec::Range { first, last, step } => {
            if let Some(last) = range_end(spec, args.count(), first, last, step)? {
                (first..=last).step_by(step.max(1)).for_each(visit);
            }
        }
        KeySpec::NumKeys { numkeys_pos, first } => {
            let count = numkeys(args, numkeys_pos)?;
            (first..numkeys_pos).for_each(&mut visit);
            (numkeys_pos + 1..numkeys_pos + 1 + count).for_each(visit);
        }
        KeySpec::Streams => {
            let (start, count) = streams(spec, args)?;
            (start..start + count).for_each(visit);
        }
    }
    Ok(())
}

/// The one slot all keys of this call hash to (`None`: no keys, any node will do), without
/// allocating; keys in different slots are Redis' CROSSSLOT error. `Kind::Split` commands are
/// expected to be split per slot before this is asked.
pub fn command_slot(
    spec: &CommandSpec,
    args: &(impl Args + ?Sized),
) -> Result<Option<u16>, CommandError> {
    let mut slot = None;
    let mut cross = false;
    for_each_key(spec, args, |i| {
        if let Some(key) = args.arg(i) {
            let this = key_slot(key);
            cross |= slot.is_some_and(|s| s != this);
            slot = Some(this);
        }
    })?;
    if cross {
        return Err(CommandError::CrossSlot);
    }
    Ok(slot)
}

/// Whether this call will block the connection: BLOCKING commands do, except XREAD/XREADGROUP which
/// block only with a `BLOCK` option.
pub fn blocks(spec: &CommandSpec, args: &(impl Args + ?Sized)) -> bool {
    if !spec.has(flag::BLOCKING) {
        return false;
    }
    if spec.keys != KeySpec::Streams {
        return true;
    }
    StreamOptions::new(args).any(|option| matches!(option, Ok(StreamOption::Block)))
}

/// The last key index of a `Range`, resolving a negative `last` against `argc`; `None` when the call
/// has no keys (SUNSUBSCRIBE without channels).
fn range_end(
    spec: &CommandSpec,
    argc: usize,
    first: usize,
    last: i32,
    step: usize,
) -> Result<Option<usize>, CommandError> {
    let last = if last < 0 {
        argc as i64 + i64::from(last)
    } else {
        i64::from(last).min(argc as i64 - 1)
    };
    if last < first as i64 {
        return Ok(None);
    }
    let last = last as usize;
    if step > 1 && !(last - first + 1).is_multiple_of(step) {
        return Err(CommandError::WrongArity(spec.name));
    }
    Ok(Some(last))
}

fn numkeys(args: &(impl Args + ?Sized), numkeys_pos: usize) -> Result<usize, CommandError> {
    let raw = args.arg(numkeys_pos).ok_or(CommandError::Syntax)?;
    let count = std::str::from_utf8(raw)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .ok_or(CommandError::NotAnInteger)?;
    let count = usize::try_from(count).map_err(|_| CommandError::NegativeKeys)?;
    if count > args.count() - numkeys_pos - 1 {
        return Err(CommandError::TooManyKeys);
    }
    Ok(count)
}

/// Where XREAD/XREADGROUP's stream keys start and how many there are.
fn streams(
    spec: &CommandSpec,
    args: &(impl Args + ?Sized),
) -> Result<(usize, usize), CommandError> {
    for option in StreamOptions::new(args) {
        if let StreamOption::Streams(start) = option? {
            let rest = args.count() - start;
            if rest == 0 || !rest.is_multiple_of(2) {
                return Err(CommandError::UnbalancedStreams(spec.name));
            }
            return Ok((start, rest / 2));
        }
    }
    Err(CommandError::Syntax)
}

enum StreamOption {
    Block,
    Other,
    /// `STREAMS`, with the index of the first argument after it.
    Streams(usize),
}

/// Walks XREAD/XREADGROUP options in Redis' order, skipping their values, so that a group or consumer
/// literally named "STREAMS" is not mistaken for the keyword.
struct StreamOptions<'a, A: Args + ?Sized> {
    args: &'a A,
    pos: usize,
}

impl<'a, A: Args + ?Sized> StreamOptions<'a, A> {
    fn new(args: &'a A) -> Self {
        StreamOptions { args, pos: 1 }
    }
}

impl<A: Args + ?Sized> Iterator for StreamOptions<'_, A> {
    type Item = Result<StreamOption, CommandError>;

    fn next(&mut self) -> Option<Self::Item> {
        let arg = self.args.arg(self.pos)?;
        let (option, values): (StreamOption, usize) = if is_keyword(arg, "STREAMS") {
            let start = self.pos + 1;
            self.pos = self.args.count();
            return Some(Ok(StreamOption::Streams(start)));
        } else if is_keyword(arg, "BLOCK") {
            (StreamOption::Block, 1)
        } else if is_keyword(arg, "COUNT") {
            (StreamOption::Other, 1)
        } else if is_keyword(arg, "GROUP") {
            (StreamOption::Other, 2)
        } else if is_keyword(arg, "NOACK") {
            (StreamOption::Other, 0)
        } else {
            self.pos = self.args.count();
            return Some(Err(CommandError::Syntax));
        };
        self.pos += 1 + values;
        if self.pos > self.args.count() {
            return Some(Err(CommandError::Syntax));
        }
        Some(Ok(option))
    }
}

//! Putting the passes together: check, freeze the frame's prefix of the buffer, build.

use bytes::{Buf, Bytes, BytesMut};

use super::check::{self, Progress};
use super::cursor::{protocol, show};
use super::{build, inline, Frame, Limits, ParseError, RawCommand, Spans};

/// A parser for one direction of one connection. It remembers how far it validated an incomplete
/// frame, so a frame arriving over many reads costs linear time: the free functions
/// [`super::parse_command`] / [`super::parse_reply`] re-walk an incomplete frame from its start on
/// every call, which is quadratic for a huge array of small elements (a big LRANGE reply).
///
/// Between calls the caller may only append to the buffer (as a read loop does).
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    progress: Progress,
}

impl Decoder {
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            progress: Progress::default(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// See [`super::parse_command`].
    pub fn command(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ParseError> {
        Ok(self.command_args(buf)?.map(RawCommand::into_frame))
    }

    /// See [`super::parse_command_args`].
    pub fn command_args(&mut self, buf: &mut BytesMut) -> Result<Option<RawCommand>, ParseError> {
        self.sync(buf);
        let result = command(buf, &self.limits, &mut self.progress);
        self.settle(&result);
        result
    }

    /// See [`super::parse_reply`].
    pub fn reply(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ParseError> {
        Ok(self.reply_raw(buf)?.map(|(frame, _raw)| frame))
    }

    /// One whole reply's wire bytes, validated but not built into a [`Frame`]: what a proxy passing
    /// replies through needs. [`super::frame_of`] builds the frame later if someone must look inside.
    pub fn reply_bytes(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, ParseError> {
        Ok(self.reply_len(buf)?.map(|end| buf.split_to(end).freeze()))
    }

    /// The length of the whole reply that starts `buf`, validated and left in place: a reader
    /// that passes several replies on together finds where each ends, then takes them at once.
    /// Between calls about one reply the caller may only append to `buf`.
    pub fn reply_len(&mut self, buf: &[u8]) -> Result<Option<usize>, ParseError> {
        self.sync(buf);
        let result = check::reply(buf, &self.limits, &mut self.progress);
        self.settle(&result);
        result
    }

    /// See [`super::parse_reply_raw`].
    pub fn reply_raw(&mut self, buf: &mut BytesMut) -> Result<Option<(Frame, Bytes)>, ParseError> {
        self.sync(buf);
        let result = reply(buf, &self.limits, &mut self.progress);
        self.settle(&result);
        result
    }

    fn sync(&mut self, buf: &[u8]) {
        if !self.progress.fits(buf) {
            self.progress.reset();
        }
    }

    /// Progress belongs to the frame in flight only.
    fn settle<T>(&mut self, result: &Result<Option<T>, ParseError>) {
        if !matches!(result, Ok(None)) {
            self.progress.reset();
        }
    }
}

pub(super) fn command(
    buf: &mut BytesMut,
    limits: &Limits,
    progress: &mut Progress,
) -> Result<Option<RawCommand>, ParseError> {
    loop {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        match first {
            b'*' => {
                let Some((end, count)) = check::command(buf, limits, progress)? else {
                    return Ok(None);
                };
                progress.reset();
                if count == 0 {
                    buf.advance(end);
                    continue;
                }
                let raw = buf.split_to(end).freeze();
                let (spans, words) = match progress.recorded_args(count) {
                    Some(spans) => (Spans::from_slice(spans), Vec::new()),
                    None => (Spans::new(), build::command_args(&raw, count)?),
                };
                return Ok(Some(RawCommand {
                    wire: Some(raw),
                    spans,
                    words,
                }));
            }
            b'$' | b'+' | b'-' | b':' => {
                return Err(protocol(format!("expected '*', got '{}'", show(first))))
            }
            _ => match inline::parse(buf, limits)? {
                None => return Ok(None),
                Some(args) if args.is_empty() => continue,
                Some(words) => {
                    return Ok(Some(RawCommand {
                        wire: None,
                        spans: Spans::new(),
                        words,
                    }))
                }
            },
        }
    }
}

pub(super) fn reply(
    buf: &mut BytesMut,
    limits: &Limits,
    progress: &mut Progress,
) -> Result<Option<(Frame, Bytes)>, ParseError> {
    let Some(end) = check::reply(buf, limits, progress)? else {
        return Ok(None);
    };
    progress.reset();
    let raw = buf.split_to(end).freeze();
    let frame = build::reply(&raw)?;
    Ok(Some((frame, raw)))
}

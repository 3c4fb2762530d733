//! Reading primitives over a buffer that may end mid-frame: every `Ok(None)` means "the bytes have
//! not arrived yet", and every wait is bounded (a length is checked before its payload is awaited, a
//! number line fails once it has more digits than an i64, a text line fails past its limit).

use super::ParseError;

pub(super) struct Cursor<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn at(buf: &'a [u8], pos: usize) -> Self {
        Cursor { buf, pos }
    }

    pub fn next_byte(&mut self) -> Option<u8> {
        let byte = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(byte)
    }

    /// A text line (simple string, error) without its CRLF; longer than `max` is an error as soon as
    /// that many bytes are buffered.
    pub fn line(
        &mut self,
        max: usize,
        too_long: impl FnOnce(usize) -> ParseError,
    ) -> Result<Option<&'a [u8]>, ParseError> {
        let rest = &self.buf[self.pos..];
        let window = &rest[..rest.len().min(max.saturating_add(1))];
        match find_cr(window) {
            Some(cr) => match rest.get(cr + 1) {
                None => Ok(None),
                Some(b'\n') => {
                    self.pos += cr + 2;
                    Ok(Some(&rest[..cr]))
                }
                Some(_) => Err(missing_lf()),
            },
            None if rest.len() > max => Err(too_long(rest.len())),
            None => Ok(None),
        }
    }

    /// A decimal line (`*<n>`, `$<n>`, `:<n>` after the type byte) with Redis' `string2ll` rules:
    /// optional `-`, digits, no leading zeros, no `-0`, no overflow. Parsed in the same pass that looks
    /// for the CR, since these lines are short and on every frame.
    ///
    /// One or two digits (nearly every length and count on the wire) are read inline; anything
    /// else in a function of its own, whose register saving the short case then does not pay
    /// (half the cost of a call under callgrind).
    #[inline]
    pub fn number(&mut self, what: &'static str) -> Result<Option<i64>, ParseError> {
        let rest = &self.buf[self.pos..];
        match *rest {
            [d @ b'0'..=b'9', b'\r', b'\n', ..] => {
                self.pos += 3;
                Ok(Some(i64::from(d - b'0')))
            }
            [t @ b'1'..=b'9', u @ b'0'..=b'9', b'\r', b'\n', ..] => {
                self.pos += 4;
                Ok(Some(i64::from(t - b'0') * 10 + i64::from(u - b'0')))
            }
            _ => self.long_number(what),
        }
    }

    #[inline(never)]
    fn long_number(&mut self, what: &'static str) -> Result<Option<i64>, ParseError> {
        let rest = &self.buf[self.pos..];
        let invalid = || protocol(format!("invalid {what}"));
        let negative = rest.first() == Some(&b'-');
        let start = usize::from(negative);
        let mut end = start;
        // Accumulated negatively so that i64::MIN fits.
        let mut value: i64 = 0;
        loop {
            match rest.get(end) {
                None => return Ok(None),
                Some(b'\r') => break,
                Some(&digit @ b'0'..=b'9') => {
                    value = value
                        .checked_mul(10)
                        .and_then(|v| v.checked_sub(i64::from(digit - b'0')))
                        .ok_or_else(invalid)?;
                    end += 1;
                }
                Some(_) => return Err(invalid()),
            }
        }
        let digits = &rest[start..end];
        let leading_zero = digits.len() > 1 && digits[0] == b'0';
        if digits.is_empty() || leading_zero || (negative && value == 0) {
            return Err(invalid());
        }
        let value = if negative {
            value
        } else {
            value.checked_neg().ok_or_else(invalid)?
        };
        match rest.get(end + 1) {
            None => Ok(None),
            Some(b'\n') => {
                self.pos += end + 2;
                Ok(Some(value))
            }
            Some(_) => Err(missing_lf()),
        }
    }

    /// Steps over a bulk payload of `len` bytes and its CRLF; returns the payload's range.
    pub fn payload(&mut self, len: usize) -> Result<Option<std::ops::Range<usize>>, ParseError> {
        let start = self.pos;
        let end = start.saturating_add(len);
        let Some(crlf) = self.buf.get(end..end.saturating_add(2)) else {
            return Ok(None);
        };
        if crlf != b"\r\n" {
            return Err(protocol("expected CRLF after the bulk string".into()));
        }
        self.pos = end + 2;
        Ok(Some(start..end))
    }
}

fn missing_lf() -> ParseError {
    protocol("expected '\\n' after '\\r'".into())
}

pub(super) fn protocol(msg: String) -> ParseError {
    ParseError::Protocol(msg)
}

/// A byte as Redis would print it with `%c`, escaped when not printable.
pub(super) fn show(byte: u8) -> String {
    std::ascii::escape_default(byte).to_string()
}

/// The first CR in `window`. Most lines are a few bytes (`+OK`, `+PONG`, a short error's first
/// word): a plain look at the first bytes finds their end before a vectorised search is set up
/// (callgrind: half the cost of reading a `+OK` reply).
fn find_cr(window: &[u8]) -> Option<usize> {
    const SHORT: usize = 8;
    let head = &window[..window.len().min(SHORT)];
    match head.iter().position(|&b| b == b'\r') {
        Some(cr) => Some(cr),
        None if window.len() > SHORT => {
            memchr::memchr(b'\r', &window[SHORT..]).map(|cr| cr + SHORT)
        }
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_short_look_finds_what_a_full_search_finds() {
        for len in 0..24 {
            for cr in (0..len).map(Some).chain([None]) {
                let mut window = vec![b'a'; len];
                if let Some(at) = cr {
                    window[at] = b'\r';
                    // A second CR after the first must not be the one found.
                    if at + 1 < len {
                        window[len - 1] = b'\r';
                    }
                }
                assert_eq!(
                    find_cr(&window),
                    memchr::memchr(b'\r', &window),
                    "{len} {cr:?}"
                );
            }
        }
    }
}

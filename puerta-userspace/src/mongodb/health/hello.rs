//! The MongoDB wire exchange a health check makes: one OP_MSG `{hello: 1, $db: "admin"}` and its reply.
//! A backend is only healthy if the reply is a well-formed OP_MSG answering our request with `ok: 1`;
//! an open port alone proves nothing about a stuck or misconfigured mongos.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::bson::{self, BsonError, Value};

pub const OP_MSG: i32 = 2013;
const HEADER_LEN: usize = 16;
/// A hello reply is a few hundred bytes; anything near this is not a sane answer.
pub const MAX_REPLY_LEN: usize = 1 << 20;
const FLAG_CHECKSUM_PRESENT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("reply length {0} is out of range")]
    Length(i64),
    #[error("reply opcode is {0}, expected OP_MSG ({OP_MSG})")]
    Opcode(i32),
    #[error("reply answers request {got}, expected {expected}")]
    ResponseTo { got: i32, expected: i32 },
    #[error("reply sets flags 0x{0:x} a reply may not")]
    Flags(u32),
    #[error("reply section kind {0} is unknown")]
    SectionKind(u8),
    #[error("reply has no body section")]
    NoBody,
    #[error("reply body: {0}")]
    Bson(#[from] BsonError),
    #[error("reply has no `ok` field")]
    NoOk,
    #[error("reply says ok: {ok}{}", errmsg.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    NotOk { ok: String, errmsg: Option<String> },
}

/// What a healthy reply tells us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloReply {
    /// `msg: "isdbgrid"`: the backend is a real mongos router rather than a mongod.
    pub is_mongos: bool,
}

/// The full OP_MSG request bytes.
pub fn encode_hello(request_id: i32) -> Vec<u8> {
    let body = bson::encode(&[("hello", Value::Int32(1)), ("$db", Value::String("admin"))]);
    let len = HEADER_LEN + 4 + 1 + body.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as i32).to_le_bytes());
    msg.extend_from_slice(&request_id.to_le_bytes());
    msg.extend_from_slice(&0i32.to_le_bytes()); // responseTo
    msg.extend_from_slice(&OP_MSG.to_le_bytes());
    msg.extend_from_slice(&0u32.to_le_bytes()); // flagBits
    msg.push(0); // section kind 0: body
    msg.extend_from_slice(&body);
    msg
}

/// Validates a complete reply message (header included) to request `request_id`.
pub fn decode_hello_reply(msg: &[u8], request_id: i32) -> Result<HelloReply, HelloError> {
    let body = op_msg_body(msg, request_id)?;
    let fields = bson::elements(body)?;
    let field = |name: &str| fields.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
    let ok = field("ok").ok_or(HelloError::NoOk)?;
    if !is_one(ok) {
        let errmsg = match field("errmsg") {
            Some(Value::String(s)) => Some(s.to_string()),
            _ => None,
        };
        return Err(HelloError::NotOk {
            ok: format!("{ok:?}"),
            errmsg,
        });
    }
    Ok(HelloReply {
        is_mongos: field("msg") == Some(Value::String("isdbgrid")),
    })
}

fn is_one(v: Value) -> bool {
    match v {
        Value::Double(d) => d == 1.0,
        Value::Int32(i) => i == 1,
        Value::Int64(i) => i == 1,
        Value::Bool(b) => b,
        _ => false,
    }
}

/// Checks the header and flags and returns the kind-0 body document.
fn op_msg_body(msg: &[u8], request_id: i32) -> Result<&[u8], HelloError> {
    let int = |at: usize| i32::from_le_bytes([msg[at], msg[at + 1], msg[at + 2], msg[at + 3]]);
    if msg.len() < HEADER_LEN + 5 || int(0) as usize != msg.len() {
        return Err(HelloError::Length(msg.len() as i64));
    }
    if int(12) != OP_MSG {
        return Err(HelloError::Opcode(int(12)));
    }
    if int(8) != request_id {
        return Err(HelloError::ResponseTo {
            got: int(8),
            expected: request_id,
        });
    }
    let flags = int(16) as u32;
    // Bits 0-15 are "required": refuse any we do not understand; moreToCome means exhaust, never asked.
    if flags & 0xffff & !FLAG_CHECKSUM_PRESENT != 0 {
        return Err(HelloError::Flags(flags));
    }
    let mut end = msg.len();
    if flags & FLAG_CHECKSUM_PRESENT != 0 {
        end = end.checked_sub(4).ok_or(HelloError::Length(end as i64))?;
    }
    let sections = msg.get(HEADER_LEN + 4..end).ok_or(HelloError::NoBody)?;
    find_body(sections)
}

/// Walks the sections (kind 0: one document; kind 1: sized document sequence) for the body.
fn find_body(sections: &[u8]) -> Result<&[u8], HelloError> {
    let mut pos = 0;
    let mut body = None;
    while pos < sections.len() {
        let kind = sections[pos];
        pos += 1;
        let len = bson::document_len(sections, pos)?;
        match kind {
            0 if body.is_none() => body = Some(&sections[pos..pos + len]),
            0 => return Err(HelloError::SectionKind(0)),
            1 => {}
            other => return Err(HelloError::SectionKind(other)),
        }
        pos += len;
    }
    body.ok_or(HelloError::NoBody)
}

/// Sends hello on `stream` and reads and validates the reply. The caller applies the timeout.
pub async fn exchange<S>(stream: &mut S, request_id: i32) -> Result<HelloReply, HelloError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(&encode_hello(request_id)).await?;
    stream.flush().await?;
    let mut header = [0u8; HEADER_LEN];
    stream.read_exact(&mut header).await?;
    let declared = i32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let len = usize::try_from(declared)
        .ok()
        .filter(|l| (HEADER_LEN + 5..=MAX_REPLY_LEN).contains(l))
        .ok_or(HelloError::Length(declared.into()))?;
    let mut msg = vec![0u8; len];
    msg[..HEADER_LEN].copy_from_slice(&header);
    stream.read_exact(&mut msg[HEADER_LEN..]).await?;
    decode_hello_reply(&msg, request_id)
}

#[cfg(test)]
mod tests;

//! Just enough of the MongoDB wire protocol for the stand-ins of tests and bench: an OP_MSG `hello`
//! request (what clients and Puerta's health checks send) and replies that say `ok: 1`.

pub const OP_MSG: i32 = 2013;
pub const HEADER_LEN: usize = 16;

/// `{hello: 1, $db: "admin"}` as an OP_MSG with one kind-0 section.
pub fn hello_request(request_id: i32) -> Vec<u8> {
    let doc = bson_doc(&[
        (0x10, "hello", 1i32.to_le_bytes().to_vec()),
        (0x02, "$db", bson_string("admin")),
    ]);
    message(request_id, 0, &doc)
}

/// A hello reply as a standalone server answers it: writable primary, modern wire version, `ok: 1`.
pub fn hello_reply(response_to: i32) -> Vec<u8> {
    let doc = bson_doc(&[
        (0x08, "isWritablePrimary", vec![1]),
        (
            0x10,
            "maxBsonObjectSize",
            16_777_216i32.to_le_bytes().to_vec(),
        ),
        (
            0x10,
            "maxMessageSizeBytes",
            48_000_000i32.to_le_bytes().to_vec(),
        ),
        (0x10, "minWireVersion", 0i32.to_le_bytes().to_vec()),
        (0x10, "maxWireVersion", 17i32.to_le_bytes().to_vec()),
        (0x02, "msg", bson_string("isdbgrid")),
        (0x01, "ok", 1f64.to_le_bytes().to_vec()),
    ]);
    message(1, response_to, &doc)
}

/// The smallest answer a health check accepts: `{ok: 1.0}`.
pub fn ok_reply(response_to: i32) -> Vec<u8> {
    let doc = bson_doc(&[(0x01, "ok", 1f64.to_le_bytes().to_vec())]);
    message(1, response_to, &doc)
}

/// `(message length, request id, opcode)` of a 16-byte header.
pub fn parse_header(header: &[u8; HEADER_LEN]) -> (usize, i32, i32) {
    let word =
        |i: usize| i32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    (word(0).max(0) as usize, word(4), word(12))
}

fn message(request_id: i32, response_to: i32, doc: &[u8]) -> Vec<u8> {
    let len = HEADER_LEN + 4 + 1 + doc.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(len as i32).to_le_bytes());
    out.extend_from_slice(&request_id.to_le_bytes());
    out.extend_from_slice(&response_to.to_le_bytes());
    out.extend_from_slice(&OP_MSG.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // flagBits
    out.push(0); // section kind 0: body
    out.extend_from_slice(doc);
    out
}

fn bson_doc(elements: &[(u8, &str, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (kind, name, value) in elements {
        body.push(*kind);
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(value);
    }
    body.push(0);
    let mut doc = ((body.len() + 4) as i32).to_le_bytes().to_vec();
    doc.extend_from_slice(&body);
    doc
}

fn bson_string(s: &str) -> Vec<u8> {
    let mut v = ((s.len() + 1) as i32).to_le_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_header_states_its_length_and_opcode() {
        let msg = hello_request(7);
        let header: [u8; HEADER_LEN] = msg[..HEADER_LEN].try_into().unwrap();
        assert_eq!(parse_header(&header), (msg.len(), 7, OP_MSG));
    }

    #[test]
    fn reply_answers_the_request_and_carries_ok() {
        let msg = hello_reply(7);
        let response_to = i32::from_le_bytes(msg[8..12].try_into().unwrap());
        assert_eq!(response_to, 7);
        let doc = &msg[HEADER_LEN + 5..];
        let doc_len = i32::from_le_bytes(doc[..4].try_into().unwrap()) as usize;
        assert_eq!(doc_len, doc.len());
        let ok = [&[0x01][..], b"ok\0", &1f64.to_le_bytes()].concat();
        assert!(doc.windows(ok.len()).any(|w| w == ok.as_slice()));
    }
}

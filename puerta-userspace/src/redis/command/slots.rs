//! Redis Cluster key slots: CRC16-XMODEM of the key (or of its `{hash tag}`) modulo 16384, exactly as
//! the cluster spec's `keyHashSlot`.

use crc::{Crc, Table, CRC_16_XMODEM};

pub const SLOT_COUNT: u16 = 16384;

/// CRC16-XMODEM sixteen bytes per step (slice-by-16 tables, 8 KiB): every key of every command is
/// hashed, and a byte-at-a-time table (the `crc16` crate, which the tests keep as the reference) costs
/// about 1 ns per byte, 20 of a GET's ~170 ns from bytes to route.
static XMODEM: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&CRC_16_XMODEM);

/// The slot that owns `key`. If the key contains `{` followed later by `}` with at least one byte
/// between them, only the bytes between the first `{` and the first `}` after it are hashed, so
/// `{user1000}.following` and `{user1000}.followers` share a slot; `foo{}{bar}` hashes whole.
pub fn key_slot(key: &[u8]) -> u16 {
    XMODEM.checksum(hash_tag(key)) & (SLOT_COUNT - 1)
}

fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = memchr::memchr(b'{', key) else {
        return key;
    };
    let after_open = &key[open + 1..];
    match memchr::memchr(b'}', after_open) {
        Some(close) if close > 0 => &after_open[..close],
        _ => key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crc16::{State, XMODEM};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_fast_crc_is_the_reference_crc(key in proptest::collection::vec(any::<u8>(), 0..200)) {
            let reference = State::<XMODEM>::calculate(&key);
            prop_assert_eq!(super::XMODEM.checksum(&key), reference);
        }
    }

    #[test]
    fn crc16_xmodem_vector_from_the_spec() {
        assert_eq!(State::<XMODEM>::calculate(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"123456789"), 0x31C3 % SLOT_COUNT);
    }

    #[test]
    fn known_slots() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.0.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b""), 0);
    }

    #[test]
    fn hash_tags_follow_the_spec() {
        let tag = key_slot(b"user1000");
        assert_eq!(key_slot(b"{user1000}.following"), tag);
        assert_eq!(key_slot(b"{user1000}.followers"), tag);
        // Only the first `{` counts, and the first `}` after it.
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        // Empty tag or no closing brace: the whole key is hashed.
        assert_eq!(
            key_slot(b"foo{}{bar}"),
            State::<XMODEM>::calculate(b"foo{}{bar}") % SLOT_COUNT
        );
        assert_eq!(
            key_slot(b"foo{bar"),
            State::<XMODEM>::calculate(b"foo{bar") % SLOT_COUNT
        );
        assert_eq!(
            key_slot(b"}foo{"),
            State::<XMODEM>::calculate(b"}foo{") % SLOT_COUNT
        );
        assert_eq!(key_slot(b"a{b}c"), key_slot(b"b"));
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
    }
}

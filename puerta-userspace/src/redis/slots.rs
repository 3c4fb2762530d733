//! PLACEHOLDER until branch `redisproto` lands (contract only).
pub const SLOT_COUNT: u16 = 16384;
pub fn key_slot(_key: &[u8]) -> u16 {
    todo!("slots")
}

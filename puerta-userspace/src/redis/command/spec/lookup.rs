//! Case-insensitive name lookup without allocation: an open-addressing hash index over the table,
//! built at compile time, probed with a hash that folds ASCII case while it reads the name.

use super::table::{COMMANDS, TABLE};
use super::CommandSpec;

/// Power of two, > 4x the table so probes are short.
const INDEX_SIZE: usize = 1024;
const EMPTY: u16 = u16::MAX;

static INDEX: [u16; INDEX_SIZE] = build_index();

/// The spec of the command called `name` (any case), or `None` for an unknown command.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    let mut slot = fold_hash(name) & (INDEX_SIZE - 1);
    loop {
        let entry = INDEX[slot];
        if entry == EMPTY {
            return None;
        }
        let spec = &COMMANDS[entry as usize];
        if spec.name.as_bytes().eq_ignore_ascii_case(name) {
            return Some(spec);
        }
        slot = (slot + 1) & (INDEX_SIZE - 1);
    }
}

/// FNV-1a over the bytes with bit 5 set, which maps `A-Z` onto `a-z` (and is harmless for the other
/// bytes: equal names still hash equal, and the final comparison is exact).
const fn fold_hash(name: &[u8]) -> usize {
    let mut hash: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < name.len() {
        hash ^= (name[i] | 0x20) as u32;
        hash = hash.wrapping_mul(0x0100_0193);
        i += 1;
    }
    hash as usize
}

const fn build_index() -> [u16; INDEX_SIZE] {
    assert!(TABLE.len() * 4 < INDEX_SIZE);
    let mut index = [EMPTY; INDEX_SIZE];
    let mut i = 0;
    while i < TABLE.len() {
        let mut slot = fold_hash(TABLE[i].name.as_bytes()) & (INDEX_SIZE - 1);
        while index[slot] != EMPTY {
            slot = (slot + 1) & (INDEX_SIZE - 1);
        }
        index[slot] = i as u16;
        i += 1;
    }
    index
}

//! PLACEHOLDER until branch `redisproto` lands (contract only).
use bytes::Bytes;

pub struct CommandSpec {
    pub name: &'static str,
    pub arity: i32,
    pub flags: u32,
    pub keys: KeySpec,
}

pub mod flag {
    pub const READONLY: u32 = 1;
    pub const WRITE: u32 = 2;
    pub const BLOCKING: u32 = 4;
    pub const PUBSUB: u32 = 8;
    pub const TRANSACTION: u32 = 16;
    pub const PROXY: u32 = 32;
    pub const MULTI_KEY_SPLIT: u32 = 64;
    pub const NO_KEY: u32 = 128;
}

pub enum KeySpec {
    None,
    Single {
        pos: usize,
    },
    Range {
        first: usize,
        last: i32,
        step: usize,
    },
    NumKeys {
        numkeys_pos: usize,
        first: usize,
    },
    Streams,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("bad")]
    Bad,
}

pub fn lookup(_name: &[u8]) -> Option<&'static CommandSpec> {
    todo!()
}

pub fn key_indices(_spec: &CommandSpec, _args: &[Bytes]) -> Result<Vec<usize>, CommandError> {
    todo!()
}

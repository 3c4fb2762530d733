//! Types shared between the eBPF programs and the daemon. Each type exists once, here, so the kernel and
//! userspace can never disagree on a map's layout. Every type is `#[repr(C)]` with explicit padding
//! fields (the kernel copies keys byte-for-byte, so uninitialised padding would make equal keys differ)
//! and a compile-time size assertion.
#![no_std]

pub mod maps;

pub use maps::*;

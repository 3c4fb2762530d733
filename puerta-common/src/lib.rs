//! Types shared between the eBPF programs and the daemon. Each type exists once, here, so the kernel and
//! userspace can never disagree on a map's layout.
#![no_std]

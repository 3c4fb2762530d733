//! Sockmap data path: a stream-verdict program that moves every skb arriving on a spliced socket to
//! the egress of its peer, so payload never enters userspace. Peer lookup is by socket cookie (see
//! `puerta_common::maps`); userspace owns insertion, close handling and removal.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod verdict;

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(all(target_arch = "bpf", not(test)))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

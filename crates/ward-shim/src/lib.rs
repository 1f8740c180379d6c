//! `ward-shim`: the minimal guest kernel of a Ward kvm Keep.
//!
//! The library part (always built) is the guest/host ABI ([`abi`]) and the address-space
//! bookkeeping ([`mm`]), both unit-tested on the host. Built by `ward-vmm`'s build script
//! with `--cfg ward_shim_image`, the same source becomes the freestanding guest image
//! (see `docs/kvm.md` for its design: a 4-instruction ring-0 syscall trampoline, and the
//! Linux system calls served at CPL 3).
#![cfg_attr(not(test), no_std)]
#![cfg_attr(ward_shim_image, no_main)]

pub mod abi;
pub mod mm;

#[cfg(ward_shim_image)]
mod image;

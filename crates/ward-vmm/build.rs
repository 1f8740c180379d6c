//! Builds the `ward-shim` guest image: `crates/ward-shim/src/lib.rs` compiled by rustc
//! as a freestanding, statically linked ELF (`--cfg ward_shim_image`), with flags chosen
//! so that the same compiler and source always give the same bytes (no debug info, no
//! build id, paths remapped). `src/shim_build.rs` holds the exact command; the
//! reproducibility test runs it again in another directory and compares.

use std::path::PathBuf;

include!("src/shim_build.rs");

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let shim_dir = manifest.join("../ward-shim");
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it")).join("ward-shim.elf");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    for f in [
        "src/lib.rs",
        "src/abi.rs",
        "src/mm.rs",
        "src/image.rs",
        "src/hostio.rs",
        "shim.ld",
    ] {
        println!("cargo:rerun-if-changed={}", shim_dir.join(f).display());
    }
    println!("cargo:rerun-if-changed=src/shim_build.rs");
    if let Err(e) = build_shim(&rustc, &shim_dir, &out) {
        panic!("building the ward-shim guest image failed: {e}");
    }
}

// Shared by build.rs and the reproducibility test (included, not a module).

/// Compiles the shim guest image from `shim_dir` into `out` with `rustc`.
#[allow(dead_code)]
fn build_shim(
    rustc: &std::ffi::OsStr,
    shim_dir: &std::path::Path,
    out: &std::path::Path,
) -> Result<(), String> {
    let shim_dir = shim_dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", shim_dir.display()))?;
    let ld = shim_dir.join("shim.ld");
    let status = std::process::Command::new(rustc)
        .arg("--edition=2021")
        .args(["--crate-name", "ward_shim", "--crate-type", "bin"])
        .args(["--target", "x86_64-unknown-linux-gnu"])
        .args(["--cfg", "ward_shim_image"])
        .args(["-C", "opt-level=2", "-C", "panic=abort", "-C", "debuginfo=0"])
        .args(["-C", "relocation-model=static", "-C", "target-cpu=x86-64"])
        .args(["-C", "force-unwind-tables=no", "-C", "strip=symbols"])
        .args(["-C", "codegen-units=1", "-C", "link-arg=-nostartfiles"])
        .args(["-C", "link-arg=-nostdlib", "-C", "link-arg=-static", "-C", "link-arg=-no-pie"])
        .args(["-C", "link-arg=-Wl,--build-id=none", "-C", "link-arg=-Wl,-z,norelro"])
        .args(["-C", "link-arg=-Wl,-z,noexecstack"])
        .arg("-C")
        .arg(format!("link-arg=-Wl,-T,{}", ld.display()))
        .arg(format!("--remap-path-prefix={}=/ward-shim", shim_dir.display()))
        .arg("-o")
        .arg(out)
        .arg(shim_dir.join("src/lib.rs"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    if !status.success() {
        return Err(format!("rustc exited with {status}"));
    }
    Ok(())
}

//! Shared by the vector tests: where `../shared/vectors` is.

use std::path::PathBuf;

/// The vectors folder if it holds `sub`, else `None` after printing why the
/// caller skips. `WARD_VECTORS` overrides the location.
pub fn vectors_with(sub: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("WARD_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/vectors"
            ))
        });
    if dir.join(sub).is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: attestation vectors ({sub}) not found at {} (set WARD_VECTORS)",
            dir.display()
        );
        None
    }
}

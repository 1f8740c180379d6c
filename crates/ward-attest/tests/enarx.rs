//! The Enarx Steward CSR vector: its SNP report verifies, its report data binds the
//! CSR's key, and its bundled CRLs are reported as expired.

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use ward_attest::verify::{enarx, verify, Policy, VerifyError};

fn csr() -> Option<Vec<u8>> {
    let dir = std::env::var_os("WARD_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/vectors"
            ))
        });
    match std::fs::read(dir.join("enarx-steward/snp-milan.csr")) {
        Ok(b) => Some(b),
        Err(_) => {
            eprintln!(
                "skipping: Enarx CSR vector not found under {} (set WARD_VECTORS)",
                dir.display()
            );
            None
        }
    }
}

#[test]
fn enarx_csr_report_verifies_and_binds_the_key() {
    let Some(der) = csr() else { return };
    let parsed = enarx::parse_csr(&der).unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(1_735_689_600); // 2025-01-01
    let claims = verify(&parsed.evidence, &Policy::default(), now).unwrap();
    assert_eq!(&claims.report_data[..48], &parsed.key_digest()[..]);
    // A different key would not match.
    let mut other = parsed.spki_der.clone();
    other[40] ^= 1;
    assert_ne!(&claims.report_data[..48], &sha2_384(&other)[..]);
}

fn sha2_384(b: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha384::digest(b).to_vec()
}

#[test]
fn enarx_csr_crls_are_reported_expired() {
    let Some(der) = csr() else { return };
    let parsed = enarx::parse_csr(&der).unwrap();
    assert_eq!(
        parsed.crls.len(),
        2,
        "{:?}",
        parsed.crls.iter().map(|c| &c.0).collect::<Vec<_>>()
    );
    let now = UNIX_EPOCH + Duration::from_secs(1_735_689_600);
    let err = enarx::check_crls_current(&parsed.crls, now).unwrap_err();
    assert!(matches!(err, VerifyError::CrlExpired { .. }), "{err}");
    assert!(err.to_string().contains("2023-"), "{err}");
    // Before they expired, they are current.
    let then = UNIX_EPOCH + Duration::from_secs(1_672_531_200); // 2023-01-01
    enarx::check_crls_current(&parsed.crls, then).unwrap();
}

#[test]
fn truncated_csrs_fail_cleanly() {
    let Some(der) = csr() else { return };
    for cut in [0, 1, 50, der.len() / 2, der.len() - 1] {
        assert!(enarx::parse_csr(&der[..cut]).is_err(), "cut {cut}");
    }
}

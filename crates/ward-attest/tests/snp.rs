//! SEV-SNP verification: real Milan vectors (skipped, loudly, when absent) and
//! synthetic reports signed by a key the test generates.

mod common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p384::ecdsa::{signature::Signer, SigningKey};
use ward_attest::verify::snp::{self, Product, Report};
use ward_attest::verify::{verify, Policy, VerifyError};
use ward_attest::{Collateral, Evidence, TeeKind};

fn vectors() -> Option<PathBuf> {
    common::vectors_with("snp")
}

/// 2025-01-01T00:00:00Z, inside every SNP vector's window.
fn pinned() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_735_689_600)
}

fn snp_evidence(dir: &std::path::Path, name: &str, vcek: &str) -> Evidence {
    Evidence {
        kind: TeeKind::Snp,
        evidence: std::fs::read(dir.join("snp").join(name).join("report.bin")).unwrap(),
        collateral: Collateral {
            vek: std::fs::read(dir.join("snp").join(name).join(vcek)).unwrap(),
            ..Collateral::default()
        },
    }
}

#[test]
fn milan_virtee_verifies() {
    let Some(dir) = vectors() else { return };
    let claims = verify(
        &snp_evidence(&dir, "milan-virtee", "vcek.der"),
        &Policy::default(),
        pinned(),
    )
    .unwrap();
    assert_eq!(claims.kind, TeeKind::Snp);
    assert_eq!(claims.measurement.len(), 48);
    assert_eq!(claims.platform_id.len(), 64);
    assert!(claims.details.contains(&("product".into(), "milan".into())));
    assert!(!claims.insecure_software);
}

#[test]
fn milan_trustee_verifies() {
    let Some(dir) = vectors() else { return };
    verify(
        &snp_evidence(&dir, "milan-trustee", "vcek.der"),
        &Policy::default(),
        pinned(),
    )
    .unwrap();
}

#[test]
fn wrong_chip_vcek_is_rejected() {
    let Some(dir) = vectors() else { return };
    // This VCEK (issuer SEV-Milan) does not verify under the Milan ASK at all
    // (`openssl verify` agrees), so the chain check is what rejects it.
    let milan = Policy::from_toml("[snp]\nproduct = \"milan\"\n").unwrap();
    let e = snp_evidence(&dir, "milan-trustee", "vcek-wrong-chip.der");
    let err = verify(&e, &milan, pinned()).unwrap_err();
    assert!(matches!(err, VerifyError::ChainInvalid { .. }), "{err}");
    let err = verify(&e, &Policy::default(), pinned()).unwrap_err();
    assert!(matches!(err, VerifyError::UnknownRoot { .. }), "{err}");
}

#[test]
fn another_chips_genuine_vcek_is_rejected() {
    let Some(dir) = vectors() else { return };
    // The virtee report with the trustee VCEK: a genuine VCEK, for another chip.
    let mut e = snp_evidence(&dir, "milan-virtee", "vcek.der");
    e.collateral.vek = std::fs::read(dir.join("snp/milan-trustee/vcek.der")).unwrap();
    let err = verify(&e, &Policy::default(), pinned()).unwrap_err();
    assert!(matches!(err, VerifyError::ChipIdMismatch { .. }), "{err}");
}

#[test]
fn a_day_outside_the_window_is_a_time_error() {
    let Some(dir) = vectors() else { return };
    let e = snp_evidence(&dir, "milan-virtee", "vcek.der");
    // The VCEK is valid 2023-04-03 .. 2030-04-03.
    let after = UNIX_EPOCH + Duration::from_secs(1_901_491_200 + 86_400 * 2); // 2030-04-05
    let before = UNIX_EPOCH + Duration::from_secs(1_680_393_600); // 2023-04-02
    let err = verify(&e, &Policy::default(), after).unwrap_err();
    assert!(
        matches!(err, VerifyError::CertificateExpired { .. }),
        "{err}"
    );
    let err = verify(&e, &Policy::default(), before).unwrap_err();
    assert!(
        matches!(err, VerifyError::CertificateNotYetValid { .. }),
        "{err}"
    );
}

#[test]
fn milan_evidence_against_genoa_roots_is_rejected() {
    let Some(dir) = vectors() else { return };
    let policy = Policy::from_toml("[snp]\nproduct = \"genoa\"\n").unwrap();
    let err = verify(
        &snp_evidence(&dir, "milan-virtee", "vcek.der"),
        &policy,
        pinned(),
    )
    .unwrap_err();
    assert!(matches!(err, VerifyError::ChainInvalid { .. }), "{err}");
}

#[test]
fn flipped_bytes_name_the_right_reason() {
    let Some(dir) = vectors() else { return };
    let good = snp_evidence(&dir, "milan-virtee", "vcek.der");
    let flip = |offset: usize| {
        let mut e = good.clone();
        e.evidence[offset] ^= 0x01;
        verify(&e, &Policy::default(), pinned()).unwrap_err()
    };
    // Signature (r, first byte), measurement (0x90), report data (0x50): the report
    // no longer matches its signature.
    for offset in [0x2A0, 0x90, 0x50] {
        let err = flip(offset);
        assert!(
            matches!(err, VerifyError::SignatureInvalid { .. }),
            "offset {offset:#x}: {err}"
        );
    }
    // Reported TCB (0x180, bootloader SVN): disagrees with what the VCEK certifies.
    assert!(
        matches!(
            flip(0x180),
            VerifyError::TcbMismatch {
                component: "bootloader",
                ..
            }
        ),
        "{}",
        flip(0x180)
    );
    // A byte of the VCEK's own signature: the chain breaks.
    let mut e = good.clone();
    let n = e.collateral.vek.len();
    e.collateral.vek[n - 10] ^= 0x01;
    let err = verify(&e, &Policy::default(), pinned()).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::UnknownRoot { .. } | VerifyError::ChainInvalid { .. }
        ),
        "{err}"
    );
}

#[test]
fn measurement_and_report_data_policies() {
    let Some(dir) = vectors() else { return };
    let e = snp_evidence(&dir, "milan-virtee", "vcek.der");
    let claims = verify(&e, &Policy::default(), pinned()).unwrap();
    let ok = Policy::from_toml(&format!(
        "measurements = [\"{}\"]",
        hex::encode(&claims.measurement)
    ))
    .unwrap();
    verify(&e, &ok, pinned()).unwrap();
    let other = Policy::from_toml(&format!("measurements = [\"{}\"]", "ab".repeat(48))).unwrap();
    assert!(matches!(
        verify(&e, &other, pinned()).unwrap_err(),
        VerifyError::MeasurementNotAllowed { .. }
    ));
    let rd = Policy::from_toml(&format!("report_data = \"{}\"", "00".repeat(63) + "01")).unwrap();
    assert!(matches!(
        verify(&e, &rd, pinned()).unwrap_err(),
        VerifyError::ReportDataMismatch { .. }
    ));
    let tcb = Policy::from_toml("[snp.min_tcb]\nsnp = 255\n").unwrap();
    assert!(matches!(
        verify(&e, &tcb, pinned()).unwrap_err(),
        VerifyError::TcbTooLow {
            component: "snp",
            ..
        }
    ));
}

#[test]
fn missing_vcek_is_a_clear_error() {
    let Some(dir) = vectors() else { return };
    let mut e = snp_evidence(&dir, "milan-virtee", "vcek.der");
    e.collateral.vek.clear();
    assert!(matches!(
        verify(&e, &Policy::default(), pinned()).unwrap_err(),
        VerifyError::MissingCollateral(_)
    ));
}

// --- synthetic: a report signed by a key this test generates -----------------------

fn synthetic_report(debug: bool, key: &SigningKey) -> Vec<u8> {
    let mut r = vec![0u8; snp::REPORT_LEN];
    r[0..4].copy_from_slice(&3u32.to_le_bytes()); // version 3
    let mut policy: u64 = 0x30000; // SMT allowed, reserved bit 17
    if debug {
        policy |= 1 << 19;
    }
    r[0x08..0x10].copy_from_slice(&policy.to_le_bytes());
    r[0x34..0x38].copy_from_slice(&1u32.to_le_bytes()); // sig_algo: ECDSA P-384
    r[0x50..0x90].copy_from_slice(&[0x11; 64]); // report data
    r[0x90..0xC0].copy_from_slice(&[0x22; 48]); // measurement
    r[0x180] = 3; // reported TCB: bootloader
    r[0x188] = 0x19; // cpuid family (Milan)
    let sig: p384::ecdsa::Signature = key.sign(&r[..0x2A0]);
    let (rs, ss) = sig.split_bytes();
    let mut rb = rs.to_vec();
    let mut sb = ss.to_vec();
    rb.reverse();
    sb.reverse();
    r[0x2A0..0x2A0 + 48].copy_from_slice(&rb);
    r[0x2A0 + 72..0x2A0 + 72 + 48].copy_from_slice(&sb);
    r
}

fn key() -> SigningKey {
    SigningKey::from_slice(&[7u8; 48]).unwrap()
}

#[test]
fn synthetic_report_verifies_with_its_key() {
    let raw = synthetic_report(false, &key());
    let report = Report::parse(&raw).unwrap();
    let claims = snp::verify_signed_report(
        &report,
        key().verifying_key(),
        &Policy::default(),
        Product::Milan,
    )
    .unwrap();
    assert_eq!(claims.measurement, vec![0x22; 48]);
    assert!(!claims.debug);
}

#[test]
fn synthetic_report_with_another_key_is_rejected() {
    let raw = synthetic_report(false, &key());
    let other = SigningKey::from_slice(&[9u8; 48]).unwrap();
    let err = snp::verify_signed_report(
        &Report::parse(&raw).unwrap(),
        other.verifying_key(),
        &Policy::default(),
        Product::Milan,
    )
    .unwrap_err();
    assert!(matches!(err, VerifyError::SignatureInvalid { .. }), "{err}");
}

#[test]
fn synthetic_debug_report_is_rejected_by_default() {
    let raw = synthetic_report(true, &key());
    let report = Report::parse(&raw).unwrap();
    let claims = snp::verify_signed_report(
        &report,
        key().verifying_key(),
        &Policy::default(),
        Product::Milan,
    )
    .unwrap();
    assert!(claims.debug);
    // The common policy check rejects it; allow_debug accepts it.
    let e = Evidence {
        kind: TeeKind::Snp,
        evidence: raw,
        collateral: Collateral::default(),
    };
    assert!(matches!(
        verify(&e, &Policy::default(), pinned()),
        Err(VerifyError::MissingCollateral(_))
    ));
    let err = ward_attest::verify::check_policy(&claims, &Policy::default()).unwrap_err();
    assert_eq!(err, VerifyError::DebugNotAllowed);
    ward_attest::verify::check_policy(&claims, &Policy::from_toml("allow_debug = true").unwrap())
        .unwrap();
}

#[test]
fn synthetic_guest_policy_mask() {
    let raw = synthetic_report(false, &key());
    let report = Report::parse(&raw).unwrap();
    let strict = Policy::from_toml("[snp]\nguest_policy_mask = 0x10000\n").unwrap();
    let err = snp::verify_signed_report(&report, key().verifying_key(), &strict, Product::Milan)
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::GuestPolicyNotAllowed { bits: 0x20000, .. }
        ),
        "{err}"
    );
}

#[test]
fn wrong_sizes_and_versions_are_malformed() {
    assert!(matches!(
        Report::parse(&[0u8; 100]),
        Err(VerifyError::Malformed { .. })
    ));
    let mut raw = synthetic_report(false, &key());
    raw[0] = 1;
    assert!(matches!(
        Report::parse(&raw),
        Err(VerifyError::Malformed { .. })
    ));
}

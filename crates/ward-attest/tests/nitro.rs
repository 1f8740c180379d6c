//! AWS Nitro attestation documents on the real eu-central-1 vector.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ward_attest::verify::{nitro, verify, Policy, VerifyError};
use ward_attest::{Collateral, Evidence, TeeKind};

fn doc() -> Option<Vec<u8>> {
    let dir = std::env::var_os("WARD_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/vectors"
            ))
        });
    match std::fs::read(dir.join("nitro/eu-central-1/attestation.cose")) {
        Ok(b) => Some(b),
        Err(_) => {
            eprintln!(
                "skipping: Nitro vector not found under {} (set WARD_VECTORS)",
                dir.display()
            );
            None
        }
    }
}

/// 2025-01-06T16:07:05Z: the window is only three hours.
fn pinned() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_736_179_625)
}

fn ev(bytes: Vec<u8>) -> Evidence {
    Evidence {
        kind: TeeKind::Nitro,
        evidence: bytes,
        collateral: Collateral::default(),
    }
}

#[test]
fn eu_central_document_verifies() {
    let Some(d) = doc() else { return };
    let c = verify(&ev(d), &Policy::default(), pinned()).unwrap();
    assert_eq!(c.kind, TeeKind::Nitro);
    assert_eq!(c.measurement.len(), 48);
    assert!(c.pcrs.len() >= 5, "{:?}", c.pcrs.len());
    assert!(!c.debug);
}

#[test]
fn built_in_root_is_the_published_g1() {
    use sha2::{Digest, Sha256};
    use x509_cert::der::{DecodePem, Encode};
    let cert = x509_cert::Certificate::from_pem(nitro::AWS_NITRO_ROOT_G1).unwrap();
    let fp = hex::encode(Sha256::digest(cert.to_der().unwrap()));
    assert_eq!(
        fp,
        "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
    );
}

#[test]
fn a_day_outside_the_window_is_a_time_error() {
    let Some(d) = doc() else { return };
    let day = Duration::from_secs(86_400);
    let err = verify(&ev(d.clone()), &Policy::default(), pinned() + day).unwrap_err();
    assert!(
        matches!(err, VerifyError::CertificateExpired { .. }),
        "{err}"
    );
    let err = verify(&ev(d), &Policy::default(), pinned() - day).unwrap_err();
    assert!(
        matches!(err, VerifyError::CertificateNotYetValid { .. }),
        "{err}"
    );
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}

#[test]
fn flipped_bytes_name_the_right_reason() {
    let Some(d) = doc() else { return };
    let (_, parsed) = nitro::parse(&d).unwrap();
    let flip_at = |at: usize| {
        let mut b = d.clone();
        b[at] ^= 1;
        verify(&ev(b), &Policy::default(), pinned()).unwrap_err()
    };
    // The COSE signature: the last bytes of the document.
    assert!(
        matches!(flip_at(d.len() - 5), VerifyError::SignatureInvalid { .. }),
        "{}",
        flip_at(d.len() - 5)
    );
    // PCR0 (the measurement), inside the signed payload.
    let pcr0 = &parsed.pcrs.iter().find(|(i, _)| *i == 0).unwrap().1;
    let at = find(&d, pcr0) + 3;
    assert!(
        matches!(flip_at(at), VerifyError::SignatureInvalid { .. }),
        "{}",
        flip_at(at)
    );
    // The report data (user_data, or else the public key), inside the signed payload.
    let rd = parsed
        .user_data
        .as_ref()
        .or(parsed.public_key.as_ref())
        .or(parsed.nonce.as_ref())
        .expect("the vector carries user_data, public_key or nonce");
    let at = find(&d, rd) + rd.len() / 2;
    assert!(
        matches!(flip_at(at), VerifyError::SignatureInvalid { .. }),
        "{}",
        flip_at(at)
    );
    // The leaf certificate (its signature, near its end): the chain breaks.
    let leaf = &parsed.certificate;
    let at = find(&d, leaf) + leaf.len() - 8;
    assert!(
        matches!(
            flip_at(at),
            VerifyError::ChainInvalid { .. } | VerifyError::Malformed { .. }
        ),
        "{}",
        flip_at(at)
    );
    // A certificate of the chain (its signature, near its end).
    let inter = &parsed.cabundle[1];
    let at = find(&d, inter) + inter.len() - 8;
    assert!(
        matches!(
            flip_at(at),
            VerifyError::ChainInvalid { .. } | VerifyError::Malformed { .. }
        ),
        "{}",
        flip_at(at)
    );
    // The root in the cabundle is not the built-in one any more.
    let at = find(&d, &parsed.cabundle[0]) + 40;
    assert!(
        matches!(
            flip_at(at),
            VerifyError::UnknownRoot { .. } | VerifyError::Malformed { .. }
        ),
        "{}",
        flip_at(at)
    );
}

#[test]
fn pcr_policy() {
    let Some(d) = doc() else { return };
    let c = verify(&ev(d.clone()), &Policy::default(), pinned()).unwrap();
    let ok = Policy::from_toml(&format!(
        "[nitro.pcrs]\n\"0\" = \"{}\"\n",
        hex::encode(&c.measurement)
    ))
    .unwrap();
    verify(&ev(d.clone()), &ok, pinned()).unwrap();
    let bad =
        Policy::from_toml(&format!("[nitro.pcrs]\n\"1\" = \"{}\"\n", "00".repeat(48))).unwrap();
    assert!(matches!(
        verify(&ev(d.clone()), &bad, pinned()).unwrap_err(),
        VerifyError::PcrMismatch { index: 1, .. }
    ));
    // An allow-list: any listed value passes.
    let list = Policy::from_toml(&format!(
        "[nitro.pcrs]\n\"0\" = [\"{}\", \"{}\"]\n",
        "00".repeat(48),
        hex::encode(&c.measurement)
    ))
    .unwrap();
    verify(&ev(d.clone()), &list, pinned()).unwrap();
    // The common measurement allow-list applies to PCR0.
    let m = Policy::from_toml(&format!("measurements = [\"{}\"]", "00".repeat(48))).unwrap();
    assert!(matches!(
        verify(&ev(d), &m, pinned()).unwrap_err(),
        VerifyError::MeasurementNotAllowed { .. }
    ));
}

#[test]
fn garbage_and_truncation_fail_cleanly() {
    let Some(d) = doc() else { return };
    for cut in [0, 1, 10, 100, d.len() / 2, d.len() - 1] {
        assert!(
            verify(&ev(d[..cut].to_vec()), &Policy::default(), pinned()).is_err(),
            "cut {cut}"
        );
    }
    assert!(verify(&ev(vec![0xff; 64]), &Policy::default(), pinned()).is_err());
}

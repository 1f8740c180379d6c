//! RA-TLS certificates: evidence in an extension, bound to the key and the nonce.

use std::time::SystemTime;

use ward_attest::ratls::{check, issue};
use ward_attest::verify::{ChainCache, Policy, VerifyError};
use ward_attest::Evidence;

fn insecure() -> Policy {
    Policy::from_toml("insecure_allow_software = true").unwrap()
}

fn software(rd: [u8; 64]) -> Evidence {
    Evidence::software(vec![9; 48], rd)
}

#[test]
fn certificate_carries_bound_evidence() {
    let id = issue::identity(b"nonce-1", software).unwrap();
    let claims = check::verify_cert(
        &id.cert_der,
        b"nonce-1",
        &insecure(),
        SystemTime::now(),
        &ChainCache::new(),
    )
    .unwrap();
    assert!(claims.insecure_software);
    assert_eq!(claims.measurement, vec![9; 48]);
}

#[test]
fn replayed_certificate_with_an_old_nonce_is_refused() {
    let id = issue::identity(b"old-nonce", software).unwrap();
    let err = check::verify_cert(
        &id.cert_der,
        b"new-nonce",
        &insecure(),
        SystemTime::now(),
        &ChainCache::new(),
    )
    .unwrap_err();
    assert!(
        matches!(err, VerifyError::ReportDataMismatch { .. }),
        "{err}"
    );
}

#[test]
fn evidence_bound_to_another_key_is_refused() {
    // Keep A's evidence in Keep B's certificate: the binding names A's key.
    let a = issue::identity(b"n", software).unwrap();
    let (a_evidence, _) = check::evidence_from_cert(&a.cert_der).unwrap();
    let b = issue::identity(b"n", |_| a_evidence.clone()).unwrap();
    let err = check::verify_cert(
        &b.cert_der,
        b"n",
        &insecure(),
        SystemTime::now(),
        &ChainCache::new(),
    )
    .unwrap_err();
    assert!(
        matches!(err, VerifyError::ReportDataMismatch { .. }),
        "{err}"
    );
}

#[test]
fn software_keep_refused_without_consent() {
    let id = issue::identity(b"n", software).unwrap();
    let err = check::verify_cert(
        &id.cert_der,
        b"n",
        &Policy::default(),
        SystemTime::now(),
        &ChainCache::new(),
    )
    .unwrap_err();
    assert_eq!(err, VerifyError::SoftwareNotAllowed);
}

#[test]
fn certificate_without_evidence_is_malformed() {
    let key = rcgen::KeyPair::generate().unwrap();
    let plain = rcgen::CertificateParams::new(vec!["x".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let err = check::verify_cert(
        plain.der(),
        b"n",
        &insecure(),
        SystemTime::now(),
        &ChainCache::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no evidence extension"), "{err}");
}

#[test]
fn evidence_from_cert_der_is_none_without_the_extension() {
    let key = rcgen::KeyPair::generate().unwrap();
    let plain = rcgen::CertificateParams::new(vec!["x".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    assert_eq!(
        ward_attest::evidence_from_cert_der(plain.der()).unwrap(),
        None
    );
}

#[test]
fn evidence_from_cert_der_returns_the_envelope() {
    let id = issue::identity(b"nonce-2", software).unwrap();
    let e = ward_attest::evidence_from_cert_der(&id.cert_der)
        .unwrap()
        .unwrap();
    assert_eq!(e.kind, ward_attest::TeeKind::None);
    // Not verified yet: without consent, verification refuses it.
    let err = ward_attest::verify::verify(&e, &Policy::default(), SystemTime::now()).unwrap_err();
    assert_eq!(err, VerifyError::SoftwareNotAllowed);
}

#[test]
fn evidence_from_cert_der_rejects_garbage_and_duplicates() {
    assert!(ward_attest::evidence_from_cert_der(b"not a certificate").is_err());
    let id = issue::identity(b"n", software).unwrap();
    for cut in [1, 10, id.cert_der.len() / 2, id.cert_der.len() - 1] {
        assert!(ward_attest::evidence_from_cert_der(&id.cert_der[..cut]).is_err());
    }
    // Two evidence extensions: ambiguous, so refused.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["x".into()]).unwrap();
    let env = software([0; 64]).to_cbor();
    let mut content = vec![0x04, 0x81, env.len() as u8];
    content.extend_from_slice(&env);
    for _ in 0..2 {
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                ward_attest::ratls::EVIDENCE_OID,
                content.clone(),
            ));
    }
    let cert = params.self_signed(&key).unwrap();
    let err = ward_attest::evidence_from_cert_der(cert.der()).unwrap_err();
    assert!(err.to_string().contains("more than one"), "{err}");
}

#[test]
fn oid_forms_agree() {
    assert_eq!(
        ward_attest::ratls::evidence_oid_string(),
        ward_attest::EVIDENCE_EXTENSION_OID
    );
}

//! Nitro verification logic with a CA and "hardware" key this test makes itself, so
//! it is exercised even without the real vectors.

use std::time::SystemTime;

use ciborium::Value;
use coset::{iana, CborSerializable, CoseSign1Builder, HeaderBuilder};
use p384::ecdsa::{signature::Signer, Signature, SigningKey};
use p384::pkcs8::DecodePrivateKey;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PKCS_ECDSA_P384_SHA384};
use ward_attest::verify::{check_policy, nitro, ChainCache, Policy, VerifyError};

struct Ca {
    root_der: Vec<u8>,
    leaf_der: Vec<u8>,
    leaf_key: SigningKey,
}

fn ca() -> Ca {
    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let mut root_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let root = root_params.clone().self_signed(&root_key).unwrap();
    let leaf_kp = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let issuer = Issuer::new(root_params, root_key);
    let leaf = CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .signed_by(&leaf_kp, &issuer)
        .unwrap();
    Ca {
        root_der: root.der().to_vec(),
        leaf_der: leaf.der().to_vec(),
        leaf_key: SigningKey::from_pkcs8_der(&leaf_kp.serialize_der()).unwrap(),
    }
}

fn document(ca: &Ca, pcr_byte: u8, signer: &SigningKey) -> Vec<u8> {
    let pcrs = (0..5u64)
        .map(|i| (Value::Integer(i.into()), Value::Bytes(vec![pcr_byte; 48])))
        .collect();
    let payload = Value::Map(vec![
        (
            Value::Text("module_id".into()),
            Value::Text("i-synthetic-enc01".into()),
        ),
        (Value::Text("digest".into()), Value::Text("SHA384".into())),
        (
            Value::Text("timestamp".into()),
            Value::Integer(1_700_000_000_000u64.into()),
        ),
        (Value::Text("pcrs".into()), Value::Map(pcrs)),
        (
            Value::Text("certificate".into()),
            Value::Bytes(ca.leaf_der.clone()),
        ),
        (
            Value::Text("cabundle".into()),
            Value::Array(vec![Value::Bytes(ca.root_der.clone())]),
        ),
        (Value::Text("public_key".into()), Value::Null),
        (
            Value::Text("user_data".into()),
            Value::Bytes(vec![0x42; 64]),
        ),
        (Value::Text("nonce".into()), Value::Null),
    ]);
    let mut bytes = Vec::new();
    ciborium::into_writer(&payload, &mut bytes).unwrap();
    CoseSign1Builder::new()
        .protected(
            HeaderBuilder::new()
                .algorithm(iana::Algorithm::ES384)
                .build(),
        )
        .payload(bytes)
        .create_signature(b"", |data| {
            let sig: Signature = signer.sign(data);
            sig.to_bytes().to_vec()
        })
        .build()
        .to_vec()
        .unwrap()
}

#[test]
fn synthetic_document_verifies_under_its_own_root() {
    let ca = ca();
    let doc = document(&ca, 7, &ca.leaf_key);
    let claims = nitro::verify_with_root(
        &doc,
        &ca.root_der,
        &Policy::default(),
        SystemTime::now(),
        &ChainCache::new(),
    )
    .unwrap();
    assert_eq!(claims.measurement, vec![7; 48]);
    assert_eq!(claims.report_data, vec![0x42; 64]);
    assert!(!claims.debug);
}

#[test]
fn synthetic_document_is_not_trusted_under_the_aws_root() {
    let ca = ca();
    let doc = document(&ca, 7, &ca.leaf_key);
    let err = nitro::verify(&doc, &Policy::default(), SystemTime::now()).unwrap_err();
    assert!(matches!(err, VerifyError::UnknownRoot { .. }), "{err}");
}

#[test]
fn synthetic_document_signed_by_another_key_is_rejected_even_with_a_warm_cache() {
    let ca = ca();
    let cache = ChainCache::new();
    let good = document(&ca, 7, &ca.leaf_key);
    nitro::verify_with_root(
        &good,
        &ca.root_der,
        &Policy::default(),
        SystemTime::now(),
        &cache,
    )
    .unwrap();
    let rogue = SigningKey::from_slice(&[3u8; 48]).unwrap();
    let bad = document(&ca, 7, &rogue);
    let err = nitro::verify_with_root(
        &bad,
        &ca.root_der,
        &Policy::default(),
        SystemTime::now(),
        &cache,
    )
    .unwrap_err();
    assert!(matches!(err, VerifyError::SignatureInvalid { .. }), "{err}");
}

#[test]
fn synthetic_debug_enclave_is_rejected_by_default() {
    let ca = ca();
    let doc = document(&ca, 0, &ca.leaf_key);
    let claims = nitro::verify_with_root(
        &doc,
        &ca.root_der,
        &Policy::default(),
        SystemTime::now(),
        &ChainCache::new(),
    )
    .unwrap();
    assert!(claims.debug);
    assert_eq!(
        check_policy(&claims, &Policy::default()).unwrap_err(),
        VerifyError::DebugNotAllowed
    );
    check_policy(&claims, &Policy::from_toml("allow_debug = true").unwrap()).unwrap();
}

#[test]
fn synthetic_leaf_from_another_ca_breaks_the_chain() {
    let ca1 = ca();
    let ca2 = ca();
    let mixed = Ca {
        root_der: ca1.root_der.clone(),
        leaf_der: ca2.leaf_der.clone(),
        leaf_key: ca2.leaf_key.clone(),
    };
    let doc = document(&mixed, 7, &mixed.leaf_key);
    let err = nitro::verify_with_root(
        &doc,
        &ca1.root_der,
        &Policy::default(),
        SystemTime::now(),
        &ChainCache::new(),
    )
    .unwrap_err();
    assert!(matches!(err, VerifyError::ChainInvalid { .. }), "{err}");
}

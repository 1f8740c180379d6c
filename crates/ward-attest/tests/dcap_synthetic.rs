//! Intel SGX DCAP end to end with a PKI this test makes itself: a root CA, a PCK CA
//! and a PCK certificate carrying the Intel SGX extension, a TCB signing certificate,
//! both CRLs, signed TCB info and QE identity, a QE report signed by the PCK key, and
//! a quote signed by the attestation key. No vectors needed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension, DnType,
    IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber, SigningKey,
    PKCS_ECDSA_P256_SHA256,
};
use sha2::{Digest, Sha256};
use ward_attest::verify::{check_policy, dcap, Policy, VerifiedClaims, VerifyError};
use ward_attest::{Collateral, TeeKind};

/// 2025-01-01T00:00:00Z.
const NOW: u64 = 1_735_689_600;
const DAY: u64 = 86_400;
const FMSPC: [u8; 6] = [0x00, 0xA0, 0x67, 0x11, 0x00, 0x00];
const CPU_SVN: [u8; 16] = [11, 11, 2, 2, 255, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const PCE_SVN: u16 = 13;
const QE_MRSIGNER: [u8; 32] = [0x8C; 32];
const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9A, 0x72, 0x33, 0xF7, 0x9C, 0x4C, 0xA9, 0x94, 0x0A, 0x0D, 0xB3, 0x95, 0x7F, 0x06, 0x07,
];

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

// --- a little DER, for the Intel SGX extension -------------------------------------

fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match body.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(body);
    out
}

fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = vec![(arcs[0] * 40 + arcs[1]) as u8];
    for &a in &arcs[2..] {
        let mut chunk = vec![(a & 0x7f) as u8];
        let mut v = a >> 7;
        while v > 0 {
            chunk.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        chunk.reverse();
        body.extend(chunk);
    }
    tlv(0x06, &body)
}

fn int(v: u64) -> Vec<u8> {
    let mut b: Vec<u8> = v
        .to_be_bytes()
        .iter()
        .copied()
        .skip_while(|x| *x == 0)
        .collect();
    if b.is_empty() || b[0] & 0x80 != 0 {
        b.insert(0, 0);
    }
    tlv(0x02, &b)
}

const SGX: [u64; 9] = [1, 2, 840, 113_741, 1, 13, 1, 0, 0];

fn sgx_oid(sub: &[u64]) -> Vec<u8> {
    let mut arcs = SGX[..7].to_vec();
    arcs.extend_from_slice(sub);
    oid(&arcs)
}

fn pair(key: Vec<u8>, value: Vec<u8>) -> Vec<u8> {
    tlv(0x30, &[key, value].concat())
}

/// The Intel SGX extension of a PCK certificate (processor CA form).
fn sgx_extension() -> Vec<u8> {
    let mut tcb = Vec::new();
    for (i, svn) in CPU_SVN.iter().enumerate() {
        tcb.extend(pair(sgx_oid(&[2, i as u64 + 1]), int(*svn as u64)));
    }
    tcb.extend(pair(sgx_oid(&[2, 17]), int(PCE_SVN as u64)));
    tcb.extend(pair(sgx_oid(&[2, 18]), tlv(0x04, &CPU_SVN)));
    let body = [
        pair(sgx_oid(&[1]), tlv(0x04, &[0x51; 16])), // PPID
        pair(sgx_oid(&[2]), tlv(0x30, &tcb)),
        pair(sgx_oid(&[3]), tlv(0x04, &[0, 0])), // PCE-ID
        pair(sgx_oid(&[4]), tlv(0x04, &FMSPC)),
        pair(sgx_oid(&[5]), tlv(0x0A, &[0])), // SGX type: standard
    ]
    .concat();
    tlv(0x30, &body)
}

// --- the PKI ---------------------------------------------------------------------

fn key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()
}

fn params(cn: &str, ca: bool) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2030, 1, 1);
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    }
    p
}

fn crl(issuer: &Issuer<'_, &KeyPair>, next_update: (i32, u8, u8)) -> Vec<u8> {
    CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2024, 12, 1),
        next_update: rcgen::date_time_ymd(next_update.0, next_update.1, next_update.2),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer)
    .unwrap()
    .der()
    .to_vec()
}

/// Raw r ‖ s (32 bytes each) from a DER ECDSA signature.
fn raw_sig(der: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = &der[2..];
    for _ in 0..2 {
        let len = rest[1] as usize;
        let v = &rest[2..2 + len];
        let v = if v.len() > 32 { &v[v.len() - 32..] } else { v };
        out.extend(std::iter::repeat_n(0, 32 - v.len()));
        out.extend_from_slice(v);
        rest = &rest[2 + len..];
    }
    out
}

fn sign_raw(key: &KeyPair, msg: &[u8]) -> Vec<u8> {
    raw_sig(&SigningKey::sign(key, msg).unwrap())
}

struct Pki {
    root_der: Vec<u8>,
    root_pem: String,
    pck_ca_pem: String,
    pck_pem: String,
    pck_key: KeyPair,
    tcb_pem: String,
    tcb_key: KeyPair,
    root_crl: Vec<u8>,
    pck_crl: Vec<u8>,
}

fn pki() -> Pki {
    let root_key = key();
    let root_params = params("Test SGX Root CA", true);
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::from_params(&root_params, &root_key);

    let pck_ca_key = key();
    let pck_ca_params = params("Test SGX PCK Processor CA", true);
    let pck_ca = pck_ca_params.signed_by(&pck_ca_key, &root_issuer).unwrap();
    let pck_ca_issuer = Issuer::from_params(&pck_ca_params, &pck_ca_key);

    let pck_key = key();
    let mut pck_params = params("Test SGX PCK Certificate", false);
    pck_params
        .custom_extensions
        .push(CustomExtension::from_oid_content(
            &SGX[..7],
            sgx_extension(),
        ));
    let pck = pck_params.signed_by(&pck_key, &pck_ca_issuer).unwrap();

    let tcb_key = key();
    let tcb = params("Test SGX TCB Signing", false)
        .signed_by(&tcb_key, &root_issuer)
        .unwrap();

    Pki {
        root_der: root.der().to_vec(),
        root_pem: root.pem(),
        pck_ca_pem: pck_ca.pem(),
        pck_pem: pck.pem(),
        pck_key,
        tcb_pem: tcb.pem(),
        tcb_key,
        root_crl: crl(&root_issuer, (2025, 2, 1)),
        pck_crl: crl(&pck_ca_issuer, (2025, 2, 1)),
    }
}

// --- collateral and quote ----------------------------------------------------------

fn tcb_info(status: &str, advisories: &[&str]) -> String {
    let comps: Vec<String> = CPU_SVN.iter().map(|s| format!("{{\"svn\":{s}}}")).collect();
    let adv = if advisories.is_empty() {
        String::new()
    } else {
        format!(
            ",\"advisoryIDs\":[{}]",
            advisories
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    format!(
        "{{\"id\":\"SGX\",\"version\":3,\"issueDate\":\"2024-12-15T00:00:00Z\",\"nextUpdate\":\"2025-01-15T00:00:00Z\",\"fmspc\":\"{}\",\"pceId\":\"0000\",\"tcbType\":0,\"tcbEvaluationDataNumber\":17,\"tcbLevels\":[{{\"tcb\":{{\"sgxtcbcomponents\":[{}],\"pcesvn\":{PCE_SVN}}},\"tcbDate\":\"2024-03-13T00:00:00Z\",\"tcbStatus\":\"{status}\"{adv}}}]}}",
        hex::encode_upper(FMSPC),
        comps.join(",")
    )
}

fn qe_identity() -> String {
    format!(
        "{{\"id\":\"QE\",\"version\":2,\"issueDate\":\"2024-12-15T00:00:00Z\",\"nextUpdate\":\"2025-01-15T00:00:00Z\",\"tcbEvaluationDataNumber\":17,\"miscselect\":\"00000000\",\"miscselectMask\":\"FFFFFFFF\",\"attributes\":\"11000000000000000000000000000000\",\"attributesMask\":\"FBFFFFFFFFFFFFFF0000000000000000\",\"mrsigner\":\"{}\",\"isvprodid\":1,\"tcbLevels\":[{{\"tcb\":{{\"isvsvn\":8}},\"tcbDate\":\"2024-03-13T00:00:00Z\",\"tcbStatus\":\"UpToDate\"}}]}}",
        hex::encode_upper(QE_MRSIGNER)
    )
}

fn collateral(pki: &Pki, tcb_info: &str) -> Vec<u8> {
    let chain = format!("{}{}", pki.tcb_pem, pki.root_pem);
    let qe_id = qe_identity();
    serde_json::to_vec(&serde_json::json!({
        "pck_crl_issuer_chain": format!("{}{}", pki.pck_ca_pem, pki.root_pem),
        "root_ca_crl": hex::encode(&pki.root_crl),
        "pck_crl": hex::encode(&pki.pck_crl),
        "tcb_info_issuer_chain": chain,
        "tcb_info": tcb_info,
        "tcb_info_signature": hex::encode(sign_raw(&pki.tcb_key, tcb_info.as_bytes())),
        "qe_identity_issuer_chain": chain,
        "qe_identity": qe_id,
        "qe_identity_signature": hex::encode(sign_raw(&pki.tcb_key, qe_id.as_bytes())),
    }))
    .unwrap()
}

/// Offsets in the quote: 48-byte header, then the 384-byte enclave report.
const BODY: usize = 48;
const ATTRIBUTES: usize = BODY + 48;
const MR_ENCLAVE: usize = BODY + 64;
const MR_SIGNER: usize = BODY + 128;
const ISV_SVN: usize = BODY + 258;
const REPORT_DATA: usize = BODY + 320;
const SIGNATURE: usize = BODY + 384 + 4;

fn enclave_report(
    attributes0: u8,
    mr_enclave: [u8; 32],
    mr_signer: [u8; 32],
    prod: u16,
    svn: u16,
    report_data: [u8; 64],
) -> Vec<u8> {
    let mut r = vec![0u8; 384];
    r[..16].copy_from_slice(&CPU_SVN);
    r[48] = attributes0;
    r[64..96].copy_from_slice(&mr_enclave);
    r[128..160].copy_from_slice(&mr_signer);
    r[256..258].copy_from_slice(&prod.to_le_bytes());
    r[258..260].copy_from_slice(&svn.to_le_bytes());
    r[320..384].copy_from_slice(&report_data);
    r
}

/// A v3 SGX quote for an enclave with the given attributes byte 0 (bit 1: debug).
fn quote(pki: &Pki, attributes0: u8) -> (Vec<u8>, KeyPair) {
    let att_key = key();
    let att_pub = att_key.public_key_raw()[1..].to_vec(); // x ‖ y
    let mut q = Vec::new();
    q.extend(3u16.to_le_bytes());
    q.extend(2u16.to_le_bytes()); // ECDSA-256 with P-256
    q.extend(0u32.to_le_bytes()); // SGX
    q.extend(8u16.to_le_bytes());
    q.extend(PCE_SVN.to_le_bytes());
    q.extend(INTEL_QE_VENDOR_ID);
    q.extend([0u8; 20]);
    q.extend(enclave_report(
        attributes0,
        [0xE1; 32],
        [0x5E; 32],
        7,
        2,
        [0x44; 64],
    ));
    let qe_auth = [0xA5u8; 32];
    let mut qe_rd = [0u8; 64];
    qe_rd[..32].copy_from_slice(&Sha256::digest([att_pub.as_slice(), &qe_auth].concat()));
    let qe_report = enclave_report(0x11, [0x0E; 32], QE_MRSIGNER, 1, 8, qe_rd);
    let certs = format!("{}{}{}", pki.pck_pem, pki.pck_ca_pem, pki.root_pem).into_bytes();
    let mut auth = Vec::new();
    auth.extend(sign_raw(&att_key, &q));
    auth.extend(&att_pub);
    auth.extend(&qe_report);
    auth.extend(sign_raw(&pki.pck_key, &qe_report));
    auth.extend(32u16.to_le_bytes());
    auth.extend(qe_auth);
    auth.extend(5u16.to_le_bytes()); // PCK certificate chain (PEM)
    auth.extend((certs.len() as u32).to_le_bytes());
    auth.extend(certs);
    q.extend((auth.len() as u32).to_le_bytes());
    q.extend(auth);
    (q, att_key)
}

/// Re-signs the header and report with the attestation key after an edit.
fn resign(q: &mut [u8], att_key: &KeyPair) {
    let sig = sign_raw(att_key, &q[..BODY + 384]);
    q[SIGNATURE..SIGNATURE + 64].copy_from_slice(&sig);
}

fn run(
    pki: &Pki,
    q: &[u8],
    coll: Vec<u8>,
    policy: &Policy,
    now: u64,
) -> Result<VerifiedClaims, VerifyError> {
    let c = Collateral {
        quote_collateral: coll,
        ..Collateral::default()
    };
    let claims = dcap::verify_with_root(TeeKind::Sgx, q, &c, policy, at(now), &pki.root_der)?;
    check_policy(&claims, policy)?;
    Ok(claims)
}

#[test]
fn synthetic_sgx_quote_verifies() {
    let pki = pki();
    let (q, _) = quote(&pki, 0x05);
    let claims = run(
        &pki,
        &q,
        collateral(&pki, &tcb_info("UpToDate", &[])),
        &Policy::default(),
        NOW,
    )
    .unwrap();
    assert_eq!(claims.kind, TeeKind::Sgx);
    assert_eq!(claims.measurement, vec![0xE1; 32]);
    assert_eq!(claims.report_data, vec![0x44; 64]);
    assert!(claims
        .signers
        .contains(&("mr_signer".into(), vec![0x5E; 32])));
    assert!(claims.tcb.contains(&("isv_svn".into(), 2)));
    assert_eq!(claims.platform_id, vec![0x51; 16]);
    assert!(!claims.debug);
}

#[test]
fn synthetic_flipped_quote_bytes_break_the_quote_signature() {
    let pki = pki();
    let (good, _) = quote(&pki, 0x05);
    let coll = collateral(&pki, &tcb_info("UpToDate", &[]));
    for (offset, what) in [
        (BODY, "CPUSVN (TCB)"),
        (MR_ENCLAVE, "MRENCLAVE"),
        (MR_SIGNER, "MRSIGNER"),
        (ISV_SVN, "ISVSVN"),
        (REPORT_DATA, "report data"),
        (SIGNATURE + 1, "signature"),
    ] {
        let mut q = good.clone();
        q[offset] ^= 1;
        let err = run(&pki, &q, coll.clone(), &Policy::default(), NOW).unwrap_err();
        assert!(
            matches!(err, VerifyError::SignatureInvalid { what: "quote", .. }),
            "{what}: {err}"
        );
    }
}

#[test]
fn synthetic_qe_report_must_be_signed_by_the_pck_key() {
    let pki = pki();
    let (mut q, _) = quote(&pki, 0x05);
    // The QE report starts after the ECDSA signature and attestation key.
    q[SIGNATURE + 128 + 100] ^= 1;
    let err = run(
        &pki,
        &q,
        collateral(&pki, &tcb_info("UpToDate", &[])),
        &Policy::default(),
        NOW,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::SignatureInvalid {
                what: "quoting enclave report",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn synthetic_chain_from_another_root_is_rejected() {
    let pki = pki();
    let other = self::pki();
    let (q, _) = quote(&pki, 0x05);
    let coll = collateral(&pki, &tcb_info("UpToDate", &[]));
    let c = Collateral {
        quote_collateral: coll,
        ..Collateral::default()
    };
    let err = dcap::verify_with_root(
        TeeKind::Sgx,
        &q,
        &c,
        &Policy::default(),
        at(NOW),
        &other.root_der,
    )
    .unwrap_err();
    // The root CRL no longer verifies under the other root: refused before anything
    // else is trusted.
    assert!(
        matches!(&err, VerifyError::ChainInvalid { subject, .. } if subject.contains("revocation")),
        "{err}"
    );
    // A PCK certificate (and its CA) from another PKI: the PCK chain breaks.
    let (foreign, _) = quote(&other, 0x05);
    let err = run(
        &pki,
        &foreign,
        collateral(&pki, &tcb_info("UpToDate", &[])),
        &Policy::default(),
        NOW,
    )
    .unwrap_err();
    assert!(
        matches!(&err, VerifyError::ChainInvalid { subject, .. } if subject.contains("PCK")),
        "{err}"
    );
}

#[test]
fn synthetic_collateral_signature_and_dates() {
    let pki = pki();
    let (q, _) = quote(&pki, 0x05);
    let info = tcb_info("UpToDate", &[]);
    // TCB info edited after signing.
    let mut coll: serde_json::Value = serde_json::from_slice(&collateral(&pki, &info)).unwrap();
    coll["tcb_info"] = serde_json::Value::String(info.replace(
        "\"tcbEvaluationDataNumber\":17",
        "\"tcbEvaluationDataNumber\":18",
    ));
    let err = run(
        &pki,
        &q,
        serde_json::to_vec(&coll).unwrap(),
        &Policy::default(),
        NOW,
    )
    .unwrap_err();
    assert_eq!(
        err,
        VerifyError::CollateralSignatureInvalid { what: "TCB info" }
    );
    // A day outside the TCB info window (2024-12-15 .. 2025-01-15).
    for t in [1_734_220_800 - DAY, 1_736_899_200 + DAY] {
        let err = run(&pki, &q, collateral(&pki, &info), &Policy::default(), t).unwrap_err();
        assert!(
            matches!(err, VerifyError::CollateralExpired(_)),
            "at {t}: {err}"
        );
    }
}

#[test]
fn synthetic_tcb_status_and_advisories_follow_the_policy() {
    let pki = pki();
    let (q, _) = quote(&pki, 0x05);
    let coll = collateral(&pki, &tcb_info("SWHardeningNeeded", &["INTEL-SA-00615"]));
    assert_eq!(
        run(&pki, &q, coll.clone(), &Policy::default(), NOW).unwrap_err(),
        VerifyError::TcbStatusNotAllowed {
            status: "SWHardeningNeeded".into()
        }
    );
    let status = Policy::from_toml("[dcap]\nallow_statuses = [\"SWHardeningNeeded\"]").unwrap();
    assert_eq!(
        run(&pki, &q, coll.clone(), &status, NOW).unwrap_err(),
        VerifyError::AdvisoryNotAllowed {
            id: "INTEL-SA-00615".into()
        }
    );
    let both = Policy::from_toml(
        "[dcap]\nallow_statuses = [\"SWHardeningNeeded\"]\nallow_advisories = [\"INTEL-SA-00615\"]",
    )
    .unwrap();
    let claims = run(&pki, &q, coll, &both, NOW).unwrap();
    assert!(claims
        .details
        .contains(&("advisories".into(), "INTEL-SA-00615".into())));
}

#[test]
fn synthetic_debug_enclave_is_rejected_unless_allowed() {
    let pki = pki();
    let (q, _) = quote(&pki, 0x07); // INIT | DEBUG | MODE64BIT
    let coll = collateral(&pki, &tcb_info("UpToDate", &[]));
    assert_eq!(
        run(&pki, &q, coll.clone(), &Policy::default(), NOW).unwrap_err(),
        VerifyError::DebugNotAllowed
    );
    let allow = Policy::from_toml("allow_debug = true").unwrap();
    assert!(run(&pki, &q, coll, &allow, NOW).unwrap().debug);
}

#[test]
fn synthetic_measurement_and_report_data_policies() {
    let pki = pki();
    let (mut q, att) = quote(&pki, 0x05);
    let coll = collateral(&pki, &tcb_info("UpToDate", &[]));
    let m = Policy::from_toml(&format!("measurements = [\"{}\"]", "e1".repeat(32))).unwrap();
    run(&pki, &q, coll.clone(), &m, NOW).unwrap();
    // Another enclave, genuinely signed: the allow-list refuses it.
    q[MR_ENCLAVE] ^= 0xff;
    q[ATTRIBUTES] = 0x05;
    resign(&mut q, &att);
    assert!(matches!(
        run(&pki, &q, coll.clone(), &m, NOW),
        Err(VerifyError::MeasurementNotAllowed { .. })
    ));
    let rd = Policy::from_toml(&format!("report_data = \"{}\"", "45".repeat(64))).unwrap();
    assert!(matches!(
        run(&pki, &q, coll, &rd, NOW),
        Err(VerifyError::ReportDataMismatch { .. })
    ));
}

//! SEV-SNP end to end with a CA this test makes itself: an ARK and an ASK (RSA,
//! RSA-PSS SHA-384, like AMD's), a VCEK (P-384) carrying a chip id and TCB
//! extensions, and reports signed by the VCEK. This exercises the chain, the date,
//! the chip and TCB binding and the policy logic without the real vectors.

use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p384::ecdsa::{signature::Signer, SigningKey};
use p384::pkcs8::EncodePublicKey as _;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use sha2::Sha384;
use ward_attest::verify::snp::{self, TrustAnchors};
use ward_attest::verify::{ChainCache, Policy, VerifiedClaims, VerifyError};
use ward_attest::Collateral;
use x509_cert::der::asn1::{BitString, ObjectIdentifier, OctetString, UtcTime};
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};

/// 2025-01-01T00:00:00Z; the synthetic certificates are valid 2024-01-01 .. 2026-01-01.
const NOW: u64 = 1_735_689_600;
const NOT_BEFORE: u64 = 1_704_067_200;
const NOT_AFTER: u64 = 1_767_225_600;

const CHIP_ID: [u8; 64] = [0xC1; 64];
/// Reported TCB: bootloader, tee, snp, microcode (Milan/Genoa layout).
const TCB: [u8; 4] = [3, 0, 8, 115];

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn utc(secs: u64) -> Time {
    Time::UtcTime(UtcTime::from_unix_duration(Duration::from_secs(secs)).unwrap())
}

type RsaSigner = rsa::pss::BlindedSigningKey<Sha384>;

/// A certificate signed with RSA-PSS SHA-384 by `issuer_key`.
fn rsa_signed_cert(
    subject: &str,
    issuer: &str,
    spki_der: &[u8],
    extensions: Vec<Extension>,
    issuer_key: &RsaSigner,
    validity: (u64, u64),
) -> Vec<u8> {
    let alg = rsa::pss::get_default_pss_signature_algo_id::<Sha384>().unwrap();
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&[0]).unwrap(),
        signature: alg.clone(),
        issuer: Name::from_str(issuer).unwrap(),
        validity: Validity {
            not_before: utc(validity.0),
            not_after: utc(validity.1),
        },
        subject: Name::from_str(subject).unwrap(),
        subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(spki_der).unwrap(),
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: (!extensions.is_empty()).then_some(extensions),
    };
    let sig = issuer_key.sign_with_rng(&mut rsa::rand_core::OsRng, &tbs.to_der().unwrap());
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: alg,
        signature: BitString::from_bytes(&sig.to_vec()).unwrap(),
    }
    .to_der()
    .unwrap()
}

fn ext(oid: &str, value: Vec<u8>) -> Extension {
    Extension {
        extn_id: ObjectIdentifier::new_unwrap(oid),
        critical: false,
        extn_value: OctetString::new(value).unwrap(),
    }
}

fn der_u8(v: u8) -> Vec<u8> {
    v.to_der().unwrap()
}

struct Ca {
    ark: Vec<u8>,
    ark_signer: RsaSigner,
    ask: Vec<u8>,
    ask_key: RsaSigner,
    /// An ASK signed by a different ARK (for broken-chain tests).
    rogue_ask: Vec<u8>,
    vcek_key: SigningKey,
}

fn rsa_key() -> (rsa::RsaPrivateKey, Vec<u8>) {
    // 1024-bit keys keep key generation fast in debug builds; the verifier does not
    // care about the size, and these keys protect nothing.
    let k = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
    let spki = k.to_public_key().to_public_key_der().unwrap().to_vec();
    (k, spki)
}

fn ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| {
        let (ark_key, ark_spki) = rsa_key();
        let (ask_key, ask_spki) = rsa_key();
        let (other_key, _) = rsa_key();
        let ark_signer = RsaSigner::new(ark_key);
        let window = (NOT_BEFORE, NOT_AFTER);
        let ark = rsa_signed_cert(
            "CN=ARK-Test",
            "CN=ARK-Test",
            &ark_spki,
            vec![],
            &ark_signer,
            window,
        );
        let ask = rsa_signed_cert(
            "CN=SEV-Test",
            "CN=ARK-Test",
            &ask_spki,
            vec![],
            &ark_signer,
            window,
        );
        let rogue_ask = rsa_signed_cert(
            "CN=SEV-Test",
            "CN=ARK-Test",
            &ask_spki,
            vec![],
            &RsaSigner::new(other_key),
            window,
        );
        Ca {
            ark,
            ark_signer,
            ask,
            ask_key: RsaSigner::new(ask_key),
            rogue_ask,
            vcek_key: SigningKey::from_slice(&[0x5E; 48]).unwrap(),
        }
    })
}

/// A VCEK for `chip` and `tcb`, valid `window`, signed by the test ASK.
fn vcek(chip: &[u8], tcb: [u8; 4], window: (u64, u64)) -> Vec<u8> {
    let ca = ca();
    let spki = ca
        .vcek_key
        .verifying_key()
        .to_public_key_der()
        .unwrap()
        .to_vec();
    let exts = vec![
        ext("1.3.6.1.4.1.3704.1.3.1", der_u8(tcb[0])),
        ext("1.3.6.1.4.1.3704.1.3.2", der_u8(tcb[1])),
        ext("1.3.6.1.4.1.3704.1.3.3", der_u8(tcb[2])),
        ext("1.3.6.1.4.1.3704.1.3.8", der_u8(tcb[3])),
        ext("1.3.6.1.4.1.3704.1.4", chip.to_vec()),
    ];
    rsa_signed_cert(
        "CN=SEV-VCEK",
        "CN=SEV-Test",
        &spki,
        exts,
        &ca.ask_key,
        window,
    )
}

/// Report byte offsets.
const POLICY: usize = 0x08;
const REPORT_DATA: usize = 0x50;
const MEASUREMENT: usize = 0x90;
const REPORTED_TCB: usize = 0x180;
const CHIP: usize = 0x1A0;
const SIG: usize = 0x2A0;

/// A version 3 Milan report signed by the test VCEK.
fn report(debug: bool) -> Vec<u8> {
    let mut r = vec![0u8; snp::REPORT_LEN];
    r[0..4].copy_from_slice(&3u32.to_le_bytes());
    let mut policy: u64 = 0x30000;
    if debug {
        policy |= 1 << 19;
    }
    r[POLICY..POLICY + 8].copy_from_slice(&policy.to_le_bytes());
    r[0x34..0x38].copy_from_slice(&1u32.to_le_bytes()); // ECDSA P-384 SHA-384
    r[REPORT_DATA..REPORT_DATA + 64].copy_from_slice(&[0x11; 64]);
    r[MEASUREMENT..MEASUREMENT + 48].copy_from_slice(&[0x22; 48]);
    // Reported TCB (Milan layout): bootloader, tee, reserved x4, snp, microcode.
    r[REPORTED_TCB] = TCB[0];
    r[REPORTED_TCB + 1] = TCB[1];
    r[REPORTED_TCB + 6] = TCB[2];
    r[REPORTED_TCB + 7] = TCB[3];
    r[0x188] = 0x19; // CPUID family: Milan
    r[0x189] = 0x01; // model
    r[CHIP..CHIP + 64].copy_from_slice(&CHIP_ID);
    sign(&mut r);
    r
}

/// (Re)signs the report with the test VCEK key.
fn sign(r: &mut [u8]) {
    let sig: p384::ecdsa::Signature = ca().vcek_key.sign(&r[..SIG]);
    let (rs, ss) = sig.split_bytes();
    let mut rb = rs.to_vec();
    let mut sb = ss.to_vec();
    rb.reverse();
    sb.reverse();
    r[SIG..SIG + 72].fill(0);
    r[SIG + 72..SIG + 144].fill(0);
    r[SIG..SIG + 48].copy_from_slice(&rb);
    r[SIG + 72..SIG + 72 + 48].copy_from_slice(&sb);
}

fn anchors() -> [TrustAnchors<'static>; 1] {
    let ca = ca();
    [TrustAnchors {
        product: "testchip",
        ark: &ca.ark,
        ask: &ca.ask,
    }]
}

fn run(
    report: &[u8],
    vek: &[u8],
    policy: &Policy,
    now: u64,
) -> Result<VerifiedClaims, VerifyError> {
    let coll = Collateral {
        vek: vek.to_vec(),
        ..Collateral::default()
    };
    let claims = snp::verify_with_anchors(
        report,
        &coll,
        &anchors(),
        policy,
        at(now),
        &ChainCache::new(),
    )?;
    ward_attest::verify::check_policy(&claims, policy)?;
    Ok(claims)
}

fn good_vcek() -> Vec<u8> {
    vcek(&CHIP_ID, TCB, (NOT_BEFORE, NOT_AFTER))
}

#[test]
fn synthetic_chain_verifies() {
    let claims = run(&report(false), &good_vcek(), &Policy::default(), NOW).unwrap();
    assert_eq!(claims.measurement, vec![0x22; 48]);
    assert_eq!(claims.report_data, vec![0x11; 64]);
    assert_eq!(claims.platform_id, CHIP_ID.to_vec());
    assert!(claims
        .details
        .contains(&("product".into(), "testchip".into())));
    assert!(claims.tcb.contains(&("microcode".into(), 115)));
}

#[test]
fn synthetic_flipped_report_bytes_break_the_signature() {
    for (offset, what) in [
        (MEASUREMENT, "measurement"),
        (REPORT_DATA, "report data"),
        (SIG + 5, "signature"),
        (POLICY, "guest policy"),
    ] {
        let mut r = report(false);
        r[offset] ^= 0x04;
        let err = run(&r, &good_vcek(), &Policy::default(), NOW).unwrap_err();
        assert!(
            matches!(err, VerifyError::SignatureInvalid { .. }),
            "{what}: {err}"
        );
    }
}

#[test]
fn synthetic_reported_tcb_must_match_the_vcek() {
    // A report re-signed (so the signature is fine) with a newer TCB than its VCEK.
    let mut r = report(false);
    r[REPORTED_TCB + 6] = TCB[2] + 1;
    sign(&mut r);
    let err = run(&r, &good_vcek(), &Policy::default(), NOW).unwrap_err();
    assert_eq!(
        err,
        VerifyError::TcbMismatch {
            component: "snp",
            report: TCB[2] + 1,
            cert: TCB[2]
        }
    );
}

#[test]
fn synthetic_wrong_chip_vcek_is_rejected() {
    let other = vcek(&[0xC2; 64], TCB, (NOT_BEFORE, NOT_AFTER));
    let err = run(&report(false), &other, &Policy::default(), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::ChipIdMismatch { .. }), "{err}");
    // An empty hwID binds nothing: refused, not skipped.
    let empty = vcek(&[], TCB, (NOT_BEFORE, NOT_AFTER));
    let err = run(&report(false), &empty, &Policy::default(), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::ChipIdMismatch { .. }), "{err}");
}

#[test]
fn synthetic_flipped_certificate_byte_breaks_the_chain() {
    let mut v = good_vcek();
    let n = v.len();
    v[n - 20] ^= 0x01; // inside the ASK's signature over the VCEK
    let err = run(&report(false), &v, &Policy::default(), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::ChainInvalid { .. }), "{err}");
}

#[test]
fn synthetic_ask_not_signed_by_the_ark_is_rejected() {
    let coll = Collateral {
        vek: good_vcek(),
        chain: vec![serde_bytes::ByteBuf::from(ca().rogue_ask.clone())],
        ..Collateral::default()
    };
    let err = snp::verify_with_anchors(
        &report(false),
        &coll,
        &anchors(),
        &Policy::default(),
        at(NOW),
        &ChainCache::new(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, VerifyError::ChainInvalid { issuer, .. } if issuer.starts_with("ARK")),
        "{err}"
    );
}

#[test]
fn synthetic_certificate_dates_are_checked() {
    let err = run(
        &report(false),
        &good_vcek(),
        &Policy::default(),
        NOT_AFTER + 86_400,
    )
    .unwrap_err();
    assert!(
        matches!(err, VerifyError::CertificateExpired { .. }),
        "{err}"
    );
    let err = run(
        &report(false),
        &good_vcek(),
        &Policy::default(),
        NOT_BEFORE - 86_400,
    )
    .unwrap_err();
    assert!(
        matches!(err, VerifyError::CertificateNotYetValid { .. }),
        "{err}"
    );
    // Only the VCEK expired (the ARK and ASK are still valid): named as such.
    let short = vcek(&CHIP_ID, TCB, (NOT_BEFORE, NOW - 1));
    let err = run(&report(false), &short, &Policy::default(), NOW).unwrap_err();
    assert!(
        matches!(&err, VerifyError::CertificateExpired { which, .. } if which == "VCEK/VLEK"),
        "{err}"
    );
}

#[test]
fn synthetic_debug_guest_is_rejected_unless_allowed() {
    let err = run(&report(true), &good_vcek(), &Policy::default(), NOW).unwrap_err();
    assert_eq!(err, VerifyError::DebugNotAllowed);
    let allow = Policy::from_toml("allow_debug = true").unwrap();
    assert!(run(&report(true), &good_vcek(), &allow, NOW).unwrap().debug);
}

#[test]
fn synthetic_policy_checks() {
    let v = good_vcek();
    let r = report(false);
    let m = Policy::from_toml(&format!("measurements = [\"{}\"]", "22".repeat(48))).unwrap();
    run(&r, &v, &m, NOW).unwrap();
    let m = Policy::from_toml(&format!("measurements = [\"{}\"]", "23".repeat(48))).unwrap();
    assert!(matches!(
        run(&r, &v, &m, NOW),
        Err(VerifyError::MeasurementNotAllowed { .. })
    ));
    let rd = Policy::from_toml(&format!("report_data = \"{}\"", "11".repeat(64))).unwrap();
    run(&r, &v, &rd, NOW).unwrap();
    let rd = Policy::from_toml(&format!("report_data = \"{}\"", "12".repeat(64))).unwrap();
    assert!(matches!(
        run(&r, &v, &rd, NOW),
        Err(VerifyError::ReportDataMismatch { .. })
    ));
    let tcb = Policy::from_toml("[snp.min_tcb]\nmicrocode = 115\nsnp = 8\n").unwrap();
    run(&r, &v, &tcb, NOW).unwrap();
    let tcb = Policy::from_toml("[snp.min_tcb]\nmicrocode = 116\n").unwrap();
    assert_eq!(
        run(&r, &v, &tcb, NOW).unwrap_err(),
        VerifyError::TcbTooLow {
            component: "microcode",
            got: 115,
            min: 116
        }
    );
    let mask = Policy::from_toml("[snp]\nguest_policy_mask = 0x30000\n").unwrap();
    run(&r, &v, &mask, NOW).unwrap();
    let mask = Policy::from_toml("[snp]\nguest_policy_mask = 0x10000\n").unwrap();
    assert!(matches!(
        run(&r, &v, &mask, NOW),
        Err(VerifyError::GuestPolicyNotAllowed { bits: 0x20000, .. })
    ));
    // Roots of another product only: the anchors are filtered out.
    let genoa = Policy::from_toml("[snp]\nproduct = \"genoa\"\n").unwrap();
    assert!(matches!(
        run(&r, &v, &genoa, NOW),
        Err(VerifyError::Policy(_))
    ));
}

#[test]
fn synthetic_report_with_another_signature_algorithm_is_rejected() {
    let mut r = report(false);
    r[0x34] = 2;
    sign(&mut r);
    let err = run(&r, &good_vcek(), &Policy::default(), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::Malformed { .. }), "{err}");
}

#[test]
fn synthetic_cache_skips_only_signatures_not_dates() {
    let coll = Collateral {
        vek: good_vcek(),
        ..Collateral::default()
    };
    let cache = ChainCache::new();
    let go = |now| {
        snp::verify_with_anchors(
            &report(false),
            &coll,
            &anchors(),
            &Policy::default(),
            at(now),
            &cache,
        )
    };
    go(NOW).unwrap();
    go(NOW).unwrap();
    assert!(matches!(
        go(NOT_AFTER + 1),
        Err(VerifyError::CertificateExpired { .. })
    ));
    // A warm cache never makes a bad report signature pass.
    let mut r = report(false);
    r[MEASUREMENT] ^= 1;
    assert!(matches!(
        snp::verify_with_anchors(&r, &coll, &anchors(), &Policy::default(), at(NOW), &cache),
        Err(VerifyError::SignatureInvalid { .. })
    ));
}

// --- Turin (FMC in the TCB, 8-byte chip id) and VLEK-signed reports -----------------

const TURIN_CHIP: [u8; 8] = [0xD7; 8];
/// Turin reported TCB: FMC, bootloader, TEE, SNP, microcode.
const TURIN_TCB: [u8; 5] = [1, 2, 3, 4, 5];

/// An endorsement key certificate with the given TCB extensions and optional hwID,
/// signed by `issuer`.
fn vek_cert(chip: Option<&[u8]>, tcb: &[(&str, u8)], issuer: &RsaSigner) -> Vec<u8> {
    let spki = ca()
        .vcek_key
        .verifying_key()
        .to_public_key_der()
        .unwrap()
        .to_vec();
    let mut exts: Vec<Extension> = tcb
        .iter()
        .map(|(oid, v)| ext(&format!("1.3.6.1.4.1.3704.1.3.{oid}"), der_u8(*v)))
        .collect();
    if let Some(chip) = chip {
        exts.push(ext("1.3.6.1.4.1.3704.1.4", chip.to_vec()));
    }
    rsa_signed_cert(
        "CN=SEV-VEK",
        "CN=SEV-Test",
        &spki,
        exts,
        issuer,
        (NOT_BEFORE, NOT_AFTER),
    )
}

fn turin_report() -> Vec<u8> {
    let mut r = report(false);
    r[0x188] = 0x1A; // CPUID family: Turin
    r[0x189] = 0x02;
    let t = TURIN_TCB;
    r[REPORTED_TCB..REPORTED_TCB + 8].copy_from_slice(&[t[0], t[1], t[2], t[3], 0, 0, 0, t[4]]);
    r[CHIP..CHIP + 64].fill(0);
    r[CHIP..CHIP + 8].copy_from_slice(&TURIN_CHIP);
    sign(&mut r);
    r
}

fn turin_tcb_exts(fmc: u8) -> Vec<(&'static str, u8)> {
    vec![
        ("9", fmc),
        ("1", TURIN_TCB[1]),
        ("2", TURIN_TCB[2]),
        ("3", TURIN_TCB[3]),
        ("8", TURIN_TCB[4]),
    ]
}

#[test]
fn synthetic_turin_report_with_fmc_verifies_and_binds_fmc() {
    let v = vek_cert(
        Some(&TURIN_CHIP),
        &turin_tcb_exts(TURIN_TCB[0]),
        &ca().ask_key,
    );
    let claims = run(&turin_report(), &v, &Policy::default(), NOW).unwrap();
    assert!(claims.tcb.contains(&("fmc".into(), 1)), "{:?}", claims.tcb);
    assert!(claims.tcb.contains(&("microcode".into(), 5)));
    // The VCEK certifies another FMC SVN.
    let v = vek_cert(Some(&TURIN_CHIP), &turin_tcb_exts(9), &ca().ask_key);
    assert_eq!(
        run(&turin_report(), &v, &Policy::default(), NOW).unwrap_err(),
        VerifyError::TcbMismatch {
            component: "fmc",
            report: 1,
            cert: 9
        }
    );
    // Minimum FMC.
    let v = vek_cert(
        Some(&TURIN_CHIP),
        &turin_tcb_exts(TURIN_TCB[0]),
        &ca().ask_key,
    );
    let min = Policy::from_toml("[snp.min_tcb]\nfmc = 2\n").unwrap();
    assert_eq!(
        run(&turin_report(), &v, &min, NOW).unwrap_err(),
        VerifyError::TcbTooLow {
            component: "fmc",
            got: 1,
            min: 2
        }
    );
    // An 8-byte hwID of another chip.
    let v = vek_cert(
        Some(&[0xD8; 8]),
        &turin_tcb_exts(TURIN_TCB[0]),
        &ca().ask_key,
    );
    assert!(matches!(
        run(&turin_report(), &v, &Policy::default(), NOW),
        Err(VerifyError::ChipIdMismatch { .. })
    ));
}

#[test]
fn synthetic_vlek_report_verifies_through_the_asvk() {
    // An ASVK signed by the test ARK, a VLEK (no hwID) signed by the ASVK.
    let (asvk_key, asvk_spki) = rsa_key();
    let ark_signer = &ca().ark_signer;
    let asvk = rsa_signed_cert(
        "CN=SEV-VLEK-Test",
        "CN=ARK-Test",
        &asvk_spki,
        vec![],
        ark_signer,
        (NOT_BEFORE, NOT_AFTER),
    );
    let asvk_signer = RsaSigner::new(asvk_key);
    let tcb = [("1", TCB[0]), ("2", TCB[1]), ("3", TCB[2]), ("8", TCB[3])];
    let vlek = vek_cert(None, &tcb, &asvk_signer);
    let mut r = report(false);
    r[0x48] = 1 << 2; // KEY_INFO.SIGNING_KEY = VLEK
    sign(&mut r);
    let coll = Collateral {
        vek: vlek.clone(),
        chain: vec![serde_bytes::ByteBuf::from(asvk)],
        ..Collateral::default()
    };
    let claims = snp::verify_with_anchors(
        &r,
        &coll,
        &anchors(),
        &Policy::default(),
        at(NOW),
        &ChainCache::new(),
    )
    .unwrap();
    assert!(claims
        .details
        .contains(&("signing_key".into(), "vlek".into())));
    // Without the ASVK, the VLEK does not chain to the ASK.
    let err = run(&r, &vlek, &Policy::default(), NOW).unwrap_err();
    assert!(matches!(err, VerifyError::ChainInvalid { .. }), "{err}");
}

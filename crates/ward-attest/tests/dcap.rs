//! Intel TDX and SGX quotes (dcap-qvl) on the real vectors, at their pinned times.

mod common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ward_attest::verify::{verify, Policy, VerifyError};
use ward_attest::{Collateral, Evidence, TeeKind};

fn vectors() -> Option<PathBuf> {
    common::vectors_with("tdx")
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn evidence(dir: &std::path::Path, kind: TeeKind, sub: &str, name: &str) -> Evidence {
    let base = dir.join(sub).join("dcap-qvl");
    Evidence {
        kind,
        evidence: std::fs::read(base.join(name)).unwrap(),
        collateral: Collateral {
            quote_collateral: std::fs::read(base.join(format!("{name}_collateral.json"))).unwrap(),
            ..Collateral::default()
        },
    }
}

const TDX_AT: u64 = 1_751_328_000;

#[test]
fn tdx_v4_quote_verifies_up_to_date() {
    let Some(dir) = vectors() else { return };
    let c = verify(
        &evidence(&dir, TeeKind::Tdx, "tdx", "tdx_quote"),
        &Policy::default(),
        at(TDX_AT),
    )
    .unwrap();
    assert_eq!(c.kind, TeeKind::Tdx);
    assert_eq!(c.measurement.len(), 48);
    assert!(
        c.details
            .contains(&("tcb_status".into(), "UpToDate".into())),
        "{:?}",
        c.details
    );
    assert!(c.details.iter().any(|(k, _)| k == "rtmr3"));
}

#[test]
fn tdx_v5_td15_quote_verifies() {
    let Some(dir) = vectors() else { return };
    verify(
        &evidence(&dir, TeeKind::Tdx, "tdx", "tdx_quote_td15ex"),
        &Policy::default(),
        at(1_792_454_400),
    )
    .unwrap();
}

#[test]
fn outdated_tdx_quote_is_rejected() {
    let Some(dir) = vectors() else { return };
    let err = verify(
        &evidence(&dir, TeeKind::Tdx, "tdx", "tdx_quote_outdated"),
        &Policy::default(),
        at(1_772_323_200),
    )
    .unwrap_err();
    assert!(matches!(err, VerifyError::TcbLevelNotFound(_)), "{err}");
}

#[test]
fn sgx_quote_needs_its_status_and_advisories_allowed_by_name() {
    let Some(dir) = vectors() else { return };
    let e = evidence(&dir, TeeKind::Sgx, "sgx", "sgx_quote");
    let err = verify(&e, &Policy::default(), at(TDX_AT)).unwrap_err();
    assert_eq!(
        err,
        VerifyError::TcbStatusNotAllowed {
            status: "ConfigurationAndSWHardeningNeeded".into()
        }
    );
    let status_only =
        Policy::from_toml("[dcap]\nallow_statuses = [\"ConfigurationAndSWHardeningNeeded\"]\n")
            .unwrap();
    let err = verify(&e, &status_only, at(TDX_AT)).unwrap_err();
    assert!(
        matches!(err, VerifyError::AdvisoryNotAllowed { .. }),
        "{err}"
    );
    let all = Policy::from_toml(
        "[dcap]\nallow_statuses = [\"ConfigurationAndSWHardeningNeeded\"]\nallow_advisories = [\"INTEL-SA-00289\", \"INTEL-SA-00615\"]\n",
    )
    .unwrap();
    let c = verify(&e, &all, at(TDX_AT)).unwrap();
    assert_eq!(c.kind, TeeKind::Sgx);
    assert_eq!(c.measurement.len(), 32);
}

#[test]
fn kind_mismatch_is_malformed() {
    let Some(dir) = vectors() else { return };
    let mut e = evidence(&dir, TeeKind::Tdx, "tdx", "tdx_quote");
    e.kind = TeeKind::Sgx;
    assert!(matches!(
        verify(&e, &Policy::default(), at(TDX_AT)),
        Err(VerifyError::Malformed { .. })
    ));
}

/// The TCB info's validity window, from the collateral itself.
fn tcb_window(e: &Evidence) -> (u64, u64) {
    let coll: serde_json::Value = serde_json::from_slice(&e.collateral.quote_collateral).unwrap();
    let info: serde_json::Value = serde_json::from_str(coll["tcb_info"].as_str().unwrap()).unwrap();
    let secs = |s: &str| {
        // "2025-06-19T10:16:03Z"
        let d = x509_cert::der::DateTime::new(
            s[0..4].parse().unwrap(),
            s[5..7].parse().unwrap(),
            s[8..10].parse().unwrap(),
            s[11..13].parse().unwrap(),
            s[14..16].parse().unwrap(),
            s[17..19].parse().unwrap(),
        )
        .unwrap();
        d.unix_duration().as_secs()
    };
    (
        secs(info["issueDate"].as_str().unwrap()),
        secs(info["nextUpdate"].as_str().unwrap()),
    )
}

#[test]
fn a_day_outside_the_collateral_window_is_a_time_error() {
    let Some(dir) = vectors() else { return };
    for (kind, sub, name) in [
        (TeeKind::Tdx, "tdx", "tdx_quote"),
        (TeeKind::Tdx, "tdx", "tdx_quote_td15ex"),
        (TeeKind::Tdx, "tdx", "tdx_quote_outdated"),
        (TeeKind::Sgx, "sgx", "sgx_quote"),
    ] {
        let e = evidence(&dir, kind, sub, name);
        let (issued, next) = tcb_window(&e);
        for t in [issued - 86_400, next + 86_400] {
            let err = verify(&e, &Policy::default(), at(t)).unwrap_err();
            assert!(
                matches!(err, VerifyError::CollateralExpired(_)),
                "{name} at {t}: expected a time error, got {err}"
            );
        }
    }
}

/// Flips one base64 character inside the first certificate of a PEM chain field.
fn corrupt_chain(e: &Evidence, field: &str) -> Evidence {
    let mut e = e.clone();
    let mut coll: serde_json::Value =
        serde_json::from_slice(&e.collateral.quote_collateral).unwrap();
    let chain = coll[field].as_str().unwrap().to_string();
    let pos = chain.find("MII").unwrap() + 200;
    let mut bytes = chain.into_bytes();
    bytes[pos] = if bytes[pos] == b'A' { b'B' } else { b'A' };
    coll[field] = serde_json::Value::String(String::from_utf8(bytes).unwrap());
    e.collateral.quote_collateral = serde_json::to_vec(&coll).unwrap();
    e
}

/// Replaces text inside a signed JSON collateral field (its signature then fails).
fn edit_collateral(e: &Evidence, field: &str, from: &str, to: &str) -> Evidence {
    let mut e = e.clone();
    let mut coll: serde_json::Value =
        serde_json::from_slice(&e.collateral.quote_collateral).unwrap();
    let text = coll[field].as_str().unwrap();
    assert!(text.contains(from), "{field} has no {from}");
    coll[field] = serde_json::Value::String(text.replacen(from, to, 1));
    e.collateral.quote_collateral = serde_json::to_vec(&coll).unwrap();
    e
}

fn flip(e: &Evidence, offset: usize) -> Evidence {
    let mut e = e.clone();
    e.evidence[offset] ^= 1;
    e
}

fn quote_signature_invalid(err: &VerifyError) -> bool {
    matches!(err, VerifyError::SignatureInvalid { what: "quote", .. })
}

#[test]
fn tdx_flipped_bytes_name_the_right_reason() {
    let Some(dir) = vectors() else { return };
    let good = evidence(&dir, TeeKind::Tdx, "tdx", "tdx_quote");
    let run = |e: &Evidence| verify(e, &Policy::default(), at(TDX_AT)).unwrap_err();
    // The TD report follows the 48-byte header: TEE_TCB_SVN at 0, MRTD at 136,
    // REPORTDATA at 520. Each is covered by the quote's signature.
    for (offset, what) in [(48, "TCB"), (48 + 136, "MRTD"), (48 + 520, "report data")] {
        let err = run(&flip(&good, offset));
        assert!(quote_signature_invalid(&err), "{what}: {err}");
    }
    // The quote's ECDSA signature (just after the 584-byte body and its length).
    let err = run(&flip(&good, 48 + 584 + 4 + 3));
    assert!(quote_signature_invalid(&err), "signature: {err}");
    // A certificate in the TCB signing chain.
    let err = run(&corrupt_chain(&good, "tcb_info_issuer_chain"));
    assert!(
        matches!(err, VerifyError::ChainInvalid { .. }),
        "chain: {err}"
    );
    // The TCB info (its signature no longer matches).
    let err = run(&edit_collateral(
        &good,
        "tcb_info",
        "\"UpToDate\"",
        "\"OutOfDate\"",
    ));
    assert_eq!(
        err,
        VerifyError::CollateralSignatureInvalid { what: "TCB info" }
    );
    // The QE identity.
    let err = run(&edit_collateral(
        &good,
        "qe_identity",
        "\"UpToDate\"",
        "\"OutOfDate\"",
    ));
    assert_eq!(
        err,
        VerifyError::CollateralSignatureInvalid {
            what: "QE identity"
        }
    );
}

const SGX_POLICY: &str = "[dcap]\nallow_statuses = [\"ConfigurationAndSWHardeningNeeded\"]\nallow_advisories = [\"INTEL-SA-00289\", \"INTEL-SA-00615\"]\n";

#[test]
fn sgx_flipped_bytes_name_the_right_reason() {
    let Some(dir) = vectors() else { return };
    let good = evidence(&dir, TeeKind::Sgx, "sgx", "sgx_quote");
    let policy = Policy::from_toml(SGX_POLICY).unwrap();
    verify(&good, &policy, at(TDX_AT)).unwrap();
    let run = |e: &Evidence| verify(e, &policy, at(TDX_AT)).unwrap_err();
    // The enclave report follows the 48-byte header: CPUSVN at 0, MRENCLAVE at 64,
    // MRSIGNER at 128, ISVSVN at 258, REPORTDATA at 320.
    for (offset, what) in [
        (48, "CPUSVN"),
        (48 + 64, "MRENCLAVE"),
        (48 + 128, "MRSIGNER"),
        (48 + 258, "ISVSVN"),
        (48 + 320, "report data"),
    ] {
        let err = run(&flip(&good, offset));
        assert!(quote_signature_invalid(&err), "{what}: {err}");
    }
    let err = run(&flip(&good, 48 + 384 + 4 + 3));
    assert!(quote_signature_invalid(&err), "signature: {err}");
    let err = run(&corrupt_chain(&good, "tcb_info_issuer_chain"));
    assert!(
        matches!(err, VerifyError::ChainInvalid { .. }),
        "chain: {err}"
    );
    let err = run(&edit_collateral(
        &good,
        "tcb_info",
        "\"SWHardeningNeeded\"",
        "\"UpToDate\"",
    ));
    assert_eq!(
        err,
        VerifyError::CollateralSignatureInvalid { what: "TCB info" }
    );
}

#[test]
fn sgx_claims_and_policies() {
    let Some(dir) = vectors() else { return };
    let e = evidence(&dir, TeeKind::Sgx, "sgx", "sgx_quote");
    let policy = Policy::from_toml(SGX_POLICY).unwrap();
    let c = verify(&e, &policy, at(TDX_AT)).unwrap();
    assert_eq!(e.evidence[48 + 64..48 + 96], c.measurement[..]);
    assert!(c
        .signers
        .iter()
        .any(|(k, v)| k == "mr_signer" && v.len() == 32));
    assert!(!c.debug);
    let other = Policy::from_toml(&format!(
        "{SGX_POLICY}\nmeasurements = [\"{}\"]",
        "ab".repeat(32)
    ));
    // (Top-level keys must precede tables in TOML: build it the other way round.)
    assert!(other.is_err());
    let other = Policy::from_toml(&format!(
        "measurements = [\"{}\"]\n{SGX_POLICY}",
        "ab".repeat(32)
    ))
    .unwrap();
    assert!(matches!(
        verify(&e, &other, at(TDX_AT)).unwrap_err(),
        VerifyError::MeasurementNotAllowed { .. }
    ));
    let rd = Policy::from_toml(&format!(
        "report_data = \"{}\"\n{SGX_POLICY}",
        "00".repeat(63) + "01"
    ))
    .unwrap();
    assert!(matches!(
        verify(&e, &rd, at(TDX_AT)).unwrap_err(),
        VerifyError::ReportDataMismatch { .. }
    ));
}

#[test]
fn tdx_debug_td_is_rejected_by_the_policy() {
    let Some(dir) = vectors() else { return };
    let good = evidence(&dir, TeeKind::Tdx, "tdx", "tdx_quote");
    // Setting the TD's DEBUG attribute (TD report offset 120, bit 0) breaks the
    // quote signature first: debug is only reachable with a genuine debug quote.
    let err = verify(&flip(&good, 48 + 120), &Policy::default(), at(TDX_AT)).unwrap_err();
    assert!(quote_signature_invalid(&err), "{err}");
}

#[test]
fn missing_or_broken_collateral_is_clear() {
    let Some(dir) = vectors() else { return };
    let mut e = evidence(&dir, TeeKind::Tdx, "tdx", "tdx_quote");
    let q = e.evidence.clone();
    e.collateral.quote_collateral.clear();
    assert!(matches!(
        verify(&e, &Policy::default(), at(TDX_AT)),
        Err(VerifyError::MissingCollateral(_))
    ));
    e.collateral.quote_collateral = b"{\"nope\": 1}".to_vec();
    assert!(matches!(
        verify(&e, &Policy::default(), at(TDX_AT)),
        Err(VerifyError::Malformed { .. })
    ));
    // Truncated quotes never panic.
    let good = evidence(&dir, TeeKind::Tdx, "tdx", "tdx_quote");
    // (The last 70 bytes of this quote are zero padding: cut inside the quote proper.)
    for cut in [0, 10, 47, 48, 300, q.len() - 71] {
        let mut t = good.clone();
        t.evidence.truncate(cut);
        assert!(verify(&t, &Policy::default(), at(TDX_AT)).is_err());
    }
}

//! Intel TDX and SGX quotes (dcap-qvl) on the real vectors, at their pinned times.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ward_attest::verify::{verify, Policy, VerifyError};
use ward_attest::{Collateral, Evidence, TeeKind};

fn vectors() -> Option<PathBuf> {
    let dir = std::env::var_os("WARD_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/vectors"
            ))
        });
    if dir.join("tdx").is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: attestation vectors not found at {} (set WARD_VECTORS)",
            dir.display()
        );
        None
    }
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
    assert!(err.to_string().contains("No matching TCB level"), "{err}");
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
    let e = evidence(&dir, TeeKind::Tdx, "tdx", "tdx_quote");
    let (issued, next) = tcb_window(&e);
    for t in [issued - 86_400, next + 86_400] {
        let err = verify(&e, &Policy::default(), at(t)).unwrap_err();
        assert!(
            matches!(err, VerifyError::CollateralExpired(_)),
            "at {t}: expected a time error, got {err}"
        );
    }
}

#[test]
fn flipped_bytes_are_rejected_with_the_reason() {
    let Some(dir) = vectors() else { return };
    let good = evidence(&dir, TeeKind::Tdx, "tdx", "tdx_quote");
    let check = |e: &Evidence, needle: &str| {
        let err = verify(e, &Policy::default(), at(TDX_AT)).unwrap_err();
        assert!(
            err.to_string().contains(needle),
            "expected {needle:?} in: {err}"
        );
    };
    // Quote header 48 bytes, then the TD report: MRTD at 48+136, REPORTDATA at 48+520.
    for (offset, what) in [(48 + 136, "measurement"), (48 + 520, "report data")] {
        let mut e = good.clone();
        e.evidence[offset] ^= 1;
        check(&e, "signature is invalid");
        let _ = what;
    }
    // The quote's ECDSA signature (just after the 584-byte body and its length).
    let mut e = good.clone();
    e.evidence[48 + 584 + 4 + 3] ^= 1;
    check(&e, "signature is invalid");
    // A certificate in the TCB info chain: flip one base64 character of its body.
    let mut e = good.clone();
    let mut coll: serde_json::Value =
        serde_json::from_slice(&e.collateral.quote_collateral).unwrap();
    let chain = coll["tcb_info_issuer_chain"].as_str().unwrap().to_string();
    let pos = chain.find("MII").unwrap() + 200;
    let mut bytes = chain.into_bytes();
    bytes[pos] = if bytes[pos] == b'A' { b'B' } else { b'A' };
    coll["tcb_info_issuer_chain"] = serde_json::Value::String(String::from_utf8(bytes).unwrap());
    e.collateral.quote_collateral = serde_json::to_vec(&coll).unwrap();
    assert!(matches!(
        verify(&e, &Policy::default(), at(TDX_AT)),
        Err(VerifyError::QuoteInvalid(_))
    ));
    // The TCB info itself (its signature no longer matches).
    let mut e = good.clone();
    let mut coll: serde_json::Value =
        serde_json::from_slice(&e.collateral.quote_collateral).unwrap();
    let info = coll["tcb_info"]
        .as_str()
        .unwrap()
        .replacen("\"UpToDate\"", "\"OutOfDate\"", 1);
    coll["tcb_info"] = serde_json::Value::String(info);
    e.collateral.quote_collateral = serde_json::to_vec(&coll).unwrap();
    check(&e, "Signature is invalid for tcb_info");
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

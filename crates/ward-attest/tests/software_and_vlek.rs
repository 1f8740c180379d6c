//! `none` evidence is refused unless the policy consents, visibly; ASVKs (which sign
//! VLEKs) chain to the built-in ARKs; every vector fails a day outside its window.

mod common;

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use ward_attest::verify::snp::{check_intermediate, Product};
use ward_attest::verify::{verify, Policy, VerifyError};
use ward_attest::{Collateral, Evidence, TeeKind};

fn vectors() -> Option<PathBuf> {
    common::vectors_with(".")
}

#[test]
fn software_evidence_is_rejected_by_default() {
    let e = Evidence::software(vec![1; 48], [2; 64]);
    let err = verify(&e, &Policy::default(), UNIX_EPOCH).unwrap_err();
    assert_eq!(err, VerifyError::SoftwareNotAllowed);
    assert!(err.to_string().contains("no hardware protection"));
}

#[test]
fn software_evidence_accepted_only_with_consent_and_says_so() {
    let e = Evidence::software(vec![1; 48], [2; 64]);
    let p = Policy::from_toml("insecure_allow_software = true").unwrap();
    let c = verify(&e, &p, UNIX_EPOCH).unwrap();
    assert!(c.insecure_software);
    assert_eq!(c.kind, TeeKind::None);
    assert_eq!(c.measurement, vec![1; 48]);
    // The other policy checks still apply to it.
    let p = Policy::from_toml(&format!(
        "insecure_allow_software = true\nreport_data = \"{}\"",
        "03".repeat(64)
    ))
    .unwrap();
    assert!(matches!(
        verify(&e, &p, UNIX_EPOCH),
        Err(VerifyError::ReportDataMismatch { .. })
    ));
}

#[test]
fn malformed_software_report_is_rejected() {
    let e = Evidence {
        kind: TeeKind::None,
        evidence: vec![0xa0],
        collateral: Collateral::default(),
    };
    let p = Policy::from_toml("insecure_allow_software = true").unwrap();
    assert!(matches!(
        verify(&e, &p, UNIX_EPOCH),
        Err(VerifyError::Malformed { .. })
    ));
}

#[test]
fn asvks_chain_to_their_products_ark_and_not_to_others() {
    let Some(dir) = vectors() else { return };
    let now = UNIX_EPOCH + Duration::from_secs(1_735_689_600);
    for (name, product, other) in [
        ("milan", Product::Milan, Product::Genoa),
        ("genoa", Product::Genoa, Product::Turin),
        ("turin", Product::Turin, Product::Milan),
    ] {
        let pem = std::fs::read(dir.join(format!("amd-roots/ask_ark_{name}_vlek.pem"))).unwrap();
        // The file holds the ASVK first, then the ARK.
        let end = b"-----END CERTIFICATE-----";
        let cut = pem.windows(end.len()).position(|w| w == end).unwrap() + end.len();
        let asvk = &pem[..cut];
        check_intermediate(product, asvk, now).unwrap_or_else(|e| panic!("{name}: {e}"));
        let err = check_intermediate(other, asvk, now).unwrap_err();
        assert!(
            matches!(err, VerifyError::ChainInvalid { .. }),
            "{name}: {err}"
        );
    }
}

#[test]
fn remaining_vectors_fail_outside_their_windows() {
    let Some(dir) = vectors() else { return };
    let read = |p: &str| std::fs::read(dir.join(p)).unwrap();
    let day = 86_400;
    // milan-trustee VCEK: 2023-01-24 .. 2030-01-24.
    let trustee = Evidence {
        kind: TeeKind::Snp,
        evidence: read("snp/milan-trustee/report.bin"),
        collateral: Collateral {
            vek: read("snp/milan-trustee/vcek.der"),
            ..Collateral::default()
        },
    };
    let after = UNIX_EPOCH + Duration::from_secs(1_895_443_106 + day); // notAfter 2030-01-24T17:58:26Z + 1 day
    assert!(matches!(
        verify(&trustee, &Policy::default(), after),
        Err(VerifyError::CertificateExpired { .. })
    ));
    // SGX and TDX 1.5 collateral: far outside (a year) must be a time error too.
    let sgx_policy = Policy::from_toml(
        "[dcap]\nallow_statuses = [\"ConfigurationAndSWHardeningNeeded\"]\nallow_advisories = [\"INTEL-SA-00289\", \"INTEL-SA-00615\"]\n",
    )
    .unwrap();
    for (kind, name, pinned, policy) in [
        (
            TeeKind::Sgx,
            "sgx/dcap-qvl/sgx_quote",
            1_751_328_000u64,
            &sgx_policy,
        ),
        (
            TeeKind::Tdx,
            "tdx/dcap-qvl/tdx_quote_td15ex",
            1_792_454_400,
            &Policy::default(),
        ),
    ] {
        let e = Evidence {
            kind,
            evidence: read(name),
            collateral: Collateral {
                quote_collateral: read(&format!("{name}_collateral.json")),
                ..Collateral::default()
            },
        };
        verify(&e, policy, UNIX_EPOCH + Duration::from_secs(pinned)).unwrap();
        for t in [pinned - 365 * day, pinned + 365 * day] {
            let err = verify(&e, policy, UNIX_EPOCH + Duration::from_secs(t)).unwrap_err();
            assert!(
                matches!(err, VerifyError::CollateralExpired(_)),
                "{name} at {t}: {err}"
            );
        }
    }
}

#[test]
fn built_in_amd_roots_match_the_published_ones_and_chain() {
    let now = UNIX_EPOCH + Duration::from_secs(1_735_689_600);
    for (product, other) in [
        (Product::Milan, Product::Genoa),
        (Product::Genoa, Product::Turin),
        (Product::Turin, Product::Milan),
    ] {
        let a = product.trust_anchors();
        check_intermediate(product, a.ask, now).unwrap_or_else(|e| panic!("{product:?}: {e}"));
        assert!(matches!(
            check_intermediate(other, a.ask, now),
            Err(VerifyError::ChainInvalid { .. })
        ));
    }
    // The built-in roots are the files published in the vectors (when present).
    let Some(dir) = vectors() else { return };
    let pem_body = |b: &[u8]| -> String {
        String::from_utf8_lossy(b)
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect()
    };
    for (name, product) in [
        ("milan", Product::Milan),
        ("genoa", Product::Genoa),
        ("turin", Product::Turin),
    ] {
        let a = product.trust_anchors();
        for (file, built_in) in [("ark.pem", a.ark), ("ask.pem", a.ask)] {
            let published = std::fs::read(dir.join("amd-roots").join(name).join(file)).unwrap();
            assert_eq!(pem_body(&published), pem_body(built_in), "{name}/{file}");
        }
    }
}

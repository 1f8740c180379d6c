//! `ward attest` end to end, on the real Milan vector (skipped, loudly, if absent).

mod common;

use std::path::PathBuf;

use common::*;

fn milan() -> Option<PathBuf> {
    let dir = root().join("../shared/vectors/snp/milan-virtee");
    if dir.join("report.bin").is_file() {
        Some(dir)
    } else {
        eprintln!("skipping: {} not found", dir.display());
        None
    }
}

fn verify_args<'a>(report: &'a str, vcek: &'a str) -> Vec<&'a str> {
    vec![
        "attest",
        "verify",
        "--kind",
        "snp",
        report,
        "--vcek",
        vcek,
        "--at",
        "2025-01-01T00:00:00Z",
    ]
}

#[test]
fn milan_report_verifies_and_prints_measurement_and_chip_id() {
    let Some(dir) = milan() else { return };
    let (report, vcek) = (dir.join("report.bin"), dir.join("vcek.der"));
    let o = ward(&verify_args(
        report.to_str().unwrap(),
        vcek.to_str().unwrap(),
    ));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.contains("measurement: 7a1e5c26"), "{out}");
    assert!(out.contains("chip id: d49554ec"), "{out}");
    assert!(out.contains("verdict: ACCEPTED"), "{out}");
}

#[test]
fn one_flipped_byte_is_rejected_with_a_reason() {
    let Some(dir) = milan() else { return };
    let mut bytes = std::fs::read(dir.join("report.bin")).unwrap();
    bytes[0x90] ^= 0x80;
    let (_d, report) = temp_file("report.bin", &bytes);
    let vcek = dir.join("vcek.der");
    let o = ward(&verify_args(
        report.to_str().unwrap(),
        vcek.to_str().unwrap(),
    ));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("REJECTED: signature invalid: the VCEK did not sign this SNP report"),
        "{out}"
    );
}

#[test]
fn json_output_is_machine_readable() {
    let Some(dir) = milan() else { return };
    let (report, vcek) = (dir.join("report.bin"), dir.join("vcek.der"));
    let mut args = verify_args(report.to_str().unwrap(), vcek.to_str().unwrap());
    args.push("--json");
    let o = ward(&args);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "accepted");
    assert_eq!(v["claims"]["kind"], "snp");
    assert_eq!(v["claims"]["tcb"]["snp"], 8);
}

#[test]
fn expired_window_is_a_time_rejection() {
    let Some(dir) = milan() else { return };
    let (report, vcek) = (dir.join("report.bin"), dir.join("vcek.der"));
    let mut args = verify_args(report.to_str().unwrap(), vcek.to_str().unwrap());
    args[8] = "2031-01-01T00:00:00Z";
    let o = ward(&args);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("expired"), "{out}");
}

#[test]
fn policy_init_template_is_accepted_by_verify() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("policy.toml");
    assert_eq!(
        ward(&["attest", "policy", "init", p.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
    let Some(dir) = milan() else { return };
    let (report, vcek) = (dir.join("report.bin"), dir.join("vcek.der"));
    let mut args = verify_args(report.to_str().unwrap(), vcek.to_str().unwrap());
    args.extend(["--policy", p.to_str().unwrap()]);
    assert_eq!(ward(&args).status.code(), Some(0));
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let (_d, junk) = temp_file("junk.bin", b"not a report");
    let o = ward(&[
        "attest",
        "verify",
        "--kind",
        "snp",
        junk.to_str().unwrap(),
        "--vcek",
        junk.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("malformed SNP report"));
    let o = ward(&[
        "attest",
        "verify",
        "--kind",
        "nitro",
        junk.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("malformed Nitro attestation document"));
    let o = ward(&["attest", "inspect", "--kind", "tdx", junk.to_str().unwrap()]);
    assert_clean_failure(&o, 125, "malformed quote");
    let o = ward(&[
        "attest",
        "verify",
        "--kind",
        "snp",
        junk.to_str().unwrap(),
        "--at",
        "soon",
    ]);
    assert_clean_failure(&o, 125, "cannot parse time");
}

fn vectors() -> Option<PathBuf> {
    let dir = root().join("../shared/vectors");
    if dir.join("tdx").is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: {} not found", dir.display());
        None
    }
}

fn path(dir: &std::path::Path, p: &str) -> String {
    dir.join(p).to_str().unwrap().to_string()
}

#[test]
fn tdx_sgx_and_nitro_vectors_through_the_cli() {
    let Some(v) = vectors() else { return };
    let quote = path(&v, "tdx/dcap-qvl/tdx_quote");
    let coll = path(&v, "tdx/dcap-qvl/tdx_quote_collateral.json");
    let o = ward(&[
        "attest",
        "verify",
        "--kind",
        "tdx",
        &quote,
        "--collateral",
        &coll,
        "--at",
        "1751328000",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Default policy: the SGX platform's status needs explicit consent.
    let quote = path(&v, "sgx/dcap-qvl/sgx_quote");
    let coll = path(&v, "sgx/dcap-qvl/sgx_quote_collateral.json");
    let o = ward(&[
        "attest",
        "verify",
        "--kind",
        "sgx",
        &quote,
        "--collateral",
        &coll,
        "--at",
        "1751328000",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("ConfigurationAndSWHardeningNeeded"));
    let doc = path(&v, "nitro/eu-central-1/attestation.cose");
    let o = ward(&[
        "attest",
        "verify",
        "--kind",
        "nitro",
        &doc,
        "--at",
        "1736179625",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("pcr0: "), "{out}");
    let o = ward(&[
        "attest",
        "verify",
        "--kind",
        "nitro",
        &doc,
        "--at",
        "2025-01-07T16:07:05Z",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("expired"));
}

#[test]
fn enarx_csr_verifies_with_its_key_binding() {
    let Some(v) = vectors() else { return };
    let csr = path(&v, "enarx-steward/snp-milan.csr");
    let o = ward(&[
        "attest",
        "verify",
        "--kind",
        "csr",
        &csr,
        "--at",
        "2025-01-01T00:00:00Z",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.contains("key binding"), "{out}");
    assert!(stderr(&o).contains("CRL"), "{}", stderr(&o));
}

#[test]
fn inspect_guesses_the_kind() {
    let Some(v) = vectors() else { return };
    for (file, kind) in [
        ("snp/milan-virtee/report.bin", "# snp"),
        ("tdx/dcap-qvl/tdx_quote", "# tdx"),
        ("sgx/dcap-qvl/sgx_quote", "# sgx"),
        ("nitro/eu-central-1/attestation.cose", "# nitro"),
        ("enarx-steward/snp-milan.csr", "# csr"),
    ] {
        let o = ward(&["attest", "inspect", &path(&v, file)]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "{file}: {}", stderr(&o));
        assert!(out.starts_with(kind), "{file}: {out}");
    }
}

#[test]
fn software_envelope_needs_insecure() {
    let env = ward_attest::Evidence::software(vec![7; 48], [1; 64]).to_cbor();
    let (_d, f) = temp_file("ev.cbor", &env);
    let f = f.to_str().unwrap();
    let o = ward(&["attest", "verify", "--kind", "envelope", f]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("no hardware protection"));
    let o = ward(&["attest", "verify", "--kind", "envelope", f, "--insecure"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("protection: NONE"), "{out}");
    assert!(stderr(&o).contains("WARNING"), "{}", stderr(&o));
}

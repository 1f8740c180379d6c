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

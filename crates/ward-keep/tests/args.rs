//! `ward-keep`'s command line: a bad loader-supplied measurement is refused before
//! the Keep does anything.

use std::process::{Command, Stdio};

fn keep(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ward-keep"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn measurement_must_be_a_sha384_in_hex() {
    for bad in ["zz", &"ab".repeat(47), &"ab".repeat(49)] {
        let o = keep(&["--channel-fd", "0", "--measurement", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("96 hex digits"), "{err}");
    }
}

#[test]
fn a_vm_keep_takes_no_measurement_argument() {
    let m = "ab".repeat(48);
    let o = keep(&["--channel-fd", "0", "--backend", "kvm", "--measurement", &m]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("process Keeps only"), "{err}");
}

//! `ward measure`: the launch measurement, offline (no /dev/kvm needed).

mod common;

use common::*;

fn measure(args: &[&str]) -> String {
    let mut all = vec!["measure"];
    all.extend_from_slice(args);
    let o = ward(&all);
    assert!(
        o.status.success(),
        "ward {all:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

#[test]
fn kvm_measurement_is_stable_and_binds_guest_memory() {
    let a = measure(&["--backend", "kvm"]);
    assert_eq!(a.len(), 96, "a SHA-384 in hex: {a}");
    assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(a, measure(&["--backend", "kvm"]), "same build, same value");

    // The guest memory size comes from [limits] memory and is measured.
    let (_d, cfg) = temp_file("Ward.toml", b"[limits]\nmemory = \"64MiB\"\n");
    let small = measure(&["--backend", "kvm", "--config", cfg.to_str().unwrap()]);
    assert_ne!(
        a, small,
        "a different guest memory size must change the value"
    );
}

#[test]
fn json_names_the_backend_measurement_and_guest_memory() {
    let (_d, cfg) = temp_file("Ward.toml", b"[limits]\nmemory = \"64MiB\"\n");
    let out = measure(&["--json", "--config", cfg.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["backend"], "kvm", "kvm is the default");
    assert_eq!(v["measurement"].as_str().unwrap().len(), 96);
    // 64 MiB of workload memory + 256 MiB for ward-keep, in 2 MiB pages.
    assert_eq!(v["guest_memory_bytes"], (64u64 + 256) << 20);
}

#[test]
fn process_measurement_is_the_sha384_of_ward_keep() {
    let out = measure(&["--backend", "process", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let keep = v["keep"].as_str().unwrap();
    let Ok(sum) = std::process::Command::new("sha384sum").arg(keep).output() else {
        println!("skipping the cross-check: sha384sum is not installed");
        return;
    };
    let sum = String::from_utf8(sum.stdout).unwrap();
    assert_eq!(
        v["measurement"].as_str().unwrap(),
        sum.split_whitespace().next().unwrap()
    );
}

#[test]
fn a_broken_config_is_a_one_line_error() {
    let (_d, cfg) = temp_file("Ward.toml", b"[limits]\nmemory = \"lots\"\n");
    let o = ward(&["measure", "--config", cfg.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("memory"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(o.stdout.is_empty());
}

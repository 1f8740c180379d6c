//! Each sandbox layer rejects what it is there to reject. The sandbox is applied in a
//! child process (this test binary, re-executed), never in the test runner itself.

use std::process::Command;

use ward_proto::{PreopenDir, SandboxStatus, WorkloadConfig};

const PROBE_ENV: &str = "WARD_SANDBOX_PROBE_DIR";

/// Runs in the child: sandbox, then try things and print one line per attempt.
fn probe(dir: &str) {
    let cfg = WorkloadConfig {
        preopens: vec![PreopenDir {
            host: dir.to_string(),
            guest: "/data".into(),
            writable: true,
        }],
        ..WorkloadConfig::default()
    };
    for layer in ward_keep::sandbox::apply(&cfg) {
        let status = match layer.status {
            SandboxStatus::Applied => "applied".to_string(),
            SandboxStatus::Partial(w) => format!("partial {w}"),
            SandboxStatus::Unavailable(w) => format!("unavailable {w}"),
        };
        println!("layer {} {status}", layer.name);
    }
    let ok = |r: bool| if r { "allowed" } else { "denied" };
    println!(
        "read-inside {}",
        ok(std::fs::write(format!("{dir}/x"), b"1").is_ok())
    );
    println!(
        "read-outside {}",
        ok(std::fs::read("/etc/hostname").is_ok() || std::fs::read("/etc/passwd").is_ok())
    );
    println!(
        "new-socket {}",
        ok(std::net::TcpListener::bind("127.0.0.1:0").is_ok())
    );
    println!(
        "spawn-process {}",
        ok(Command::new("/bin/true").status().is_ok())
    );
    println!(
        "spawn-thread {}",
        ok(std::thread::spawn(|| 1).join().is_ok())
    );
}

#[test]
fn sandbox_layers_reject_what_they_should() {
    if let Ok(dir) = std::env::var(PROBE_ENV) {
        probe(&dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sandbox_layers_reject_what_they_should",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PROBE_ENV, dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| {
                panic!(
                    "no {key:?} line in probe output:\n{text}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .to_string()
    };
    let layer_applied = |name: &str| {
        let l = line(&format!("layer {name} "));
        if !l.contains(" applied") && !l.contains(" partial") {
            eprintln!("skipping the {name} check: {l}");
            false
        } else {
            true
        }
    };
    // Threads stay possible (the runtime needs them) and the preopen stays usable.
    assert_eq!(line("spawn-thread"), "spawn-thread allowed");
    assert_eq!(line("read-inside"), "read-inside allowed");
    if layer_applied("landlock") {
        assert_eq!(
            line("read-outside"),
            "read-outside denied",
            "landlock let a path outside the preopens through"
        );
    }
    if layer_applied("seccomp") {
        assert_eq!(
            line("new-socket"),
            "new-socket denied",
            "seccomp let socket() through"
        );
        assert_eq!(
            line("spawn-process"),
            "spawn-process denied",
            "seccomp let a fork through"
        );
    }
}

//! `ward run --backend kvm` end to end: the same workloads as the process Keep, in a
//! micro-VM, with host files and sockets proxied by the VMM. Every test prints
//! "skipping: ..." and returns when /dev/kvm (or the example it needs) is absent.

mod common;
#[path = "common/host.rs"]
mod host;
#[path = "common/steward.rs"]
mod steward_server;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

fn kvm() -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipping: /dev/kvm is not usable here ({e})");
            false
        }
    }
}

/// The example `name` when /dev/kvm is usable and the example is built (each
/// absence prints why the test skips).
fn kvm_example(name: &str) -> Option<std::path::PathBuf> {
    if !kvm() {
        return None;
    }
    example(name)
}

/// Guest start-up is slow on a software hypervisor: generous, never asserted on.
const LIMIT: Duration = Duration::from_secs(240);

fn run_kvm(args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut all = vec!["run", "--backend", "kvm"];
    all.extend_from_slice(args);
    ward_with(&all, stdin, LIMIT)
}

#[test]
fn hello_prints_its_greeting() {
    let Some(app) = kvm_example("hello.wasm") else {
        return;
    };
    let o = run_kvm(&[app.to_str().unwrap()], b"");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Hello"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// A temp dir with `data/` and a Ward.toml preopening it as `/data`.
fn preopen_config(extra: &str, writable: bool) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("data")).unwrap();
    let cfg = d.path().join("Ward.toml");
    std::fs::write(
        &cfg,
        format!("{extra}[[preopens]]\nhost = \"data\"\nguest = \"/data\"\nwritable = {writable}\n"),
    )
    .unwrap();
    (d, cfg)
}

#[test]
fn filetool_round_trips_through_a_preopen() {
    let Some(app) = kvm_example("filetool.wasm") else {
        return;
    };
    let (d, cfg) = preopen_config("args = [\"note.txt\"]\n", true);
    // More than one shared-block transfer (64 KiB) each way.
    let input: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let o = run_kvm(
        &["--config", cfg.to_str().unwrap(), app.to_str().unwrap()],
        &input,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stdout == input, "stdout differs from what was stored");
    assert!(
        std::fs::read(d.path().join("data/note.txt")).unwrap() == input,
        "the host file differs"
    );
    assert!(stderr(&o).contains("200000 bytes stored in /data/note.txt"));
}

#[test]
fn filetool_cannot_write_a_read_only_preopen() {
    let Some(app) = kvm_example("filetool.wasm") else {
        return;
    };
    let (d, cfg) = preopen_config("args = [\"note.txt\"]\n", false);
    let o = run_kvm(
        &["--config", cfg.to_str().unwrap(), app.to_str().unwrap()],
        b"nope\n",
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot create /data/note.txt"),
        "{}",
        stderr(&o)
    );
    assert!(!d.path().join("data/note.txt").exists());
}

#[test]
fn a_path_escape_through_the_preopen_is_refused() {
    if !kvm() {
        return;
    }
    // path_open("../secret") beneath /data, then print whatever it read.
    let (d, app) = temp_file(
        "escape.wat",
        br#"(module
          (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $e (param i32)))
          (memory (export "memory") 1)
          (data (i32.const 100) "../secret")
          (func (export "_start")
            (call $e (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 9) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 200)))))"#,
    );
    std::fs::write(d.path().join("secret"), "do not read").unwrap();
    std::fs::create_dir(d.path().join("data")).unwrap();
    let cfg = d.path().join("Ward.toml");
    std::fs::write(&cfg, "[[preopens]]\nhost = \"data\"\nguest = \"/data\"\n").unwrap();
    let o = run_kvm(
        &["--config", cfg.to_str().unwrap(), app.to_str().unwrap()],
        b"",
    );
    // ENOTCAPABLE (76) or EPERM (63): anything but success.
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("kvm keep:"), "{}", stderr(&o));
}

#[test]
fn echo_answers_over_tcp() {
    let Some(app) = kvm_example("echo.wasm") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("Ward.toml");
    // Port 0: the Keep picks a free port and ward prints it. One connection, then exit.
    // Stdin is relayed too (and left open), so a guest thread waits on the channel
    // while the workload waits in accept/recv: both must be served.
    std::fs::write(
        &cfg,
        "args = [\"1\"]\n[[files]]\nkind = \"stdin\"\n[[files]]\nkind = \"stderr\"\n[[files]]\nkind = \"listen\"\nname = \"ingest\"\nprot = \"tcp\"\naddr = \"127.0.0.1\"\nport = 0\n",
    )
    .unwrap();
    let mut child = spawn(&[
        "run",
        "--backend",
        "kvm",
        "--config",
        cfg.to_str().unwrap(),
        app.to_str().unwrap(),
    ]);
    let addr = listening_addr(&mut child, "ingest");
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    // Two round trips on one connection, the second larger than one transfer.
    s.write_all(b"ping over tcp\n").unwrap();
    let mut buf = [0u8; 14];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping over tcp\n");
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let writer = {
        let mut w = s.try_clone().unwrap();
        let big = big.clone();
        std::thread::spawn(move || w.write_all(&big).unwrap())
    };
    let mut back = vec![0u8; big.len()];
    s.read_exact(&mut back).unwrap();
    writer.join().unwrap();
    assert!(back == big, "echoed bytes differ");
    drop(s);
    let o = wait_with_limit(child, LIMIT);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn cpubench_checksum_matches_the_process_keep() {
    let Some(app) = kvm_example("cpubench.wasm") else {
        return;
    };
    let cfg = root().join("examples/cpubench.toml");
    let args = [
        "--config",
        cfg.to_str().unwrap(),
        app.to_str().unwrap(),
        "--",
        "20",
    ];
    let mut process = vec!["run", "--backend", "process"];
    process.extend_from_slice(&args);
    let p = ward_with(&process, b"", LIMIT);
    let k = run_kvm(&args, b"");
    assert_eq!(p.status.code(), Some(0), "{}", stderr(&p));
    assert_eq!(k.status.code(), Some(0), "{}", stderr(&k));
    let line = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find(|l| l.contains("checksum"))
            .map(str::to_string)
    };
    assert!(line(&p).is_some(), "{}", String::from_utf8_lossy(&p.stdout));
    assert_eq!(line(&p), line(&k));
}

#[test]
fn memory_over_the_limit_is_a_clean_error() {
    if !kvm() {
        return;
    }
    let (d, app) = temp_file(
        "grow.wat",
        br#"(module (memory (export "memory") 1)
          (func (export "_start")
            (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
            unreachable))"#,
    );
    let cfg = d.path().join("Ward.toml");
    std::fs::write(&cfg, "[limits]\nmemory = \"4MiB\"\n").unwrap();
    let o = run_kvm(
        &["--config", cfg.to_str().unwrap(), app.to_str().unwrap()],
        b"",
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(134), "{err}");
    assert!(err.contains("over its limit of 4 MiB"), "{err}");
    assert!(err.contains("after hitting its memory limit"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn an_endless_loop_is_stopped_at_its_deadline_like_in_a_process_keep() {
    if !kvm() {
        return;
    }
    // No system calls, so only the VMM's timer can stop it (no preemption in the guest).
    let (_d, app) = temp_file(
        "spin.wat",
        b"(module (memory (export \"memory\") 1) (func (export \"_start\") (loop $l (br $l))))",
    );
    let (_c, cfg) = temp_file("Ward.toml", b"[limits]\nwall_time = \"500ms\"\n");
    let o = run_kvm(
        &["--config", cfg.to_str().unwrap(), app.to_str().unwrap()],
        b"",
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(124), "{err}");
    assert!(err.contains("wall-time limit of 500ms exceeded"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn a_trapping_workload_is_reported_and_the_keep_ends_cleanly() {
    if !kvm() {
        return;
    }
    let (_d, app) = temp_file(
        "trap.wat",
        b"(module (memory (export \"memory\") 1) (func (export \"_start\") unreachable))",
    );
    let o = run_kvm(&[app.to_str().unwrap()], b"");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(134), "{err}");
    assert!(err.contains("unreachable"), "{err}");
}

/// `ward deploy --backend kvm` through `ward host serve --backends process,kvm`: the
/// measurement in the Keep's evidence is the one `ward measure` computes offline, and
/// a policy pinning it accepts the Keep while a policy pinning another value refuses it.
#[test]
fn deploy_to_a_kvm_keep_carries_the_offline_measurement() {
    let Some(app) = kvm_example("hello.wasm") else {
        return;
    };
    let m = ward(&["measure", "--backend", "kvm"]);
    assert!(m.status.success(), "{}", stderr(&m));
    let expected = String::from_utf8(m.stdout).unwrap().trim().to_string();

    let d = host::daemon_with("4", &["--backends", "process,kvm"]);
    let o = host::deploy_app(&d.addr, &app, &["--backend", "kvm", "--insecure", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let claims: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(claims["measurement"], expected.as_str(), "{out}");
    assert!(out.contains("Hello"), "{out}");

    // Deploys with a policy that accepts only `pinned`.
    let deploy_pinned = |pinned: &str| {
        let (_p, policy) = temp_file(
            "policy.toml",
            format!("measurements = [\"{pinned}\"]\n").as_bytes(),
        );
        let args = ["--backend", "kvm", "--insecure", "--policy"];
        let mut args = args.to_vec();
        args.push(policy.to_str().unwrap());
        host::deploy_app(&d.addr, &app, &args)
    };
    let o = deploy_pinned(&expected);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = deploy_pinned(&"ab".repeat(48));
    assert_ne!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(err.contains("measurement"), "{err}");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("Hello"));
}

#[test]
fn the_daemon_refuses_an_unknown_backend_before_listening() {
    let o = ward(&[
        "host",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--backends",
        "process,xen",
    ]);
    assert_eq!(o.status.code(), Some(125), "ward's own error code");
    let err = stderr(&o);
    assert!(
        err.contains("unknown backend \"xen\" (known: process,kvm)"),
        "{err}"
    );
    assert!(!err.contains("listening"), "{err}");
}

/// The C echo server in a kvm Keep with a `prot = "tls"` socket: the Keep reaches the
/// Steward through the VMM (its address is on the allow-list), gets a certificate,
/// and terminates TLS in the guest; the client trusts only the Steward's CA.
#[test]
fn tls_echo_certified_by_the_steward_runs_in_a_kvm_keep() {
    let Some(app) = kvm_example("echo.wasm") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "insecure_allow_software = true\n").unwrap();
    let steward = steward_server::serve(&dir.path().join("ca"), &policy, &[]);
    let cfg = dir.path().join("Ward.toml");
    std::fs::write(
        &cfg,
        format!(
            "args = [\"1\"]\nsteward = \"https://{}\"\nsteward_ca = \"ca/ca-cert.pem\"\n[[files]]\nkind = \"stderr\"\n[[files]]\nkind = \"listen\"\nname = \"ingest\"\nprot = \"tls\"\naddr = \"127.0.0.1\"\nport = 0\n",
            steward.addr
        ),
    )
    .unwrap();
    let mut child = spawn(&[
        "run",
        "--backend",
        "kvm",
        "--config",
        cfg.to_str().unwrap(),
        app.to_str().unwrap(),
    ]);
    let addr = listening_addr(&mut child, "ingest");

    use rustls::pki_types::pem::PemObject;
    let ca = rustls::pki_types::CertificateDer::from_pem_file(dir.path().join("ca/ca-cert.pem"))
        .unwrap();
    let conn = rustls::ClientConnection::new(
        steward_server::client_trusting(&[ca]),
        rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
    )
    .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, std::net::TcpStream::connect(&addr).unwrap());
    let msg: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    tls.write_all(&msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    tls.read_exact(&mut back).unwrap();
    assert!(back == msg, "echoed bytes differ");
    tls.conn.send_close_notify();
    let _ = tls.flush();
    drop(tls);
    let o = wait_with_limit(child, LIMIT);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// A remote kvm Keep reaches only the directories `ward host serve --allow-dir` names:
/// its VMM's allow-list, since the host cannot read the tenant's Ward.toml.
#[test]
fn a_remote_kvm_keep_reaches_only_allowed_dirs() {
    let Some(app) = kvm_example("filetool.wasm") else {
        return;
    };
    let (d, cfg) = preopen_config("", true);
    let data = d.path().join("data");
    let args = [
        "--backend",
        "kvm",
        "--insecure",
        "--config",
        cfg.to_str().unwrap(),
        "--",
        "note.txt",
    ];
    let strict = host::daemon_with("2", &["--backends", "kvm"]);
    let o = host::deploy_app(&strict.addr, &app, &args);
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!data.join("note.txt").exists());

    let allowed = format!("{}:rw", data.display());
    let open = host::daemon_with("2", &["--backends", "kvm", "--allow-dir", &allowed]);
    let o = host::deploy_app(&open.addr, &app, &args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(data.join("note.txt").exists());
}

//! Faults around `ward deploy` and `ward host serve`: clients that vanish mid-upload,
//! workloads that crash or are killed, and the daemon stopped with SIGTERM while a
//! Keep runs. Nothing may be left behind, and the daemon keeps serving.

mod common;
#[path = "common/host.rs"]
mod host;

use std::io::BufReader;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use host::*;
use tokio::io::AsyncWriteExt;
use ward_proto::{encode_frame, HostToKeep, KeepToHost, LaunchSpec, TunnelHello};

/// Generous: only so that a broken build cannot hang the suite.
const SETTLE: Duration = Duration::from_secs(30);

/// A workload that says it started and then spins forever.
const SPIN_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "started\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (loop $spin (br $spin))))"#;

fn need_hello() -> bool {
    example("hello.wasm").is_some()
}

/// Asserts that the daemon runs no Keep and has no child process left.
fn assert_nothing_left(d: &Daemon, what: &str) {
    let pid = d.pid();
    let settled = eventually(SETTLE, || {
        keeps_now(&d.addr).is_empty() && children(pid) == 0
    });
    assert!(
        settled,
        "{what}: keeps {:?}, children {:?}; log:\n{}",
        keeps_now(&d.addr),
        child_pids(pid),
        d.log_text()
    );
}

/// Starts `ward deploy -q --insecure APP` against `d` and returns once the workload
/// has printed "started" (so it is running inside its Keep).
fn deploy_until_started(d: &Daemon, app: &std::path::Path) -> std::process::Child {
    let url = format!("https://{}", d.addr);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args([
            "deploy",
            app.to_str().unwrap(),
            "--host",
            &url,
            "--insecure",
            "-q",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _watchdog = kill_after(child.id(), Duration::from_secs(120));
    let mut out = BufReader::new(child.stdout.take().unwrap());
    if !read_until(&mut out, "started") {
        let o = wait_with_limit(child, Duration::from_secs(60));
        panic!("the workload never started: {}", stderr(&o));
    }
    // Keep draining stdout so the client never blocks on it.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    child
}

/// Waits for a child whose stdout was already taken.
fn wait_stderr(mut child: std::process::Child, limit: Duration) -> (Option<i32>, String) {
    use std::io::Read;
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let watchdog = kill_after(child.id(), limit);
    let status = child.wait().unwrap();
    drop(watchdog);
    (status.code(), reader.join().unwrap())
}

/// The same checks as `assert_clean_failure`, on a code and stderr.
fn assert_one_line_error(code: Option<i32>, err: &str, needle: &str) {
    assert!(
        code.is_some_and(|c| c != 0),
        "exit {code:?} is not a failure: {err}"
    );
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("ward:") && !l.to_lowercase().contains("warning"))
        .collect();
    assert_eq!(lines.len(), 1, "expected one ward: line, got: {err}");
    assert!(lines[0].contains(needle), "expected {needle:?} in: {err}");
}

/// A client that creates a Keep, makes the TLS handshake with it, announces a 64 MiB
/// module, sends 4 MiB of it and then drops the connection.
#[test]
fn client_that_disconnects_mid_upload_leaves_no_keep() {
    let d = daemon("8");
    let addr = d.addr.clone();
    let rt = runtime();
    rt.block_on(async {
        let keep = create_keep(&addr).await;
        let mut tunnel = tunnel(&addr, &keep.id).await;
        tunnel
            .write_all(
                &encode_frame(&TunnelHello {
                    version: ward_proto::PROTOCOL_VERSION,
                    nonce: vec![7; 32],
                })
                .unwrap(),
            )
            .await
            .unwrap();
        // The Keep's evidence is not the point here; its TLS is.
        let tls = tokio_rustls::TlsConnector::from(any_cert_client())
            .connect(
                rustls::pki_types::ServerName::try_from("ward-keep").unwrap(),
                tunnel,
            )
            .await
            .expect("TLS with the keep");
        let (mut r, mut w) = tokio::io::split(tls);
        let spec = LaunchSpec {
            workload_len: 64 << 20,
            workload_sha256: vec![0; 32],
            ..LaunchSpec::example()
        };
        w.write_all(&encode_frame(&HostToKeep::Launch(Box::new(spec))).unwrap())
            .await
            .unwrap();
        w.flush().await.unwrap();
        let ready: Option<KeepToHost> = read_frame_async(&mut r).await.unwrap();
        assert!(matches!(ready, Some(KeepToHost::Ready { .. })), "{ready:?}");
        let chunk = encode_frame(&HostToKeep::WorkloadChunk(vec![0x5a; 1 << 20])).unwrap();
        for _ in 0..4 {
            w.write_all(&chunk).await.unwrap();
        }
        w.flush().await.unwrap();
        let keeps = list_keeps(&addr).await;
        assert_eq!(keeps.len(), 1, "{keeps:?}");
        assert_eq!(keeps[0].state, ward_proto::host::KeepState::Connected);
        // Gone mid-upload: both halves dropped, the connection closes.
        drop((r, w));
    });
    drop(rt);
    assert_nothing_left(&d, "after a client vanished mid-upload");
    assert!(
        d.log_text().contains("tunnel closed"),
        "the daemon says why: {}",
        d.log_text()
    );
}

/// `ward deploy` killed with SIGKILL while it sends a large module.
#[test]
fn deploy_killed_mid_upload_leaves_no_keep() {
    let d = daemon("8");
    let (_dir, big) = temp_file("big.wasm", &vec![0x5a; 64 << 20]);
    let url = format!("https://{}", d.addr);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args([
            "deploy",
            big.to_str().unwrap(),
            "--host",
            &url,
            "--insecure",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let watchdog = kill_after(child.id(), Duration::from_secs(120));
    let mut err = BufReader::new(child.stderr.take().unwrap());
    // "sending 64 MiB…" comes once the Keep is attested, just before the upload.
    assert!(
        read_until(&mut err, "sending"),
        "ward deploy never got to the upload"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    drop(watchdog);
    assert_nothing_left(&d, "after ward deploy was killed mid-upload");
}

#[test]
fn trapping_workload_is_a_one_line_error_and_the_daemon_keeps_serving() {
    if !need_hello() {
        return;
    }
    let d = daemon("8");
    let (_dir, trap) = temp_file(
        "trap.wat",
        br#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#,
    );
    let o = deploy_app(&d.addr, &trap, &["--insecure", "-q"]);
    assert_clean_failure(&o, 134, "unreachable");
    assert!(o.stdout.is_empty());
    // A module the Keep cannot load: the Keep's own one-line reason.
    let (_dir2, junk) = temp_file("junk.wasm", b"\x7fELF this is not wasm at all");
    let o = deploy_app(&d.addr, &junk, &["--insecure", "-q"]);
    assert_clean_failure(&o, 125, "invalid Wasm module");
    let o = deploy(&d.addr, &["--insecure", "-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Hello from a Ward Keep!"));
    assert_nothing_left(&d, "after a trap and a good deploy");
}

#[test]
fn keep_killed_from_outside_is_reported_and_the_daemon_keeps_serving() {
    if !need_hello() {
        return;
    }
    let d = daemon("8");
    let (_dir, spin) = temp_file("spin.wat", SPIN_WAT.as_bytes());
    let client = deploy_until_started(&d, &spin);
    let keeps = child_pids(d.pid());
    assert_eq!(keeps.len(), 1, "one keep process: {keeps:?}");
    signal(keeps[0], rustix::process::Signal::KILL);
    let (code, err) = wait_stderr(client, Duration::from_secs(60));
    assert_one_line_error(code, &err, "the tunnel to the keep closed");
    assert!(
        eventually(SETTLE, || d.log_text().contains("keep crashed")),
        "the daemon reports the crash: {}",
        d.log_text()
    );
    assert_nothing_left(&d, "after a keep was killed");
    let o = deploy(&d.addr, &["--insecure", "-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Hello from a Ward Keep!"));
}

#[test]
fn sigterm_stops_the_daemon_and_its_keeps() {
    let mut d = daemon("8");
    let (_dir, spin) = temp_file("spin.wat", SPIN_WAT.as_bytes());
    let client = deploy_until_started(&d, &spin);
    let keeps = child_pids(d.pid());
    assert_eq!(keeps.len(), 1, "one keep process: {keeps:?}");
    let status = d.terminate(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "log:\n{}", d.log_text());
    assert!(
        eventually(SETTLE, || d.log_text().contains("ward host: stopped")),
        "log:\n{}",
        d.log_text()
    );
    assert!(
        d.log_text().contains("shutting down, stopping 1 keep(s)"),
        "log:\n{}",
        d.log_text()
    );
    for pid in keeps {
        assert!(!alive(pid), "keep {pid} outlived the daemon");
    }
    let (code, err) = wait_stderr(client, Duration::from_secs(60));
    assert_one_line_error(code, &err, "the tunnel to the keep closed");
}

/// `ward deploy` killed while its workload runs (and prints nothing more): the Keep
/// is stopped at once, not left spinning until its workload ends by itself.
#[test]
fn deploy_killed_while_its_workload_runs_leaves_no_keep() {
    let d = daemon("8");
    let (_dir, spin) = temp_file("spin.wat", SPIN_WAT.as_bytes());
    let mut client = deploy_until_started(&d, &spin);
    assert_eq!(children(d.pid()), 1, "the keep runs");
    client.kill().unwrap();
    client.wait().unwrap();
    assert_nothing_left(&d, "after ward deploy was killed while its workload ran");
}

/// Regression: `ward-keep` asks to be killed when the *thread* that started it ends
/// (PR_SET_PDEATHSIG). The daemon once started Keeps from tokio's blocking pool, whose
/// idle threads exit after 10 s, so every Keep died 10 s after it was created.
#[test]
fn a_keep_outlives_the_daemon_thread_that_started_it() {
    let d = daemon("4");
    let keep = runtime().block_on(create_keep(&d.addr));
    // Past tokio's 10 s keep-alive for idle blocking threads; nothing is timed here,
    // the Keep (waiting for its client, up to 30 s) must simply still be there.
    std::thread::sleep(Duration::from_secs(12));
    let keeps = keeps_now(&d.addr);
    assert!(
        keeps.iter().any(|k| k.id == keep.id),
        "keep {} is gone after 12 s: {keeps:?}; log:\n{}",
        keep.id,
        d.log_text()
    );
    assert_eq!(children(d.pid()), 1, "log:\n{}", d.log_text());
}

/// A Ward.toml preopening `host` as /data (writable or not).
fn preopen_config(
    dir: &std::path::Path,
    host: &std::path::Path,
    writable: bool,
) -> std::path::PathBuf {
    let cfg = dir.join("Ward.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[files]]\nkind = \"stdin\"\n[[files]]\nkind = \"stdout\"\n[[files]]\nkind = \"stderr\"\n[[preopens]]\nhost = \"{}\"\nguest = \"/data\"\nwritable = {writable}\n",
            host.display()
        ),
    )
    .unwrap();
    cfg
}

/// The host cannot read a tenant's Ward.toml (it travels inside TLS), so the Keep is
/// confined to what `ward host serve` allows: by default no host files and no
/// sockets; `--allow-dir DIR[:rw]` opens DIR and what is beneath it, and nothing else.
#[test]
fn a_remote_workload_reaches_only_what_the_host_allows() {
    let Some(app) = example("filetool.wasm") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let secret = d.path().join("secret");
    std::fs::create_dir(&data).unwrap();
    std::fs::create_dir(&secret).unwrap();
    let cfg = preopen_config(d.path(), &data, true);
    let refused = |o: &std::process::Output, why: &str| {
        assert_eq!(o.status.code(), Some(125), "{}", stderr(o));
        assert!(stderr(o).contains(why), "{}", stderr(o));
        assert!(!data.join("note.txt").exists());
    };
    let config = [
        "--insecure",
        "--config",
        cfg.to_str().unwrap(),
        "--",
        "note.txt",
    ];

    // 1. Nothing allowed: refused, and nothing written.
    let strict = daemon("2");
    refused(
        &deploy_app(&strict.addr, &app, &config),
        "does not let remote workloads preopen",
    );

    // 2. Read-only allowed, writable asked: refused.
    let ro = daemon_with("2", &["--allow-dir", data.to_str().unwrap()]);
    refused(&deploy_app(&ro.addr, &app, &config), "read-only");

    // 3. Another directory, through `..` from the allowed one: refused.
    let escape_dir = tempfile::tempdir().unwrap();
    let escape = preopen_config(escape_dir.path(), &data.join("../secret"), false);
    let o = deploy_app(
        &ro.addr,
        &app,
        &[
            "--insecure",
            "--config",
            escape.to_str().unwrap(),
            "--",
            "note.txt",
        ],
    );
    refused(&o, "does not let remote workloads preopen");

    // 4. Allowed writable: the workload writes there.
    let rw = daemon_with("2", &["--allow-dir", &format!("{}:rw", data.display())]);
    let o = deploy_app(&rw.addr, &app, &config);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(data.join("note.txt").exists());
}

#[test]
fn remote_sockets_need_allow_sockets() {
    let Some(app) = example("echo.wasm") else {
        return;
    };
    let (_d, cfg) = temp_file(
        "Ward.toml",
        b"args = [\"1\"]\n[[files]]\nkind = \"stderr\"\n[[files]]\nkind = \"listen\"\nname = \"ingest\"\naddr = \"127.0.0.1\"\nport = 0\n",
    );
    let d = daemon("2");
    let o = deploy_app(
        &d.addr,
        &app,
        &["--insecure", "--config", cfg.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stderr(&o).contains("--allow-sockets"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("listening"), "{}", stderr(&o));
}

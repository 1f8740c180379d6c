//! `ward deploy` through `ward host serve`, and an adversarial host: a relay that
//! records or tampers with every byte between client and host.

mod common;
#[path = "common/host.rs"]
mod host;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use host::{children, daemon, deploy, fd_count};

fn need_hello() -> bool {
    example("hello.wasm").is_some()
}

#[test]
fn deploy_runs_the_workload_and_streams_its_output() {
    if !need_hello() {
        return;
    }
    let d = daemon("8");
    let o = deploy(&d.addr, &["--insecure", "--", "remote"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        out.contains("Hello from a Ward Keep!") && out.contains("arg 1: remote"),
        "{out}"
    );
    let err = stderr(&o);
    assert!(
        err.contains("verified: none measurement") && err.contains("INSECURE"),
        "{err}"
    );
}

#[test]
fn software_keep_is_refused_without_insecure() {
    if !need_hello() {
        return;
    }
    let d = daemon("8");
    let o = deploy(&d.addr, &[]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("no hardware protection"),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty(), "nothing may run");
}

/// A TCP relay in front of the daemon. Records every byte; optionally flips the byte
/// at offset `flip` of the host→client direction of the second connection (the tunnel).
fn relay(target: String, flip: Option<usize>) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let record = Arc::new(Mutex::new(Vec::new()));
    let rec = record.clone();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(client) = conn else { return };
            let Ok(server) = TcpStream::connect(&target) else {
                return;
            };
            let pump = |mut from: TcpStream,
                        mut to: TcpStream,
                        flip: Option<usize>,
                        rec: Arc<Mutex<Vec<u8>>>| {
                std::thread::spawn(move || {
                    let mut seen = 0usize;
                    let mut buf = [0u8; 16384];
                    while let Ok(k) = from.read(&mut buf) {
                        if k == 0 {
                            break;
                        }
                        if let Some(at) = flip {
                            if at >= seen && at < seen + k {
                                buf[at - seen] ^= 0x01;
                            }
                        }
                        seen += k;
                        rec.lock().unwrap().extend_from_slice(&buf[..k]);
                        if to.write_all(&buf[..k]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            };
            let down_flip = if n == 1 { flip } else { None };
            pump(
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
                None,
                rec.clone(),
            );
            pump(server, client, down_flip, rec.clone());
        }
    });
    (addr, record)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn host_sees_only_ciphertext() {
    let Some(hello) = example("hello.wasm") else {
        return;
    };
    let d = daemon("8");
    let (addr, record) = relay(d.addr.clone(), None);
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("token");
    std::fs::write(&secret, "SECRET-VALUE-4f1e9a").unwrap();
    let spec = format!("TOKEN=@{}", secret.display());
    let o = deploy(
        &addr,
        &["--insecure", "--secret", &spec, "--", "ARG-MARKER-77"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("ARG-MARKER-77"));
    let rec = record.lock().unwrap().clone();
    assert!(
        rec.len() > 10_000,
        "the relay saw the traffic ({} bytes)",
        rec.len()
    );
    let module = std::fs::read(hello).unwrap();
    for (what, needle) in [
        ("the secret", &b"SECRET-VALUE-4f1e9a"[..]),
        ("an argument", b"ARG-MARKER-77"),
        ("the output", b"Hello from a Ward Keep"),
        (
            "the module",
            &module[module.len() / 2..module.len() / 2 + 48],
        ),
    ] {
        assert!(!contains(&rec, needle), "{what} crossed the host in clear");
    }
}

#[test]
fn a_flipped_byte_aborts_the_deployment() {
    if !need_hello() {
        return;
    }
    let d = daemon("8");
    // Byte 1500 of the tunnel connection, host→client: past the handshake with the
    // host, in the records that carry the Keep's certificate.
    let (addr, _) = relay(d.addr.clone(), Some(1500));
    let o = deploy(&addr, &["--insecure"]);
    assert_ne!(
        o.status.code(),
        Some(0),
        "tampering went unnoticed: {}",
        stderr(&o)
    );
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("Hello"),
        "output from a tampered session"
    );
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    // The client says why: a TLS failure (bad record MAC or a broken handshake).
    assert!(
        err.to_lowercase().contains("tls")
            || err.contains("decrypt")
            || err.contains("attestation"),
        "{err}"
    );
}

#[test]
fn fifty_concurrent_deploys_and_no_leaks() {
    if !need_hello() {
        return;
    }
    let d = daemon("64");
    let pid = d.pid();
    // One deploy to warm up, then the baseline.
    assert_eq!(deploy(&d.addr, &["--insecure"]).status.code(), Some(0));
    std::thread::sleep(Duration::from_millis(500));
    let (fds, kids) = (fd_count(pid), children(pid));
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let addr = d.addr.clone();
            std::thread::spawn(move || deploy(&addr, &["--insecure", "-q", "--", &format!("n{i}")]))
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let o = h.join().unwrap();
        assert_eq!(o.status.code(), Some(0), "deploy {i}: {}", stderr(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("arg 1: n{i}")));
    }
    // Keeps are reaped asynchronously; give the reaper a moment.
    let mut settled = false;
    for _ in 0..50 {
        if fd_count(pid) <= fds && children(pid) <= kids {
            settled = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        settled,
        "fds {} (baseline {fds}), children {} (baseline {kids})",
        fd_count(pid),
        children(pid)
    );
}

#[test]
fn bad_host_urls_and_refusals_are_one_line_errors() {
    let o = ward(&["deploy", "x.wasm", "--host", "http://127.0.0.1:1"]);
    assert_clean_failure(&o, 125, "cannot read");
    if !need_hello() {
        return;
    }
    let hello = root().join("examples/hello.wasm");
    let o = ward(&[
        "deploy",
        hello.to_str().unwrap(),
        "--host",
        "http://127.0.0.1:1",
        "--insecure",
    ]);
    assert_clean_failure(&o, 125, "https://HOST:PORT");
    let o = ward(&[
        "deploy",
        hello.to_str().unwrap(),
        "--host",
        "https://127.0.0.1:1",
        "--insecure",
        "-q",
    ]);
    assert_clean_failure(&o, 125, "cannot reach the host");
    let d = daemon("8");
    let o = ward(&[
        "deploy",
        hello.to_str().unwrap(),
        "--host",
        &format!("https://{}", d.addr),
        "--backend",
        "sgx",
        "--insecure",
        "-q",
    ]);
    assert_clean_failure(&o, 125, "not offered here");
}

#[test]
fn json_reports_the_claims_and_per_phase_timings() {
    if !need_hello() {
        return;
    }
    let d = daemon("8");
    let o = deploy(&d.addr, &["--insecure", "-q", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    // First the verified claims, then the workload's output, then the timings.
    let claims: serde_json::Value = serde_json::from_str(lines[0]).expect("claims JSON");
    assert!(claims.get("timings_ms").is_none(), "{out}");
    // The process Keep's measurement (from its loader) is what `ward measure` prints.
    let m = ward(&["measure", "--backend", "process"]);
    let expected = String::from_utf8_lossy(&m.stdout).trim().to_string();
    assert_eq!(claims["measurement"], expected.as_str(), "{out}");
    assert!(out.contains("Hello from a Ward Keep!"), "{out}");
    let last: serde_json::Value =
        serde_json::from_str(lines.last().unwrap()).expect("timings JSON on the last line");
    assert_eq!(last["exit_code"], 0, "{last}");
    let t = last["timings_ms"].as_object().expect("timings_ms object");
    let phase = |k: &str| {
        let v = t
            .get(k)
            .and_then(|v| v.as_f64())
            .unwrap_or_else(|| panic!("timings_ms.{k} missing or not a number: {last}"));
        assert!(v >= 0.0, "timings_ms.{k} = {v}");
        v
    };
    let parts: f64 = ["create", "attest", "upload", "run"]
        .iter()
        .map(|k| phase(k))
        .sum();
    let total = phase("total");
    assert!(
        parts <= total,
        "phases sum to {parts} > total {total}: {last}"
    );
    assert_eq!(t.len(), 5, "exactly the five phases: {last}");
}

#[test]
fn platform_lists_backends_tee_kinds_and_the_offered_collateral() {
    let (_c, chain) = temp_file(
        "vcek-chain.pem",
        b"-----BEGIN CERTIFICATE-----\nnot checked by the host\n-----END CERTIFICATE-----\n",
    );
    let d = host::daemon_with("3", &["--collateral", chain.to_str().unwrap()]);
    let (status, body) = host::runtime().block_on(host::api(
        &d.addr,
        hyper::Method::GET,
        "/v1/platform",
        Vec::new(),
    ));
    assert_eq!(status, hyper::StatusCode::OK);
    let p: ward_proto::host::Platform = ciborium::from_reader(&body[..]).unwrap();
    assert_eq!(p.backends, ["process"]);
    assert_eq!(p.tee_kinds, ["none"]);
    assert_eq!(p.max_keeps, 3);
    assert_eq!(p.collateral.len(), 1);
    assert_eq!(&p.collateral[0][..], &std::fs::read(&chain).unwrap()[..]);
}

#[test]
fn collateral_too_large_for_one_answer_is_refused_at_start() {
    let (_c, big) = temp_file("big.bin", &vec![0u8; 70 << 10]);
    let o = ward(&[
        "host",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--collateral",
        big.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(125));
    let err = stderr(&o);
    assert!(
        err.contains("--collateral") && err.contains("over the"),
        "{err}"
    );
    assert!(!err.contains("listening"), "{err}");
}
